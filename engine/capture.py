"""Forward and backward hooks the session runs phases under, and scratch space for checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

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
    nonfinite: list[str] | None = None,
) -> Iterator[None]:
    """Forward hooks on every submodule: its output, detached and cloned (in-place ops follow).

    ``nonfinite`` collects, in the order modules return, those whose output holds NaN/Inf (a
    module called twice counts at the call that went bad). An exception escaping a module
    becomes a ``ModuleFailure`` naming the innermost module running (``engine.blame``).
    """
    handles = []
    for name, module in net.named_modules():
        label = name or "output"

        def hook(mod: nn.Module, args: Any, result: Any, label: str = label) -> None:
            if isinstance(result, torch.Tensor):
                kept = result.detach().clone()
                out[label] = (type(mod).__name__, kept)
                if (
                    nonfinite is not None
                    and kept.is_floating_point()
                    and label not in nonfinite
                    and not torch.isfinite(kept).all()
                ):
                    nonfinite.append(label)

        handles.append(module.register_forward_hook(hook))
    try:
        with blame_modules(net):
            yield
    finally:
        for h in handles:
            h.remove()
