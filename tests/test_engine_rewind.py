"""Rewind restores exactly; replay reproduces; a failing phase changes nothing."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.recipe import MODELS


def _state(s: Session) -> dict:
    opt = s.setup.optimizer.state
    return {
        "params": [p.detach().clone() for p in s.params],
        "grads": [None if p.grad is None else p.grad.clone() for p in s.params],
        "opt": [{k: v.clone() for k, v in opt.get(p, {}).items()} for p in s.params],
        "rng": torch.get_rng_state(),
        "where": (s.done, s.iteration, len(s.records)),
    }


def _same(a: dict, b: dict) -> bool:
    def eq(x, y):
        if x is None or y is None:
            return x is None and y is None
        return torch.equal(x, y)

    return (
        a["where"] == b["where"]
        and all(eq(x, y) for x, y in zip(a["params"], b["params"]))
        and all(eq(x, y) for x, y in zip(a["grads"], b["grads"]))
        and all(
            x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
            for x, y in zip(a["opt"], b["opt"])
        )
        and torch.equal(a["rng"], b["rng"])
    )


def test_rewind_every_distance_is_bit_exact_and_replay_reproduces() -> None:
    s = Session(Recipe(seed=11, optimizer="momentum", lr=0.05))
    states = []
    records = []
    s.run_next()
    states.append(_state(s))
    for _ in range(15):  # three iterations
        # Read in full now: a record's lazy values not read before a rewind removes it are
        # not kept (engine.lazy), and this test compares every one of them.
        records.append(s.run_next().resolve())
        states.append(_state(s))
    for back in (1, 2, 3, 5, 8, 15):
        assert s.rewind(back) == back
        assert _same(_state(s), states[-1 - back])
        replay = [s.run_next() for _ in range(back)]
        assert replay == records[-back:]
        assert _same(_state(s), states[-1])


def test_rewind_to_after_loss_rebuilds_a_working_graph() -> None:
    s = Session(Recipe(seed=4))
    for _ in range(6):
        s.run_next()
    grads_first = [p.grad.clone() for p in s.params]
    s.rewind(3)  # back to after loss of iteration 1: graph must be alive again
    assert s.done is Phase.LOSS and s.loss is not None
    s.run_next()  # zero_grad
    rec = s.run_next()  # backward through the rebuilt graph
    assert rec.phase is Phase.BACKWARD
    for g, p in zip(grads_first, s.params):
        assert torch.equal(g, p.grad)


def test_rewind_past_define_and_reset() -> None:
    s = Session()
    s.run_iteration()
    assert s.rewind(100) == 6
    assert s.done is None and s.setup is None and s.records == []
    assert not s.can_rewind()
    first = [r.resolve() for r in s.run_iteration()]  # read before reset releases them
    s.reset()
    assert s.done is None and s.records == []
    assert s.run_iteration() == first


def test_rewind_keeps_settings() -> None:
    s = Session()
    s.run_iteration()
    s.set_accumulate(True)
    s.set_lr(0.5)
    s.rewind(2)
    assert s.accumulate and s.lr == 0.5
    assert s.setup.optimizer.param_groups[0]["lr"] == 0.5


def test_history_is_bounded_by_budget() -> None:
    budget = 1_000_000  # bytes: room for a few phases of the tutorial Net (~250 KB a copy)
    s = Session(history_bytes=budget)
    states = []
    for _ in range(1 + 5 * 4):
        s.run_next()
        states.append(_state(s))
        assert s.history.nbytes() <= budget
    assert s.history.dropped > 0
    reach = len(s.history) - 1
    assert 0 < reach < len(states) - 1
    # What is left still rewinds exactly, as far as it reaches and no further.
    assert s.rewind(1000) == reach
    assert _same(_state(s), states[-1 - reach])


class _Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 2:
            raise ValueError("boom in user code")
        return self.fc(x.flatten(1)[:, :4])


def test_failing_phase_changes_nothing() -> None:
    MODELS["_exploding_test"] = (_Exploding, (1, 1, 32, 32), 10)
    try:
        s = Session(Recipe(model="_exploding_test"))
        for _ in range(6):
            assert isinstance(s.run_next(), PhaseRecord)
        before = _state(s)
        records = list(s.records)
        err = s.run_next()  # forward of iteration 2 raises
        assert isinstance(err, PhaseError)
        assert (err.phase, err.iteration, err.type) == (Phase.FORWARD, 2, "ValueError")
        assert "boom in user code" in err.message
        assert err.line().startswith("error in forward: ")
        assert _same(_state(s), before)
        assert s.records == records
        assert s.next_phase is Phase.FORWARD
        # Its attributes too (engine.attrs): calls is 1 again, so the same forward fails the
        # same way, as it would in a plain script started over from this point.
        assert s.setup is not None and s.setup.net.calls == 1
        again = s.run_next()
        assert isinstance(again, PhaseError) and again.message == err.message
        assert _same(_state(s), before)
    finally:
        del MODELS["_exploding_test"]


def test_nan_loss_is_refused_and_undone() -> None:
    s = Session(Recipe(lr=1e30))
    s.run_iteration()
    results = [s.run_next() for _ in range(6)]
    errors = [r for r in results if isinstance(r, PhaseError)]
    assert errors, "a learning rate of 1e30 must trip the NaN guard"
    e = errors[0]
    assert e.phase in (Phase.LOSS, Phase.STEP)
    assert "NaN guard" in e.message
    # Still consistent: parameters are finite.
    assert all(torch.isfinite(p).all() for p in s.params)


def test_rewind_recomputes_a_forward_from_the_buffers_it_found() -> None:
    """Loss and grads after rewinds equal a plain loop, for a forward that updates a buffer it
    then reads (BatchNorm's training output never reads its running statistics, so it cannot
    show this)."""
    from pathlib import Path

    import torch.nn as nn

    from engine import Phase, Recipe, Session
    from engine.bitwise import bit_equal
    from tests.oracle import seeded_setup
    from tests.user_models import ReadsItsBuffer

    model = f"{Path(__file__).parent / 'user_models.py'}:ReadsItsBuffer"
    session = Session(Recipe(model=model, input_shape=(2, 4), target_shape=(2, 3)))
    session.run_next()  # define

    net, input, target, opt = seeded_setup(ReadsItsBuffer)
    for _ in range(3):
        opt.zero_grad()
        loss = nn.MSELoss()(net(input), target)
        loss.backward()
        # Rewind to before the forward, then into the live graph (after forward, after loss):
        # each of the last two recomputes the forward, and backward runs on the last one.
        for back in (3, 2, 1, 0):
            while session.next_phase is not Phase.BACKWARD:
                record = session.run_next()
                if record.phase is Phase.LOSS:
                    assert record.loss == loss.item(), back
            if back:
                assert session.rewind(back) == back
        session.run_next()  # backward, through the graph the last rewind rebuilt
        for name, p in net.named_parameters():
            assert bit_equal(session.param(name).grad, p.grad), name
        assert bit_equal(dict(session.setup.net.named_buffers())["scale"], net.scale)
        session.run_next()  # step
        opt.step()
        for name, p in net.named_parameters():
            assert bit_equal(session.param(name), p), name


def test_rewind_restores_the_attributes_a_forward_rebinds() -> None:
    """A forward keeping state in plain attributes (a call count, the last input): losses,
    grads and parameters equal a plain loop's through rewinds that recompute the forward,
    and a rewind to before a forward puts the attributes back as they were, even removing one
    the forward added. Before engine.attrs each recompute counted a call again."""
    from pathlib import Path

    import torch.nn as nn

    from engine import Phase, Recipe, Session
    from engine.bitwise import bit_equal
    from tests.oracle import seeded_setup
    from tests.user_models import KeepsPythonState

    model = f"{Path(__file__).parent / 'user_models.py'}:KeepsPythonState"
    session = Session(Recipe(model=model, input_shape=(2, 4), target_shape=(2, 3)))
    session.run_next()  # define
    ours = session.setup.net
    assert ours is not None

    net, input, target, opt = seeded_setup(KeepsPythonState)
    losses = []
    for i in range(3):
        opt.zero_grad()
        loss = nn.MSELoss()(net(input), target)
        loss.backward()
        losses.append(loss.item())
        for back in (3, 2, 1, 0):  # as in the buffer test above: each recomputes the forward
            while session.next_phase is not Phase.BACKWARD:
                record = session.run_next()
                if record.phase is Phase.LOSS:
                    assert record.loss == loss.item(), (i, back)
            if back:
                assert session.rewind(back) == back
        session.run_next()  # backward
        for name, p in net.named_parameters():
            assert bit_equal(session.param(name).grad, p.grad), name
        session.run_next()  # step
        opt.step()
        for name, p in net.named_parameters():
            assert bit_equal(session.param(name), p), name
        assert ours.calls == net.calls == i + 1
        assert bit_equal(ours.last, net.last)
    # A rewind into the live graph recomputes the forward, then puts back the very objects
    # the original left (not equal ones the recompute made).
    session.run_next()  # forward of iteration 4
    last = ours.last
    session.run_next()  # loss
    assert session.rewind(1) == 1 and ours.last is last and ours.calls == 4
    assert session.rewind(2) == 2 and ours.calls == 3  # back across the forward
    # Back to just after define: the attributes __init__ left, and none the forwards added.
    assert session.rewind(14) == 14 and session.done is Phase.DEFINE
    assert ours.calls == 0 and not hasattr(ours, "last") and not hasattr(ours, "second")
    records = session.run_iteration() + session.run_iteration()
    assert [r.loss for r in records if r.phase is Phase.LOSS] == losses[:2]
    assert ours.calls == 2 and ours.second is True


# torch notes that the hook fires for the module's output only (its input needs no grad).
@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_rewind_keeps_what_a_backward_hook_rebound() -> None:
    """User code outside forward (a module's backward hook) rebinding an attribute: each
    checkpoint keeps what its phase left, so rewinding step keeps backward's value, and
    rewinding backward removes it."""
    from pathlib import Path

    from engine import Phase, Recipe, Session

    model = f"{Path(__file__).parent / 'user_models.py'}:KeepsGradNorm"
    session = Session(Recipe(model=model, input_shape=(2, 4), target_shape=(2, 3)))
    for _ in range(5):  # define, forward, loss, zero_grad, backward
        session.run_next()
    net = session.setup.net
    gnorm = net.gnorm
    assert isinstance(gnorm, float) and gnorm > 0
    session.run_next()  # step
    assert session.rewind(1) == 1 and session.done is Phase.BACKWARD
    assert net.gnorm == gnorm
    assert session.rewind(1) == 1 and session.done is Phase.ZERO_GRAD
    assert net.gnorm is None


def test_every_checkpoint_holds_the_rng_state_its_phase_left() -> None:
    """Checkpoints of phases that run no user code share the RNG state of the one before; a
    user model drawing random numbers in forward and in backward shows any phase that moved
    the RNG but kept the old state (and rewinding there would replay different numbers)."""
    from pathlib import Path

    model = f"{Path(__file__).parent / 'user_models.py'}:DrawsRandomNumbers"
    for recipe in (
        Recipe(model=model, input_shape=(2, 4), target_shape=(2, 3), optimizer="adam"),
        Recipe(optimizer="momentum"),
    ):
        s = Session(recipe)
        moved = set()
        for _ in range(12):
            before = torch.get_rng_state()
            record = s.run_next()
            assert isinstance(record, PhaseRecord), record
            now = torch.get_rng_state()
            assert torch.equal(s.history.current.rng, now), record.phase
            if not torch.equal(before, now):
                moved.add(record.phase)
        if recipe.model != "lenet":
            # The test can fail: forward and backward both move the RNG for this model.
            assert {Phase.FORWARD, Phase.BACKWARD} <= moved, moved


def test_the_history_counts_tensors_a_module_keeps_in_a_list() -> None:
    """``self.seen = self.seen + [x]`` is the README's way to keep a list that rewinds: the
    checkpoints holding those lists count their tensors against the budget."""
    from engine.history import part_tensors

    a, b, c = torch.ones(2), torch.ones(3), torch.ones(4)
    attrs = ({"seen": [a, b], "last": c, "calls": 3, "name": "net"},)
    assert [id(t) for t in part_tensors(attrs)] == [id(a), id(b), id(c)]
