"""Keeping Python's cyclic garbage collector off what a long run keeps.

A session keeps a few hundred thousand Python objects alive (records, checkpoints, lazy
values: ~150 per phase while the history reaches them). None of them is ever freed by the
collector: they form no reference cycles and die by reference count when the history lets go
of them. Python's full collection walks all of them anyway, each time a quarter as many new
objects again have survived: on the tutorial Net about 0.4 s every few hundred iterations, and
with the young collections 0.7-1.0 ms an iteration, a third of what the engine itself costs.

``FreezeSurvivors``, called between iterations, collects the young generations (cycles a phase
made, in the user's code or torch's, are freed here as usual) and then freezes what survived,
so that no later collection walks it again. A cycle that was alive when frozen (a model that
keeps one across an iteration) and becomes garbage later is freed by the next full
collection, which runs after ``refreeze_after`` objects have been frozen (about 2,000
iterations of the tutorial Net) or once the C heap's allocated bytes (tensors included), less
those of the rewind history (``exclude``), have grown by ``refreeze_growth`` since the last
one, whichever comes first: frozen garbage holding tensors cannot pile up past that.
"""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable

REFREEZE_AFTER = 1_000_000
REFREEZE_GROWTH = 256 * 2**20
# Reading the heap's figures walks its free lists: 0.1 ms early in a tutorial run, 1-2 ms
# after 1,000 iterations. Read at most this often (at most 1% of the time, then), which lets
# the garbage overshoot the growth limit by what the program allocates in that time.
CHECK_EVERY_SECONDS = 0.25


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    try:
        call = ctypes.CDLL(None).mallinfo2  # glibc 2.33 and later
    except (OSError, AttributeError):
        return None
    call.restype = _MallInfo2
    return call  # type: ignore[no-any-return]


_MALLINFO2 = _mallinfo2()


def allocated_bytes() -> int | None:
    """Bytes the C heap has handed out and not had back (glibc; None elsewhere), tensors'
    memory included. Not the resident size: memory a full walk frees stays resident for
    reuse, so a trigger on resident growth waits for the frozen garbage to outgrow all that
    the last walk freed, and lets it pile up walk after walk."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


class HeapReader:
    """``allocated_bytes()`` less ``exclude()`` (the rewind history's bytes: bounded by its
    budget and freed by reference count, so not growth to walk for), and how recently it was
    read: each read walks glibc's free lists, so callers between keys or iterations read
    through ``due``, at most once every ``every`` seconds."""

    def __init__(self, every: float, exclude: Callable[[], int] | None = None) -> None:
        self.every = every
        self.exclude = exclude
        self.read_at = 0.0  # time.monotonic() of the last read

    def now(self) -> int | None:
        self.read_at = time.monotonic()
        heap = allocated_bytes()
        if heap is None or self.exclude is None:
            return heap
        return heap - self.exclude()

    def due(self) -> int | None:
        """``now()`` if ``every`` seconds have passed since the last read, else None."""
        if time.monotonic() - self.read_at < self.every:
            return None
        return self.now()


class FreezeSurvivors:
    """Call between iterations of a long run (``nntui trace``); see the module docstring.

    As a context manager it unfreezes on exit, so that a process that goes on after the run
    (the tests run ``trace`` in theirs) has its collector back on everything, including what
    anything else had frozen (the app's start-up freeze, in a test process that ran the app
    before): its next full collections walk that again, which costs time, not memory.
    """

    def __init__(
        self,
        refreeze_after: int = REFREEZE_AFTER,
        refreeze_growth: int = REFREEZE_GROWTH,
        exclude: Callable[[], int] | None = None,
    ) -> None:
        self.refreeze_after = refreeze_after
        self.refreeze_growth = refreeze_growth
        # ``exclude``: the rewind history's bytes (``History.nbytes``). Counted, a tutorial Net
        # filling its 512 MiB history made two full walks of everything frozen on the way.
        self.heap = HeapReader(CHECK_EVERY_SECONDS, exclude)
        self.frozen: int | None = None  # objects frozen since the last full walk; None: none yet
        self.allocated: int | None = None  # heap bytes after the last full walk (or first call)
        self.full_collections = 0

    def __enter__(self) -> FreezeSurvivors:
        return self

    def __exit__(self, *_: object) -> None:
        if self.frozen is not None:
            gc.unfreeze()
            self.frozen = None

    def _due(self) -> bool:
        if self.frozen is None:
            return False
        if self.frozen > self.refreeze_after:
            return True
        now = self.heap.due()
        if now is None or self.allocated is None:
            return False
        return now - self.allocated > self.refreeze_growth

    def __call__(self) -> None:
        if not gc.isenabled():
            return  # the program runs without the collector: nothing to keep it off
        if self._due():
            gc.unfreeze()
            gc.collect()
            self.full_collections += 1
            self.frozen = None
        else:
            gc.collect(1)
        if self.frozen is None:
            # The first time (start-up's imports, long-lived) and after a full walk: frozen
            # uncounted, as they would otherwise trigger the next full walk at once.
            self.frozen = 0
            self.allocated = self.heap.now()
        else:
            # After collect(1) the oldest generation holds only what survived since the last
            # freeze: a few hundred objects to count, where gc.get_freeze_count() would walk
            # every frozen one.
            self.frozen += len(gc.get_objects(2))
        gc.freeze()
