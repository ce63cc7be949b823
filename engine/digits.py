"""Real handwritten digits for the Net: the 8×8 UCI optical-digits set, served by a DataLoader.

The data (1,797 images, pixel values 0..16, label 0..9) ships as ``engine/data/digits.csv.gz``,
one image per line: 64 pixel values row by row, then the label. It is scikit-learn's copy of
the UCI ML Optical Recognition of Handwritten Digits test set (Alpaydin & Kaynak, CC BY 4.0).

Transform (the same one ``nntui export`` writes into its scripts)::

    image = pixels.view(1, 1, 8, 8).float() / 16                 # 0..16 -> 0..1, exact
    image = F.interpolate(image, size=(32, 32), mode="nearest")  # every pixel a 4×4 block

Nearest-neighbour keeps every value exact (no interpolation arithmetic), so any plain PyTorch
re-implementation gives bit-identical inputs, and ``image[..., ::4, ::4] * 16`` gives the
original pixels back for display.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from .phases import Phase

if TYPE_CHECKING:
    from .recipe import Recipe
    from .session import Session

DIGITS_PATH = Path(__file__).parent / "data" / "digits.csv.gz"
NUM_CLASSES = 10
SIDE = 8  # the data's own resolution
SCALE = 4  # 8×8 -> 32×32, the Net's input
MAX_PIXEL = 16
CACHED_EPOCHS = 2  # epochs of batches kept in memory (about 7.4 MB each); older ones replay
RECENT = 10  # batches in the "recent accuracy" window


@lru_cache(maxsize=2)
def load_digits(path: str = str(DIGITS_PATH)) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels, labels)``: int64 ``N×8×8`` pixel values 0..16 and int64 ``N`` labels.

    Cached: the app rebuilds the recipe on every reset and the file never changes.
    """
    raw = np.loadtxt(path, delimiter=",", dtype=np.int64, ndmin=2)
    if raw.shape[1] != SIDE * SIDE + 1:
        raise ValueError(f"{path}: expected {SIDE * SIDE + 1} columns, got {raw.shape[1]}")
    pixels = torch.from_numpy(raw[:, : SIDE * SIDE].copy()).view(-1, SIDE, SIDE)
    labels = torch.from_numpy(raw[:, SIDE * SIDE].copy())
    return pixels, labels


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    """``N×8×8`` pixel values 0..16 -> ``N×1×32×32`` float input (see the module docstring)."""
    image = pixels.view(-1, 1, SIDE, SIDE).float() / MAX_PIXEL
    return F.interpolate(image, size=(SIDE * SCALE, SIDE * SCALE), mode="nearest")


def to_pixels(input: torch.Tensor) -> torch.Tensor:
    """The inverse of ``to_input``: ``N×1×32×32`` -> int64 ``N×8×8`` pixel values 0..16."""
    return (input[:, 0, ::SCALE, ::SCALE] * MAX_PIXEL).round().long()


