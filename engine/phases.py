"""The six phases of one training iteration and the single transition between them."""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):
    """One step of the loop. ``str`` mixin so records serialise as plain names."""

    DEFINE = "define"
    FORWARD = "forward"
    LOSS = "loss"
    ZERO_GRAD = "zero_grad"
    BACKWARD = "backward"
    STEP = "step"

    def __str__(self) -> str:
        return self.value


PHASES: tuple[Phase, ...] = tuple(Phase)
LOOP: tuple[Phase, ...] = PHASES[1:]


def next_phase(done: Phase | None) -> Phase:
    """The phase that runs after ``done`` (``None`` = nothing has run yet).

    ``define`` runs once; after ``step`` the loop starts again at ``forward``.
    """
    if done is None:
        return Phase.DEFINE
    if done is Phase.STEP:
        return Phase.FORWARD
    return PHASES[PHASES.index(done) + 1]


def next_iteration(done: Phase | None, iteration: int) -> int:
    """The iteration number the next phase belongs to (define is iteration 0)."""
    if done is None:
        return 0
    if done in (Phase.DEFINE, Phase.STEP):
        return iteration + 1
    return iteration
