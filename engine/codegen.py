"""The plain PyTorch code of a recipe: per-phase snippets, the loop listing, a runnable script.

One source for what the app shows in its code pane, what each record says it ran, and what
``nntui export`` writes, so the three can never disagree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from .phases import Phase
from .recipe import MODELS, Recipe

SKIPPED_ZERO_GRAD = "# optimizer.zero_grad()  # skipped: gradients accumulate"


def _fmt_float(x: float) -> str:
    return repr(float(x))


def _sizes(shape: tuple[int, ...]) -> str:
    # ``torch.randn()`` is a TypeError; the shape of a scalar output is written ``()``.
    return ", ".join(str(s) for s in shape) if shape else "()"


def _model(recipe: Recipe) -> tuple[str, tuple[int, ...], int | None]:
    """``(call, default input shape, classes)``; a user model has no defaults of its own."""
    if recipe.model in MODELS:
        factory, default_shape, classes = MODELS[recipe.model]
        return f"{factory.__name__}()", default_shape, classes
    return f"{recipe.model.rpartition(':')[2]}()", (), None


def _target_line(recipe: Recipe, shape: tuple[int, ...], num_classes: int | None) -> str:
    # The same rule as engine.recipe.target_plan; before define, a user model's output size
    # is not known yet (the session's resolved recipe fills it in).
    ts = recipe.target_shape
    if recipe.loss == "cross-entropy":
        if num_classes is None:
            return "# target = torch.randint(0, C, ...)  # C: net's output size, found at define"
        sizes = f"({shape[0]},)" if ts is None else f"({_sizes(ts)}{',' if len(ts) == 1 else ''})"
        return f"target = torch.randint(0, {num_classes}, {sizes})"
    if ts is not None:
        return f"target = torch.randn({_sizes(ts)})"
    if num_classes is None:
        return "# target = torch.randn(...)  # the shape of net(input), found at define"
    if shape[0] == 1:
        return f"target = torch.randn({num_classes}).view(1, -1)"
    return f"target = torch.randn({shape[0]}, {num_classes})"


def define_code(recipe: Recipe) -> list[str]:
    call, default_shape, classes = _model(recipe)
    num_classes = recipe.num_classes if recipe.num_classes is not None else classes
    shape = recipe.input_shape or default_shape
    lines = [f"torch.manual_seed({recipe.seed})", f"net = {call}"]
    if recipe.data == "digits":
        # The notes' "batch generator": a shuffling DataLoader with its own seeded generator
        # (engine/digits.py serves exactly these batches; Digits and every_batch are in the
        # exported script).
        lines += [
            f"generator = torch.Generator().manual_seed({recipe.seed})",
            f"loader = DataLoader(Digits(), batch_size={recipe.batch_size}, shuffle=True,"
            " generator=generator)",
            "batches = every_batch(loader)  # a new batch every iteration, epoch after epoch",
        ]
    else:
        lines.append(f"input = torch.randn({_sizes(shape)})")
        lines.append(_target_line(recipe, shape, num_classes))
    if recipe.loss == "mse":
        lines.append("criterion = nn.MSELoss()")
    elif recipe.class_weights:
        lines.append(f"weight = torch.ones({num_classes})")
        for k, w in recipe.class_weights:
            lines.append(f"weight[{k}] = {_fmt_float(w)}")
        lines.append("criterion = nn.CrossEntropyLoss(weight=weight)")
    else:
        lines.append("criterion = nn.CrossEntropyLoss()")
    lr = _fmt_float(recipe.lr)
    lines.append(
        {
            "sgd": f"optimizer = optim.SGD(net.parameters(), lr={lr})",
            "manual": f"learning_rate = {lr}",
            "momentum": f"optimizer = optim.SGD(net.parameters(), lr={lr}, momentum=0.9)",
            "adam": f"optimizer = optim.Adam(net.parameters(), lr={lr})",
            "rmsprop": f"optimizer = optim.RMSprop(net.parameters(), lr={lr})",
        }[recipe.optimizer]
    )
    return lines


def zero_grad_code(recipe: Recipe, accumulate: bool) -> list[str]:
    if accumulate:
        return [SKIPPED_ZERO_GRAD]
    arg = "" if recipe.zero_grad == "none" else "set_to_none=False"
    owner = "net" if recipe.optimizer == "manual" else "optimizer"
    return [f"{owner}.zero_grad({arg})"]


def step_code(recipe: Recipe) -> list[str]:
    if recipe.optimizer == "manual":
        return ["for f in net.parameters():", "    f.data.sub_(f.grad.data * learning_rate)"]
    return ["optimizer.step()"]


def forward_code(recipe: Recipe) -> list[str]:
    if recipe.data == "digits":
        if recipe.loss == "mse":
            return [
                "input, label = next(batches)",
                "target = F.one_hot(label, 10).float()",
                "output = net(input)",
            ]
        return ["input, target = next(batches)", "output = net(input)"]
    return ["output = net(input)"]


@functools.lru_cache(maxsize=256)  # a Recipe is frozen and hashable; every phase asks again
def phase_code(recipe: Recipe, phase: Phase, accumulate: bool = False) -> str:
    """The PyTorch a phase runs, as the record and the code pane show it."""
    lines = {
        Phase.DEFINE: lambda: define_code(recipe),
        Phase.FORWARD: lambda: forward_code(recipe),
        Phase.LOSS: lambda: ["loss = criterion(output, target)"],
        Phase.ZERO_GRAD: lambda: zero_grad_code(recipe, accumulate),
        Phase.BACKWARD: lambda: ["loss.backward()"],
        Phase.STEP: lambda: step_code(recipe),
    }[phase]()
    return "\n".join(lines)


@dataclass(frozen=True)
class Listing:
    """The training loop as lines, with the lines each phase owns (0-based)."""

    lines: tuple[str, ...]
    phase_lines: dict[Phase, tuple[int, ...]]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def import_lines(recipe: Recipe, functional: bool = False) -> list[str]:
    """The notes' imports the code needs: ``F`` when asked (model source) or for digits'
    ``F.one_hot``, and ``DataLoader`` for digits."""
    lines = ["import torch", "import torch.nn as nn"]
    if functional or recipe.data == "digits":
        lines.append("import torch.nn.functional as F")
    lines.append("import torch.optim as optim")
    if recipe.data == "digits":
        lines.append("from torch.utils.data import DataLoader, Dataset")
    return lines


def listing(recipe: Recipe, accumulate: bool = False) -> Listing:
    """The loop the app walks through, compact: model class left out, imports kept short."""
    lines: list[str] = [*import_lines(recipe), ""]
    spans: dict[Phase, tuple[int, ...]] = {}

    def add(phase: Phase, code: list[str], indent: str = "") -> None:
        start = len(lines)
        lines.extend(indent + c for c in code)
        spans[phase] = tuple(range(start, len(lines)))

    add(Phase.DEFINE, define_code(recipe))
    lines.append("")
    lines.append("for iteration in range(1, iterations + 1):")
    add(Phase.FORWARD, forward_code(recipe), "    ")
    add(Phase.LOSS, ["loss = criterion(output, target)"], "    ")
    add(Phase.ZERO_GRAD, zero_grad_code(recipe, accumulate), "    ")
    add(Phase.BACKWARD, ["loss.backward()"], "    ")
    add(Phase.STEP, step_code(recipe), "    ")
    return Listing(tuple(lines), spans)


def model_source(recipe: Recipe) -> str:
    """The code defining the model (shipped classes, the user's file, or an import).

    A user file's ``from __future__`` lines are not in it: they must open a script, see
    ``engine.loader.model_code(...).future``.
    """
    from .loader import model_code

    return model_code(recipe.model, {k: v[0] for k, v in MODELS.items()}).source
