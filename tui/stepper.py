"""What the app asks of the session, and the immutable snapshot it gets back.

Everything here runs on the worker thread. The UI never touches the session directly: each
action is performed here, one at a time, and the result is a ``Snapshot`` of plain data (plus
one numpy copy of the tensor on view), so rendering never races a phase.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import torch

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.codegen import Listing, listing
from engine.digits import DigitsReport, batch_report
from engine.records import Activation
from engine.summary import grad_line, summarize, summary_line


class Action(str, Enum):
    NEXT = "next"
    REWIND = "rewind"
    RESET = "reset"
    ACCUMULATE = "accumulate"  # toggle
    LOOK = "look"  # only re-read the tensor on view
    SELECT = "select"  # view another parameter (``Request.name``)
    FLIP = "flip"  # view the other of data / grad
    ACTIVATION = "activation"  # view a module's forward output (``name``, or ``offset`` from now)


@dataclass(frozen=True)
class Request:
    """One queued key press, resolved against the session's state when its turn comes."""

    action: Action
    name: str | None = None  # SELECT: the parameter; ACTIVATION: the module
    offset: int = 1  # ACTIVATION without a name: how many modules on from the one on view
    recipe: Recipe | None = None  # RESET: switch to this recipe (the command palette)


WHICH = ("data", "grad")
ACTIVATION = "activation"  # ``which`` while a module's activation is on view
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
    result: PhaseRecord | PhaseError | None  # what NEXT produced (or why REWIND could not)
    rewound: int  # phases undone by REWIND
    # The records the session keeps (engine.runlog: the rewind window and a tail of recent
    # phases); ``losses`` covers the whole run.
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
    which: str  # "data", "grad" or "activation" (then ``activation`` names the module)
    values: np.ndarray | None  # the selected tensor, a detached copy; None: absent (grad=None)
    summary: str  # one line about ``values``
    listing: Listing
    recipe: Recipe | None = None  # what the session runs (the palette's starting point)
    digits: DigitsReport | None = None  # the latest digits batch, predictions, accuracy
    activation: str | None = None  # the module whose activation is (or was last) on view
    activations: tuple[str, ...] = ()  # modules the latest forward captured, in order
    internal: str | None = None  # the action raised in the app's own code (not a phase error)
    # How the zero_grad line reads: as it ran when it is the phase just run (accumulate may
    # have been toggled since), else as the setting will run it.
    zero_grad_skipped: bool = False
    losses: tuple[tuple[int, float], ...] = ()  # (iteration, loss) of every loss so far
    backwards_before: int = 0  # backward records of the run before ``records[0]``

    @property
    def last(self) -> PhaseRecord | None:
        return self.records[-1] if self.records else None

    @property
    def error(self) -> PhaseError | None:
        return self.result if isinstance(self.result, PhaseError) else None


def perform(
    session: Session,
    request: Request,
    selected: str | None,
    which: str,
    follow: bool = True,
    activation: str | None = None,
) -> Snapshot:
    """Run ``request`` on ``session`` and describe the result. Call from one thread at a time.

    ``selected``, ``which`` and ``activation`` are what the previous snapshot showed.
    ``follow``: after a phase, view the tensor it changed (``FOLLOW``) rather than ``which``;
    an activation the user picked stays on view (a new forward redraws it).
    """
    action = request.action
    result: PhaseRecord | PhaseError | None = None
    rewound = 0
    if action is Action.SELECT:
        selected = request.name
        if which == ACTIVATION:
            which = "data"  # moving through the parameters table means parameters again
    elif action is Action.FLIP:
        which = "grad" if which == "data" else "data"
    elif action is Action.ACTIVATION:
        # Resolved here, in queue order, so rapid presses step through modules one by one.
        picked = request.name or _next_activation(
            tuple(session.activations), activation if which == ACTIVATION else None, request.offset
        )
        if picked is not None:
            activation, which = picked, ACTIVATION
    if action is Action.NEXT:
        result = session.run_next()
    elif action is Action.REWIND:
        rewound = session.rewind(1)
        # A rewind whose recomputed forward raised undid nothing: show why, as for a phase.
        result = session.rewind_error
    elif action is Action.RESET:
        session.reset(request.recipe)
        if which == ACTIVATION:
            which = "data"  # a fresh loop has no activations; start from its parameters
    elif action is Action.ACCUMULATE:
        session.set_accumulate(not session.accumulate)
    if follow and which != ACTIVATION and isinstance(result, PhaseRecord):
        which = FOLLOW.get(result.phase, which)
    return snapshot(session, action, result, rewound, selected, which, activation)


