"""The digits data and its DataLoader against an independent reader and a plain DataLoader."""

from __future__ import annotations

import gzip
import hashlib

import pytest
import torch
import torch.nn.functional as F

from engine import Phase, Recipe, Session
from engine.digits import DIGITS_PATH, DigitsBatches, DigitsDataset, batch_report
from tests.oracle_recipes import (
    digits_images,
    plain_digits_loader,
    plain_run,
    read_digits,
)

# scikit-learn 1.9.1's sklearn/datasets/data/digits.csv.gz, shipped unchanged.
SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_shipped_file_is_the_uci_test_set():
    assert hashlib.sha256(DIGITS_PATH.read_bytes()).hexdigest() == SHA256
    with gzip.open(DIGITS_PATH, "rt") as f:
        assert sum(1 for _ in f) == 1797
    pixels, labels = read_digits()
    assert pixels.shape == (1797, 8, 8)
    assert int(pixels.min()) == 0 and int(pixels.max()) == 16
    assert torch.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_dataset_transform_is_exact():
    """/16, then each pixel a 4×4 block: what an independent reader computes, bit for bit."""
    pixels, labels = read_digits()
    dataset = DigitsDataset()
    assert len(dataset) == 1797
    assert torch.equal(dataset.images, digits_images(pixels))
    image, label = dataset[5]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert int(label) == int(labels[5])
    assert image[0, 4 * 3 + 2, 4 * 5 + 1].item() == pixels[5, 3, 5].item() / 16


@pytest.mark.parametrize("seed,batch_size", [(0, 16), (3, 256), (11, 1797)])
def test_batches_equal_a_plain_dataloader(seed, batch_size):
    """batch(k) is the k-th batch of `for epoch…: for batch in loader`, in any access order."""
    recipe = Recipe(data="digits", loss="cross-entropy", seed=seed, batch_size=batch_size)
    batches = DigitsBatches(recipe)
    loader = plain_digits_loader(seed, batch_size)
    per_epoch = -(-1797 // batch_size)
    assert batches.per_epoch == per_epoch == len(loader)
    epochs = 4 if per_epoch < 20 else 2
    expected = [b for _ in range(epochs) for b in loader]
    rng_before = torch.get_rng_state()
    n = len(expected)
    # Forward, then jumping back (an evicted epoch replays), as a rewinding session asks.
    order = [*range(1, n + 1), 1, n, 2, n // 2 + 1, per_epoch, per_epoch + 1]
    for k in order:
        images, target = batches.batch(k)
        want_images, want_labels = expected[k - 1]
        assert torch.equal(images, want_images), k
        assert torch.equal(target, want_labels), k
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is not touched
    # An epoch's last batch holds what is left over (drop_last=False, as a plain loader).
    assert len(expected[per_epoch - 1][1]) == (1797 % batch_size or batch_size)


def test_mse_target_is_one_hot_and_batches_are_copies():
    batches = DigitsBatches(Recipe(data="digits", loss="mse", batch_size=8))
    images, target = batches.batch(1)
    labels = batches.labels(1)
    assert torch.equal(target, F.one_hot(labels, 10).float())
    images.mul_(0)  # a model writing into its input must not change the next ask
    again, _ = batches.batch(1)
    assert again.abs().sum() > 0


def test_digits_session_matches_plain_loop_and_rewinds():
    recipe = Recipe(data="digits", loss="cross-entropy", optimizer="momentum", batch_size=64)
    oracle = plain_run(
        data="digits", loss="cross-entropy", optimizer="momentum", batch_size=64, iterations=4
    )
    session = Session(recipe)
    session.run_next()
    losses = []
    for i in range(4):
        records = {r.phase: r for r in session.run_iteration()}
        losses.append(records[Phase.LOSS].loss)
        forward = records[Phase.FORWARD]
        assert forward.labels == tuple(oracle.labels[i].tolist())
        assert forward.predictions == tuple(oracle.outputs[i].argmax(1).tolist())
        for name, value in oracle.params[i].items():
            assert torch.equal(session.tensor(name), value), (i, name)
    assert losses == oracle.losses
    # Rewind to just after iteration 2's forward (its graph is rebuilt from batch 2) and replay.
    assert session.rewind(5 * 2 + 4) == 14
    assert (session.done, session.iteration) == (Phase.FORWARD, 2)
    replayed = [r.loss for _ in range(3) for r in session.run_iteration() if r.phase is Phase.LOSS]
    assert replayed == losses[1:]


def test_batch_report_shows_the_batch_and_accuracies():
    session = Session(Recipe(data="digits", loss="cross-entropy", optimizer="adam", lr=0.001))
    assert batch_report(session) is None
    session.run_next()
    assert batch_report(session) is None
    oracle = plain_run(
        data="digits", loss="cross-entropy", optimizer="adam", lr=0.001, iterations=12
    )
    pixels, labels = read_digits()
    for _ in range(12):
        session.run_iteration()
    report = batch_report(session)
    assert report is not None and report.iteration == 12
    assert (report.epoch, report.batch_in_epoch, report.batches_per_epoch) == (0, 11, 113)
    assert report.labels == tuple(oracle.labels[11].tolist())
    assert report.predictions == tuple(oracle.outputs[11].argmax(1).tolist())
    # 8×8 pixels of the batch: the 32×32 input read back at every 4th pixel, times 16.
    input, _ = DigitsBatches(session.recipe).batch(12)
    assert torch.equal(torch.tensor(report.images), (input[:, 0, ::4, ::4] * 16).long())
    for img, label in zip(report.images, report.labels):  # real data images, right labels
        match = (pixels == torch.tensor(img)).all(dim=(1, 2)) & (labels == label)
        assert match.any()
    right = [(o.argmax(1) == y).sum().item() for o, y in zip(oracle.outputs, oracle.labels)]
    assert report.correct == right[-1]
    assert report.accuracy == right[-1] / 16
    assert report.running_accuracy == sum(right) / (16 * 12)
    assert report.recent_accuracy == sum(right[-10:]) / 160
    # A rewind past a forward takes it out of the running figures.
    session.rewind(5)
    rewound = batch_report(session)
    assert rewound.iteration == 11 and rewound.seen == 16 * 11
    assert rewound.running_accuracy == sum(right[:11]) / (16 * 11)


def test_cross_entropy_on_digits_falls_within_100_iterations():
    """The issue's promise, through the session: batch 16, Adam at lr 0.001."""
    session = Session(
        Recipe(data="digits", loss="cross-entropy", optimizer="adam", lr=0.001, batch_size=16)
    )
    session.run_next()
    losses = [r.loss for _ in range(100) for r in session.run_iteration() if r.phase is Phase.LOSS]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.6 * first, (first, last)
    assert batch_report(session).recent_accuracy > 0.5
