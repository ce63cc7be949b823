"""Step in slices (engine.optstep) computes what one ``optimizer.step()`` computes, bit for bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from torch import optim
from torch.optim.optimizer import register_optimizer_step_post_hook

import engine.optstep as optstep
from engine import PhaseError, PhaseRecord, Recipe, Session
from engine.optstep import sliceable, slices, step_in_slices
from tests.oracle_recipes import plain_run


def test_slices_split_by_bytes_and_keep_order() -> None:
    sizes = [10, 10, 30, 5, 5, 100]  # float32 elements: 40, 40, 120, 20, 20, 400 bytes
    params = [torch.zeros(n) for n in sizes]
    assert slices(params, 80) == [range(0, 2), range(2, 3), range(3, 5), range(5, 6)]
    assert slices(params, 10**6) == [range(0, 6)]
    assert slices(params, 1) == [range(i, i + 1) for i in range(6)]  # one tensor at least
    assert slices([], 80) == []


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam", "rmsprop", "manual"])
def test_sliced_steps_match_plain_pytorch(optimizer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(optstep, "SLICE_BYTES", 1)  # every parameter its own slice
    iterations = 3
    oracle = plain_run(optimizer=optimizer, iterations=iterations)
    session = Session(Recipe(optimizer=optimizer))
    session.run_next()  # define
    opt = session.setup.optimizer
    calls: list[int] = []
    plain_step = opt.step

    def counted() -> None:
        calls.append(1)
        plain_step()

    opt.step = counted  # an instance attribute: no step hook, so slicing stays on
    for it in range(iterations):
        calls.clear()
        for result in session.run_iteration():
            assert isinstance(result, PhaseRecord), result
        # nntui's torch optimizers are stepped once per parameter; ManualSGD in one go.
        assert len(calls) == (1 if optimizer == "manual" else len(session.params))
        for name, p in session.setup.net.named_parameters():
            assert torch.equal(p, oracle.params[it][name]), (it, name)
            step_record = session.records[-1]
            i = session.names.index(name)
            assert torch.equal(session.history.current.params[i], p)
            assert step_record.step_changes[i].name == name
        if optimizer != "manual":
            for name, p in session.setup.net.named_parameters():
                want = oracle.states[it].get(name, {})
                assert set(opt.state.get(p, {})) == set(want), (it, name)
                for key, value in want.items():
                    assert torch.equal(opt.state[p][key], value), (it, name, key)
        assert opt.param_groups[0]["params"] == session.params  # the whole list is back


def test_a_nan_in_a_later_slice_fails_the_step_and_restores_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(optstep, "SLICE_BYTES", 1)
    session = Session(Recipe(optimizer="momentum"))
    session.run_iteration()
    for _ in range(4):  # forward, loss, zero_grad, backward
        assert isinstance(session.run_next(), PhaseRecord)
    before = [p.detach().clone() for p in session.params]
    states = {
        i: {k: v.clone() for k, v in session.setup.optimizer.state[p].items()}
        for i, p in enumerate(session.params)
    }
    last = session.params[-1]
    last.grad.fill_(float("nan"))  # fc3.bias: stepped in the last slice
    result = session.run_next()
    assert isinstance(result, PhaseError)
    assert "step made fc3.bias non-finite (NaN guard)" in result.line()
    for p, b in zip(session.params, before):
        assert torch.equal(p, b)  # the slices stepped before it are undone too
    for i, p in enumerate(session.params):
        for k, v in states[i].items():
            assert torch.equal(session.setup.optimizer.state[p][k], v)
    assert session.setup.optimizer.param_groups[0]["params"] == session.params


ALIASED = """
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        base = torch.randn(64, 16) * 0.1
        self.a = nn.Parameter(base)
        self.b = nn.Parameter(base[:32])  # the first half of a's memory

    def forward(self, x):
        return x @ self.a.t() + (x @ self.b.t()).sum(1, keepdim=True)
