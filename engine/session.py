"""The training loop as a state machine: one call runs one phase and returns its record.

The session owns model, optimizer, batch and history. Every phase boundary is checkpointed;
a phase that raises is undone by restoring the checkpoint it started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from .bitwise import bit_equal
from .blame import USER_ERRORS, ModuleFailure, blame_modules
from .checks import cross_entropy_nn_vs_f, optimizer_state_lines, sgd_vs_manual
from .codegen import phase_code
from .graph import walk_grad_fn
from .history import DEFAULT_BUDGET_BYTES, Checkpoint, History
from .modulemap import ModuleCall, record_calls
from .phases import Phase, next_iteration, next_phase
from .recipe import Recipe, RecipeError, Setup, build
from .records import (
    Activation,
    Diagnostic,
    GradChange,
    ParamState,
    PhaseError,
    PhaseRecord,
    StepChange,
)
from .summary import TensorSummary, summarize

SGD_RULES = ("sgd", "manual")
# Phases after which the autograd graph of this iteration is alive (rebuilt on rewind).
GRAPH_LIVE = (Phase.FORWARD, Phase.LOSS, Phase.ZERO_GRAD)


class PhaseFailure(RuntimeError):
    """A check of the session's own (non-finite loss, non-scalar loss, …) that stops a phase."""


Diagnose = Callable[["Session", PhaseRecord], tuple[Diagnostic, ...]]


