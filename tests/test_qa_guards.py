"""QA: the forward guards (fixed structure, ``.grad`` left alone) against adversarial user
models, each compared with a plain PyTorch loop."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.bitwise import bit_equal
from tests.oracle import seeded_setup

MODELS = Path(__file__).parent / "user_models.py"


def _session(name: str, **kw: object) -> Session:
    return Session(Recipe(model=f"{MODELS}:{name}", input_shape=(2, 4), target_shape=(2, 3)), **kw)


def _plain(cls: type[nn.Module], iterations: int) -> list[dict]:
    """The seeded plain loop in nntui's phase order; params, grads and loss after each
    phase (after define first)."""
    net, input, target, opt = seeded_setup(cls)
    states: list[dict] = []

    def snap(loss: torch.Tensor | None) -> None:
        states.append(
            {
                "params": [p.detach().clone() for p in net.parameters()],
                "grads": [None if p.grad is None else p.grad.clone() for p in net.parameters()],
                "loss": None if loss is None else loss.item(),
            }
        )

    snap(None)
    for _ in range(iterations):
        output = net(input)
        snap(None)
        loss = nn.MSELoss()(output, target)
        snap(loss)
        opt.zero_grad()
        snap(loss)
        loss.backward()
        snap(loss)
        opt.step()
        snap(loss)
    return states


def _same(s: Session, state: dict) -> bool:
    if s.loss_value != state["loss"]:
        return False
    for p, q, g in zip(s.params, state["params"], state["grads"]):
        if not bit_equal(p, q):
            return False
        if (p.grad is None) != (g is None) or (g is not None and not bit_equal(p.grad, g)):
            return False
    return True


def _replays_like_plain(name: str, cls: type[nn.Module], iterations: int) -> None:
    """Every phase of ``iterations`` matches the plain loop, and so does every rewind to every
    earlier point and the replay from there."""
    plain = _plain(cls, iterations)
    s = _session(name)
    for k in range(len(plain)):
        record = s.run_next()
        assert isinstance(record, PhaseRecord), record
        assert _same(s, plain[k]), (k, record.phase)
        for back in range(1, k + 1):
            assert s.rewind(back) == back and s.rewind_error is None, (k, back)
            assert _same(s, plain[k - back]), (k, back)
            for j in range(back):
                assert isinstance(s.run_next(), PhaseRecord)
                assert _same(s, plain[k - back + j + 1]), (k, back, j)


def test_a_gradient_penalty_on_the_parameters_runs_and_rewinds_like_a_plain_loop() -> None:
    """``torch.autograd.grad`` with respect to a parameter in forward adds into no ``.grad``:
    it was refused as 'forward calls backward' (the guard hooked the tensor, and tensor hooks
    fire for autograd.grad too)."""
    from tests.user_models import GradPenaltyOnParams

    _replays_like_plain("GradPenaltyOnParams", GradPenaltyOnParams, 2)


def test_weight_clipping_through_data_in_forward_rewinds_like_a_plain_loop() -> None:
    """``p.data.clamp_`` bumps no version counter: the forward's checkpoint shared the
    unclipped copies, so a rewind to after backward (or zero_grad) restored unclipped weights
    and the replayed step moved them from there."""
    from tests.user_models import ClampsThroughData

    _replays_like_plain("ClampsThroughData", ClampsThroughData, 2)


def test_a_forward_that_swallows_the_backward_refusal_still_fails_and_changes_nothing() -> None:
    """A plain loop adds the forward's backward into .grad; nntui refused it, the model
    caught the refusal, and the forward 'succeeded' with gradients a plain loop would not
    have (silently different)."""
    s = _session("CatchesBackwardRefusal")
    s.run_next()  # define
    for _ in range(2):
        error = s.run_next()
        assert isinstance(error, PhaseError), error
        assert error.phase is Phase.FORWARD
        assert error.message.startswith("forward calls backward, which would add into fc.")
        assert s.done is Phase.DEFINE
        assert all(p.grad is None for p in s.params)


def test_a_forward_that_swallows_the_structure_refusal_still_fails() -> None:
    """A plain loop's model gains the submodule; nntui's did not, and went on silently."""
    s = _session("CatchesStructureRefusal")
    s.run_next()  # define
    error = s.run_next()
    assert isinstance(error, PhaseError), error
    assert error.type == "StructureChanged"
    assert "forward registers submodule 'extra'" in error.message
    assert s.done is Phase.DEFINE
    assert [n for n, _ in s.setup.net.named_modules()] == ["", "fc"]


def test_a_forward_writing_into_grad_in_place_leaves_the_kept_gradients_alone() -> None:
    """The refusal said 'undone', but an in-place write (``p.grad.mul_``) went into the very
    tensor the checkpoints of backward and step share: the session after the failed forward,
    and every rewind to those checkpoints, had the halved gradient."""
    from tests.user_models import HalvesGradInForward

    plain = _plain(HalvesGradInForward, 1)  # its first forward has no grad to halve
    s = _session("HalvesGradInForward")
    for k in range(len(plain)):
        assert isinstance(s.run_next(), PhaseRecord)
        assert _same(s, plain[k]), k
    error = s.run_next()  # iteration 2's forward halves the gradient of iteration 1
    assert isinstance(error, PhaseError), error
    assert error.message.startswith("forward wrote fc.weight.grad")
    assert s.done is Phase.STEP
    assert _same(s, plain[-1])
    assert bit_equal(s.history.current.grads[0], plain[-1]["grads"][0])
    assert s.rewind(1) == 1  # to after backward: its gradients
    assert _same(s, plain[-2])
