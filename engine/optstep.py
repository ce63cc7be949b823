"""Running an optimizer's step a slice of parameters at a time, for step's checkpoint copies.

Step must leave two copies of the new parameters: the live ones the optimizer wrote in place
and the checkpoint's, which nothing may write to. On a large model the copies, made after the
whole step, read every parameter back from main memory: the step has long pushed the first
ones out of the cache by the time it ends. Stepping the parameters a few MiB at a time and
copying each slice right after its step reads the slice from the cache instead.

Only for nntui's own torch optimizers (SGD with or without momentum, Adam, RMSprop), whose
update of a parameter reads that parameter's gradient and state alone, so stepping them in
slices computes every element exactly as one step does: the same ops on the same operands
(``tests/test_engine_optstep.py`` holds it to plain PyTorch bit for bit). Any optimizer step
hook, another parameter group, another class, a fused, foreach, differentiable or capturable
group, or parameters sharing memory get the plain single step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import optim
from torch.optim import optimizer as optimizer_module

# Bytes of parameters stepped before their copies are made. The copies and the NaN guard then
# read what the step just wrote from the last-level cache: a slice's parameters, gradients and
# new copies must fit in it together. On the 20 × 1024² MLP (one torch thread, 32 MiB L3), SGD's
# step with its copies and guard took 0.8-1.1 ms less in 4 or 8 MiB slices than whole, and more
# in 16 MiB ones; 8 MiB also had stray 30 ms outliers, so 4.
SLICE_BYTES = 4 * 2**20
# Element-wise update rules: a parameter's new value depends on its own tensors only.
SLICEABLE = (optim.SGD, optim.Adam, optim.RMSprop)


def _hooked(optimizer: Any) -> bool:
    """Whether a step hook would see one call per slice instead of one per step."""
    return bool(
        getattr(optimizer, "_optimizer_step_pre_hooks", None)
        or getattr(optimizer, "_optimizer_step_post_hooks", None)
        or getattr(optimizer_module, "_global_optimizer_pre_hooks", None)
        or getattr(optimizer_module, "_global_optimizer_post_hooks", None)
    )


def slices(params: Sequence[torch.Tensor], limit: int = SLICE_BYTES) -> list[range]:
    """Consecutive index ranges of ``params``, each up to ``limit`` bytes (or one tensor)."""
    out: list[range] = []
    start, size = 0, 0
    for i, p in enumerate(params):
        nbytes = p.numel() * p.element_size()
        if i > start and size + nbytes > limit:
            out.append(range(start, i))
            start, size = i, 0
        size += nbytes
    if start < len(params):
        out.append(range(start, len(params)))
    return out


# Group settings under which a step is not a plain loop over its parameters: the fused kernels
# decide some things once per call for the whole group (fused SGD's first step), and the
# differentiable and capturable modes keep step counts and graphs of their own.
WHOLE_GROUP_SETTINGS = ("fused", "foreach", "differentiable", "capturable")


def _shares_memory(params: Sequence[torch.Tensor]) -> bool:
    """Whether two of ``params`` are views of one storage: a later slice's step then writes
    into memory an earlier slice's copy was taken from."""
    seen: set[int] = set()
    for p in params:
        key = p.untyped_storage().data_ptr()
        if key in seen:
            return True
        seen.add(key)
    return False


def sliceable(optimizer: Any, params: Sequence[torch.Tensor]) -> bool:
    """Whether ``optimizer`` may be stepped in slices of ``params`` (see the module docstring)."""
    if type(optimizer) not in SLICEABLE or len(optimizer.param_groups) != 1 or _hooked(optimizer):
        return False
    settings = optimizer.param_groups[0]
    if any(settings.get(name) for name in WHOLE_GROUP_SETTINGS):
        return False
    group = settings["params"]
    return (
        len(group) == len(params)
        and all(a is b for a, b in zip(group, params))
        and not _shares_memory(params)
    )


def step_in_slices(
    optimizer: Any, params: Sequence[torch.Tensor], limit: int | None = None
) -> Iterator[range]:
    """Step ``optimizer`` and yield the index ranges of ``params`` as each is stepped.

    One ``optimizer.step()`` (one range over all) unless it is ``sliceable`` and the
    parameters exceed ``limit``; then one step per slice, each yielded before the next runs.
    The optimizer's parameter list is put back when the iteration ends, early or not.
    """
    limit = SLICE_BYTES if limit is None else limit  # read now: tests set a small one
    ranges = slices(params, limit) if sliceable(optimizer, params) else []
    if len(ranges) <= 1:
        optimizer.step()
        yield range(len(params))
        return
    group = optimizer.param_groups[0]
    kept = group["params"]
    try:
        for r in ranges:
            group["params"] = kept[r.start : r.stop]
            optimizer.step()
            group["params"] = kept  # the caller's code between slices sees the optimizer whole
            yield r
    finally:
        group["params"] = kept
