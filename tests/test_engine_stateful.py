"""Random sequences of next / rewind / accumulate / reset / lr against plain-PyTorch invariants.

A hypothesis state machine drives one ``Session`` and, after every rule, checks what the engine
did with computations of its own:

- rewind is bit-exact and replay reproduces: the first time a position (the phases run since
  define, each with the lr and accumulate setting it ran under) is reached, the test clones
  params, grads and optimizer state; every later arrival at that position, by rewinding or by
  replaying, must give ``torch.equal`` tensors;
- backward: ``.grad`` after = before + fresh (or fresh when before is ``None``), the fresh
  gradient computed by ``torch.autograd.grad`` on a deep copy of the model;
- step: SGD gives ``before.add(grad, alpha=-lr)``, the manual rule ``before.sub(grad * lr)``;
- zero_grad gives ``None`` or zeros (or leaves ``.grad`` alone when accumulating);
- forward and loss change no parameter and no gradient; the loss is what the copy computes;
- a failing phase (the NaN guard at a large lr) leaves the position's snapshot intact;
- history bytes stay within the budget and equal a recount of its distinct tensors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import hypothesis.strategies as st
import torch
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import engine.session as session_module
from engine import Phase, PhaseError, Recipe, Session
from engine.records import NOT_KEPT_TEXT

BUDGET = 3 * 2**20  # small enough that long runs drop old checkpoints (tutorial Net: ~0.6 MB/it)
LRS = (0.01, 0.1, 0.003, 2.0)  # 2.0 makes some runs diverge: the NaN guard must undo cleanly

Tensors = list[torch.Tensor | None]


@dataclass(frozen=True)
class Snapshot:
    done: Phase | None
    iteration: int
    params: Tensors
    grads: Tensors
    opt: list[dict[str, torch.Tensor]]
    loss: float | None


def _clone(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().clone()


def _eq(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and torch.equal(a, b)


def take(s: Session) -> Snapshot:
    if s.setup is None:
        return Snapshot(s.done, s.iteration, [], [], [], None)
    state = s.setup.optimizer.state
    opt = [
        {k: v.clone() for k, v in state.get(p, {}).items() if isinstance(v, torch.Tensor)}
        for p in s.params
    ]
    return Snapshot(
        s.done,
        s.iteration,
        [_clone(p) for p in s.params],
        [_clone(p.grad) for p in s.params],
        opt,
        s.loss_value,
    )


def differences(a: Snapshot, b: Snapshot) -> list[str]:
    out = []
    if (a.done, a.iteration) != (b.done, b.iteration):
        out.append(f"position {(a.done, a.iteration)} != {(b.done, b.iteration)}")
    if len(a.params) != len(b.params):
        return [*out, "parameter count"]
    out += [f"param {i}" for i, (x, y) in enumerate(zip(a.params, b.params)) if not _eq(x, y)]
    out += [f"grad {i}" for i, (x, y) in enumerate(zip(a.grads, b.grads)) if not _eq(x, y)]
    for i, (x, y) in enumerate(zip(a.opt, b.opt)):
        if x.keys() != y.keys() or not all(_eq(x[k], y[k]) for k in x):
            out.append(f"optimizer state {i}")
    if a.loss != b.loss:
        out.append(f"loss {a.loss} != {b.loss}")
    return out


def recount(s: Session) -> int:
    """History bytes computed from scratch: every distinct tensor of every kept checkpoint."""
    seen: dict[int, torch.Tensor] = {}
    for cp in s.history._items:
        for t in cp.tensors():
            seen[id(t)] = t
    return sum(t.numel() * t.element_size() for t in seen.values())


def fresh_gradients(s: Session) -> Tensors:
    """This iteration's gradient, computed on a copy of the model with plain autograd."""
    assert s.setup is not None
    net = copy.deepcopy(s.setup.net)
    params = list(net.parameters())
    input, target = s.setup.data.batch(s.iteration)
    loss = s.setup.criterion(net(input), target)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return list(grads)


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self.path: list[tuple[Phase, float, bool]] = []
        self.seen: dict[tuple[tuple[Phase, float, bool], ...], Snapshot] = {}

    @initialize(
        model=st.sampled_from(["mlp", "lenet"]),
        optimizer=st.sampled_from(["sgd", "manual", "momentum"]),
        zero_grad=st.sampled_from(["none", "zeros"]),
        accumulate=st.booleans(),
        seed=st.integers(0, 3),
    )
    def start(
        self, model: str, optimizer: str, zero_grad: str, accumulate: bool, seed: int
    ) -> None:
        recipe = Recipe(model=model, optimizer=optimizer, zero_grad=zero_grad, seed=seed)
        # diagnose=False: diagnostics are not under test here and only cost time.
        self.session = Session(recipe, accumulate=accumulate, history_bytes=BUDGET, diagnose=False)
        # A short tail of records past the history's reach, so runs let old records go (read
        # when phases run; put back by teardown, which runs once a session exists).
        self._kept = (session_module.KEEP_RECORDS, session_module.TRIM_CHUNK)
        session_module.KEEP_RECORDS, session_module.TRIM_CHUNK = 6, 2
        self.path = []
        self.seen = {(): take(self.session)}

    def teardown(self) -> None:
        if self.session is not None:
            session_module.KEEP_RECORDS, session_module.TRIM_CHUNK = self._kept

    @property
    def s(self) -> Session:
        assert self.session is not None
        return self.session

    def arrive(self) -> None:
        """Compare with the first visit of this position, or remember it as the first."""
        now = take(self.s)
        key = tuple(self.path)
        first = self.seen.setdefault(key, now)
        if first is not now:
            assert not differences(first, now), (key[-3:], differences(first, now))

    # ------------------------------------------------------------------ rules
    @rule(n=st.integers(1, 7))
    def next(self, n: int) -> None:
        """Run up to ``n`` phases (several per rule, so runs get past a second backward)."""
        for _ in range(n):
            if not self.next_one():
                return

    def next_one(self) -> bool:
        s = self.s
        phase = s.next_phase
        before = take(s)
        fresh = fresh_gradients(s) if phase is Phase.BACKWARD and s.loss is not None else None
        result = s.run_next()
        if isinstance(result, PhaseError):
            # Only the NaN guard can fail here; the session must be exactly as before.
            assert "NaN guard" in result.message, result.line()
            assert not differences(before, take(s)), result.line()
            return False
        assert result.phase is phase
        after = take(s)
        self.check_phase(phase, before, after, fresh)
        self.path.append((phase, s.lr, s.accumulate))
        self.arrive()
        return True

    def check_phase(
        self, phase: Phase, before: Snapshot, after: Snapshot, fresh: Tensors | None
    ) -> None:
        s = self.s
        if phase in (Phase.FORWARD, Phase.LOSS):
            assert all(_eq(x, y) for x, y in zip(before.params, after.params))
            assert all(_eq(x, y) for x, y in zip(before.grads, after.grads))
        if phase is Phase.LOSS:
            assert s.setup is not None
            net = copy.deepcopy(s.setup.net)
            input, target = s.setup.data.batch(s.iteration)
            with torch.no_grad():
                expected = s.setup.criterion(net(input), target).item()
            assert after.loss == expected
        if phase is Phase.ZERO_GRAD:
            if s.accumulate:
                assert all(_eq(x, y) for x, y in zip(before.grads, after.grads))
            elif s.recipe.zero_grad == "none":
                assert all(g is None for g in after.grads)
            else:
                for b, a in zip(before.grads, after.grads):
                    assert (b is None and a is None) or (a is not None and not a.any())
        if phase is Phase.BACKWARD:
            assert fresh is not None
            for b, f, a in zip(before.grads, fresh, after.grads):
                if f is None:
                    assert _eq(a, b)
                elif b is None:
                    assert _eq(a, f)
                else:
                    assert _eq(a, b + f), "grad after backward != before + fresh"
        if phase is Phase.STEP and s.recipe.optimizer in ("sgd", "manual"):
            for p0, g, p1 in zip(before.params, before.grads, after.params):
                assert p0 is not None and p1 is not None
                if g is None:
                    assert _eq(p1, p0)
                elif s.recipe.optimizer == "sgd":
                    assert _eq(p1, p0.add(g, alpha=-s.lr)), "SGD step != p - lr*grad"
                else:
                    assert _eq(p1, p0.sub(g * s.lr)), "manual step != p - (grad * lr)"
        if phase is Phase.STEP:
            assert all(_eq(x, y) for x, y in zip(before.grads, after.grads))

    @rule(k=st.integers(1, 8))
    def rewind(self, k: int) -> None:
        undone = self.s.rewind(k)
        assert 0 <= undone <= min(k, len(self.path))
        if undone < k:
            # Only the budget (dropped checkpoints) or the start can stop a rewind early.
            assert not self.s.can_rewind() or undone == 0
        del self.path[len(self.path) - undone :]
        self.arrive()

    @rule()
    def toggle_accumulate(self) -> None:
        self.s.set_accumulate(not self.s.accumulate)

    @rule(lr=st.sampled_from(LRS))
    def change_lr(self, lr: float) -> None:
        self.s.set_lr(lr)
        if self.s.setup is not None:
            assert all(g["lr"] == lr for g in self.s.setup.optimizer.param_groups)

    @precondition(lambda self: self.session is not None and len(self.path) > 0)
    @rule()
    def reset(self) -> None:
        self.s.reset()
        self.path = []
        self.arrive()

    # ------------------------------------------------------------------ invariants
    @invariant()
    def history_within_budget(self) -> None:
        if self.session is None:
            return
        h = self.s.history
        assert h.nbytes() == recount(self.s)
        assert h.nbytes() <= h.budget_bytes or len(h) == 1

    @invariant()
    def lazy_values_read_only_kept_tensors(self) -> None:
        if self.session is None:
            return
        s = self.s
        # A value computed later reads a tensor nothing may write: one the history holds.
        assert all(s.history.holds_id(k) for k in s.releases.waiting_on())
        record = s.last_record
        if record is not None:  # the current state's record is whole
            record.resolve()
            summaries = [x for p in record.params for x in (p.data, p.grad) if x is not None]
            assert all(x.available for x in summaries)
            # Except what backward and step read of the checkpoint before theirs, when nothing
            # read it before that checkpoint was dropped and a rewind came back to them (their
            # checkpoint is then the oldest kept: the only one left).
            oldest = len(s.history) == 1 and s.history.dropped > 0
            if not (oldest and record.phase in (Phase.BACKWARD, Phase.STEP)):
                assert record.printed != NOT_KEPT_TEXT
                assert all(c.sgd.kept for c in record.step_changes)

    @invariant()
    def records_follow_the_path(self) -> None:
        if self.session is None:
            return
        s = self.s
        assert s.record_count == len(self.path)
        # The records kept are the path's last ones, and every one a rewind can reach.
        assert [r.phase for r in s.records] == [p for p, _, _ in self.path[s.records_dropped :]]
        assert s.records_dropped <= max(0, s.history.oldest.records - 1 - session_module.LOOKBACK)
        assert s.done is (self.path[-1][0] if self.path else None)


EngineMachine.TestCase.settings = settings(
    max_examples=20,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineStateful = EngineMachine.TestCase
