"""Checkpoints at phase boundaries, bounded by a memory budget (oldest dropped first).

A checkpoint never owns a tensor that anything mutates later, so consecutive checkpoints share
the tensors a phase did not change (forward changes no parameter, step no gradient, …) and
memory is counted once per distinct tensor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .phases import Phase

DEFAULT_BUDGET_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Checkpoint:
    done: Phase | None  # the phase just completed; None = before define
    iteration: int
    params: tuple[torch.Tensor, ...] = ()
    grads: tuple[torch.Tensor | None, ...] = ()
    buffers: tuple[torch.Tensor, ...] = ()
    opt_state: tuple[dict[str, Any], ...] = ()  # per parameter, in parameter order
    rng: torch.Tensor | None = None
    forward_rng: torch.Tensor | None = None  # RNG as this iteration's forward found it
    backwards: int = 0
    loss: float | None = None
    records: int = 0  # how many records the log held
    activations: tuple[tuple[str, torch.Tensor], ...] = ()  # this iteration's forward outputs

    def tensors(self) -> Iterator[torch.Tensor]:
        yield from self.params
        yield from (g for g in self.grads if g is not None)
        yield from self.buffers
        for state in self.opt_state:
            yield from (v for v in state.values() if isinstance(v, torch.Tensor))
        if self.rng is not None:
            yield self.rng
        if self.forward_rng is not None:
            yield self.forward_rng
        yield from (t for _, t in self.activations)


class History:
    """A bounded stack of checkpoints; the newest is the session's current state."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        if budget_bytes <= 0:
            raise ValueError("history budget must be positive")
        self.budget_bytes = budget_bytes
        self._items: deque[Checkpoint] = deque()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def current(self) -> Checkpoint:
        return self._items[-1]

    def push(self, checkpoint: Checkpoint) -> None:
        self._items.append(checkpoint)
        # The current checkpoint is always kept: it is what a failing phase restores.
        while len(self._items) > 1 and self.nbytes() > self.budget_bytes:
            self._items.popleft()
            self.dropped += 1

    def pop(self) -> Checkpoint:
        return self._items.pop()

    def can_rewind(self, n: int = 1) -> bool:
        return len(self._items) > n

    def clear(self) -> None:
        self._items.clear()
        self.dropped = 0

    def nbytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for cp in self._items:
            for t in cp.tensors():
                key = id(t)
                if key not in seen:
                    seen.add(key)
                    total += t.numel() * t.element_size()
        return total