class DigitsDataset(Dataset):
    """``dataset[i]`` is ``(image 1×32×32 float, label int64 scalar)``."""

    def __init__(self, path: Path | str = DIGITS_PATH) -> None:
        pixels, labels = load_digits(str(path))
        self.images = to_input(pixels)  # all at once: 7.4 MB, and __getitem__ stays a view
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class DigitsBatches:
    """The notes' "batch generator": a shuffling DataLoader, one new batch per iteration.

    Iteration ``k`` (1-based, as the session numbers them) takes batch ``k − 1`` of the endless
    sequence epoch 0, epoch 1, …; each epoch is one pass of the same DataLoader, whose generator
    (seeded from ``recipe.seed``) reshuffles it. That is exactly what
    ``for epoch ...: for batch in loader`` yields with the same seed.

    The session rewinds and recomputes, so ``batch(k)`` must not depend on what was asked
    before: the generator state at the start of every epoch is kept (5 KB each), and an epoch
    no longer cached is replayed from it. The global RNG is never touched.
    """

    def __init__(self, recipe: Recipe, dataset: DigitsDataset | None = None) -> None:
        self.dataset = dataset if dataset is not None else DigitsDataset()
        self.one_hot = recipe.loss == "mse"
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.loader = DataLoader(
            self.dataset, batch_size=recipe.batch_size, shuffle=True, generator=self.generator
        )
        self.per_epoch = len(self.loader)
        self._epoch_states: list[torch.Tensor] = [self.generator.get_state()]
        self._cache: OrderedDict[int, list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()

    def locate(self, iteration: int) -> tuple[int, int]:
        """``(epoch, batch within the epoch)`` of an iteration, both 0-based."""
        if iteration < 1:
            raise ValueError(f"iterations start at 1, got {iteration}")
        return divmod(iteration - 1, self.per_epoch)

    def labels(self, iteration: int) -> torch.Tensor:
        epoch, index = self.locate(iteration)
        return self._epoch(epoch)[index][1].clone()

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input N×1×32×32, target)``: class indices, or one-hot floats for MSE."""
        epoch, index = self.locate(iteration)
        images, labels = self._epoch(epoch)[index]
        # Clones: a model may write into its input in place; the cache must not change.
        if self.one_hot:
            return images.clone(), F.one_hot(labels, NUM_CLASSES).float()
        return images.clone(), labels.clone()

    def _epoch(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if epoch in self._cache:
            self._cache.move_to_end(epoch)
            return self._cache[epoch]
        # Epochs are only reachable in order: each one starts where the previous left the
        # generator.
        while len(self._epoch_states) <= epoch:
            self._run(len(self._epoch_states) - 1)
        return self._run(epoch)

    def _run(self, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.generator.set_state(self._epoch_states[epoch])
        batches = [(images, labels) for images, labels in self.loader]
        if len(self._epoch_states) == epoch + 1:
            self._epoch_states.append(self.generator.get_state())
        self._cache[epoch] = batches
        self._cache.move_to_end(epoch)
        while len(self._cache) > CACHED_EPOCHS:
            self._cache.popitem(last=False)
        return batches


@dataclass(frozen=True)
class DigitsReport:
    """What the app's digits pane draws for the batch of the latest forward."""

    iteration: int
    epoch: int  # 0-based
    batch_in_epoch: int  # 0-based
    batches_per_epoch: int
    images: tuple[tuple[tuple[int, ...], ...], ...]  # per image: 8 rows of 8 pixels, 0..16
    labels: tuple[int, ...]
    predictions: tuple[int, ...]  # argmax of the output, before this iteration's step
    seen: int  # images over every forward so far (rewound forwards do not count)
    seen_correct: int
    recent: int  # images over the last ``RECENT`` batches
    recent_batches: int  # how many batches that is (fewer early on)
    recent_correct: int

    @property
    def correct(self) -> int:
        return sum(p == t for p, t in zip(self.predictions, self.labels))

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.labels) if self.labels else 0.0

    @property
    def running_accuracy(self) -> float:
        return self.seen_correct / self.seen if self.seen else 0.0

    @property
    def recent_accuracy(self) -> float:
        return self.recent_correct / self.recent if self.recent else 0.0


def batch_report(session: Session) -> DigitsReport | None:
    """The latest forward's digits batch, predictions and accuracies; None before one ran.

    Pure: reads the session's records and run log (a rewind truncates both, so the figures
    follow it) and the batch source, and changes nothing.
    """
    data = session.setup.data if session.setup is not None else None
    if not isinstance(data, DigitsBatches):
        return None
    # The latest forward is among the records kept; the counts cover the whole run.
    last = next(
        (r for r in reversed(session.records) if r.phase is Phase.FORWARD and r.labels), None
    )
    if last is None:
        return None
    input, _ = data.batch(last.iteration)
    pixels = to_pixels(input)
    epoch, index = data.locate(last.iteration)
    log = session.run_log
    seen, seen_correct = log.hits()
    recent, recent_correct = log.hits(RECENT)
    return DigitsReport(
        iteration=last.iteration,
        epoch=epoch,
        batch_in_epoch=index,
        batches_per_epoch=data.per_epoch,
        images=tuple(tuple(tuple(row) for row in img) for img in pixels.tolist()),
        labels=last.labels,
        predictions=last.predictions,
        seen=seen,
        seen_correct=seen_correct,
        recent=recent,
        recent_batches=min(RECENT, log.forwards),
        recent_correct=recent_correct,
    )
