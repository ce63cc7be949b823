"""Forward and backward hooks the session runs phases under, and scratch space for checks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.module import register_module_forward_hook

from .blame import blame_modules


def keep_grad(store: dict[int, torch.Tensor], i: int) -> Callable[[torch.Tensor], None]:
    def hook(grad: torch.Tensor) -> None:
        # No clone: this hook runs only for a parameter whose .grad exists, so AccumulateGrad
        # adds ``grad`` into .grad instead of adopting it, and nothing writes to ``grad``
        # before ``_backward`` has summarised it (the hook's reference also stops autograd
        # from reusing the buffer in place).
        store[i] = grad.detach()

    return hook


@contextmanager
def capture_outputs(
    net: nn.Module,
    out: dict[str, tuple[str, torch.Tensor]],
    returned: dict[str, int] | None = None,
) -> Iterator[None]:
    """Every submodule's output, detached and cloned (in-place ops may follow), into ``out``
    by name (the root's as ``output``), in the order modules first returned; ``returned``
    numbers each name by its latest return (see ``nonfinite``). An exception escaping a
    module becomes a ``ModuleFailure`` naming the innermost module running (engine.blame).

    One global hook rather than one per module: registering and removing a hook on every
    module for every forward cost more than the clones on a model of a few hundred modules.
    """
    names = {id(m): (name or "output") for name, m in net.named_modules()}
    seq = itertools.count()

    def hook(mod: nn.Module, args: Any, result: Any) -> None:
        label = names.get(id(mod))
        if label is not None and isinstance(result, torch.Tensor):
            out[label] = (type(mod).__name__, result.detach().clone())
            if returned is not None:
                returned[label] = next(seq)

    handle = register_module_forward_hook(hook)
    try:
        with blame_modules(net):
            yield
    finally:
        handle.remove()


def nonfinite(
    out: dict[str, tuple[str, torch.Tensor]], returned: dict[str, int]
) -> tuple[str, ...]:
    """The captured modules whose output holds NaN/Inf, in the order of their latest return.

    Checked when asked (a pass over every activation costs more than the forward of a conv
    net): the NaN guard's message and the diagnostics ask. A module called twice is judged by
    its last output, ordered by that call, so a reused activation that turns NaN after the
    module that caused it is named after it.
    """
    bad = []
    for label in sorted(out, key=lambda k: returned.get(k, -1)):
        t = out[label][1]
        # A finite sum proves every value finite; a sum can also overflow, hence the recheck.
        if (
            t.is_floating_point()
            and not math.isfinite(float(t.sum().item()))
            and not bool(torch.isfinite(t).all())
        ):
            bad.append(label)
    return tuple(bad)
