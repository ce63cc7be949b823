"""The training loop as a state machine: one call runs one phase and returns its record.

The session owns model, optimizer, batch and history. Every phase boundary is checkpointed;
a phase that raises is undone by restoring the checkpoint it started from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn

from .bitwise import bit_equal
from .blame import USER_ERRORS
from .capture import Scratch, capture_outputs, keep_grad
from .checks import cross_entropy_nn_vs_f, optimizer_state_lines, sgd_vs_manual
from .codegen import phase_code
from .failures import PhaseFailure, phase_error
from .graph import walk_grad_fn
from .history import DEFAULT_BUDGET_BYTES, Checkpoint, History
from .modulemap import ModuleCall, record_calls
from .phases import Phase, next_iteration, next_phase
from .recipe import Recipe, Setup, build
from .records import (
    Activation,
    Diagnostic,
    GradChange,
    ParamState,
    PhaseError,
    PhaseRecord,
    StepChange,
)
from .rewind import Rewinding
from .summary import TensorSummary, summarize

SGD_RULES = ("sgd", "manual")


Diagnose = Callable[["Session", PhaseRecord], tuple[Diagnostic, ...]]


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
            return phase_error(phase, iteration, exc)
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
        with (
            capture_outputs(self.setup.net, captured, nonfinite),
            record_calls(self.setup.net, calls),
        ):
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
                handles.append(p.register_hook(keep_grad(fresh, i)))
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
        scratch = Scratch(max((p.numel() for p in self.params), default=0))
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


def _with_diagnostics(record: PhaseRecord, diags: tuple[Diagnostic, ...]) -> PhaseRecord:
    return replace(record, diagnostics=tuple(diags))
