"""Every diagnostic kind fires on a model built to trigger it, and on nothing healthy.

What should be flagged is computed here in plain PyTorch (which grads are None, norm ratios,
dead units, where the first NaN appears) and compared with what the session reported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.diagnostics import EXPLODING, KINDS, NORM_FLOOR, VANISHING
from engine.summary import fmt
from tests import user_models

USER = str(Path(__file__).parent / "user_models.py")
ROOT = Path(__file__).parent.parent


def user(name: str, **kw: object) -> Recipe:
    return Recipe(model=f"{USER}:{name}", input_shape=kw.pop("input_shape", (4, 6)), **kw)


def run(recipe: Recipe, phases: int, **session: object) -> list[PhaseRecord | PhaseError]:
    s = Session(recipe, **session)
    return [s.run_next() for _ in range(phases)]


def by_phase(records: list, phase: Phase, iteration: int = 1) -> PhaseRecord:
    return next(
        r
        for r in records
        if isinstance(r, PhaseRecord) and r.phase is phase and r.iteration == iteration
    )


def kinds(record: PhaseRecord, kind: str) -> dict[str | None, str]:
    """``{param or module: message}`` of one kind."""
    return {d.param or d.module: d.message for d in record.diagnostics if d.kind == kind}


def backward_by_hand(factory, seed: int = 0, shape=(4, 6)) -> nn.Module:
    """Plain PyTorch: seeded model, MSE against a target shaped like the output, one backward."""
    torch.manual_seed(seed)
    net = factory()
    input = torch.randn(*shape)
    output = net(input)
    target = torch.randn(*output.shape)
    nn.MSELoss()(output, target).backward()
    return net


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(),
        Recipe(model="mlp"),
        Recipe(model="resnet", loss="cross-entropy"),
        Recipe(model="mlp", optimizer="adam", zero_grad="zeros"),
        user("Healthy"),
        user("BatchNormNet"),
    ],
    ids=["lenet", "mlp", "resnet", "mlp-adam-zeros", "user", "batchnorm"],
)
def test_healthy_models_trigger_nothing(recipe: Recipe) -> None:
    for record in run(recipe, 1 + 5 * 3):
        assert isinstance(record, PhaseRecord)
        assert record.diagnostics == (), (record.phase, record.diagnostics)


def test_unused_names_exactly_the_params_plain_pytorch_leaves_without_grad() -> None:
    net = backward_by_hand(user_models.Unused)
    expected = {n for n, p in net.named_parameters() if p.grad is None}
    assert expected == {"spare.weight", "spare.bias"}
    records = run(user("Unused"), 6)
    assert set(kinds(by_phase(records, Phase.BACKWARD), "unused")) == expected
    assert "is still None" in kinds(by_phase(records, Phase.BACKWARD), "unused")["spare.weight"]
    # Not before backward: an unused parameter is only known once backward ran.
    assert all(not kinds(r, "unused") for r in records if r.phase is not Phase.BACKWARD)


def test_unused_when_grads_are_zeros_or_accumulate() -> None:
    # zero_grad(set_to_none=False) leaves zeros: "None" is no longer the sign, no fresh grad is.
    records = run(user("Unused", zero_grad="zeros"), 11)
    assert set(kinds(by_phase(records, Phase.BACKWARD, 2), "unused")) == {
        "spare.weight",
        "spare.bias",
    }


def test_frozen() -> None:
    torch.manual_seed(0)
    expected = {n for n, p in user_models.Frozen().named_parameters() if not p.requires_grad}
    records = run(user("Frozen"), 6)
    for phase in (Phase.DEFINE, Phase.BACKWARD):
        assert set(
            kinds(by_phase(records, phase, 0 if phase is Phase.DEFINE else 1), "frozen")
        ) == (expected)
    backward = by_phase(records, Phase.BACKWARD)
    assert not kinds(backward, "unused")  # frozen is not unused
    assert not kinds(backward, "vanishing")


def test_tied_one_tensor_two_names_one_accumulate_grad() -> None:
    torch.manual_seed(0)
    net = user_models.Tied()
    names = [n for n, _ in net.named_parameters(remove_duplicate=False)]
    assert len(names) - len(list(net.parameters())) == 1
    records = run(user("Tied", target_shape=(4, 6)), 6)
    for phase in (Phase.DEFINE, Phase.BACKWARD):
        record = by_phase(records, phase, 0 if phase is Phase.DEFINE else 1)
        assert kinds(record, "tied") == {
            "decoder.weight": "decoder.weight is the same tensor as encoder.weight: one "
            "AccumulateGrad sums the gradients of both uses"
        }
    graph = by_phase(records, Phase.LOSS).graph
    assert [n.param for n in graph.accumulate_nodes()].count("encoder.weight") == 1


def test_nonfinite_names_the_first_module_even_when_a_module_is_reused() -> None:
    # Plain PyTorch: hook every module, note the order in which outputs go non-finite.
    torch.manual_seed(0)
    net = user_models.NaNMiddle()
    order: list[str] = []
    for name, module in net.named_modules():
        module.register_forward_hook(
            lambda m, a, out, name=name: (
                order.append(name) if not torch.isfinite(out).all() and name not in order else None
            )
        )
    net(torch.randn(4, 6))
    assert order[0] == "bad" and "act" in order  # act, used again after bad, goes NaN too

    records = run(user("NaNMiddle"), 3)
    forward = by_phase(records, Phase.FORWARD)
    assert list(kinds(forward, "nonfinite")) == ["bad"]
    assert kinds(forward, "nonfinite")["bad"].startswith("bad (Log) is the first module")
    # The NaN guard stops loss; the error names the same module.
    error = records[2]
    assert isinstance(error, PhaseError) and error.phase is Phase.LOSS
    assert "NaN guard" in error.message and error.message.endswith("first non-finite output: bad")


def test_nonfinite_loss_without_the_guard() -> None:
    records = run(user("NaNMiddle"), 3, nan_guard=False)
    loss = by_phase(records, Phase.LOSS)
    assert math.isnan(loss.loss)
    assert list(kinds(loss, "nonfinite")) == ["bad"]


def test_nonfinite_gradient_and_then_the_step_guard() -> None:
    net = backward_by_hand(user_models.NaNGrad)
    bad = [n for n, p in net.named_parameters() if not torch.isfinite(p.grad).all()]
    assert bad == ["s"]
    records = run(user("NaNGrad"), 6)
    backward = by_phase(records, Phase.BACKWARD)
    assert kinds(backward, "nonfinite") == {"s": "s gradient holds 1 NaN of 1"}
    assert not kinds(by_phase(records, Phase.FORWARD), "nonfinite")  # forward is finite
    step = records[5]
    assert isinstance(step, PhaseError) and step.phase is Phase.STEP
    assert step.message == "step made s non-finite (NaN guard)"


def _ratios(net: nn.Module) -> dict[str, float]:
    return {
        n: p.grad.norm().item() / max(p.norm().item(), NORM_FLOOR * math.sqrt(p.numel()))
        for n, p in net.named_parameters()
    }


@pytest.mark.parametrize("factory,kind", [("vanishing", "vanishing"), ("exploding", "exploding")])
def test_vanishing_and_exploding_show_the_plain_pytorch_ratio(factory: str, kind: str) -> None:
    ratios = _ratios(backward_by_hand(getattr(user_models, factory)))
    if kind == "vanishing":
        expected = {n: r for n, r in ratios.items() if r < VANISHING}
    else:
        expected = {n: r for n, r in ratios.items() if r > EXPLODING}
    assert expected.keys() == {"fc.weight", "fc.bias"}
    records = run(user(factory), 6)
    found = kinds(by_phase(records, Phase.BACKWARD), kind)
    assert found.keys() == expected.keys()
    for name, ratio in expected.items():
        assert f"‖grad‖/‖param‖ = {fmt(ratio)}" in found[name]


def test_a_bias_before_batchnorm_shows_as_vanishing() -> None:
    ratios = _ratios(backward_by_hand(user_models.BiasBeforeBatchNorm))
    assert {n for n, r in ratios.items() if r < VANISHING} == {"fc1.bias"}
    records = run(user("BiasBeforeBatchNorm"), 6)
    found = kinds(by_phase(records, Phase.BACKWARD), "vanishing")
    assert found == {
        "fc1.bias": f"fc1.bias: ‖grad‖/‖param‖ = {fmt(ratios['fc1.bias'])} (below {VANISHING:g})"
    }


def test_accumulated_counts_backwards_since_the_last_zero_grad() -> None:
    records = run(Recipe(model="mlp"), 1 + 5 * 3, accumulate=True)
    for it in (1, 2, 3):
        for phase in (Phase.BACKWARD, Phase.STEP):
            found = [d for d in by_phase(records, phase, it).diagnostics if d.kind == "accumulated"]
            if it == 1:
                assert found == []
            else:
                assert len(found) == 1 and found[0].param is None and found[0].module is None
                assert f"{it} backwards" in found[0].message
    # Plain PyTorch without zero_grad: the grads the session holds are the ones it counts.
    from engine.models import MLP

    torch.manual_seed(0)
    net, x = MLP(), torch.randn(8, 64)
    target = torch.randn(8, 10)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    s = Session(Recipe(model="mlp"), accumulate=True)
    s.run_next()
    for _ in range(3):
        nn.MSELoss()(net(x), target).backward()
        for _ in range(4):  # forward, loss, zero_grad (skipped), backward
            s.run_next()
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(s.params, net.parameters()))
        optimizer.step()
        s.run_next()


def test_dead_relu_share_matches_plain_pytorch() -> None:
    torch.manual_seed(0)
    net = user_models.DeadReLU()
    out = {}
    net.relu.register_forward_hook(lambda m, a, o: out.setdefault("relu", o.detach()))
    net(torch.randn(4, 6))
    dead = (out["relu"] == 0).all(dim=0)
    assert dead.float().mean().item() == 1.0
    records = run(user("DeadReLU"), 2)
    found = kinds(by_phase(records, Phase.FORWARD), "dead_relu")
    assert found == {
        "relu": f"relu: {int(dead.sum())}/{dead.numel()} units (100%) output 0 for every "
        "sample of the batch (4)"
    }


def test_dead_relu_is_silent_for_functional_relu() -> None:
    # F.relu is not a module: nothing to hook (the README says so). The zero grads still show.
    records = run(user("FunctionalReLU"), 6)
    assert not kinds(by_phase(records, Phase.FORWARD), "dead_relu")
    assert "fc1.weight" in kinds(by_phase(records, Phase.BACKWARD), "vanishing")


def test_every_kind_is_covered_above() -> None:
    assert set(KINDS) == {
        "unused",
        "frozen",
        "tied",
        "nonfinite",
        "vanishing",
        "exploding",
        "accumulated",
        "dead_relu",
    }


def test_diagnostics_can_be_switched_off() -> None:
    assert all(r.diagnostics == () for r in run(user("Unused"), 6, diagnose=False))


def test_trace_json_carries_diagnostics() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "trace",
            "--json",
            "--model",
            f"{USER}:Unused",
            "--input-shape",
            "4,6",
            "--iterations",
            "2",
            "--accumulate",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    backward = [o for o in lines if o["phase"] == "backward"]
    assert {
        "kind": "unused",
        "param": "spare.weight",
        "message": "spare.weight got no gradient from backward (.grad is still None): "
        "the loss does not depend on it",
    } in backward[0]["diagnostics"]
    acc = [d for d in backward[1]["diagnostics"] if d["kind"] == "accumulated"]
    assert acc == [
        {
            "kind": "accumulated",
            "message": "gradients hold the sum of 2 backwards: zero_grad was skipped 1 time",
        }
    ]
    for obj in lines:
        for d in obj["diagnostics"]:
            assert d["kind"] in KINDS and isinstance(d["message"], str)
            assert set(d) <= {"kind", "param", "module", "message"}


def test_trace_text_prints_diagnostics() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tui",
            "trace",
            "--model",
            f"{USER}:DeadReLU",
            "--input-shape",
            "4,6",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "dead_relu: relu: 8/8 units (100%) output 0" in " ".join(out.stdout.split())
