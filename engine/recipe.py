"""What to train and how: a frozen ``Recipe`` and ``build`` that turns it into live objects.

``build`` follows the seeded construction order of DESIGN.md, a public contract:
``manual_seed(seed)``, model, input, target, criterion, optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.optim as optim

from .models import Net

LOSSES = ("mse", "cross-entropy")
OPTIMIZERS = ("sgd", "manual", "momentum", "adam", "rmsprop")
ZERO_GRAD_MODES = ("none", "zeros")
DATA_SOURCES = ("random", "digits")


class RecipeError(ValueError):
    """A recipe that cannot be built; the message is one line meant for the user."""


@dataclass(frozen=True)
class Recipe:
    seed: int = 0
    lr: float = 0.01
    loss: str = "mse"
    class_weights: tuple[tuple[int, float], ...] = ()
    optimizer: str = "sgd"
    zero_grad: str = "none"
    data: str = "random"
    batch_size: int = 16
    model: str = "lenet"
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    target_shape: tuple[int, ...] | None = None
    watch: str | None = None  # the parameter the tutorial prints (default: conv1.bias)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def with_(self, **changes: Any) -> Recipe:
        return replace(self, **changes)

    def validate(self) -> Recipe:
        """Raise ``RecipeError`` naming the first bad setting; return self when fine."""
        if self.loss not in LOSSES:
            raise RecipeError(f"unknown loss {self.loss!r} (choose from {', '.join(LOSSES)})")
        if self.optimizer not in OPTIMIZERS:
            raise RecipeError(
                f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})"
            )
        if self.zero_grad not in ZERO_GRAD_MODES:
            raise RecipeError(f"unknown zero-grad mode {self.zero_grad!r} (choose none or zeros)")
        if self.data not in DATA_SOURCES:
            raise RecipeError(f"unknown data {self.data!r} (choose random or digits)")
        if not (self.lr > 0 and self.lr < float("inf")):
            raise RecipeError(f"lr must be a positive finite number, got {self.lr}")
        if self.batch_size < 1:
            raise RecipeError(f"batch size must be at least 1, got {self.batch_size}")
        if self.class_weights and self.loss != "cross-entropy":
            raise RecipeError("--class-weight needs --loss cross-entropy")
        for shape_name in ("input_shape", "target_shape"):
            shape = getattr(self, shape_name)
            if shape is not None and (not shape or any(d < 1 for d in shape)):
                raise RecipeError(f"{shape_name.replace('_', '-')} must be positive sizes")
        return self


class BatchSource(Protocol):
    """Gives the (input, target) of an iteration; the same iteration gives the same batch."""

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class FixedBatch:
    """The tutorial's data: one random batch, reused every iteration."""

    input: torch.Tensor
    target: torch.Tensor

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.input, self.target


class ManualSGD:
    """The notes' hand-written update, ``f.data.sub_(f.grad.data * learning_rate)``.

    Shaped like an optimizer so the session treats every update rule alike.
    """

    def __init__(self, params: list[nn.Parameter], lr: float) -> None:
        self.params = params
        self.param_groups = [{"params": params, "lr": lr}]
        self.state: dict[Any, dict[str, Any]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for f in self.params:
            if f.grad is None:
                continue
            if set_to_none:
                f.grad = None
            else:
                f.grad.detach_()
                f.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        learning_rate = self.param_groups[0]["lr"]
        for f in self.params:
            if f.grad is not None:
                f.data.sub_(f.grad.data * learning_rate)


@dataclass
class Setup:
    """The live objects a recipe builds."""

    net: nn.Module
    criterion: nn.Module
    optimizer: Any  # torch.optim.Optimizer or ManualSGD
    data: BatchSource
    num_classes: int | None


# Shipped models: name -> (factory, default input shape, output classes).
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "lenet": (Net, (1, 1, 32, 32), 10),
}


def class_weight_tensor(recipe: Recipe, num_classes: int) -> torch.Tensor | None:
    if not recipe.class_weights:
        return None
    weight = torch.ones(num_classes)
    for k, w in recipe.class_weights:
        if not 0 <= k < num_classes:
            raise RecipeError(f"class weight for class {k}, but classes are 0..{num_classes - 1}")
        weight[k] = w
    return weight


def make_criterion(recipe: Recipe, num_classes: int | None) -> nn.Module:
    if recipe.loss == "mse":
        return nn.MSELoss()
    weight = class_weight_tensor(recipe, num_classes) if num_classes else None
    return nn.CrossEntropyLoss(weight=weight)


def make_optimizer(recipe: Recipe, params: list[nn.Parameter]) -> Any:
    name = recipe.optimizer
    if name == "sgd":
        return optim.SGD(params, lr=recipe.lr)
    if name == "manual":
        return ManualSGD(params, lr=recipe.lr)
    if name == "momentum":
        return optim.SGD(params, lr=recipe.lr, momentum=0.9)
    if name == "adam":
        return optim.Adam(params, lr=recipe.lr)
    return optim.RMSprop(params, lr=recipe.lr)


def random_batch(recipe: Recipe, input_shape: tuple[int, ...], num_classes: int) -> FixedBatch:
    input = torch.randn(*input_shape)
    if recipe.loss == "cross-entropy":
        target = torch.randint(0, num_classes, (input_shape[0],))
    else:
        target = (
            torch.randn(num_classes).view(1, -1)
            if input_shape[0] == 1
            else torch.randn(input_shape[0], num_classes)
        )
    return FixedBatch(input, target)


def build(recipe: Recipe) -> Setup:
    """Build model, batch, criterion and optimizer in the documented seeded order."""
    recipe.validate()
    if recipe.model not in MODELS:
        raise RecipeError(f"unknown model {recipe.model!r} (choose from {', '.join(MODELS)})")
    factory, default_shape, num_classes = MODELS[recipe.model]
    input_shape = recipe.input_shape or default_shape
    torch.manual_seed(recipe.seed)
    net = factory()
    if recipe.data == "digits":
        from .digits import DigitsBatches

        data: BatchSource = DigitsBatches(recipe)
    else:
        data = random_batch(recipe, input_shape, num_classes)
    criterion = make_criterion(recipe, num_classes)
    optimizer = make_optimizer(recipe, list(net.parameters()))
    return Setup(net, criterion, optimizer, data, num_classes)
