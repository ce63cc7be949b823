"""Shipped examples (mlp, resnet) and user models behave exactly like plain PyTorch.

The oracle below is the training loop written out by hand: it never does a dry forward, so
an engine whose shape inference touched the RNG or BatchNorm buffers would disagree with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.optim as optim

from engine import Phase, PhaseError, PhaseRecord, Recipe, Session
from engine.models import MLP, ResNet
from engine.recipe import MODELS
from tests import user_models

USER = str(Path(__file__).parent / "user_models.py")
ROOT = Path(__file__).parent.parent

State = dict[str, dict[str, Any]]


def snap(net: nn.Module) -> State:
    return {
        "params": {n: p.detach().clone() for n, p in net.named_parameters()},
        "grads": {n: None if p.grad is None else p.grad.clone() for n, p in net.named_parameters()},
        "buffers": {n: b.clone() for n, b in net.named_buffers()},
    }


def same(a: State, b: State) -> bool:
    def eq(x: torch.Tensor | None, y: torch.Tensor | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return torch.equal(x, y)

    return all(a[k].keys() == b[k].keys() and all(eq(a[k][n], b[k][n]) for n in a[k]) for k in a)


def oracle(
    factory: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    *,
    classes: int | None = None,
    target_shape: tuple[int, ...] | None = None,
    seed: int = 0,
    lr: float = 0.01,
    iterations: int = 2,
    accumulate: bool = False,
) -> Iterator[tuple[str, float | None, State]]:
    """The loop by hand: ``classes`` means cross-entropy, ``target_shape`` MSE."""
    torch.manual_seed(seed)
    net = factory()
    input = torch.randn(*input_shape)
    if classes is not None:
        target = torch.randint(0, classes, (input_shape[0],))
        criterion: nn.Module = nn.CrossEntropyLoss()
    else:
        assert target_shape is not None
        target = torch.randn(*target_shape)
        criterion = nn.MSELoss()
    optimizer = optim.SGD(net.parameters(), lr=lr)
    yield "define", None, snap(net)
    for _ in range(iterations):
        output = net(input)
        yield "forward", None, snap(net)
        loss = criterion(output, target)
        yield "loss", loss.item(), snap(net)
        if not accumulate:
            optimizer.zero_grad()
        yield "zero_grad", loss.item(), snap(net)
        loss.backward()
        yield "backward", loss.item(), snap(net)
        optimizer.step()
        yield "step", loss.item(), snap(net)


CASES = [
    # (recipe, oracle factory, input shape, oracle target)
    (Recipe(model="mlp"), MLP, (8, 64), {"target_shape": (8, 10)}),
    (Recipe(model="mlp", loss="cross-entropy", seed=3), MLP, (8, 64), {"classes": 10}),
    (Recipe(model="resnet"), ResNet, (4, 3, 32, 32), {"target_shape": (4, 10)}),
    (Recipe(model="resnet", loss="cross-entropy"), ResNet, (4, 3, 32, 32), {"classes": 10}),
    # Output size found by a dry forward: MSE target shaped like the output, [4, 3].
    (
        Recipe(model=f"{USER}:Healthy", input_shape=(4, 6)),
        user_models.Healthy,
        (4, 6),
        {"target_shape": (4, 3)},
    ),
    # Classes found by a dry forward, through a module spec and a factory function.
    (
        Recipe(model="tests.user_models:make_healthy", input_shape=(5, 6), loss="cross-entropy"),
        user_models.make_healthy,
        (5, 6),
        {"classes": 3},
    ),
    # BatchNorm buffers and dropout's RNG draws: the dry forward must not move either.
    (
        Recipe(model=f"{USER}:BatchNormNet", input_shape=(4, 6), seed=7),
        user_models.BatchNormNet,
        (4, 6),
        {"target_shape": (4, 3)},
    ),
    (
        Recipe(model=f"{USER}:Tied", input_shape=(3, 6), target_shape=(3, 6)),
        user_models.Tied,
        (3, 6),
        {"target_shape": (3, 6)},
    ),
]


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0].model.rsplit("/", 1)[-1])
def test_every_phase_matches_plain_pytorch(case: tuple, accumulate: bool) -> None:
    recipe, factory, shape, target = case
    # Run to the end first: both loops draw dropout masks from the one global RNG.
    by_hand = list(oracle(factory, shape, **target, seed=recipe.seed, accumulate=accumulate))
    s = Session(recipe, accumulate=accumulate)
    for phase, loss, expected in by_hand:
        record = s.run_next()
        assert isinstance(record, PhaseRecord), record
        assert record.phase.value == phase
        assert record.loss == loss
        assert same(snap(s.setup.net), expected), f"{phase} of iteration {record.iteration}"


def test_shipped_examples_are_registered() -> None:
    assert MODELS["mlp"][1:] == ((8, 64), 10)
    assert MODELS["resnet"][1:] == ((4, 3, 32, 32), 10)
    resnet = ResNet()
    assert any(isinstance(m, nn.BatchNorm2d) for m in resnet.modules())
    assert "layer1.0.conv1.weight" in dict(resnet.named_parameters())


def _history(s: Session, phases: int) -> tuple[list[State], list[PhaseRecord]]:
    states, records = [], []
    for _ in range(phases):
        # Read in full now: values of a record a rewind removes are kept only if read before.
        records.append(s.run_next().resolve())
        states.append(snap(s.setup.net))
    return states, records


@pytest.mark.parametrize(
    "recipe",
    [
        Recipe(model="resnet", optimizer="momentum", lr=0.05),
        Recipe(model=f"{USER}:BatchNormNet", input_shape=(4, 6), optimizer="adam"),
    ],
    ids=["resnet", "batchnorm-dropout"],
)
def test_rewind_then_replay_is_bit_identical(recipe: Recipe) -> None:
    s = Session(recipe)
    states, records = _history(s, 1 + 5 * 3)  # define and three iterations
    for back in (1, 3, 5, 9, 15):
        assert s.rewind(back) == back
        assert same(snap(s.setup.net), states[-1 - back])  # buffers included
        replay, again = _history(s, back)
        assert again == records[-back:]
        assert all(same(a, b) for a, b in zip(replay, states[-back:]))


def test_nested_activation_names_and_values() -> None:
    s = Session(Recipe(model="resnet", seed=2))
    s.run_next()
    forward = s.run_next()
    names = [a.name for a in forward.activations]
    for name in ("conv1", "layer1.0.conv1", "layer1.0.bn2", "layer2.0.downsample.0", "fc"):
        assert name in names
    # Plain PyTorch: the same seeded net, its submodules' outputs taken with forward hooks.
    torch.manual_seed(2)
    net = ResNet()
    input = torch.randn(4, 3, 32, 32)
    seen: dict[str, torch.Tensor] = {}
    for name, module in net.named_modules():
        if name:
            module.register_forward_hook(
                lambda m, a, out, name=name: seen.__setitem__(name, out.detach().clone())
            )
    net(input)
    for name, t in seen.items():
        assert torch.equal(s.tensor(name, "activation"), t), name


def _accumulate_nodes(root: Any) -> list[Any]:
    seen, stack, out = set(), [root], []
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in seen:
            continue
        seen.add(id(fn))
        if type(fn).__name__ == "AccumulateGrad":
            out.append(fn.variable)
        stack.extend(f for f, _ in fn.next_functions)
    return out


@pytest.mark.parametrize(
    "recipe,factory,shape",
    [
        (Recipe(model="resnet"), ResNet, (4, 3, 32, 32)),
        (Recipe(model=f"{USER}:Tied", input_shape=(3, 6)), user_models.Tied, (3, 6)),
    ],
    ids=["resnet", "tied"],
)
def test_grad_fn_graph_has_one_leaf_per_tensor(recipe: Recipe, factory: Any, shape: Any) -> None:
    s = Session(recipe)
    loss_record = [s.run_next() for _ in range(3)][-1]
    assert loss_record.phase is Phase.LOSS
    torch.manual_seed(recipe.seed)
    net = factory()
    output = net(torch.randn(*shape))
    leaves = _accumulate_nodes(nn.MSELoss()(output, torch.zeros_like(output)).grad_fn)
    by_id = {id(p): n for n, p in net.named_parameters()}  # first name of each tensor
    expected = sorted(by_id[id(v)] for v in leaves)
    got = sorted(n.param for n in loss_record.graph.accumulate_nodes())
    assert got == expected


def test_define_code_spells_out_the_inferred_target() -> None:
    s = Session(Recipe(model=f"{USER}:Healthy", input_shape=(4, 6)))
    define = s.run_next()
    assert "net = Healthy()" in define.code
    assert "input = torch.randn(4, 6)" in define.code
    assert "target = torch.randn(4, 3)" in define.code
    s = Session(Recipe(model=f"{USER}:Healthy", input_shape=(4, 6), loss="cross-entropy"))
    assert "target = torch.randint(0, 3, (4,))" in s.run_next().code


def _losses_by_hand(factory: Any, shape: tuple[int, ...], iterations: int, **target: Any):
    return [
        loss
        for phase, loss, _ in oracle(factory, shape, iterations=iterations, **target)
        if phase == "loss"
    ]


@pytest.mark.parametrize(
    "args,factory,shape,target",
    [
        (["--model", "resnet"], ResNet, (4, 3, 32, 32), {"target_shape": (4, 10)}),
        (
            ["--model", f"{USER}:BatchNormNet", "--input-shape", "4,6", "--num-classes", "3"],
            user_models.BatchNormNet,
            (4, 6),
            {"classes": 3},
        ),
    ],
    ids=["resnet", "user-file"],
)
def test_exported_script_runs_and_prints_the_oracle_losses(
    tmp_path: Path, args: list[str], factory: Any, shape: Any, target: Any
) -> None:
    script = tmp_path / "loop.py"
    out = subprocess.run(
        [sys.executable, "-m", "tui", "export", *args, "--iterations", "3", "-o", str(script)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "if __name__" not in script.read_text()  # the user file's main block stays out
    # Run from elsewhere: the script must not need nntui or the tests package.
    run = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    printed = [float(line) for line in run.stdout.split()]
    assert printed == _losses_by_hand(factory, shape, 3, **target)


def test_trace_json_for_resnet_matches_plain_pytorch() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tui", "trace", "--json", "--model", "resnet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    expected = list(oracle(ResNet, (4, 3, 32, 32), target_shape=(4, 10), iterations=1))
    assert [o["phase"] for o in lines] == [p for p, _, _ in expected]
    for obj, (_, loss, state) in zip(lines, expected):
        assert obj["loss"] == loss
        for name, p in state["params"].items():
            assert obj["params"][name]["norm"] == p.norm().item()
            g = state["grads"][name]
            assert obj["params"][name]["grad_norm"] == (None if g is None else g.norm().item())
        assert obj["diagnostics"] == []


def test_a_failed_backward_can_be_retried_and_matches_plain_pytorch() -> None:
    user_models._FlakyBackward.failures_left = 0
    by_hand = list(oracle(user_models.FlakyBackward, (4, 6), target_shape=(4, 3)))
    user_models._FlakyBackward.failures_left = 1
    s = Session(Recipe(model="tests.user_models:FlakyBackward", input_shape=(4, 6)))
    results = []
    while len(results) < len(by_hand):
        result = s.run_next()
        if isinstance(result, PhaseError):
            assert (result.phase, result.message) == (Phase.BACKWARD, "ValueError: flaky backward")
            assert s.next_phase is Phase.BACKWARD  # the session stayed after zero_grad
            continue
        results.append((result, snap(s.setup.net)))
    assert user_models._FlakyBackward.failures_left == 0
    for (record, state), (phase, loss, expected) in zip(results, by_hand):
        assert (record.phase.value, record.loss) == (phase, loss)
        assert same(state, expected)