def failed(
    session: Session,
    request: Request,
    selected: str | None,
    which: str,
    activation: str | None,
    error: BaseException,
) -> Snapshot:
    """The session as it is after ``perform`` raised part-way (``run_next`` may have run).

    The tensor is not drawn (drawing may be what raised); everything else is read afresh, so
    the screen matches the engine instead of the state before the action.
    """
    snap = snapshot(session, request.action, None, 0, selected, which, activation, draw=False)
    return replace(snap, internal=f"{type(error).__name__}: {error}")


def _next_activation(names: tuple[str, ...], current: str | None, offset: int) -> str | None:
    """The module ``offset`` places after ``current`` (wrapping); the first (or last) if none."""
    if not names:
        return None
    if current not in names:
        return names[0] if offset > 0 else names[-1]
    return names[(names.index(current) + offset) % len(names)]


def snapshot(
    session: Session,
    action: Action,
    result: PhaseRecord | PhaseError | None,
    rewound: int,
    selected: str | None,
    which: str,
    activation: str | None = None,
    draw: bool = True,
) -> Snapshot:
    """``draw``: read the tensor on view (False: leave it out, with a line saying so)."""
    names = tuple(session.names)
    if selected not in names:
        selected = session.watch
    values: np.ndarray | None
    if not draw:
        values, summary = None, "(not drawn: see the error below)"
    elif which == ACTIVATION:
        values, summary = _activation_view(session, activation)
    else:
        values, summary = _view(session, selected, which)
    last = session.last_record
    skipped = (
        last.skipped
        if last is not None and last.phase is Phase.ZERO_GRAD and session.done is Phase.ZERO_GRAD
        else session.accumulate
    )
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
        # The recipe define resolved: a user model's inferred target line, not a placeholder.
        listing=listing(session.code_recipe, skipped),
        activation=activation,
        activations=tuple(session.activations),
        zero_grad_skipped=skipped,
        losses=session.run_log.losses(),
        backwards_before=session.run_log.backwards_before(session.records_dropped),
    )


def _view(session: Session, name: str | None, which: str) -> tuple[np.ndarray | None, str]:
    if name is None:
        return None, "no parameters yet: run define"
    tensor = session.tensor(name, which)
    if tensor is None:
        return None, f"{name}.grad: grad=None" if which == "grad" else f"{name}: absent"
    line = summary_line_of(session, name, which)
    return display_array(tensor), line


def latest_activation(session: Session, name: str) -> Activation | None:
    """What the latest forward record says about module ``name``'s output."""
    for record in reversed(session.records):
        if record.phase is Phase.FORWARD:
            return next((a for a in record.activations if a.name == name), None)
    return None


def _activation_view(session: Session, name: str | None) -> tuple[np.ndarray | None, str]:
    tensor = None if name is None else session.tensor(name, ACTIVATION)
    if name is None or tensor is None:
        # A rewind to before forward: nothing to draw until forward runs again.
        return None, f"{name or 'activation'}: no activation yet, run forward"
    act = latest_activation(session, name)
    # The record's own summary, so the output pane and this line quote the same numbers.
    line = summary_line(act.summary) if act is not None else summary_line(summarize(tensor))
    kind = f" ({act.kind})" if act is not None else ""
    return display_array(tensor), f"{name}{kind} output: {line}"


def display_array(tensor: torch.Tensor) -> np.ndarray:
    """A numpy copy of ``tensor`` for the heatmap to draw.

    numpy has no bfloat16 (nor float8, …): ``.numpy()`` raises for those, so they are widened
    to float32 here, for drawing only. The numbers quoted on screen come from the records.
    """
    try:
        return tensor.numpy()
    except TypeError:  # "Got unsupported ScalarType …": a dtype numpy lacks
        return tensor.float().numpy()


def summary_line_of(session: Session, name: str, which: str) -> str:
    """The record's own summary of the tensor, so every pane quotes the same numbers."""
    record = session.last_record
    state = record.param(name) if record else None
    if state is None:
        return name
    if which == "grad":
        return f"{name}.grad: {grad_line(state.grad)}"
    return f"{name}: {summary_line(state.data)}"
