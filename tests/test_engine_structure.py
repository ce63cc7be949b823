"""A forward that adds parameters, submodules or buffers to the model is refused in one line
and leaves the model as __init__ made it; legal forwards are untouched (plain-loop oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.optim as optim

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.bitwise import bit_equal

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
    torch.manual_seed(0)
    net = TemporaryModuleAndBuffer()
    input, target = torch.randn(2, 4), torch.randn(2, 3)
    opt = optim.SGD(net.parameters(), lr=0.01)
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
