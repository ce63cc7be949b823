"""Keeping Python's cyclic garbage collector off what a long run keeps.

A session keeps a few hundred thousand Python objects alive (records, checkpoints, lazy
values: ~150 per phase while the history reaches them). None of them is ever freed by the
collector: they form no reference cycles and die by reference count when the history lets go
of them. Python's full collection walks all of them anyway, each time a quarter as many new
objects again have survived: on the tutorial Net about 0.4 s every few hundred iterations, and
with the young collections 0.7-1.0 ms an iteration, a third of what the engine itself costs.

``FreezeSurvivors``, called between iterations, collects the young generations (cycles a phase
made, in the user's code or torch's, are freed here as usual) and then freezes what survived,
so that no later collection walks it again. Cycles among frozen objects that become garbage
later are freed by a full collection after ``refreeze_after`` objects have been frozen (about
2,000 iterations of the tutorial Net: the retained garbage is bounded, and the full walks
come several times less often than Python's own).
"""

from __future__ import annotations

import gc

REFREEZE_AFTER = 1_000_000


class FreezeSurvivors:
    """Call between iterations of a long run (``nntui trace``); see the module docstring.

    As a context manager it unfreezes on exit, so that a process that goes on after the run
    (the tests run ``trace`` in theirs) has its collector back on everything.
    """

    def __init__(self, refreeze_after: int = REFREEZE_AFTER) -> None:
        self.refreeze_after = refreeze_after
        self.frozen: int | None = None  # objects frozen since the last full walk; None: none yet
        self.full_collections = 0

    def __enter__(self) -> FreezeSurvivors:
        return self

    def __exit__(self, *_: object) -> None:
        if self.frozen is not None:
            gc.unfreeze()
            self.frozen = None

    def __call__(self) -> None:
        if not gc.isenabled():
            return  # the program runs without the collector: nothing to keep it off
        if self.frozen is not None and self.frozen > self.refreeze_after:
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
        else:
            # After collect(1) the oldest generation holds only what survived since the last
            # freeze: a few hundred objects to count, where gc.get_freeze_count() would walk
            # every frozen one.
            self.frozen += len(gc.get_objects(2))
        gc.freeze()
