"""Immutable records of what one phase did: plain numbers, strings and frozen dataclasses.

The UI renders these; it never needs a live tensor to draw a record. The costly numbers (every
``TensorSummary``, ``printed``, ``checks``, ``diagnostics``, step's ``changed`` and SGD facts)
are computed when first read, from copies the rewind history keeps (``engine.lazy``); a record
that left the history before they were read says they were not kept. ``resolve`` reads all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .graph import GradGraph
from .lazy import Deferred
from .phases import Phase
from .summary import TensorSummary

NOT_KEPT_TEXT = "# (not kept: this phase left the rewind history before it was shown)"


@dataclass(frozen=True)
class ParamState:
    """One parameter after a phase."""

    name: str
    shape: tuple[int, ...]
    numel: int
    requires_grad: bool
    data: TensorSummary
    grad: TensorSummary | None  # None: ``.grad is None``


@dataclass(frozen=True)
class GradChange:
    """What ``backward`` did to one parameter's ``.grad``."""

    name: str
    before: TensorSummary | None
    fresh: TensorSummary | None  # this backward's contribution; None: no grad flowed here
    after: TensorSummary | None
    accumulated: bool  # ``before`` existed, so PyTorch added into it
    exact: bool  # after == before + fresh (or == fresh), bit for bit (engine.bitwise)


@dataclass(frozen=True)
class StepChange:
    """What ``step`` did to one parameter: Δ = after − before."""

    name: str
    before: TensorSummary
    after: TensorSummary
    delta: TensorSummary
    # Checked when first read (engine.lazy): ``matches_sgd`` and ``max_sgd_error``.
    sgd: Deferred[bool | None]
    sgd_error: Deferred[float | None]
    state: tuple[tuple[str, TensorSummary], ...]  # optimizer state used (momentum_buffer, …)

    @property
    def matches_sgd(self) -> bool | None:
        """SGD and the manual loop: after is bit-equal to before − lr·grad (None: not an SGD
        rule, or not kept)."""
        return self.sgd.get()

    @property
    def max_sgd_error(self) -> float | None:
        """max |Δ − (−lr·grad)|, the rounding of the subtraction."""
        return self.sgd_error.get()


@dataclass(frozen=True)
class Activation:
    """One module's forward output."""

    name: str
    kind: str  # the module's class name
    shape: tuple[int, ...]
    summary: TensorSummary


@dataclass(frozen=True)
class Diagnostic:
    """Something worth a look: ``kind`` is one of the public diagnostic kinds."""

    kind: str
    message: str
    param: str | None = None
    module: str | None = None


@dataclass(frozen=True)
class PhaseRecord:
    """Everything one executed phase did."""

    phase: Phase
    iteration: int
    skipped: bool
    code: str  # the PyTorch it ran
    printed_: Deferred[str]  # what ``print`` showed, as the tutorial prints it: ``printed``
    loss: float | None  # this iteration's loss; None before its ``loss`` phase
    params: tuple[ParamState, ...]  # state after the phase
    # Parameters this phase changed (data or grad): ``changed``.
    changed_: Deferred[tuple[str, ...]] = field(default=Deferred.now(()))
    activations: tuple[Activation, ...] = ()
    graph: GradGraph | None = None
    zero_grad_mode: str | None = None  # "none" or "zeros" on a zero_grad record
    grad_changes: tuple[GradChange, ...] = ()
    step_changes: tuple[StepChange, ...] = ()
    backwards: int = 0  # backward calls accumulated into .grad since the last zero_grad
    diagnostics_: Deferred[tuple[Diagnostic, ...]] = field(default=Deferred.now(()))
    # Side-by-side facts the phase verified (label, holds), e.g. nn.CrossEntropyLoss == F.cross_entropy.
    checks_: Deferred[tuple[tuple[str, bool], ...]] = field(default=Deferred.now(()))
    # Digits forward: the batch's labels and the output's argmax (empty for other data).
    labels: tuple[int, ...] = ()
    predictions: tuple[int, ...] = ()
    # What the user's code printed while the phase ran (``Session(capture_prints=True)``).
    user_output: str = ""

    def param(self, name: str) -> ParamState | None:
        return next((p for p in self.params if p.name == name), None)

    def summaries(self) -> list[TensorSummary]:
        """Every tensor summary this record shows (shared ones included)."""
        out: list[TensorSummary | None] = []
        for p in self.params:
            out += [p.data, p.grad]
        out += [a.summary for a in self.activations]
        for c in self.grad_changes:
            out += [c.before, c.fresh, c.after]
        for s in self.step_changes:
            out += [s.before, s.after, s.delta, *(v for _, v in s.state)]
        return [x for x in out if x is not None]

    def resolve(self) -> PhaseRecord:
        """Compute every deferred value now (what ``nntui trace`` prints); returns self."""
        for summary in self.summaries():
            summary.compute()
        for s in self.step_changes:
            s.sgd.get()
            s.sgd_error.get()
        self.changed_.get()
        self.printed_.get()
        self.checks_.get()
        self.diagnostics_.get()
        return self

    # Computed when first read (engine.lazy): a phase does not pay for what nobody looks at.
    @property
    def changed(self) -> tuple[str, ...]:
        return self.changed_.get()

    @property
    def printed(self) -> str:
        """What the phase printed: the user's code first (it ran first: a print in
        ``forward`` comes before the tutorial's ``print(output)``), then the tutorial's."""
        if not self.user_output:
            return self.printed_.get()
        own = self.user_output if self.user_output.endswith("\n") else self.user_output + "\n"
        return own + self.printed_.get()

    @property
    def diagnostics(self) -> tuple[Diagnostic, ...]:
        return self.diagnostics_.get()

    @property
    def checks(self) -> tuple[tuple[str, bool], ...]:
        return self.checks_.get()


@dataclass(frozen=True)
class PhaseError:
    """A phase that raised. The session is exactly as it was before the phase."""

    phase: Phase
    iteration: int
    type: str
    message: str
    # What the user's code printed before it failed (``Session(capture_prints=True)``).
    user_output: str = ""

    def line(self) -> str:
        return f"error in {self.phase.value}: {self.message}"