class Session:
    """One training loop, stepped a phase at a time."""

    def __init__(
        self,
        recipe: Recipe | None = None,
        *,
        accumulate: bool = False,
        history_bytes: int = DEFAULT_BUDGET_BYTES,
        nan_guard: bool = True,
        diagnose: Diagnose | bool | None = None,
    ) -> None:
        self.recipe = (recipe or Recipe()).validate()
        self.accumulate = accumulate
        self.nan_guard = nan_guard
        self.lr = self.recipe.lr
        self.history = History(history_bytes)
        # None: engine.diagnostics (the app's pane and trace's lines); False: none at all.
        if diagnose is None or diagnose is True:
            from .diagnostics import diagnose as default_diagnose

            diagnose = default_diagnose
        self._diagnose: Diagnose | None = diagnose or None
        self._reset_state()

    # ------------------------------------------------------------------ state
    def _reset_state(self) -> None:
        self.setup: Setup | None = None
        self.done: Phase | None = None
        self.iteration = 0
        self.output: torch.Tensor | None = None
        self.loss: torch.Tensor | None = None
        self.loss_value: float | None = None
        self.backwards = 0
        self.records: list[PhaseRecord] = []
        self.names: list[str] = []
        self.params: list[nn.Parameter] = []
        self.activations: dict[str, torch.Tensor] = {}
        # Modules whose forward output held NaN/Inf, in the order they returned.
        self.nonfinite_modules: tuple[str, ...] = ()
        # The submodule calls of the forward behind ``output``: the loss tags its graph with them.
        self._module_calls: tuple[ModuleCall, ...] = ()
        self._param_states: list[ParamState] = []
        # Why the latest ``rewind`` undid nothing, when user code made it fail.
        self.rewind_error: PhaseError | None = None
        # Per-phase scratch: summaries computed while running (reused for the record), the RNG
        # this iteration's forward found, and step's tensors bit-equal to the new parameters.
        self._phase_summaries: dict[tuple[str, str], TensorSummary] = {}
        self._forward_rng: torch.Tensor | None = None
        self._step_params: list[torch.Tensor | None] | None = None
        self.history.clear()
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
        try:
            record = self._run(phase, iteration)
        # User model code can raise anything; this is the one place it is caught and reported.
        except USER_ERRORS as exc:
            # A backward that raised may have freed part of its graph: rebuild it instead, and
            # keep the graph it had only if the user's forward raises while rebuilding.
            if phase is not Phase.BACKWARD or self._restore_rebuilding(self.history.current):
                self._restore(self.history.current, recompute=False)
                self._set_live(live)
            return _error(phase, iteration, exc)
        self.records.append(record)
        self._checkpoint(phase)
        return record

    def run_iteration(self) -> list[PhaseRecord | PhaseError]:
        """Run phases until a ``step`` completes (or one fails)."""
        out: list[PhaseRecord | PhaseError] = []
        while True:
            result = self.run_next()
            out.append(result)
            if isinstance(result, PhaseError) or result.phase is Phase.STEP:
                return out

    def _run(self, phase: Phase, iteration: int) -> PhaseRecord:
        run = {
            Phase.DEFINE: self._define,
            Phase.FORWARD: self._forward,
            Phase.LOSS: self._loss,
            Phase.ZERO_GRAD: self._zero_grad,
            Phase.BACKWARD: self._backward,
            Phase.STEP: self._step,
        }[phase]
        # Summaries the phase computed anyway (grads after backward, params after step), by
        # (which, name): ``_states`` reuses them instead of summarising the same tensor again.
        self._phase_summaries = {}
        fields = run(iteration)
        self.done = phase
        self.iteration = iteration
        if phase is Phase.LOSS:
            self.loss_value = fields["loss"]
        elif phase in (Phase.FORWARD, Phase.DEFINE):
            self.loss_value = None
        changed = fields.pop("changed", ())
        self._param_states = self._states(changed, full=phase is Phase.DEFINE)
        record = PhaseRecord(
            phase=phase,
            iteration=iteration,
            skipped=fields.pop("skipped", False),
            code=phase_code(self.code_recipe, phase, self.accumulate),
            printed=fields.pop("printed", ""),
            loss=self.loss_value,
            params=tuple(self._param_states),
            changed=tuple(changed),
            backwards=self.backwards,
            **{k: v for k, v in fields.items() if k != "loss"},
        )
        if self._diagnose is not None:
            record = _with_diagnostics(record, self._diagnose(self, record))
        return record

    # ------------------------------------------------------------------ phases
    def _define(self, iteration: int) -> dict[str, Any]:
        self.setup = build(self.recipe)
        self._apply_lr()
        pairs = list(self.setup.net.named_parameters())
        self.names = [n for n, _ in pairs]
        self.params = [p for _, p in pairs]
        self.activations = {}
        self.output = self.loss = None
        self.backwards = 0
        printed = [repr(self.setup.net), "", "params = list(net.parameters())"]
        printed.append(f"print(len(params))  # {len(self.params)}")
        if self.params:
            printed.append(f"print(params[0].size())  # {self.params[0].size()}")
        return {"printed": "\n".join(printed), "changed": tuple(self.names)}

    def _forward(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        input, _ = self.setup.data.batch(iteration)
        self._forward_rng = torch.get_rng_state()
        captured: dict[str, tuple[str, torch.Tensor]] = {}
        nonfinite: list[str] = []
        calls: list[ModuleCall] = []
        with _capture(self.setup.net, captured, nonfinite), record_calls(self.setup.net, calls):
            output = self.setup.net(input)
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
        self.nonfinite_modules = tuple(nonfinite)
        acts = tuple(
            Activation(name, kind, tuple(t.shape), summarize(t))
            for name, (kind, t) in captured.items()
        )
        fields: dict[str, Any] = {"printed": f"print(output)\n{output!r}", "activations": acts}
        labels = getattr(self.setup.data, "labels", None)
        if labels is not None and output.dim() == 2:  # digits: for accuracy (engine.digits)
            fields["labels"] = tuple(labels(iteration).tolist())
            fields["predictions"] = tuple(output.detach().argmax(1).tolist())
        return fields

    def _loss(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None and self.output is not None
        _, target = self.setup.data.batch(iteration)
        if isinstance(self.setup.criterion, nn.MSELoss) and self.output.shape != target.shape:
            # MSELoss would broadcast with only a warning: a silent wrong loss is worse.
            raise PhaseFailure(
                f"MSELoss: output {list(self.output.shape)} vs target {list(target.shape)}"
            )
        loss = self.setup.criterion(self.output, target)
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
        printed = [f"print(loss)\n{loss!r}"]
        node = loss.grad_fn
        labels = [
            "loss.grad_fn",
            "loss.grad_fn.next_functions[0][0]",
            "loss.grad_fn.next_functions[0][0].next_functions[0][0]",
        ]
        for label in labels:
            if node is None:
                break
            printed.append(f"print({label})  # <{type(node).__name__}>")
            node = node.next_functions[0][0] if node.next_functions else None
        lines, checks = cross_entropy_nn_vs_f(self.setup.criterion, self.output, target, loss)
        printed += lines
        return {"printed": "\n".join(printed), "loss": value, "graph": graph, "checks": checks}

    def _zero_grad(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        watch = self.watch
        if self.accumulate:
            grad = self.param(watch).grad if watch else None
            printed = f"# zero_grad skipped: .grad keeps {self.backwards} backward(s)"
            if watch:
                printed += f"\nprint(net.{watch}.grad)\n{grad!r}"
            return {"printed": printed, "skipped": True, "zero_grad_mode": None}
        had = [n for n, p in zip(self.names, self.params) if p.grad is not None]
        set_to_none = self.recipe.zero_grad == "none"
        if not set_to_none:
            self._own_grads()  # zeroing is in place; the checkpoint's grads must survive it
        self.setup.optimizer.zero_grad(set_to_none=set_to_none)
        self.backwards = 0
        printed = ""
        if watch:
            printed = f"print(net.{watch}.grad)\n{self.param(watch).grad!r}"
        return {
            "printed": printed,
            "changed": tuple(had),
            "zero_grad_mode": "none" if set_to_none else "zeros",
        }

    def _backward(self, iteration: int) -> dict[str, Any]:
        if self.loss is None:
            raise PhaseFailure("no live graph: run forward and loss before backward")
        self._own_grads()
        before = [p.grad for p in self.params]
        before_copy = self.history.current.grads  # immutable clones of exactly these values
        fresh: dict[int, torch.Tensor] = {}
        handles = []
        for i, p in enumerate(self.params):
            if p.requires_grad and before[i] is not None:
                # The hook sees this backward's contribution before AccumulateGrad adds it in.
                handles.append(p.register_hook(_keep(fresh, i)))
        watch = self.watch
        watch_before = (
            repr(self.param(watch).grad.clone())
            if watch and self.param(watch).grad is not None
            else "None"
        )
        try:
            self.loss.backward()
        finally:
            for h in handles:
                h.remove()
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
            if prev is None:
                after_s = summarize(after)
                self._phase_summaries[("grad", name)] = after_s
                changes.append(GradChange(name, None, after_s, after_s, False, True))
                continue
            contrib = fresh.get(i)
            before_s = old_states[i].grad if i < len(old_states) else summarize(prev)
            after_s = summarize(after)
            self._phase_summaries[("grad", name)] = after_s
            if contrib is None:  # no gradient flowed here this time
                changes.append(
                    GradChange(name, before_s, None, after_s, True, bit_equal(after, prev))
                )
                continue
            exact = bit_equal(after, prev + contrib)
            changes.append(GradChange(name, before_s, summarize(contrib), after_s, True, exact))
        printed = ""
        if watch:
            after_w = self.param(watch).grad
            printed = (
                f"print('{watch}.grad before backward')\n{watch_before}\n"
                f"print('{watch}.grad after backward')\n{after_w!r}"
            )
        return {"printed": printed, "grad_changes": tuple(changes), "changed": tuple(changed)}

    def _step(self, iteration: int) -> dict[str, Any]:
        assert self.setup is not None
        before = self.history.current.params
        optimizer = self.setup.optimizer
        watch = self.watch
        watch_before = repr(self.param(watch)) if watch else ""
        optimizer.step()
        after_s = [summarize(p) for p in self.params]
        if self.nan_guard:
            # The summaries count NaN and Inf exactly: the guard needs no pass of its own.
            bad = [n for n, a in zip(self.names, after_s) if not a.finite]
            if bad:
                raise PhaseFailure(f"step made {bad[0]} non-finite (NaN guard)")
        changes = []
        changed = []
        sgd = self.recipe.optimizer in SGD_RULES
        # Per parameter, a tensor bit-equal to its new value that nothing else holds, for the
        # checkpoint to keep instead of cloning the parameter again (see _checkpoint).
        self._step_params = [None] * len(self.params)
        # Δ and lr·g live only until summarised: two scratch buffers serve every parameter
        # (a fresh multi-megabyte tensor costs more in page faults than the subtraction).
        scratch = _Scratch(max((p.numel() for p in self.params), default=0))
        for i, (name, p) in enumerate(zip(self.names, self.params)):
            after = p.detach()
            self._phase_summaries[("data", name)] = after_s[i]
            delta = torch.sub(after, before[i], out=scratch.get(0, after))
            matches = err = None
            if sgd and p.grad is not None:
                g = p.grad
                expected = (
                    before[i].add(g, alpha=-self.lr)
                    if self.recipe.optimizer == "sgd"
                    else before[i].sub(g * self.lr)
                )
                matches = bit_equal(after, expected)
                if matches:
                    self._step_params[i] = expected
                if g.numel():
                    # max |Δ + lr·g|, with one temporary instead of three: lr·g + Δ equals
                    # Δ + lr·g bit for bit (float addition commutes).
                    gap = torch.mul(g, self.lr, out=scratch.get(1, g))
                    gap.add_(delta)
                    err = float(gap.abs_().max().item())
                else:
                    err = 0.0
            state = tuple(
                (k, summarize(v))
                for k, v in optimizer.state.get(p, {}).items()
                if isinstance(v, torch.Tensor)
            )
            if not bit_equal(after, before[i]):
                changed.append(name)
            changes.append(
                StepChange(
                    name,
                    self._param_states[i].data,
                    after_s[i],
                    summarize(delta),
                    matches,
                    err,
                    state,
                )
            )
        printed = ""
        if watch:
            printed = f"print(net.{watch})  # before step\n{watch_before}\nprint(net.{watch})  # after step\n{self.param(watch)!r}"
            state_lines = optimizer_state_lines(optimizer, self.param(watch), watch)
            printed = "\n".join([printed, *state_lines])
        checks: tuple[tuple[str, bool], ...] = ()
        if sgd:
            lines, checks = sgd_vs_manual(before, [p.grad for p in self.params], self.lr)
            printed = "\n".join([printed, *lines]) if printed else "\n".join(lines)
        return {
            "printed": printed,
            "step_changes": tuple(changes),
            "changed": tuple(changed),
            "checks": checks,
        }

    # -------------------------------------------------------------- param states
    def _states(self, changed: tuple[str, ...], full: bool) -> list[ParamState]:
        old = {s.name: s for s in self._param_states}
        out = []
        for name, p in zip(self.names, self.params):
            prev = old.get(name)
            if full or prev is None or name in changed:
                cached = self._phase_summaries
                if self.done is Phase.STEP and prev is not None:
                    grad = prev.grad  # optimizers read .grad, never write it: same numbers
                elif ("grad", name) in cached:
                    grad = cached[("grad", name)]
                else:
                    grad = summarize(p.grad) if p.grad is not None else None
                if ("data", name) in cached:
                    data = cached[("data", name)]
                elif full or prev is None or self.done in (Phase.STEP, Phase.DEFINE):
                    data = summarize(p)
                else:
                    data = prev.data
                out.append(ParamState(name, tuple(p.shape), p.numel(), p.requires_grad, data, grad))
            else:
                out.append(prev)
        return out

    # ------------------------------------------------------------------ history
    def _checkpoint(self, phase: Phase) -> None:
        assert self.setup is not None
        prev = self.history.current
        fresh = prev.done is None
        net = self.setup.net
        params = prev.params
        if fresh or phase in (Phase.DEFINE, Phase.STEP):
            kept = self._step_params if phase is Phase.STEP else None
            params = tuple(
                kept[i] if kept is not None and kept[i] is not None else p.detach().clone()
                for i, p in enumerate(self.params)
            )
            self._step_params = None
        grads = prev.grads
        if fresh or phase in (Phase.DEFINE, Phase.ZERO_GRAD, Phase.BACKWARD):
            # Shared, not cloned (copy-on-write): every in-place write to a .grad goes through
            # ``_own_grads`` first, which gives the parameter its own copy. Saves a full copy of
            # every gradient per backward, in time and memory.
            grads = tuple(p.grad for p in self.params)
        buffers = prev.buffers
        if fresh or phase in (Phase.DEFINE, Phase.FORWARD):
            buffers = tuple(b.detach().clone() for b in net.buffers())
        opt_state = prev.opt_state
        if fresh or phase in (Phase.DEFINE, Phase.STEP):
            state = self.setup.optimizer.state
            opt_state = tuple(
                {
                    k: (v.clone() if isinstance(v, torch.Tensor) else v)
                    for k, v in state.get(p, {}).items()
                }
                for p in self.params
            )
        forward_rng = self._forward_rng if phase is Phase.FORWARD else prev.forward_rng
        if phase is Phase.DEFINE:
            forward_rng = None
        self.history.push(
            Checkpoint(
                done=phase,
                iteration=self.iteration,
                params=params,
                grads=grads,
                buffers=buffers,
                opt_state=opt_state,
                rng=torch.get_rng_state(),
                forward_rng=forward_rng,
                backwards=self.backwards,
                loss=self.loss_value,
                records=len(self.records),
                activations=tuple(self.activations.items())
                if phase is Phase.FORWARD
                else (() if phase is Phase.DEFINE else prev.activations),
            )
        )

    def _own_grads(self) -> None:
        """Give every parameter a .grad no checkpoint holds, before writing into it in place."""
        for p in self.params:
            if p.grad is not None and self.history.holds(p.grad):
                p.grad = p.grad.clone()

    def can_rewind(self, n: int = 1) -> bool:
        return self.history.can_rewind(n)

    def rewind(self, n: int = 1) -> int:
        """Undo up to ``n`` phases; returns how many were undone (history may be shorter).

        All or nothing: when the graph of the checkpoint rewound to cannot be recomputed (the
        user's forward raises this time), nothing changes, 0 is returned and
        ``rewind_error`` says why.
        """
        self.rewind_error = None
        live, records = self._live(), list(self.records)
        versions = [p._version for p in self.params]
        popped: list[Checkpoint] = []
        while len(popped) < n and self.history.can_rewind():
            popped.append(self.history.pop())
        if not popped:
            return 0
        target = self.history.current
        failure = self._restore_rebuilding(target)
        if failure is None:
            return len(popped)
        # The recomputed forward ran (the loss failed) or did not (the forward failed).
        phase = Phase.FORWARD if self.output is None else Phase.LOSS
        for cp in reversed(popped):
            self.history.push(cp)
        self.records[:] = records
        self._restore(self.history.current, recompute=False)
        if [p._version for p in self.params] == versions:
            self._set_live(live)
        # The attempt wrote into parameters the old graph saved (same values, new version
        # counters), so that graph would refuse to backward: build it again, or go without.
        elif (
            self.history.current.done in GRAPH_LIVE
            and self._restore_rebuilding(self.history.current) is not None
        ):
            self._restore(self.history.current, recompute=False)
        self.rewind_error = _error(phase, target.iteration, failure)
        return 0

    def _restore_rebuilding(self, cp: Checkpoint) -> BaseException | None:
        """Restore ``cp`` and recompute its graph; what user code raised, if it did (then the
        session is half restored and the caller must restore something whole)."""
        try:
            self._restore(cp, recompute=True)
        except USER_ERRORS as exc:
            return exc
        return None

    def _live(self) -> tuple[Any, ...]:
        """What a checkpoint does not hold: the live graph of this iteration and its by-products."""
        return (
            self.output,
            self.loss,
            dict(self.activations),
            self.nonfinite_modules,
            self._module_calls,
        )

    def _set_live(self, live: tuple[Any, ...]) -> None:
        (
            self.output,
            self.loss,
            self.activations,
            self.nonfinite_modules,
            self._module_calls,
        ) = live

    def _restore(self, cp: Checkpoint, *, recompute: bool) -> None:
        if cp.done is None:
            # RNG first: _reset_state checkpoints the RNG it finds as the new starting point.
            if cp.rng is not None:
                torch.set_rng_state(cp.rng)
            self._reset_state()
            return
        assert self.setup is not None
        net = self.setup.net
        with torch.no_grad():
            for p, saved in zip(self.params, cp.params):
                # copy_ bumps the version counter even for equal values, and a live graph that
                # saved p (kept when a later phase fails) would then refuse to backward.
                if not bit_equal(p, saved):
                    p.copy_(saved)
            for p, g in zip(self.params, cp.grads):
                p.grad = g  # shared with the checkpoint: copy-on-write, see _checkpoint
        _replace_buffers(net, cp.buffers)
        state = self.setup.optimizer.state
        state.clear()
        for p, saved_state in zip(self.params, cp.opt_state):
            if saved_state:
                state[p] = {
                    k: (v.clone() if isinstance(v, torch.Tensor) else v)
                    for k, v in saved_state.items()
                }
        self._apply_lr()
        self.done = cp.done
        self.iteration = cp.iteration
        self.backwards = cp.backwards
        self.loss_value = cp.loss
        del self.records[cp.records :]
        self._param_states = list(self.records[-1].params) if self.records else []
        self.activations = dict(cp.activations)
        self.nonfinite_modules = ()
        self.output = self.loss = None
        if recompute and cp.done in GRAPH_LIVE:
            self._rebuild_graph(cp)
        if cp.rng is not None:
            torch.set_rng_state(cp.rng)

    def _rebuild_graph(self, cp: Checkpoint) -> None:
        """The autograd graph cannot be copied, so a rewind recomputes it from restored state."""
        assert self.setup is not None and cp.forward_rng is not None
        torch.set_rng_state(cp.forward_rng)
        input, target = self.setup.data.batch(cp.iteration)
        nonfinite: list[str] = []
        calls: list[ModuleCall] = []
        # Captured again to know which module first went non-finite (the loss names it) and
        # which module made each graph node (the loss tags them).
        with _capture(self.setup.net, {}, nonfinite), record_calls(self.setup.net, calls):
            self.output = self.setup.net(input)
        self.nonfinite_modules = tuple(nonfinite)
        self._module_calls = tuple(calls)
        if cp.done is not Phase.FORWARD:
            self.loss = self.setup.criterion(self.output, target)
        # The recomputed forward moved BatchNorm statistics again; the new graph saved the
        # moved tensors, so they are replaced, not overwritten in place.
        _replace_buffers(self.setup.net, cp.buffers)

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


def _replace_buffers(net: nn.Module, saved: tuple[torch.Tensor, ...]) -> None:
    """Put ``saved`` (in ``net.buffers()`` order) back as new tensors, never in place.

    BatchNorm's backward node saves ``running_mean``/``running_var``; writing into them would
    bump their version and a later backward through that graph would fail. A buffer shared
    by two modules stays shared.
    """
    new = {id(b): s.clone() for b, s in zip(net.buffers(), saved)}
    for module in net.modules():
        for name, b in module._buffers.items():
            if b is not None and id(b) in new:
                module._buffers[name] = new[id(b)]


class _Scratch:
    """Flat buffers reused as temporaries shaped like each parameter in turn."""

    def __init__(self, numel: int) -> None:
        self.numel = numel
        self.buffers: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def get(self, k: int, like: torch.Tensor) -> torch.Tensor:
        key = (k, like.dtype)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = torch.empty(self.numel, dtype=like.dtype)
        return buf[: like.numel()].view(like.shape)


def _keep(store: dict[int, torch.Tensor], i: int) -> Callable[[torch.Tensor], None]:
    def hook(grad: torch.Tensor) -> None:
        # No clone: this hook runs only for a parameter whose .grad exists, so AccumulateGrad
        # adds ``grad`` into .grad instead of adopting it, and nothing writes to ``grad``
        # before ``_backward`` has summarised it (the hook's reference also stops autograd
        # from reusing the buffer in place).
        store[i] = grad.detach()

    return hook


@contextmanager
def _capture(
    net: nn.Module,
    out: dict[str, tuple[str, torch.Tensor]],
    nonfinite: list[str] | None = None,
) -> Iterator[None]:
    """Forward hooks on every submodule: its output, detached and cloned (in-place ops follow).

    ``nonfinite`` collects, in the order modules return, those whose output holds NaN/Inf (a
    module called twice counts at the call that went bad). An exception escaping a module
    becomes a ``ModuleFailure`` naming the innermost module running (``engine.blame``).
    """
    handles = []
    for name, module in net.named_modules():
        label = name or "output"

        def hook(mod: nn.Module, args: Any, result: Any, label: str = label) -> None:
            if isinstance(result, torch.Tensor):
                kept = result.detach().clone()
                out[label] = (type(mod).__name__, kept)
                if (
                    nonfinite is not None
                    and kept.is_floating_point()
                    and label not in nonfinite
                    and not torch.isfinite(kept).all()
                ):
                    nonfinite.append(label)

        handles.append(module.register_forward_hook(hook))
    try:
        with blame_modules(net):
            yield
    finally:
        for h in handles:
            h.remove()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _message(exc: BaseException) -> str:
    """The error line's text: our own failures speak for themselves, others carry their type."""
    if isinstance(exc, (PhaseFailure, RecipeError, ModuleFailure)):
        return _one_line(exc)
    return f"{type(exc).__name__}: {_one_line(exc)}"


def _error(phase: Phase, iteration: int, exc: BaseException) -> PhaseError:
    original = exc.original if isinstance(exc, ModuleFailure) else exc
    return PhaseError(phase, iteration, type(original).__name__, _message(exc))


def _with_diagnostics(record: PhaseRecord, diags: tuple[Diagnostic, ...]) -> PhaseRecord:
    return replace(record, diagnostics=tuple(diags))
