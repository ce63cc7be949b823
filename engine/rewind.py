"""Checkpoints at phase boundaries, and rewinding to them: the session's history half.

A checkpoint holds parameters, grads, optimizer state, buffers and RNG; the autograd graph
cannot be copied, so rewinding to a phase where it was alive recomputes it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .attrs import restore, same, snapshot
from .bitwise import bit_equal
from .blame import USER_ERRORS
from .capture import capture_outputs, nonfinite
from .failures import phase_error
from .history import Checkpoint
from .lazy import Deferred
from .modulemap import ModuleCall
from .phases import Phase
from .userprints import Printed

# Phases after which the autograd graph of this iteration is alive (rebuilt on rewind).
GRAPH_LIVE = (Phase.FORWARD, Phase.LOSS, Phase.ZERO_GRAD)
# Phases that run no code of the user's (nntui's criteria and optimizers draw no random
# numbers): the global RNG leaves them as it found them, so their checkpoint shares the RNG
# state of the one before instead of copying the same 5 KB again.
RNG_FREE = (Phase.LOSS, Phase.ZERO_GRAD, Phase.STEP)


class Rewinding:
    """Mixed into ``Session``: checkpoint after each phase, restore on rewind or failure."""

    def _checkpoint(self, phase: Phase) -> None:
        assert self.setup is not None
        prev = self.history.current
        fresh = prev.done is None
        net = self.setup.net
        params = prev.params
        params_before = prev.params_before if phase in (Phase.LOSS, Phase.ZERO_GRAD) else ()
        if phase is Phase.FORWARD and self._new_params is not None:
            params_before = prev.params  # the forward changed some: see _forward
        if fresh or phase in (Phase.DEFINE, Phase.STEP) or self._new_params is not None:
            # The copies define and step made (their records' summaries read these very ones).
            kept = self._new_params
            params = (
                tuple(kept) if kept is not None else tuple(p.detach().clone() for p in self.params)
            )
            self._new_params = None
        grads = prev.grads
        if fresh or phase in (Phase.DEFINE, Phase.ZERO_GRAD, Phase.BACKWARD):
            # Shared, not cloned (copy-on-write): every in-place write to a .grad goes through
            # ``_own_grads`` first, which gives the parameter its own copy. Saves a full copy of
            # every gradient per backward, in time and memory.
            grads = tuple(p.grad for p in self.params)
        buffers = prev.buffers
        buffers_before = prev.buffers_before
        if fresh or phase in (Phase.DEFINE, Phase.FORWARD):
            buffers = tuple(b.detach().clone() for b in net.buffers())
            buffers_before = prev.buffers if phase is Phase.FORWARD else ()
        attrs, attrs_before = prev.attrs, prev.attrs_before
        if fresh or phase is Phase.DEFINE:
            attrs, attrs_before = snapshot(self._own_modules), ()
        else:
            # Every phase can run code of the user's (a backward hook, a custom autograd
            # Function): what it rebinds is kept. Most rebind nothing: the checkpoint then
            # shares the tuple before it (counted once by the history), and a recomputed
            # forward needs nothing put back.
            if phase is Phase.FORWARD and self._forward_attrs is not None:
                before, now = self._forward_attrs
                self._forward_attrs = None
                attrs_before = () if same(before, now) else before
            else:
                now = snapshot(self._own_modules)
            if not same(prev.attrs, now):
                attrs = now
        opt_state = prev.opt_state
        if fresh or phase in (Phase.DEFINE, Phase.STEP):
            state = self.setup.optimizer.state
            opt_state = tuple(
                self._new_opt_state
                if self._new_opt_state is not None
                else (
                    {
                        k: (v.clone() if isinstance(v, torch.Tensor) else v)
                        for k, v in state.get(p, {}).items()
                    }
                    for p in self.params
                )
            )
            self._new_opt_state = None
        rng_free = phase in RNG_FREE or (
            # A shipped model's backward runs no custom autograd code either.
            phase is Phase.BACKWARD and self._shipped
        )
        rng = prev.rng if rng_free and prev.rng is not None else torch.get_rng_state()
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
                buffers_before=buffers_before,
                params_before=params_before,
                attrs=attrs,
                attrs_before=attrs_before,
                opt_state=opt_state,
                rng=rng,
                forward_rng=forward_rng,
                backwards=self.backwards,
                loss=self.loss_value,
                records=self.record_count,
                activations=tuple(self.activations.items())
                if phase is Phase.FORWARD
                else (() if phase is Phase.DEFINE else prev.activations),
                live=self._live_tensors,
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
        k = min(n, len(self.history) - 1)
        if k <= 0:
            return 0
        # Restore first, pop after: popping releases what the dropped checkpoints alone held
        # (engine.lazy), which a failed attempt must not do to the records it keeps.
        target = self.history.back(k)
        failure = self._restore_rebuilding(target)
        if failure is None:
            if target.done is not None:  # rewinding to the start reset the history already
                for _ in range(k):
                    self.history.pop()
            # Here, not in _restore: a failed attempt puts the records back, and the log too.
            self.run_log.truncate(self.record_count)
            return k
        # The recomputed forward ran (the loss failed) or did not (the forward failed).
        phase = Phase.FORWARD if self.output is None else Phase.LOSS
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
        self.rewind_error = phase_error(phase, target.iteration, failure)
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
            self._nonfinite,
            self._module_calls,
        )

    def _set_live(self, live: tuple[Any, ...]) -> None:
        (
            self.output,
            self.loss,
            self.activations,
            self._nonfinite,
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
        replace_buffers(net, cp.buffers)
        if cp.attrs:
            restore(self._own_modules, cp.attrs)
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
        assert cp.records >= self.records_dropped, "records a checkpoint needs were let go"
        del self.records[cp.records - self.records_dropped :]
        self._param_states = list(self.records[-1].params) if self.records else []
        self.activations = dict(cp.activations)
        self._nonfinite = Deferred.now(())
        self.output = self.loss = None
        if recompute and cp.done in GRAPH_LIVE:
            self._rebuild_graph(cp)
        if cp.rng is not None:
            torch.set_rng_state(cp.rng)

    def _rebuild_graph(self, cp: Checkpoint) -> None:
        """The autograd graph cannot be copied, so a rewind recomputes it from restored state."""
        assert self.setup is not None and cp.forward_rng is not None
        torch.set_rng_state(cp.forward_rng)
        # From the buffers the forward found (BatchNorm's output does not read its running
        # statistics in training, but a model's own forward may read a buffer it updates).
        replace_buffers(self.setup.net, cp.buffers_before)
        if cp.attrs_before:  # and the attributes, if it rebound some (engine.attrs)
            restore(self._own_modules, cp.attrs_before)
        if cp.params_before:  # and the parameters, if it changed some (see Session._forward)
            with torch.no_grad():
                for p, saved in zip(self.params, cp.params_before):
                    p.copy_(saved)
        input, target = self.setup.data.batch(cp.iteration)
        captured: dict[str, tuple[str, torch.Tensor]] = {}
        returned: dict[str, int] = {}
        calls: list[ModuleCall] = []
        # Captured again to know which module first went non-finite (the loss names it) and
        # which module made each graph node (the loss tags them).
        # What it prints is dropped: the phase that printed it showed it when it ran.
        replayed = Printed()
        self._take_descriptors(self._carried)  # written before it: the next phase shows it
        with (
            self._prints(replayed),
            capture_outputs(self.setup.net, captured, returned, self._copy_only(), calls=calls),
            self._grads_untouched(),
        ):
            try:
                self.output = self.setup.net(input)
            finally:
                self._take_descriptors(replayed)  # or the next phase would show them
        self._nonfinite = Deferred.now(nonfinite(captured, returned))
        self._module_calls = tuple(calls)
        if cp.done is not Phase.FORWARD:
            self.loss = self.setup.criterion(self.output, target)
        # The recomputed forward moved BatchNorm statistics again; the new graph saved the
        # moved tensors, so they are replaced, not overwritten in place.
        replace_buffers(self.setup.net, cp.buffers)
        if cp.attrs:
            restore(self._own_modules, cp.attrs)  # what the original forward left


def replace_buffers(net: nn.Module, saved: tuple[torch.Tensor, ...]) -> None:
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
