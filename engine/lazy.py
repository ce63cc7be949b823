"""Values computed on first use from tensors the rewind history holds, and their release.

A phase on a 20 M-parameter model would spend several times its own compute summarising and
cross-checking tensors nobody looks at, so records hold *deferred* values instead: a summary,
a bit-exactness check, a diagnosis. Their inputs are checkpoint tensors, which nothing writes
while the history holds them (engine.rewind's copy-on-write). When the history lets go of one
(``Releases.release``), every deferred value that reads it is released: computed values stay,
the others are *not kept* and fall back to a stated default. ``nntui trace`` reads every value
as it goes, and the app what it shows; only values nobody read before the history dropped
their tensors (older than the rewind window) are lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Container, Iterable
from typing import Generic, TypeVar

import torch

T = TypeVar("T")

# Computing and releasing run on different threads in the app (the UI, or its background
# thread, reads a value while the worker runs the next phase and the history lets go of old
# tensors). One condition guards every value's state, held only to change it: a value is
# computed outside it, and a release waits only while that very value is being computed
# (its tensors must not be written before it is done), never for another one, so a long one
# (the SGD facts of a 21 M-parameter model) does not hold up the next phase. Not a lock per
# value: thousands of small lock allocations among multi-megabyte tensors fragment the C heap
# so badly that a 84 MB copy after step went from 8 to 180 ms (measured).
COND = threading.Condition()

PENDING, DONE, NOT_KEPT, COMPUTING = 0, 1, 2, 3


class Deferred(Generic[T]):
    """A value computed once, on first ``get``; ``fallback`` if released before that."""

    __slots__ = ("_make", "_value", "_state")

    def __init__(self, make: Callable[[], T], fallback: T) -> None:
        self._make: Callable[[], T] | None = make
        self._value: T = fallback
        self._state = PENDING

    @classmethod
    def now(cls, value: T) -> Deferred[T]:
        """An already known value (nothing to release)."""
        d: Deferred[T] = cls.__new__(cls)
        d._make, d._value, d._state = None, value, DONE
        return d

    def get(self) -> T:
        if self._state in (DONE, NOT_KEPT):
            return self._value
        with COND:
            while self._state == COMPUTING:
                COND.wait()
            if self._state != PENDING:
                return self._value
            self._state = COMPUTING
            make = self._make
        assert make is not None
        try:
            value = make()
        except BaseException:
            with COND:
                self._state = PENDING
                COND.notify_all()
            raise
        with COND:
            self._value, self._state, self._make = value, DONE, None
            COND.notify_all()
        return value

    def compute(self) -> T:
        return self.get()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Deferred):
            return NotImplemented
        return self is other or (self.kept == other.kept and self.get() == other.get())

    def __hash__(self) -> int:
        return hash(Deferred)

    def __repr__(self) -> str:
        return f"Deferred({self.get()!r})" if self.kept else "Deferred(<not kept>)"

    @property
    def kept(self) -> bool:
        """False when the inputs were released before anyone asked for the value."""
        return self._state != NOT_KEPT

    def release(self) -> None:
        if self._state == DONE:
            self._make = None
            return
        with COND:
            self.release_held()

    def release_held(self) -> None:
        """``release`` for a caller holding ``COND`` (``release_many``)."""
        while self._state == COMPUTING:
            COND.wait()
        if self._state == PENDING:
            self._state = NOT_KEPT
        self._make = None


def release_many(values: Iterable[Releasable]) -> None:
    """Release every value in ``values`` under one hold of ``COND``: a dropped checkpoint lets
    go of hundreds at once (a ResNet's iteration: about 300), and taking the condition for
    each one was most of what dropping it cost."""
    with COND:
        for value in values:
            value.release_held()


class Releasable:
    """What ``Releases`` can release: ``Deferred`` values and lazy ``TensorSummary``s."""

    def release(self) -> None: ...

    def release_held(self) -> None: ...

    def compute(self) -> object: ...


class Releases:
    """Deferred values by what they read, released when the history lets go of it.

    Two kinds. A value shared by records (a parameter's summary, reused while the parameter
    does not change) is registered under its tensors and released with the last checkpoint
    holding one (``stage``). A value of one record reads only tensors that record's checkpoint
    or the one before hold (``stage_record``): it goes with the first of the two to leave, which
    costs nothing per tensor. Both register in two steps: staged while a phase runs, committed
    once its checkpoint is pushed (a phase that fails is ``discard``ed).
    """

    def __init__(self) -> None:
        self._by_tensor: dict[int, list[Releasable]] = {}
        self._staged: list[tuple[tuple[torch.Tensor, ...], Releasable]] = []
        self._staged_record: list[tuple[Releasable, bool]] = []

    def __len__(self) -> int:
        return len(self._by_tensor)

    def waiting_on(self) -> list[int]:
        """Ids of the tensors registered values still read (each must be in the history)."""
        return list(self._by_tensor)

    def stage(self, value: Releasable, tensors: Iterable[torch.Tensor]) -> None:
        self._staged.append((tuple(tensors), value))

    def stage_record(self, value: Releasable, before: bool = False) -> None:
        """A value of the record being made; ``before``: it also reads the tensors of the
        checkpoint before the record's own (step's parameters before it, …)."""
        self._staged_record.append((value, before))

    def commit(
        self,
        held: Callable[[torch.Tensor], bool],
        current: list[Releasable],
        previous: list[Releasable] | None,
    ) -> None:
        """Register the staged values: under their tensors (one reading a tensor the history
        does not hold is released at once: it could be written in place from now on), and the
        record's in ``current`` (released when the record's checkpoint leaves the history) and,
        for those reading the checkpoint before too, in ``previous``; ``None`` means this very
        push dropped that checkpoint: nothing has written to its tensors yet, so those values
        are computed now rather than lost."""
        staged, self._staged = self._staged, []
        by_tensor = self._by_tensor
        checked: dict[int, bool] = {}
        for tensors, value in staged:
            ok = True
            for t in tensors:
                h = checked.get(id(t))
                if h is None:
                    h = checked[id(t)] = held(t)
                ok = ok and h
            if ok:
                for t in tensors:
                    by_tensor.setdefault(id(t), []).append(value)
            else:
                value.release()
        record, self._staged_record = self._staged_record, []
        for value, before in record:
            current.append(value)
            if not before:
                continue
            if previous is None:
                value.compute()
            else:
                previous.append(value)

    def discard(self) -> None:
        for _, value in self._staged:
            value.release()
        for value, _ in self._staged_record:
            value.release()
        self._staged = []
        self._staged_record = []

    def release(self, tensors: Iterable[torch.Tensor], keep: Container[int] = ()) -> None:
        """``tensors`` left the history: release every value that reads one, computing first
        those in ``keep`` (by id: the values of the record being made, still to be shown; an
        empty ``keep`` is false, and then no value is looked up in it)."""
        pop = self._by_tensor.pop
        values: list[Releasable] = []
        for t in tensors:
            found = pop(id(t), None)
            if found is not None:
                values += found
        try:
            if keep:
                for value in values:
                    if id(value) in keep:
                        value.compute()  # outside COND: it takes it only to change state
        finally:
            # Popped above: released even if a computation raised, or a value could read a
            # tensor that is written from now on.
            release_many(values)

    def release_all(self) -> None:
        by_tensor, self._by_tensor = self._by_tensor, {}
        release_many(value for values in by_tensor.values() for value in values)
        self.discard()
