"""The training loop as a state machine: one call runs one phase and returns its record.

The session owns model, optimizer, batch and history. Every phase boundary is checkpointed;
a phase that raises is undone by restoring the checkpoint it started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Container, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import torch
import torch.nn as nn

from .attrs import Attrs, own_modules, snapshot
from .bitwise import bit_equal
from .blame import USER_ERRORS, ModuleFailure
from .capture import capture_outputs, changed, keep_grad, nonfinite
from .checks import (
    SgdFacts,
    cross_entropy_nn_vs_f,
    optimizer_state_lines,
    sgd_error,
    sgd_facts,
)
from .codegen import phase_code
from .failures import PhaseFailure, phase_error
from .graph import walk_grad_fn
from .history import DEFAULT_BUDGET_BYTES, Checkpoint, History
from .lazy import Deferred, Releases
from .modulemap import ModuleCall
from .optstep import step_in_slices
from .phases import Phase, next_iteration, next_phase
from .printing import grad_fn_name, tensor_repr
from .recipe import MODELS, Recipe, Setup, build
from .records import (
    NOT_KEPT_TEXT,
    Activation,
    Diagnostic,
    GradChange,
    ParamState,
    PhaseError,
    PhaseRecord,
    StepChange,
)
from .rewind import Rewinding
from .runlog import RunLog
from .summary import TensorSummary, all_finite, first_nonfinite, summarize, summarize_made
from .userprints import Printed, capture_prints, joined, take_descriptors

SGD_RULES = ("sgd", "manual")
LARGE = 1 << 16  # elements: a tensor this big is checked on its own, small ones together
# Records kept beyond the rewind history's reach: the output pane shows the last 60 phases and
# the accumulation plot the backwards among these (200 iterations).
KEEP_RECORDS = 1000
TRIM_CHUNK = 256
# Records kept before the oldest checkpoint's own: after a rewind there, the panes look back to
# the latest forward, loss and backward (the digits batch, the grad_fn tree, the accumulation),
# at most one iteration (five records) back.
LOOKBACK = 6
T = TypeVar("T")


def _is_sparse(t: torch.Tensor | None) -> bool:
    return t is not None and t.layout is not torch.strided


class DiagnosisView:
    """What a diagnosis reads of the session, as it was when the phase ran (diagnoses run
    when a record's ``diagnostics`` are first read, maybe phases later)."""

    def __init__(
        self,
        setup: Setup | None,
        nonfinite: Deferred[tuple[str, ...]],
        activations: dict[str, torch.Tensor],
    ) -> None:
        self.setup = setup
        self._nonfinite = nonfinite
        self.activations = activations

    @property
    def nonfinite_modules(self) -> tuple[str, ...]:
        return self._nonfinite.get()


Diagnose = Callable[[DiagnosisView, PhaseRecord], tuple[Diagnostic, ...]]


class RecordIds:
    """The ids of a record's summaries, listed only if asked, and asked only when it matters.

    A push releases tensors that no kept checkpoint holds. The record being made reads the
    tensors of its own checkpoint, which is kept, and of the one before it (step's parameters
    before, backward's gradients before), so its values can lose a tensor only when the push
    drops that one too, leaving the history with its own checkpoint alone. Any other release
    (every push of a full history) needs no list.
    """

    def __init__(self, record: PhaseRecord, history: History) -> None:
        self._record = record
        self._history = history
        self._ids: set[int] | None = None

    def __bool__(self) -> bool:
        # Only a push that leaves the record's checkpoint alone can release its values.
        return len(self._history) <= 1

    def __contains__(self, key: object) -> bool:
        if len(self._history) > 1:
            return False
        if self._ids is None:
            self._ids = {id(s) for s in self._record.summaries()}
        return key in self._ids


# Parameters compared bit for bit after a user's forward (see ``_forward``).
DATA_CHECK_ELEMENTS = 1 << 22


def _lazy_copy(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` made only when one of the two is written (``torch._lazy_clone``,
    PyTorch 2.3 and later; a plain clone before)."""
    lazy = getattr(torch, "_lazy_clone", None)
    return lazy(t) if lazy is not None else t.clone()


def _accumulate_grad_node(p: torch.Tensor) -> Any:
    """The ``AccumulateGrad`` node of leaf ``p`` (what adds into ``p.grad`` in backward)."""
    with torch.enable_grad():
        return p.view_as(p).grad_fn.next_functions[0][0]


class Session(Rewinding):
    """One training loop, stepped a phase at a time."""

    def __init__(
        self,
        recipe: Recipe | None = None,
        *,
        accumulate: bool = False,
        history_bytes: int = DEFAULT_BUDGET_BYTES,
        nan_guard: bool = True,
        diagnose: Diagnose | bool | None = None,
        capture_prints: bool = False,
    ) -> None:
        self.recipe = (recipe or Recipe()).validate()
        # Keep what the user's code prints during a phase on its record (engine.userprints):
        # the app's, whose terminal Textual owns. ``trace`` lets prints through as they come.
        self.capture_prints = capture_prints
        # Bytes written to descriptors 1 and 2 while no phase ran, taken early because a
        # rewind recomputed a forward (whose own bytes are dropped): the next phase shows them.
        self._carried = Printed()
        self.accumulate = accumulate
        self.nan_guard = nan_guard
        self.lr = self.recipe.lr
        # Lazy record values, released when the history lets go of what they read.
        self.releases = Releases()
        # Values of the record being committed, computed rather than lost if the push that
        # ends its phase drops the tensors they read (a tight history budget).
        self._keep: Container[int] = frozenset()
        self.history = History(
            history_bytes, on_release=lambda ts: self.releases.release(ts, self._keep)
        )
        # None: engine.diagnostics (the app's pane and trace's lines); False: none at all.
        if diagnose is None or diagnose is True:
            from .diagnostics import diagnose as default_diagnose

            diagnose = default_diagnose
        self._diagnose: Diagnose | None = diagnose or None
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        # First: a value being computed on another thread (the app's) finishes before the
        # state it may read goes; the others are released, not computed from a new state.
        self.releases.release_all()
        self.history.clear()
        self.setup: Setup | None = None
        self.done: Phase | None = None
        self.iteration = 0
        self.output: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.loss_value: float | None = None
        self.backwards = 0
        # The records the history can still rewind to, and at least the last KEEP_RECORDS:
        # older ones are let go (see engine.runlog), ``records_dropped`` of them so far.
        self.records: list[PhaseRecord] = []
        self.records_dropped = 0
        self.run_log = RunLog()
        self.names: list[str] = []
        self.params: list[nn.Parameter] = []
        # Whether a user's forward is checked for writes through ``.data`` (see ``_forward``).
        self._compare_params = False
        self.activations: dict[str, torch.Tensor] = {}
        # Modules whose forward output held NaN/Inf, in the order they returned.
        self._nonfinite: Deferred[tuple[str, ...]] = Deferred.now(())
        # The submodule calls of the forward behind ``output``: the loss tags its graph with them.
        self._module_calls: tuple[ModuleCall, ...] = ()
        self._param_states: list[ParamState] = []
        # Why the latest ``rewind`` undid nothing, when user code made it fail.
        self.rewind_error: PhaseError | None = None
        # Per-phase scratch: summaries made while running (reused for the record), the RNG this
        # iteration's forward found, copies of the parameters and optimizer state that define
        # and step made for the checkpoint, and what else it must hold for lazy records.
        self._phase_summaries: dict[tuple[str, str], TensorSummary] = {}
        self._forward_rng: torch.Tensor | None = None
        self._new_params: list[torch.Tensor] | None = None
        self._new_opt_state: list[dict[str, Any]] | None = None
        self._live_tensors: tuple[torch.Tensor, ...] = ()
        # The model's own modules (fixed after define: a forward may not register one), and
        # what their attributes were before and after the latest forward (engine.attrs).
        self._own_modules: tuple[nn.Module, ...] = ()
        self._forward_attrs: tuple[Attrs, Attrs] | None = None
        # Modules whose output an in-place op changed later in a forward: copied when captured;
        # learned from a first forward that copies every output (see ``_copy_only``).
        self._copied: set[str] = set()
        self._learned = False
        self.history.push(Checkpoint(None, 0, rng=torch.get_rng_state()))

    @property
    def next_phase(self) -> Phase:
        return next_phase(self.done)

    @property
    def next_iteration(self) -> int:
        return next_iteration(self.done, self.iteration)

    @property
    def watch(self) -> str | None:
        """The parameter the tutorial prints around backward (``conv1.bias`` by default)."""
        if self.recipe.watch and self.recipe.watch in self.names:
            return self.recipe.watch
        if "conv1.bias" in self.names:
            return "conv1.bias"
        return self.names[0] if self.names else None

    @property
    def code_recipe(self) -> Recipe:
        """The recipe with the shapes ``define`` resolved (a user model's target, …): codegen's."""
        if self.setup is not None and self.setup.resolved is not None:
            return self.setup.resolved
        return self.recipe

    @property
    def last_record(self) -> PhaseRecord | None:
        return self.records[-1] if self.records else None

    def param(self, name: str) -> nn.Parameter:
        return self.params[self.names.index(name)]

    # -------------------------------------------------------------- settings
    def set_accumulate(self, on: bool) -> None:
        """Skip ``zero_grad`` from now on (or stop skipping). A setting, kept across rewind."""
        self.accumulate = bool(on)

    def set_lr(self, lr: float) -> None:
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive finite number, got {lr}")
        self.lr = float(lr)
        self._apply_lr()

    def _apply_lr(self) -> None:
        if self.setup is not None:
            for group in self.setup.optimizer.param_groups:
                group["lr"] = self.lr

    def reset(self, recipe: Recipe | None = None) -> None:
        """Back to before ``define``; optionally with a new recipe (its lr becomes current)."""
        if recipe is not None:
            self.recipe = recipe.validate()
            self.lr = self.recipe.lr
        self._reset_state()

    # ------------------------------------------------------------------ stepping
    def run_next(self) -> PhaseRecord | PhaseError:
        """Run the next phase. On any exception the session is restored and an error returned."""
        phase = self.next_phase
        iteration = self.next_iteration
        live = self._live()
        prints, self._carried = self._carried, Printed()
        try:
            with self._prints(prints):
                record = self._run(phase, iteration, prints)
        # User model code can raise anything; this is the one place it is caught and reported.
        except USER_ERRORS as exc:
            self._take_descriptors(prints)  # what it wrote below Python before it failed
            self._forward_attrs = None
            self.releases.discard()
            self._new_params = self._new_opt_state = None
            # A backward that raised may have freed part of its graph: rebuild it instead, and
            # keep the graph it had only if the user's forward raises while rebuilding.
            if phase is not Phase.BACKWARD or self._restore_rebuilding(self.history.current):
                self._restore(self.history.current, recompute=False)
                self._set_live(live)
            return phase_error(phase, iteration, exc, joined(prints))
        at = self.record_count
        self.records.append(record)
        if record.phase is Phase.LOSS and record.loss is not None:
            self.run_log.add_loss(at, record.iteration, record.loss)
        elif record.phase is Phase.FORWARD and record.labels:
            self.run_log.add_forward(at, record.labels, record.predictions)
        elif record.phase is Phase.BACKWARD:
            self.run_log.add_backward(at)
        before = self.history.current
        self._keep = RecordIds(record, self.history)
        try:
            self._checkpoint(phase)
        finally:
            self._keep = frozenset()
        # The record's values read this checkpoint's tensors and the one's before (if the
        # push dropped that one, they are released at once).
        # ``before`` is gone if this push dropped it.
        kept_before = len(self.history) > 1 and self.history.back(1) is before
        previous = before.leave if kept_before else None
        self.releases.commit(self.history.holds, self.history.current.leave, previous)
        self._trim_records()
        return record

    @property
    def record_count(self) -> int:
        """Records made since define (or the start), the ones let go included."""
        return self.records_dropped + len(self.records)

    def _trim_records(self) -> None:
        """Let go of records no rewind can reach, beyond the last ``KEEP_RECORDS``."""
        # A rewind to the oldest checkpoint keeps its records and reads the last of them, and
        # the panes read back an iteration from there.
        reachable = self.history.oldest.records - 1 - LOOKBACK
        keep_from = min(reachable, self.record_count - KEEP_RECORDS)
        # In chunks: deleting from the front of a list moves the rest of it.
        if keep_from - self.records_dropped >= TRIM_CHUNK:
            del self.records[: keep_from - self.records_dropped]
            self.records_dropped = keep_from

    def run_iteration(self) -> list[PhaseRecord | PhaseError]:
        """Run phases until a ``step`` completes (or one fails)."""
        out: list[PhaseRecord | PhaseError] = []
        while True:
            result = self.run_next()
            out.append(result)
            if isinstance(result, PhaseError) or result.phase is Phase.STEP:
                return out

    def _prints(self, sink: list[str]) -> AbstractContextManager[None]:
        """Where the user's prints go while a phase (or a rewind's recomputation) runs."""
        return capture_prints(sink) if self.capture_prints else nullcontext()

    def _take_descriptors(self, sink: list[str]) -> None:
        """Into ``sink``, what reached descriptors 1 and 2 so far (the app's capture)."""
        if self.capture_prints:
            take_descriptors(sink)

    def _run(self, phase: Phase, iteration: int, prints: list[str]) -> PhaseRecord:
        run = {
            Phase.DEFINE: self._define,
            Phase.FORWARD: self._forward,
            Phase.LOSS: self._loss,
            Phase.ZERO_GRAD: self._zero_grad,
            Phase.BACKWARD: self._backward,
            Phase.STEP: self._step,
        }[phase]
        # Summaries the phase made (grads after backward, params after step), by (which,
        # name): ``_states`` reuses them instead of summarising the same tensor again.
        self._phase_summaries = {}
        self._live_tensors = ()
        fields = run(iteration)
        self._take_descriptors(prints)  # before ``joined(prints)`` below reads them
        self.done = phase
        self.iteration = iteration
        if phase is Phase.LOSS:
            self.loss_value = fields["loss"]
        elif phase in (Phase.FORWARD, Phase.DEFINE):
            self.loss_value = None
        changed = fields.pop("changed", ())
        if isinstance(changed, Deferred):  # step: every parameter has new summaries anyway
            self._param_states = self._states(tuple(self.names), full=False)
        else:
            self._param_states = self._states(changed, full=phase is Phase.DEFINE)
            changed = Deferred.now(tuple(changed))
        printed = fields.pop("printed", "")
        checks = fields.pop("checks", ())
        # The diagnosis reads the record it belongs to: bound once the record exists.
        made: list[PhaseRecord] = []
        diagnostics = self._diagnosis(made)
        record = PhaseRecord(
            phase=phase,
            iteration=iteration,
            skipped=fields.pop("skipped", False),
            code=phase_code(self.code_recipe, phase, self.accumulate),
            printed_=printed if isinstance(printed, Deferred) else Deferred.now(printed),
            loss=self.loss_value,
            params=tuple(self._param_states),
            changed_=changed,
            backwards=self.backwards,
            checks_=checks if isinstance(checks, Deferred) else Deferred.now(checks),
            diagnostics_=diagnostics,
            user_output=joined(prints),
            **{k: v for k, v in fields.items() if k != "loss"},
        )
        made.append(record)
        return record

    # ------------------------------------------------------------------ laziness
    def _summary(self, tensor: torch.Tensor) -> TensorSummary:
        """A summary computed when read; ``tensor`` must be one the next checkpoint holds."""
        s = summarize(tensor)
        self.releases.stage(s, (tensor,) if s.source is not None else ())
        return s

    def _lazy(self, make: Callable[[], T], fallback: T, before: bool = False) -> Deferred[T]:
        """``make()`` when first read; it may read only tensors that this phase's checkpoint
        holds, and with ``before`` those of the checkpoint before it too (released when one of
        them leaves the history)."""
        d = Deferred(make, fallback)
        self.releases.stage_record(d, before)
        return d

    def _diagnosis(self, record: list[PhaseRecord]) -> Deferred[tuple[Diagnostic, ...]]:
        """The diagnostics of ``record[0]`` (appended once made), computed when first read."""
        diagnose = self._diagnose
        if diagnose is None:
            return Deferred.now(())
        view = DiagnosisView(self.setup, self._nonfinite, self.activations)
        return self._lazy(lambda: diagnose(view, record[0]), ())

    @property
    def _shipped(self) -> bool:
        """Whether the model is one of nntui's own, whose code is known: it writes to no
        module output after its op, changes no parameter or ``.grad`` in forward and draws no
        random numbers in backward, so the checks for those are skipped."""
        return self.recipe.model in MODELS

    def _copy_only(self) -> set[str] | None:
        """Which module outputs a forward copies: ``None`` (all of them) for a model of the
        user's, whose code may write to an output at any time, even through ``.data`` where no
        version counter sees it; for a shipped model, those an in-place op wrote to before."""
        if not self._shipped or not self._learned:
            return None
        return self._copied

    @property
    def nonfinite_modules(self) -> tuple[str, ...]:
        """Modules whose forward output held NaN/Inf, in the order they returned."""
        return self._nonfinite.get()

    # ------------------------------------------------------------------ phases
    def _define(self, iteration: int) -> dict[str, Any]:
        self.setup = build(self.recipe)
        self._own_modules = own_modules(self.setup.net)
        self._apply_lr()
        pairs = list(self.setup.net.named_parameters())
        self.names = [n for n, _ in pairs]
        self.params = [p for _, p in pairs]
        self._compare_params = sum(p.numel() for p in self.params) <= DATA_CHECK_ELEMENTS
        self.activations = {}
        self.output = self.loss = None
        self.backwards = 0
        # The checkpoint keeps these copies; the summaries read them, never the live params.
        self._new_params = [p.detach().clone() for p in self.params]
        for name, copy in zip(self.names, self._new_params):
            self._phase_summaries[("data", name)] = self._summary(copy)
        printed = [repr(self.setup.net), "", "params = list(net.parameters())"]
        printed.append(f"print(len(params))  # {len(self.params)}")
        if self.params:
            printed.append(f"print(params[0].size())  # {self.params[0].size()}")
        return {"printed": "\n".join(printed), "changed": tuple(self.names)}

    def _forward(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        input, _ = self.setup.data.batch(iteration)
        self._forward_rng = torch.get_rng_state()
        net = self.setup.net
        captured: dict[str, tuple[str, torch.Tensor]] = {}
        returned: dict[str, int] = {}
        versions: dict[str, tuple[torch.Tensor, int]] = {}
        calls: list[ModuleCall] = []
        # A user's forward may change parameters in place (weight clipping under no_grad, or
        # the older ``p.data.clamp_(-c, c)``): then this checkpoint keeps copies, like step's.
        # Seen by version counters, and for writes through ``.data`` (which bump none) by
        # comparing with the copies the checkpoint before holds, bit for bit.
        shipped = self._shipped
        param_versions = [] if shipped else [p._version for p in self.params]
        attrs_before = snapshot(self._own_modules)
        with (
            capture_outputs(net, captured, returned, self._copy_only(), versions, calls),
            self._grads_untouched(),
        ):
            output = net(input)
        self._forward_attrs = (attrs_before, snapshot(self._own_modules))
        # The comparison reads every parameter twice: done up to DATA_CHECK_ELEMENTS (about
        # 1 ms), where it is a small part of a forward; beyond, only version counters.
        found: tuple[torch.Tensor | None, ...] = ()
        if not shipped:
            found = (
                self.history.current.params if self._compare_params else (None,) * len(self.params)
            )
        rewritten = [
            (name, p)
            for name, p, v, b in zip(self.names, self.params, param_versions, found)
            if p._version != v or (b is not None and not bit_equal(p, b))
        ]
        if rewritten:
            self._new_params = [p.detach().clone() for p in self.params]
            for name, copy in zip(self.names, self._new_params):
                self._phase_summaries[("data", name)] = self._summary(copy)
        moved = changed(versions)
        # Written in place later in this forward: copy them from now on. One kept uncopied
        # (a shipped model taking a path it had not taken before) shows the written values,
        # so it is left out of this forward's activations rather than shown wrong.
        self._copied.update(moved)
        self._learned = True
        for label in moved:
            if captured[label][1]._version != versions[label][1]:
                del captured[label]
        if not isinstance(output, torch.Tensor):
            # Said here, where it happened: the loss would fail on it with an unrelated message.
            raise PhaseFailure(
                f"net returned {type(output).__name__}, not a tensor: "
                "the loss needs one output tensor"
            )
        self.output = output
        self._module_calls = tuple(calls)
        self.loss = None
        self.activations = {name: t for name, (_, t) in captured.items()}
        # Shared by this iteration's records (the loss diagnoses with it): kept as long as the
        # activations it reads are.
        self._nonfinite = Deferred(lambda: nonfinite(captured, returned), ())
        self.releases.stage(self._nonfinite, self.activations.values())
        acts = tuple(
            Activation(name, kind, tuple(t.shape), self._summary(t))
            for name, (kind, t) in captured.items()
        )
        # Detached: the record prints it later, and the tensor itself would keep its graph.
        shown, fn = output.detach(), grad_fn_name(output)
        self._live_tensors = (shown,)
        printed = self._lazy(lambda: f"print(output)\n{tensor_repr(shown, fn)}", NOT_KEPT_TEXT)
        fields: dict[str, Any] = {"printed": printed, "activations": acts}
        if rewritten:
            fields["changed"] = tuple(name for name, _ in rewritten)
        labels = getattr(self.setup.data, "labels", None)
        if labels is not None and output.dim() == 2:  # digits: for accuracy (engine.digits)
            fields["labels"] = tuple(labels(iteration).tolist())
            fields["predictions"] = tuple(output.detach().argmax(1).tolist())
        return fields

    @contextmanager
    def _grads_untouched(self) -> Iterator[None]:
        """A user's forward must leave ``.grad`` alone: one that calls ``backward`` would add
        into gradients the history holds (its checkpoints share them, engine.rewind) and make
        every rewind to them wrong. A pre-hook on each parameter's ``AccumulateGrad`` refuses
        before anything is added (``torch.autograd.grad`` runs no ``AccumulateGrad``: a
        gradient penalty, even one with respect to the parameters, stays legal), and the phase
        fails even if the forward caught the refusal and went on (a plain loop would have added
        the gradients). The forward sees copies of the gradients: one written in place or
        assigned is refused after the forward and the kept gradients are untouched. nntui's own
        models do neither and skip the check."""
        if self._shipped:
            yield
            return
        refused: list[ModuleFailure] = []

        def refuse(name: str) -> Callable[..., None]:
            def hook(*_: Any) -> None:
                message = (
                    f"forward calls backward, which would add into {name}.grad: nntui runs "
                    "backward as its own phase; call it after the loss, not in forward"
                )
                refused.append(ModuleFailure(message, PhaseFailure(message), ""))
                raise refused[-1]

            return hook

        kept = [p.grad for p in self.params]
        # Copies, so that an in-place write cannot reach what the checkpoints hold: lazy ones
        # (copy-on-write), which cost nothing unless written (a real clone of a 21 M-parameter
        # model's gradients added 8 ms to every forward).
        seen = [None if g is None else _lazy_copy(g) for g in kept]
        for p, g in zip(self.params, seen):
            p.grad = g
        # Kept alive for the forward: a parameter holds its AccumulateGrad node weakly, and a
        # hook on a node that is collected and made again would never fire.
        nodes = [
            (n, _accumulate_grad_node(p))
            for n, p in zip(self.names, self.params)
            if p.requires_grad
        ]
        handles = [node.register_prehook(refuse(n)) for n, node in nodes]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            now = [p.grad for p in self.params]
            for p, g in zip(self.params, kept):
                p.grad = g
        if refused:
            raise refused[0]
        for name, grad, copy in zip(self.names, now, seen):
            if grad is not copy or (copy is not None and copy._version != 0):
                raise PhaseFailure(
                    f"forward wrote {name}.grad: nntui keeps .grad as zero_grad and backward "
                    "leave it; write gradients after the loss, not in forward"
                )

    def _loss(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None and self.output is not None
        _, target = self.setup.data.batch(iteration)
        output, criterion = self.output, self.setup.criterion
        if isinstance(criterion, nn.MSELoss) and output.shape != target.shape:
            # MSELoss would broadcast with only a warning: a silent wrong loss is worse.
            raise PhaseFailure(
                f"MSELoss: output {list(output.shape)} vs target {list(target.shape)}"
            )
        loss = criterion(output, target)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = list(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise PhaseFailure(f"loss must be a scalar tensor, got {shape}")
        value = float(loss.item())
        if self.nan_guard and not math.isfinite(value):
            first = (
                f"; first non-finite output: {self.nonfinite_modules[0]}"
                if self.nonfinite_modules
                else ""
            )
            raise PhaseFailure(
                f"loss is {value} (NaN guard): the step would poison every weight{first}"
            )
        self.loss = loss
        graph = walk_grad_fn(
            loss.grad_fn,
            {id(p): n for n, p in zip(self.names, self.params)},
            calls=self._module_calls,
        )
        head = []
        node = loss.grad_fn
        labels = [
            "loss.grad_fn",
            "loss.grad_fn.next_functions[0][0]",
            "loss.grad_fn.next_functions[0][0].next_functions[0][0]",
        ]
        for label in labels:
            if node is None:
                break
            head.append(f"print({label})  # <{type(node).__name__}>")
            node = node.next_functions[0][0] if node.next_functions else None
        # Detached (a graph held by a checkpoint would outlive rewinds); both, because after a
        # rewind ``output`` is a recomputed one no earlier checkpoint holds.
        out_d, loss_d, fn = output.detach(), loss.detach(), grad_fn_name(loss)
        self._live_tensors = (out_d, loss_d)
        same = self._lazy(lambda: cross_entropy_nn_vs_f(criterion, out_d, target, loss_d), ([], ()))
        printed = self._lazy(
            lambda: "\n".join([f"print(loss)\n{tensor_repr(loss_d, fn)}", *head, *same.get()[0]]),
            NOT_KEPT_TEXT,
        )
        checks = Deferred(lambda: same.get()[1], ())  # reads ``same`` only: nothing to release
        return {"printed": printed, "loss": value, "graph": graph, "checks": checks}

    def _watch_grad(self, watch: str | None, grad: torch.Tensor | None) -> Deferred[str]:
        """``print(net.<watch>.grad)`` of ``grad``, a tensor a checkpoint holds (or None)."""
        if not watch:
            return Deferred.now("")
        return self._lazy(lambda: f"print(net.{watch}.grad)\n{grad!r}", NOT_KEPT_TEXT)

    def _zero_grad(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        watch = self.watch
        if self.accumulate:
            grad = self.param(watch).grad if watch else None
            note = f"# zero_grad skipped: .grad keeps {self.backwards} backward(s)"
            shown = self._watch_grad(watch, grad)
            printed = self._lazy(
                lambda: note + ("\n" + shown.get() if watch else ""), NOT_KEPT_TEXT
            )
            return {"printed": printed, "skipped": True, "zero_grad_mode": None}
        had = [n for n, p in zip(self.names, self.params) if p.grad is not None]
        set_to_none = self.recipe.zero_grad == "none"
        if not set_to_none:
            self._own_grads()  # zeroing is in place; the checkpoint's grads must survive it
        self.setup.optimizer.zero_grad(set_to_none=set_to_none)
        self.backwards = 0
        return {
            "printed": self._watch_grad(watch, self.param(watch).grad if watch else None),
            "changed": tuple(had),
            "zero_grad_mode": "none" if set_to_none else "zeros",
        }

    def _backward(self, iteration: int) -> dict[str, Any]:
        if self.loss is None:
            raise PhaseFailure("no live graph: run forward and loss before backward")
        self._own_grads()
        before_copy = self.history.current.grads  # immutable: exactly the values of .grad now
        fresh: dict[int, torch.Tensor] = {}
        handles = []
        for i, p in enumerate(self.params):
            if p.requires_grad and p.grad is not None:
                # The hook sees this backward's contribution before AccumulateGrad adds it in.
                handles.append(p.register_hook(keep_grad(fresh, i)))
        try:
            self.loss.backward()
        finally:
            for h in handles:
                h.remove()
        sparse = next((n for n, p in zip(self.names, self.params) if _is_sparse(p.grad)), None)
        if sparse is not None:
            # Every view, check and summary reads dense tensors; said here, in one line,
            # rather than failing somewhere later (run_next restores the state before it).
            raise PhaseFailure(
                f"{sparse}.grad is a sparse tensor (sparse=True in an embedding?): nntui shows "
                "dense gradients only"
            )
        self.loss = None  # its graph is freed; a second backward needs a new forward
        self.backwards += 1
        changes = []
        changed = []
        old_states = self._param_states
        for i, (name, p) in enumerate(zip(self.names, self.params)):
            after = p.grad
            prev = before_copy[i] if i < len(before_copy) else None
            if after is None:
                changes.append(GradChange(name, None, None, None, False, True))
                continue
            changed.append(name)
            after_s = self._summary(after)
            self._phase_summaries[("grad", name)] = after_s
            if prev is None:
                changes.append(GradChange(name, None, after_s, after_s, False, True))
                continue
            # Accumulating (or zeros): checked now, because this backward's contribution is
            # a tensor no checkpoint holds.
            contrib = fresh.get(i)
            before_s = old_states[i].grad if i < len(old_states) else None
            if before_s is None:
                before_s = summarize(prev).compute()
            if contrib is None:  # no gradient flowed here this time
                changes.append(
                    GradChange(name, before_s, None, after_s, True, bit_equal(after, prev))
                )
                continue
            exact = bit_equal(after, prev + contrib)
            fresh_s = summarize(contrib).compute()
            changes.append(GradChange(name, before_s, fresh_s, after_s, True, exact))
        printed: Deferred[str] | str = ""
        if self.watch:
            watch = self.watch
            wi = self.names.index(watch)
            was = before_copy[wi] if wi < len(before_copy) else None
            now = self.params[wi].grad
            printed = self._lazy(
                lambda: (
                    f"print('{watch}.grad before backward')\n{was!r}\n"
                    f"print('{watch}.grad after backward')\n{now!r}"
                ),
                NOT_KEPT_TEXT,
                before=True,  # .grad as the previous checkpoint holds it
            )
        return {"printed": printed, "grad_changes": tuple(changes), "changed": tuple(changed)}

    def _step(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        before = self.history.current.params
        grads = [p.grad for p in self.params]
        optimizer = self.setup.optimizer
        names = tuple(self.names)  # the lazy values below must not read the session later
        # The checkpoint keeps these copies (and of the optimizer state): the summaries and
        # checks below read them when asked, never the live tensors the next step writes.
        # Made a slice at a time, right after the slice's step (engine.optstep).
        after = []
        large_bad: str | None = None
        small: list[tuple[str, torch.Tensor]] = []
        for stepped in step_in_slices(optimizer, self.params):
            for i in stepped:
                name, copy = self.names[i], self.params[i].detach().clone()
                after.append(copy)
                # The NaN guard: a large copy is read right after it is made, while it is
                # still in cache; the small ones together in one multi-tensor norm (a finite
                # norm has no NaN/Inf).
                if not self.nan_guard:
                    continue
                if copy.numel() < LARGE and copy.is_floating_point():
                    small.append((name, copy))
                elif large_bad is None and not all_finite(copy):
                    large_bad = name
        bad = [n for n in (large_bad, first_nonfinite(small) if small else None) if n]
        if bad:
            first = min(bad, key=self.names.index)  # the first in parameter order
            raise PhaseFailure(f"step made {first} non-finite (NaN guard)")
        states = [
            {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in st.items()}
            for st in (optimizer.state.get(p, {}) for p in self.params)
        ]
        self._new_params, self._new_opt_state = after, states
        after_s = [self._summary(a) for a in after]
        changes = []
        rule = self.recipe.optimizer if self.recipe.optimizer in SGD_RULES else None
        lr = self.lr
        # Both update rules on every parameter at once, when first asked (the printed
        # comparison and each parameter's "bit-equal to before − lr·grad").
        facts = self._lazy(
            lambda: sgd_facts(rule or "sgd", before, grads, after, lr),
            SgdFacts((None,) * len(after), (), ()),
            before=True,
        )
        # Every parameter's rounding error at once, when first asked (only trace reads them).
        errors = (
            self._lazy(
                lambda: tuple(
                    None if g is None else sgd_error(a, b, g, lr)
                    for a, b, g in zip(after, before, grads)
                ),
                (None,) * len(after),
                before=True,
            )
            if rule is not None
            else Deferred.now((None,) * len(after))
        )
        none: Deferred[Any] = Deferred.now(None)
        for i, name in enumerate(self.names):
            self._phase_summaries[("data", name)] = after_s[i]
            a, b, g = after[i], before[i], grads[i]
            delta = summarize_made(lambda a=a, b=b: a - b, tuple(a.shape), a.dtype)
            self.releases.stage_record(delta, before=True)
            sgd, error = none, none
            if rule is not None and g is not None:
                # Read through the shared values, which the history releases: these two read
                # no tensor themselves, so they need no release of their own (a released
                # ``facts`` or ``errors`` gives None, as a released one of these would).
                sgd = Deferred(lambda i=i: facts.get().matches[i], None)
                error = Deferred(lambda i=i: errors.get()[i], None)
            state = tuple(
                (k, self._summary(v)) for k, v in states[i].items() if isinstance(v, torch.Tensor)
            )
            changes.append(
                StepChange(name, self._param_states[i].data, after_s[i], delta, sgd, error, state)
            )
        watch = self.watch
        shown = None
        if watch:
            wi = self.names.index(watch)
            shown = (watch, wi, self.params[wi].requires_grad)
        compared: Deferred[tuple[str, ...]] = Deferred.now(())
        checks: Deferred[tuple[tuple[str, bool], ...]] = Deferred.now(())
        if rule is not None:  # read through ``facts`` (see ``sgd`` above)
            compared = Deferred(lambda: facts.get().lines, ())
            checks = Deferred(lambda: facts.get().checks, ())
        printed = self._lazy(
            lambda: self._step_printed(
                shown, optimizer, before, after, states, list(compared.get())
            ),
            NOT_KEPT_TEXT,
            before=True,
        )
        return {
            "printed": printed,
            "step_changes": tuple(changes),
            # Which moved, bit for bit: asked for by the parameters table, not by every step.
            "changed": self._lazy(
                lambda: tuple(n for n, a, b in zip(names, after, before) if not bit_equal(a, b)),
                names,
                before=True,
            ),
            "checks": checks,
        }

    @staticmethod
    def _step_printed(
        watch: tuple[str, int, bool] | None,
        optimizer: object,
        before: tuple[torch.Tensor, ...],
        after: list[torch.Tensor],
        states: list[dict[str, Any]],
        compared: list[str],
    ) -> str:
        """Step's printed output; reads nothing of the session (it may be reset by then)."""
        lines: list[str] = []
        if watch:
            name, i, grad = watch
            # Parameters wrapping the kept copies print exactly as the live one did then.
            then, now = nn.Parameter(before[i], grad), nn.Parameter(after[i], grad)
            lines += [f"print(net.{name})  # before step", repr(then)]
            lines += [f"print(net.{name})  # after step", repr(now)]
            lines += optimizer_state_lines(optimizer, states[i], name)
        return "\n".join(lines + compared)

    # -------------------------------------------------------------- param states
    def _states(self, changed: tuple[str, ...], full: bool) -> list[ParamState]:
        if not changed and not full and len(self._param_states) == len(self.names):
            return self._param_states  # forward, loss: no parameter changed
        old = {s.name: s for s in self._param_states}
        changed_set = frozenset(changed)  # a ResNet's 62 names: no tuple scan per parameter
        out = []
        cached = self._phase_summaries
        for name, p in zip(self.names, self.params):
            prev = old.get(name)
            if full or prev is None or name in changed_set:
                if self.done is Phase.STEP and prev is not None:
                    grad = prev.grad  # optimizers read .grad, never write it: same numbers
                elif ("grad", name) in cached:
                    grad = cached[("grad", name)]
                else:
                    grad = self._summary(p.grad) if p.grad is not None else None
                if ("data", name) in cached:
                    data = cached[("data", name)]
                elif prev is not None:
                    data = prev.data  # only define and step move parameters (both cache)
                else:
                    data = summarize(p.detach().clone()).compute()
                out.append(ParamState(name, tuple(p.shape), p.numel(), p.requires_grad, data, grad))
            else:
                out.append(prev)
        return out

    # ------------------------------------------------------------------ queries
    def tensor(self, name: str, which: str = "data") -> torch.Tensor | None:
        """A detached copy of a parameter (``data``), its ``grad``, or an activation."""
        if which == "activation":
            t = self.activations.get(name)
            return None if t is None else t.clone()
        if name not in self.names:
            return None
        p = self.param(name)
        t = p.grad if which == "grad" else p
        return None if t is None else t.detach().clone()
