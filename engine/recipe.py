"""What to train and how: a frozen ``Recipe`` and ``build`` that turns it into live objects.

``build`` follows the seeded construction order of DESIGN.md, a public contract:
``manual_seed(seed)``, model, input, target, criterion, optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
import torch.nn as nn
import torch.optim as optim

from .models import MLP, Net, ResNet

LOSSES = ("mse", "cross-entropy")
OPTIMIZERS = ("sgd", "manual", "momentum", "adam", "rmsprop")
ZERO_GRAD_MODES = ("none", "zeros")
DATA_SOURCES = ("random", "digits")
FLOAT32_MAX = torch.finfo(torch.float32).max


class RecipeError(ValueError):
    """A recipe that cannot be built; the message is one line meant for the user."""


def parse_shape(text: str) -> tuple[int, ...]:
    """``8,3,32,32`` (or ``8x3x32x32``) → ``(8, 3, 32, 32)``; anything else ``RecipeError``.

    One parser for the command line (``--input-shape``) and the app's model modal.
    """
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise RecipeError(f"{text!r} is not a shape of positive sizes (e.g. 8,3,32,32)")
    return shape


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
        # Sizes go to torch (and to itertools.islice) as C int64: larger ones raise deep inside.
        if not 1 <= self.batch_size < 2**63:
            raise RecipeError(f"batch size must be 1..2**63-1, got {self.batch_size}")
        if not -(2**63) <= self.seed < 2**64:
            raise RecipeError(
                f"seed must be in -2**63..2**64-1 (what torch.manual_seed takes), got {self.seed}"
            )
        if self.class_weights and self.loss != "cross-entropy":
            raise RecipeError("--class-weight needs --loss cross-entropy")
        self._validate_class_weights()
        for shape_name in ("input_shape", "target_shape"):
            shape = getattr(self, shape_name)
            if shape is not None and (not shape or any(not 1 <= d < 2**63 for d in shape)):
                raise RecipeError(
                    f"{shape_name.replace('_', '-')} must be positive sizes below 2**63"
                )
            # torch counts a tensor's bytes in int64: past that, randn raises "Storage size
            # calculation overflowed" at define. 2**60 elements leaves room for 8-byte dtypes.
            if shape is not None and math.prod(shape) >= 2**60:
                raise RecipeError(
                    f"{shape_name.replace('_', '-')} {','.join(map(str, shape))} has "
                    f"{math.prod(shape):.3g} elements, more than a tensor can hold"
                )
        if self.num_classes is not None and self.num_classes < 1:
            raise RecipeError(f"--num-classes must be at least 1, got {self.num_classes}")
        if self.loss == "mse" and self.num_classes is not None and self.target_shape is not None:
            raise RecipeError("give --num-classes or --target-shape for MSE, not both")
        if self.model in MODELS:
            classes = MODELS[self.model][2]
            if self.num_classes is not None and self.num_classes != classes:
                raise RecipeError(
                    f"{self.model} has {classes} outputs, not --num-classes {self.num_classes}"
                )
        else:
            from .loader import parse_spec  # the loader imports RecipeError from here

            parse_spec(self.model, MODELS)  # syntax only: importing user code is build's job
            if self.input_shape is None and self.data == "random":
                raise RecipeError(f"--input-shape is needed for {self.model}")
        return self

    def _validate_class_weights(self) -> None:
        """A weight that cannot apply is a bad option, not a failing define (and ``export``
        would write a script that crashes). Classes unknown until define (a user model without
        ``--num-classes``) are checked there, by ``class_weight_tensor``."""
        if self.num_classes is not None:
            classes: int | None = self.num_classes
        elif self.data == "digits":
            from .digits import NUM_CLASSES

            classes = NUM_CLASSES
        else:
            classes = MODELS[self.model][2] if self.model in MODELS else None
        for k, w in self.class_weights:
            if k < 0 or (classes is not None and k >= classes):
                top = f"0..{classes - 1}" if classes is not None else "0 and up"
                raise RecipeError(f"class weight for class {k}, but classes are {top}")
            # A NaN or infinite weight only makes a NaN loss; a negative one turns "this class
            # counts more" into "unlearn this class" and can make the weighted mean divide by 0.
            if not (w >= 0 and w < float("inf")):
                raise RecipeError(
                    f"class weight for class {k} must be a finite number >= 0, got {w:g}"
                )
            # The weights go into a float32 tensor: a larger one overflows at define.
            if w > FLOAT32_MAX:
                raise RecipeError(
                    f"class weight for class {k} is {w:g}, above the largest float32 "
                    f"({FLOAT32_MAX:.4g})"
                )


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
    # The recipe with every shape filled in, as build resolved it (what codegen writes).
    resolved: Recipe | None = None


# Shipped models: name -> (factory, default input shape, output classes).
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], int]] = {
    "lenet": (Net, (1, 1, 32, 32), 10),
    "mlp": (MLP, (8, 64), 10),
    "resnet": (ResNet, (4, 3, 32, 32), 10),
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


def target_plan(
    recipe: Recipe, input: torch.Tensor, classes: int | None, net: nn.Module
) -> tuple[int | None, tuple[int, ...]]:
    """``(num_classes, target shape)``: from the options, the shipped model, or the output.

    Cross-entropy: class indices in ``0..C-1`` of shape ``[batch]`` (or ``--target-shape``).
    MSE: random values of shape ``[batch, C]`` when ``C`` is known, else ``--target-shape``,
    else the output's shape. Only a model whose output size is unknown pays a dry forward.
    """
    from .loader import infer_output_shape  # the loader imports RecipeError from here

    batch = input.shape[0]
    known = recipe.num_classes if recipe.num_classes is not None else classes
    if recipe.loss == "cross-entropy":
        if known is not None:
            return known, recipe.target_shape or (batch,)
        out = infer_output_shape(net, input, recipe.model)
        if len(out) < 2:
            raise RecipeError(
                f"cross-entropy needs an output [batch, classes, ...], {recipe.model} gives "
                f"{list(out)}; give --num-classes"
            )
        return out[1], recipe.target_shape or (out[0], *out[2:])
    if recipe.target_shape is not None:
        return None, recipe.target_shape
    if known is not None:
        return known, (batch, known)
    return None, infer_output_shape(net, input, recipe.model)


def build(recipe: Recipe) -> Setup:
    """Build model, batch, criterion and optimizer in the documented seeded order."""
    recipe.validate()
    shipped = recipe.model in MODELS
    if shipped:
        factory, default_shape, classes = MODELS[recipe.model]
    else:
        from . import loader  # the loader imports RecipeError from here

        spec = loader.parse_spec(recipe.model, MODELS)
        user_factory = loader.load_factory(spec)
        default_shape, classes = (), None
    input_shape = recipe.input_shape or default_shape
    torch.manual_seed(recipe.seed)
    net = factory() if shipped else loader.instantiate(user_factory, spec)
    if recipe.data == "digits":
        from .digits import NUM_CLASSES, DigitsBatches

        data: BatchSource = DigitsBatches(recipe)
        num_classes: int | None = NUM_CLASSES
        resolved = recipe  # digits fixes its own shapes: N×1×32×32 images, 10 classes
    else:
        input = torch.randn(*input_shape)
        # The dry forward (if any) runs here, after the input, under a forked RNG: the target
        # drawn next is the one the documented order draws.
        num_classes, target_shape = target_plan(recipe, input, classes, net)
        if recipe.loss == "cross-entropy":
            assert num_classes is not None
            target = torch.randint(0, num_classes, target_shape)
        else:
            # randn(C).view(1, -1) and randn(1, C) draw the same numbers: one call for both.
            # A tuple, not unpacked: a model returning a scalar has the target shape ().
            target = torch.randn(target_shape)
        data = FixedBatch(input, target)
        # What codegen needs to write this exact target: classes (the [batch] or [batch, C]
        # forms), or a shape for anything else.
        default_shape = (
            (input.shape[0],) if recipe.loss == "cross-entropy" else (input.shape[0], num_classes)
        )
        resolved = recipe.with_(
            input_shape=input_shape,
            num_classes=num_classes,
            target_shape=None if target_shape == default_shape else target_shape,
        )
    criterion = make_criterion(recipe, num_classes)
    optimizer = make_optimizer(recipe, list(net.parameters()))
    return Setup(net, criterion, optimizer, data, num_classes, resolved)


def resolve(recipe: Recipe) -> Recipe:
    """``recipe`` with the shapes ``build`` infers filled in, for code that runs without a
    session (``nntui export``). A user model is built once for it, with the global RNG put back
    afterwards; a shipped model's recipe already says everything."""
    if recipe.model in MODELS or recipe.data != "random":
        return recipe
    with torch.random.fork_rng(devices=[]):
        setup = build(recipe)
    return setup.resolved or recipe


def model_recipe(recipe: Recipe, model: str, input_shape: tuple[int, ...] | None = None) -> Recipe:
    """``recipe`` with another model, keeping the settings that still make sense.

    Shapes and the watched parameter belong to the old model and go (a shipped model brings
    its default input shape; ``input_shape`` overrides it). Loss, optimizer, zero_grad, lr,
    seed and class weights stay. Digits are 1×32×32 images made for the tutorial's Net, so
    any other model gets the random batch.
    """
    data = recipe.data if model == "lenet" else "random"
    return recipe.with_(
        model=model,
        input_shape=input_shape,
        num_classes=None,
        target_shape=None,
        watch=None,
        data=data,
    )
