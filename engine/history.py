"""Checkpoints at phase boundaries, bounded by a memory budget (oldest dropped first).

A checkpoint never owns a tensor that anything mutates later, so consecutive checkpoints share
the tensors a phase did not change (forward changes no parameter, step no gradient, …) and
memory is counted once per distinct tensor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .lazy import release_many
from .phases import Phase

DEFAULT_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Checkpoint:
    done: Phase | None  # the phase just completed; None = before define
    iteration: int
    params: tuple[torch.Tensor, ...] = ()
    grads: tuple[torch.Tensor | None, ...] = ()
    buffers: tuple[torch.Tensor, ...] = ()
    # The buffers this iteration's forward started from (the tuple the checkpoint before it
    # holds): a rewind that recomputes the forward must run it on these, not on the updated
    # ones, or a forward that reads a buffer it also updates would update it twice.
    buffers_before: tuple[torch.Tensor, ...] = ()
    # Likewise the parameters, when this iteration's forward changed some in place.
    params_before: tuple[torch.Tensor, ...] = ()
    # Each module's attributes (engine.attrs), and those this iteration's forward found when
    # it rebound some (empty when it rebound none).
    attrs: tuple[dict[str, Any], ...] = ()
    attrs_before: tuple[dict[str, Any], ...] = ()
    opt_state: tuple[dict[str, Any], ...] = ()  # per parameter, in parameter order
    rng: torch.Tensor | None = None
    forward_rng: torch.Tensor | None = None  # RNG as this iteration's forward found it
    backwards: int = 0
    loss: float | None = None
    records: int = 0  # how many records the log held
    activations: tuple[tuple[str, torch.Tensor], ...] = ()  # this iteration's forward outputs
    # What the phase's record reads lazily besides the above (forward's output, the loss).
    live: tuple[torch.Tensor, ...] = ()
    # Lazy values of the records next to this checkpoint, released when it leaves the history
    # (engine.lazy.Releases.stage_record).
    leave: list[Any] = field(default_factory=list, compare=False)

    def parts(self) -> tuple[Any, ...]:
        """The containers this checkpoint is made of. Consecutive checkpoints share the ones a
        phase did not change (the very same tuple), so the history counts a part once."""
        return (
            self.params,
            self.grads,
            self.buffers,
            self.buffers_before,
            self.params_before,
            self.attrs,
            self.attrs_before,
            self.opt_state,
            self.rng,
            self.forward_rng,
            self.activations,
            self.live,
        )

    def tensors(self) -> Iterator[torch.Tensor]:
        for part in self.parts():
            yield from part_tensors(part)


def part_tensors(part: Any) -> Iterator[torch.Tensor]:
    """The tensors in one part of a checkpoint (see ``Checkpoint.parts``)."""
    if part is None:
        return
    if isinstance(part, torch.Tensor):
        yield part
        return
    for item in part:
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, dict):  # optimizer state of one parameter, a module's attributes
            for v in item.values():
                if isinstance(v, torch.Tensor):
                    yield v
                elif isinstance(v, (list, tuple)):  # ``self.seen = self.seen + [x]``
                    yield from (t for t in v if isinstance(t, torch.Tensor))
        elif isinstance(item, tuple):  # (name, activation)
            yield from (v for v in item if isinstance(v, torch.Tensor))


class History:
    """A bounded stack of checkpoints; the newest is the session's current state."""

    def __init__(
        self,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        on_release: Callable[[list[torch.Tensor]], None] | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError("history budget must be positive")
        self.budget_bytes = budget_bytes
        # Called with the tensors no kept checkpoint holds any more (dropped or popped), once
        # per push or pop: from then on they may be written in place, so whatever reads them
        # lazily must let go.
        self.on_release = on_release
        self._items: deque[Checkpoint] = deque()
        self.dropped = 0
        # id(tensor) -> [references from kept checkpoints, bytes]. Kept up to date on every
        # push/pop so ``nbytes`` is O(1): recounting thousands of checkpoints on every push
        # made a long session slower with every phase. Ids are safe keys: a counted tensor is
        # alive (a kept checkpoint holds it), and its entry goes when its last reference does.
        self._refs: dict[int, list[int]] = {}
        # id(part) -> [references from kept checkpoints, part, its tensors]: a part shared by consecutive
        # checkpoints is counted once, so a push costs the tensors of its new parts only.
        self._parts: dict[int, list[Any]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def current(self) -> Checkpoint:
        return self._items[-1]

    @property
    def oldest(self) -> Checkpoint:
        """The earliest checkpoint a rewind can still reach."""
        return self._items[0]

    def push(self, checkpoint: Checkpoint) -> None:
        self._items.append(checkpoint)
        self._count(checkpoint, +1, [])
        # The current checkpoint is always kept: it is what a failing phase restores.
        gone: list[torch.Tensor] = []
        while len(self._items) > 1 and self._bytes > self.budget_bytes:
            self._count(self._items.popleft(), -1, gone)
            self.dropped += 1
        self._released(gone)

    def pop(self) -> Checkpoint:
        checkpoint = self._items.pop()
        gone: list[torch.Tensor] = []
        self._count(checkpoint, -1, gone)
        self._released(gone)
        return checkpoint

    def _released(self, gone: list[torch.Tensor]) -> None:
        if gone and self.on_release is not None:
            self.on_release(gone)

    def can_rewind(self, n: int = 1) -> bool:
        return len(self._items) > n

    def clear(self) -> None:
        release_many(value for checkpoint in self._items for value in checkpoint.leave)
        self._items.clear()
        self._refs.clear()
        self._parts.clear()
        self._bytes = 0
        self.dropped = 0

    def holds(self, tensor: torch.Tensor) -> bool:
        """Whether a kept checkpoint holds this very tensor object (not merely equal values)."""
        return id(tensor) in self._refs

    def back(self, k: int) -> Checkpoint:
        """The checkpoint ``k`` phases before the current one (0: the current one)."""
        return self._items[-1 - k]

    def holds_id(self, key: int) -> bool:
        return key in self._refs

    def nbytes(self) -> int:
        """Bytes of the distinct tensors the kept checkpoints hold (shared ones counted once)."""
        return self._bytes

    def _count(self, checkpoint: Checkpoint, sign: int, gone: list[torch.Tensor]) -> None:
        """Count ``checkpoint`` in (``sign`` +1) or out (-1); out, the tensors it was the last
        to hold are appended to ``gone``."""
        if sign < 0:
            release_many(checkpoint.leave)
            checkpoint.leave.clear()
        parts = self._parts
        refs = self._refs
        for part in checkpoint.parts():
            if part is None or (isinstance(part, tuple) and not part):
                continue
            entry = parts.get(id(part))
            if sign > 0:
                if entry is not None:
                    entry[0] += 1
                    continue
                # Its tensors listed once, when it is first pushed: the drop walks the list
                # instead of the nested part again (a ResNet's checkpoint has ~400 tensors).
                tensors = tuple(part_tensors(part))
                parts[id(part)] = [1, part, tensors]
                for t in tensors:
                    key = id(t)
                    ref = refs.get(key)
                    if ref is None:
                        size = t.numel() * t.element_size()
                        refs[key] = [1, size]
                        self._bytes += size
                    else:
                        ref[0] += 1
                continue
            assert entry is not None, "a checkpoint left the history twice"
            entry[0] -= 1
            if entry[0]:
                continue
            del parts[id(part)]
            for t in entry[2]:
                key = id(t)
                ref = refs[key]
                ref[0] -= 1
                if ref[0] == 0:
                    del refs[key]
                    self._bytes -= ref[1]
                    gone.append(t)
