""" "Exact" means the same bits: signed zeros, NaN payloads and version counters included."""

from __future__ import annotations

import torch
import torch.nn as nn

from engine import Phase, PhaseRecord, Recipe, Session
from engine.bitwise import bit_equal
from engine.recipe import MODELS


def test_bit_equal_is_about_bits_not_values() -> None:
    assert torch.equal(torch.tensor([-0.0]), torch.tensor([0.0]))  # why torch.equal won't do
    assert not bit_equal(torch.tensor([-0.0]), torch.tensor([0.0]))
    nan = torch.tensor([float("nan")])
    assert not torch.equal(nan, nan.clone())
    assert bit_equal(nan, nan.clone())
    assert not bit_equal(torch.zeros(2), torch.zeros(3))
    assert not bit_equal(torch.zeros(2), torch.zeros(2, dtype=torch.float64))
    assert bit_equal(torch.arange(4), torch.arange(4))


class SignedZeros(nn.Module):
    """A parameter born ``-0.0`` whose gradient is ``±0.0``: SGD turns some entries ``+0.0``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.z = nn.Parameter(torch.full((3,), -0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) + self.z * 0.0


def test_rewind_restores_signed_zeros() -> None:
    MODELS["_signed_zeros"] = (SignedZeros, (1, 4), 3)
    try:
        s = Session(Recipe(model="_signed_zeros", lr=0.1))
        for _ in range(5):
            s.run_next()
        assert s.done is Phase.BACKWARD
        before = s.param("z").detach().clone()
        assert torch.signbit(before).all()
        s.run_next()  # step: -0.0 + (+0.0) = +0.0 wherever the grad was -0.0
        after = s.param("z").detach()
        assert torch.equal(after, before) and not bit_equal(after, before)  # the trap
        assert s.rewind(1) == 1
        assert bit_equal(s.param("z").detach(), before)
    finally:
        del MODELS["_signed_zeros"]


def test_rewinding_to_the_start_twice_restores_the_rng() -> None:
    torch.manual_seed(1234)
    start = torch.get_rng_state()
    s = Session()
    for _ in range(2):
        s.run_next()  # define reseeds the global RNG
        assert not torch.equal(torch.get_rng_state(), start)
        assert s.rewind(1) == 1
        assert torch.equal(torch.get_rng_state(), start)


# Counted outside the model: a rewind puts the model's own attributes back (engine.attrs), so
# a counter there would make every recomputed forward call 1 again.
FORWARD_CALLS = [0]


class FailsOnThirdForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 5)
        self.fc = nn.Linear(5, 3)  # its weight is saved by the graph (hidden needs a grad)
        FORWARD_CALLS[0] = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FORWARD_CALLS[0] += 1
        if FORWARD_CALLS[0] == 3:
            raise RuntimeError("third forward fails")
        return self.fc(self.hidden(x))


def test_failed_long_rewind_leaves_a_graph_that_still_backwards() -> None:
    MODELS["_fails_third"] = (FailsOnThirdForward, (1, 4), 3)
    try:
        s = Session(Recipe(model="_fails_third", lr=0.1))
        for _ in range(8):  # define, iteration 1, forward + loss of iteration 2
            assert isinstance(s.run_next(), PhaseRecord)
        assert s.done is Phase.LOSS and s.iteration == 2
        # Back across the step to iteration 1's forward: its recompute is call 3 and raises.
        assert s.rewind(6) == 0
        assert s.rewind_error is not None and "third forward fails" in s.rewind_error.message
        assert (s.done, s.iteration) == (Phase.LOSS, 2)
        # The parameters were written and written back: backward must still work.
        zero = s.run_next()
        back = s.run_next()
        assert isinstance(zero, PhaseRecord) and isinstance(back, PhaseRecord), back
        # And give the gradient plain PyTorch gives at these parameters.
        net = s.setup.net
        x, t = s.setup.data.batch(2)
        plain = [p.detach().clone().requires_grad_() for p in net.parameters()]
        h = nn.functional.linear(x, plain[0], plain[1])
        nn.MSELoss()(nn.functional.linear(h, plain[2], plain[3]), t).backward()
        for p, q in zip(net.parameters(), plain):
            assert bit_equal(p.grad, q.grad)
    finally:
        del MODELS["_fails_third"]
