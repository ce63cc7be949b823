"""A forward that adds parameters, submodules or buffers to the model is refused in one line
and leaves the model as __init__ made it; legal forwards are untouched (plain-loop oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.nn as nn

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.bitwise import bit_equal
from tests.oracle import seeded_setup

MODELS = Path(__file__).parent / "user_models.py"


def _session(name: str) -> Session:
    # --target-shape: no dry forward at define (the first forward is the forward phase).
    return Session(Recipe(model=f"{MODELS}:{name}", input_shape=(2, 4), target_shape=(2, 3)))


@pytest.mark.parametrize(
    "name,kind,what",
    [
        ("AddsModuleInForward", "submodule", "'extra' on net (AddsModuleInForward)"),
        ("AddsParameterInForward", "parameter", "'scale' on fc (Linear)"),
        ("AddsBufferInForward", "buffer", "'seen' on net (AddsBufferInForward)"),
    ],
)
def test_forward_registering_on_the_model_is_refused_and_leaves_it_unchanged(
    name: str, kind: str, what: str
) -> None:
    s = _session(name)
    assert isinstance(s.run_next(), PhaseRecord)  # define
    net = s.setup.net
    before = {
        "params": [n for n, _ in net.named_parameters()],
        "modules": [n for n, _ in net.named_modules()],
        "buffers": [n for n, _ in net.named_buffers()],
    }
    values = [p.detach().clone() for p in net.parameters()]
    for _ in range(2):  # and again: the refusal is not a one-off
        error = s.run_next()
        assert isinstance(error, PhaseError), error
        assert error.phase is Phase.FORWARD
        assert error.type == "StructureChanged"
        assert f"forward registers {kind} {what}" in error.message
        assert "\n" not in error.line()
        assert s.done is Phase.DEFINE
        assert {
            "params": [n for n, _ in net.named_parameters()],
            "modules": [n for n, _ in net.named_modules()],
            "buffers": [n for n, _ in net.named_buffers()],
        } == before
        assert all(bit_equal(a, b) for a, b in zip(net.parameters(), values))


def test_forward_with_a_temporary_module_and_a_reassigned_buffer_runs_as_plain_torch() -> None:
    from tests.user_models import TemporaryModuleAndBuffer

    s = _session("TemporaryModuleAndBuffer")
    s.run_next()  # define
    net, input, target, opt = seeded_setup(TemporaryModuleAndBuffer)
    for _ in range(2):
        opt.zero_grad()
        loss = nn.MSELoss()(net(input), target)
        loss.backward()
        opt.step()
        records = s.run_iteration()
        assert all(isinstance(r, PhaseRecord) for r in records), records
        assert records[1].loss == loss.item()
    assert bit_equal(dict(s.setup.net.named_buffers())["calls"], net.calls)
    for (name, p), q in zip(s.setup.net.named_parameters(), net.parameters()):
        assert bit_equal(p, q), name
    # Rewinding into the live graph recomputes the forward under the same guard: still fine.
    s.run_next()
    s.run_next()
    assert s.rewind(1) == 1
    assert s.rewind_error is None


def test_forward_calling_backward_is_refused_before_it_adds_into_kept_grads() -> None:
    """Iteration 1 runs; iteration 2's forward calls backward, which would add into the
    gradients the checkpoints hold: refused before anything is added, the history and .grad
    bit-equal to a plain loop's after iteration 1."""
    from tests.user_models import BackwardInForward

    s = _session("BackwardInForward")
    s.run_next()  # define
    net, input, target, opt = seeded_setup(BackwardInForward)
    opt.zero_grad()
    nn.MSELoss()(net(input), target).backward()
    opt.step()
    records = s.run_iteration()
    assert all(isinstance(r, PhaseRecord) for r in records), records
    error = s.run_next()
    assert isinstance(error, PhaseError) and error.phase is Phase.FORWARD
    assert error.message.startswith("forward calls backward, which would add into fc.")
    assert s.done is Phase.STEP
    for (name, p), q in zip(s.setup.net.named_parameters(), net.parameters()):
        assert bit_equal(p.grad, q.grad), name
    for i, q in enumerate(net.parameters()):
        assert bit_equal(s.history.current.grads[i], q.grad)
        assert bit_equal(s.history.back(1).grads[i], q.grad)  # after backward


def test_forward_calling_backward_gets_past_define_and_fails_in_its_own_words() -> None:
    s = Session(
        Recipe(model=f"{MODELS}:AlwaysBackwardInForward", input_shape=(2, 4))
    )  # no target: define's dry forward infers it
    assert isinstance(s.run_next(), PhaseRecord)
    assert all(p.grad is None for p in s.params)
    error = s.run_next()
    assert isinstance(error, PhaseError)
    assert "forward calls backward" in error.message


def test_forward_assigning_a_grad_is_refused_and_undone() -> None:
    s = _session("WritesGradInForward")
    s.run_next()
    error = s.run_next()
    assert isinstance(error, PhaseError)
    assert error.message.startswith("forward wrote fc.bias.grad")
    assert all(p.grad is None for p in s.params)


def test_a_rewind_whose_recomputed_forward_calls_backward_changes_nothing() -> None:
    s = _session("BackwardInForward")  # its second forward call calls backward
    for _ in range(3):  # define, forward (first call), loss
        s.run_next()
    grads = [p.grad for p in s.params]
    assert s.rewind(1) == 0  # back to after forward: recomputing it would call backward
    assert s.rewind_error is not None
    assert "forward calls backward" in s.rewind_error.message
    assert s.done is Phase.LOSS
    assert [p.grad for p in s.params] == grads  # all None: nothing was added


def test_forward_changing_a_parameter_in_place_rewinds_and_replays_like_a_plain_loop() -> None:
    from tests.user_models import ShrinksInForward

    s = _session("ShrinksInForward")
    s.run_next()  # define
    net, input, target, opt = seeded_setup(ShrinksInForward, lr=s.lr)
    plain = []  # (params, grads) after each phase of two iterations, and the losses
    losses = []
    for _ in range(2):
        output = net(input)
        plain.append([p.detach().clone() for p in net.parameters()])
        loss = nn.MSELoss()(output, target)
        losses.append(loss.item())
        plain.append(plain[-1])
        opt.zero_grad()
        plain.append(plain[-1])
        loss.backward()
        plain.append(plain[-1])
        opt.step()
        plain.append([p.detach().clone() for p in net.parameters()])
    grads = [p.grad.clone() for p in net.parameters()]

    def same_params(k: int) -> bool:
        return all(bit_equal(p, q) for p, q in zip(s.params, plain[k]))

    records = [s.run_next() for _ in range(5)]  # iteration 1
    forward = records[0]
    assert forward.changed == ("fc.weight",)
    assert forward.param("fc.weight").data.compute().sum == plain[0][0].sum().item()
    assert same_params(4)
    # Rewind to every point of the iteration (after forward and loss the forward is
    # recomputed: from the weight it found, so it is halved once, not twice) and replay.
    for back in (1, 2, 3, 4):
        assert s.rewind(back) == back, back
        assert same_params(4 - back), back
        for _ in range(back):
            record = s.run_next()
            if record.phase is Phase.LOSS:
                assert record.loss == losses[0]
        assert same_params(4), back
    for k in range(5, 10):  # iteration 2
        record = s.run_next()
        assert isinstance(record, PhaseRecord), record
        assert same_params(k), record.phase
        if record.phase is Phase.LOSS:
            assert record.loss == losses[1]
    for p, g in zip(s.params, grads):
        assert bit_equal(p.grad, g)
