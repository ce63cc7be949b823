"""Every number the engine records equals what the tutorial's plain-PyTorch loop computes."""

from __future__ import annotations

import pytest
import torch

from engine import Phase, PhaseRecord, Recipe, Session
from engine.jsonl import record_to_json
from tests.oracle import tutorial_loop


@pytest.mark.parametrize(
    ("seed", "lr", "accumulate"),
    [(0, 0.01, False), (1, 0.1, False), (7, 0.003, True), (42, 0.05, True)],
)
def test_records_match_plain_pytorch(seed: int, lr: float, accumulate: bool) -> None:
    iterations = 3
    session = Session(Recipe(seed=seed, lr=lr), accumulate=accumulate)
    for it, phase, loss, snap, net in tutorial_loop(seed, lr, iterations, accumulate):  # noqa: B007
        record = session.run_next()
        assert isinstance(record, PhaseRecord), record
        assert (record.iteration, record.phase.value) == (it, phase)
        assert record.skipped == (accumulate and phase == "zero_grad")
        data = record_to_json(record)
        assert data["loss"] == loss
        assert data["params"] == snap
    # The live tensors are the oracle's, bit for bit.
    for (name, p), (oname, op) in zip(session.setup.net.named_parameters(), net.named_parameters()):
        assert name == oname
        assert torch.equal(p, op)
        assert torch.equal(p.grad, op.grad)


def test_zero_grad_sets_none_by_default() -> None:
    s = Session()
    s.run_iteration()
    for _ in range(3):  # forward, loss, zero_grad
        rec = s.run_next()
    assert rec.phase is Phase.ZERO_GRAD and rec.zero_grad_mode == "none"
    assert all(p.grad is None for p in s.params)
    assert all(ps.grad is None for ps in rec.params)
    assert "None" in rec.printed


def test_zero_grad_zeros_mode_keeps_zero_tensors() -> None:
    s = Session(Recipe(zero_grad="zeros"))
    s.run_iteration()
    for _ in range(3):
        rec = s.run_next()
    assert rec.zero_grad_mode == "zeros"
    for p in s.params:
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p))
    assert "tensor([0., 0., 0., 0., 0., 0.])" in rec.printed


def test_two_backwards_on_one_batch_give_exactly_twice_the_grad() -> None:
    # Plain PyTorch fact the app teaches; the engine's accumulate mode must agree with it.
    torch.manual_seed(3)
    from tests.oracle import TutorialNet

    net = TutorialNet()
    x = torch.randn(1, 1, 32, 32)
    t = torch.randn(10).view(1, -1)
    crit = torch.nn.MSELoss()
    crit(net(x), t).backward()
    once = [p.grad.clone() for p in net.parameters()]
    crit(net(x), t).backward()
    for g1, p in zip(once, net.parameters()):
        assert torch.equal(p.grad, g1 + g1)
        assert torch.equal(p.grad, 2 * g1)

    # The engine's first backward is the same gradient.
    s = Session(Recipe(seed=3), accumulate=True)
    for _ in range(5):  # define forward loss zero_grad(skipped) backward
        s.run_next()
    first = [p.grad.clone() for p in s.params]
    for g1, og in zip(first, once):
        assert torch.equal(g1, og)


def test_accumulate_mode_sums_the_fresh_gradients() -> None:
    k = 3
    s = Session(Recipe(seed=5, lr=0.02), accumulate=True)
    s.run_next()  # define
    fresh_sum: list[torch.Tensor] | None = None
    for i in range(k):
        prev = [None if p.grad is None else p.grad.clone() for p in s.params]
        for _ in range(4):  # forward loss zero_grad(skipped) backward
            rec = s.run_next()
        assert rec.phase is Phase.BACKWARD and rec.backwards == i + 1
        # Independently: this iteration's gradient alone, at the same parameters.
        fresh = [p.grad for p in _plain_copy(s).parameters()]
        fresh_sum = fresh if fresh_sum is None else [a + b for a, b in zip(fresh_sum, fresh)]
        for c, p, before, f in zip(rec.grad_changes, s.params, prev, fresh):
            assert c.exact and c.accumulated == (before is not None)
            assert torch.equal(p.grad, f if before is None else before + f)
            assert c.fresh is not None and c.fresh.norm == f.norm().item()
        s.run_next()  # step
    for p, total in zip(s.params, fresh_sum):
        assert torch.allclose(p.grad, total, rtol=1e-6, atol=1e-8)


def _plain_copy(session: Session) -> torch.nn.Module:
    """The session's net re-run in plain PyTorch at the same params: fresh grads of one backward."""
    from tests.oracle import TutorialNet

    net = TutorialNet()
    with torch.no_grad():
        for p, q in zip(net.parameters(), session.params):
            p.copy_(q)
    torch.manual_seed(session.recipe.seed)
    TutorialNet()  # consume the same RNG as the tutorial order before drawing the batch
    x = torch.randn(1, 1, 32, 32)
    t = torch.randn(10).view(1, -1)
    torch.nn.MSELoss()(net(x), t).backward()
    return net


@pytest.mark.parametrize("lr", [0.01, 0.3])
def test_sgd_step_is_minus_lr_grad(lr: float) -> None:
    s = Session(Recipe(seed=2, lr=lr))
    results = s.run_iteration()
    before = {n: p.detach().clone() for n, p in zip(s.names, s.history._items[-2].params)}
    step = results[-1]
    assert step.phase is Phase.STEP
    for c, name, p in zip(step.step_changes, s.names, s.params):
        assert c.name == name
        assert c.matches_sgd is True
        expected = before[name].add(p.grad, alpha=-lr)
        assert torch.equal(p.detach(), expected)
        delta = p.detach() - before[name]
        assert torch.allclose(delta, -lr * p.grad, atol=1e-7)
        assert c.max_sgd_error is not None and c.max_sgd_error < 1e-6
