"""What the app asks of the session, and the immutable snapshot it gets back.

Everything here runs on the worker thread. The UI never touches the session directly: each
action is performed here, one at a time, and the result is a ``Snapshot`` of plain data (plus
one numpy copy of the tensor on view), so rendering never races a phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.codegen import Listing, listing
from engine.digits import DigitsReport, batch_report
from engine.summary import grad_line, summary_line


class Action(str, Enum):
    NEXT = "next"
    REWIND = "rewind"
    RESET = "reset"
    ACCUMULATE = "accumulate"  # toggle
    LOOK = "look"  # only re-read the tensor on view
    SELECT = "select"  # view another parameter (``Request.name``)
    FLIP = "flip"  # view the other of data / grad


@dataclass(frozen=True)
class Request:
    """One queued key press, resolved against the session's state when its turn comes."""

    action: Action
    name: str | None = None  # SELECT: the parameter
    recipe: Recipe | None = None  # RESET: switch to this recipe (the command palette)


WHICH = ("data", "grad")
# The tensor worth looking at after each phase: a grad phase shows .grad, a data phase .data.
FOLLOW = {
    Phase.DEFINE: "data",
    Phase.ZERO_GRAD: "grad",
    Phase.BACKWARD: "grad",
    Phase.STEP: "data",
}


@dataclass(frozen=True, eq=False)  # eq=False: a numpy array has no truthy ``==``
class Snapshot:
    """The session as the UI may draw it, right after one action."""

    action: Action
    result: PhaseRecord | PhaseError | None  # what NEXT produced
    rewound: int  # phases undone by REWIND
    records: tuple[PhaseRecord, ...]
    done: Phase | None
    iteration: int
    next_phase: Phase
    next_iteration: int
    accumulate: bool
    backwards: int
    lr: float
    names: tuple[str, ...]
    watch: str | None
    selected: str | None
    which: str
    values: np.ndarray | None  # the selected tensor, a detached copy; None: absent (grad=None)
    summary: str  # one line about ``values``
    listing: Listing
    recipe: Recipe | None = None  # what the session runs (the palette's starting point)
    digits: DigitsReport | None = None  # the latest digits batch, predictions, accuracy

    @property
    def last(self) -> PhaseRecord | None:
        return self.records[-1] if self.records else None

    @property
    def error(self) -> PhaseError | None:
        return self.result if isinstance(self.result, PhaseError) else None


def perform(
    session: Session, request: Request, selected: str | None, which: str, follow: bool = True
) -> Snapshot:
    """Run ``request`` on ``session`` and describe the result. Call from one thread at a time.

    ``selected`` and ``which`` are what the previous snapshot showed. ``follow``: after a
    phase, view the tensor it changed (``FOLLOW``) rather than ``which``.
    """
    action = request.action
    result: PhaseRecord | PhaseError | None = None
    rewound = 0
    if action is Action.SELECT:
        selected = request.name
    elif action is Action.FLIP:
        which = WHICH[(WHICH.index(which) + 1) % len(WHICH)]
    if action is Action.NEXT:
        result = session.run_next()
    elif action is Action.REWIND:
        rewound = session.rewind(1)
    elif action is Action.RESET:
        session.reset(request.recipe)
    elif action is Action.ACCUMULATE:
        session.set_accumulate(not session.accumulate)
    if follow and isinstance(result, PhaseRecord):
        which = FOLLOW.get(result.phase, which)
    return snapshot(session, action, result, rewound, selected, which)


def snapshot(
    session: Session,
    action: Action,
    result: PhaseRecord | PhaseError | None,
    rewound: int,
    selected: str | None,
    which: str,
) -> Snapshot:
    names = tuple(session.names)
    if selected not in names:
        selected = session.watch
    values, summary = _view(session, selected, which)
    return Snapshot(
        action=action,
        result=result,
        rewound=rewound,
        records=tuple(session.records),
        done=session.done,
        iteration=session.iteration,
        next_phase=session.next_phase,
        next_iteration=session.next_iteration,
        accumulate=session.accumulate,
        backwards=session.backwards,
        lr=session.lr,
        names=names,
        watch=session.watch,
        selected=selected,
        which=which,
        values=values,
        summary=summary,
        recipe=session.recipe,
        digits=batch_report(session),
        listing=listing(session.recipe, session.accumulate),
    )


def _view(session: Session, name: str | None, which: str) -> tuple[np.ndarray | None, str]:
    if name is None:
        return None, "no parameters yet: run define"
    tensor = session.tensor(name, which)
    if tensor is None:
        return None, f"{name}.grad: grad=None" if which == "grad" else f"{name}: absent"
    line = summary_line_of(session, name, which)
    return tensor.numpy(), line


def summary_line_of(session: Session, name: str, which: str) -> str:
    """The record's own summary of the tensor, so every pane quotes the same numbers."""
    record = session.last_record
    state = record.param(name) if record else None
    if state is None:
        return name
    if which == "grad":
        return f"{name}.grad: {grad_line(state.grad)}"
    return f"{name}: {summary_line(state.data)}"
