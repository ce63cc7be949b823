"""Forward and backward hooks the session runs phases under, and scratch space for checks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.module import (
    register_module_buffer_registration_hook,
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from .blame import Blame, ModuleFailure, module_label
from .modulemap import CallRecorder, ModuleCall, module_hooks, module_paths
from .summary import all_finite


class StructureChanged(RuntimeError):
    """A forward tried to add or replace a parameter, submodule or buffer of the model."""


@contextmanager
def frozen_structure(paths: dict[int, str]) -> Iterator[None]:
    """Inside this block, registering a parameter or submodule on a module of the model (or a
    buffer under a new name) raises before it happens, naming it.

    The session lists the parameters once, at define, and checkpoints and rewinds exactly
    those: a parameter made in ``forward`` would be trained by nobody's optimizer and left
    behind by a rewind (a QA model's loss came out 1.370 after a rewind instead of 1.631).
    Registration hooks fire before the assignment, so raising leaves the model as it was.
    Modules made in ``forward`` and not attached to the model are no concern. A forward that
    catches the refusal and goes on fails at its end all the same.
    """

    refused: list[ModuleFailure] = []

    def refuse(module: nn.Module, kind: str, name: str) -> None:
        path = paths[id(module)]
        message = (
            f"forward registers {kind} '{name}' on {module_label(path, module)}: nntui steps "
            f"the parameters the model has after __init__ and could not rewind this; create "
            f"the {kind} in __init__"
        )
        refused.append(ModuleFailure(message, StructureChanged(message), path))
        raise refused[-1]

    def on_parameter(module: nn.Module, name: str, value: Any) -> None:
        if id(module) in paths:
            refuse(module, "parameter", name)

    def on_module(module: nn.Module, name: str, value: Any) -> None:
        if id(module) in paths:
            refuse(module, "submodule", name)

    def on_buffer(module: nn.Module, name: str, value: Any) -> None:
        # Giving an existing buffer a new tensor is fine (checkpoints copy buffers by value,
        # in order); a new name or None changes the list they are copied into.
        if id(module) in paths and (value is None or name not in module._buffers):
            refuse(module, "buffer", name)

    handles = [
        register_module_parameter_registration_hook(on_parameter),
        register_module_module_registration_hook(on_module),
        register_module_buffer_registration_hook(on_buffer),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
    # A forward that caught the refusal and went on fails all the same: a plain loop would
    # have changed the model.
    if refused:
        raise refused[0]


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
    copy: Container[str] | None = None,
    versions: dict[str, tuple[torch.Tensor, int]] | None = None,
    calls: list[ModuleCall] | None = None,
) -> Iterator[None]:
    """Every submodule's output, detached, into ``out`` by name (the root's as ``output``), in
    the order modules first returned; ``returned`` numbers each name by its latest return (see
    ``nonfinite``); ``calls`` gets every submodule call (engine.modulemap.record_calls). An
    exception escaping a module becomes a ``ModuleFailure`` naming the innermost module
    running (engine.blame).

    Every output is copied (in-place ops may follow: ``ReLU(inplace=True)``, ``out += x``, a
    write through ``.data``) unless ``copy`` names the only ones to copy: then the others are
    kept as they are, which is for models whose code nntui ships (they write to an output
    only in place of a later op in the same forward, and never after it). Leaves (a
    parameter, a buffer, the input) and views (of one) are copied always. ``versions`` gets
    each output's version counter at its return, so the caller can tell which an in-place op
    wrote to later in the forward (``changed``): the ones to copy next time.

    One global pre-hook and one global hook for all three jobs: registering hooks on every
    module, or three pairs of global ones, cost more than the clones on a conv net.
    """
    paths = module_paths(net)  # one walk of the modules for the three jobs
    names = {k: (name or "output") for k, name in paths.items()}
    seq = itertools.count()
    blame = Blame(net, paths)
    recorder = CallRecorder(net, calls, paths) if calls is not None else None

    def pre(mod: nn.Module, args: tuple[Any, ...]) -> None:
        blame.pre(mod, args)
        if recorder is not None:
            recorder.pre(mod, args)

    def post(mod: nn.Module, args: Any, kwargs: dict[str, Any], result: Any) -> None:
        blame.post(mod)
        if recorder is not None:
            recorder.post(mod, kwargs, result)
        label = names.get(id(mod))
        if label is not None and isinstance(result, torch.Tensor):
            kept = result.detach()
            if versions is not None:
                versions[label] = (kept, kept._version)
            if copy is None or label in copy or result.grad_fn is None or result._is_view():
                kept = kept.clone()
            out[label] = (type(mod).__name__, kept)
            if returned is not None:
                returned[label] = next(seq)

    with module_hooks(pre, post), frozen_structure(paths), blame.catching():
        yield


def changed(versions: dict[str, tuple[torch.Tensor, int]]) -> list[str]:
    """The outputs an in-place op wrote to after their module returned them."""
    return [k for k, (t, v) in versions.items() if t._version != v]


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
        if not all_finite(t):
            bad.append(label)
    return tuple(bad)