"""


def test_parameters_sharing_memory_are_stepped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sliced, b's step would write into a's memory after a's copy was taken: the checkpoint
    and the step's record would show a without b's update (a review found it)."""
    monkeypatch.setattr(optstep, "SLICE_BYTES", 1)
    (tmp_path / "alias.py").write_text(ALIASED)
    recipe = Recipe(model=f"{tmp_path}/alias.py:Net", input_shape=(2, 16), num_classes=64)
    session = Session(recipe)
    for _ in range(6):
        assert isinstance(session.run_next(), PhaseRecord)
    assert not sliceable(session.setup.optimizer, session.params)
    for name, live, kept in zip(session.names, session.params, session.history.current.params):
        assert torch.equal(live, kept), name
    # The plain loop, on the same seeded model and data.
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    exec(ALIASED, namespace)
    net = namespace["Net"]()  # type: ignore[operator]
    input, target = torch.randn(2, 16), torch.randn(2, 64)
    opt = optim.SGD(net.parameters(), lr=0.01)
    loss = nn.MSELoss()(net(input), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    for (name, p), live in zip(net.named_parameters(), session.params):
        assert torch.equal(p, live), name


@pytest.mark.parametrize(
    "make",
    [
        lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True),
        lambda ps: optim.Adam(ps, lr=0.01, amsgrad=True, weight_decay=0.01),
        lambda ps: optim.RMSprop(ps, lr=0.01, centered=True, momentum=0.5),
    ],
)
def test_slices_with_missing_and_frozen_gradients_match_one_step(make: Any) -> None:
    def model() -> list[nn.Parameter]:
        torch.manual_seed(5)
        ps = [nn.Parameter(torch.randn(n)) for n in (3, 5, 7, 2, 4)]
        ps[3].requires_grad_(False)
        for i, p in enumerate(ps):
            p.grad = None if i in (1, 3) else torch.randn_like(p)
        return ps

    whole, sliced = model(), model()
    one, many = make(whole), make(sliced)
    for _ in range(3):
        one.step()
        ranges = list(step_in_slices(many, sliced, limit=1))
        assert ranges == [range(i, i + 1) for i in range(5)]
    for a, b in zip(whole, sliced):
        assert torch.equal(a, b)
    assert one.state_dict()["state"].keys() == many.state_dict()["state"].keys()
    for k, state in one.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(
                torch.as_tensor(many.state_dict()["state"][k][key]), torch.as_tensor(value)
            )


def test_only_plain_single_group_unhooked_torch_optimizers_are_sliced() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    params = list(net.parameters())
    assert sliceable(optim.SGD(params, lr=0.1), params)
    assert sliceable(optim.Adam(params), params)
    assert not sliceable(optim.Adam(params), params[::-1])  # not the session's order
    two_groups = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    assert not sliceable(two_groups, params)
    assert not sliceable(optim.AdamW(params), params)  # a class nntui does not build
    for setting in ("fused", "foreach", "differentiable"):
        assert not sliceable(optim.Adam(params, **{setting: True}), params), setting

    class Mine(optim.SGD):
        pass

    assert not sliceable(Mine(params, lr=0.1), params)
    hooked = optim.SGD(params, lr=0.1)
    handle = hooked.register_step_pre_hook(lambda *_: None)
    assert not sliceable(hooked, params)
    handle.remove()
    assert sliceable(hooked, params)
    handle = register_optimizer_step_post_hook(lambda *_: None)
    try:
        assert not sliceable(hooked, params)
    finally:
        handle.remove()


def test_the_parameter_list_is_put_back_when_the_caller_stops_early() -> None:
    params = [nn.Parameter(torch.ones(4)) for _ in range(3)]
    for p in params:
        p.grad = torch.ones(4)
    opt = optim.SGD(params, lr=0.5)
    kept = opt.param_groups[0]["params"]
    steps = step_in_slices(opt, params, limit=1)
    assert next(steps) == range(0, 1)
    assert opt.param_groups[0]["params"] is kept  # whole between slices
    steps.close()  # the caller raised (the NaN guard) or stopped
    assert opt.param_groups[0]["params"] is kept
    assert torch.equal(params[0], torch.full((4,), 0.5))
    assert torch.equal(params[1], torch.ones(4))  # never stepped
