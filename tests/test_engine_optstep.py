"""Step in slices (engine.optstep) computes what one ``optimizer.step()`` computes, bit for bit."""

from __future__ import annotations

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


def test_only_plain_single_group_unhooked_torch_optimizers_are_sliced() -> None:
    net = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    params = list(net.parameters())
    assert sliceable(optim.SGD(params, lr=0.1), params)
    assert sliceable(optim.Adam(params), params)
    assert not sliceable(optim.Adam(params), params[::-1])  # not the session's order
    two_groups = optim.SGD([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    assert not sliceable(two_groups, params)
    assert not sliceable(optim.AdamW(params), params)  # a class nntui does not build

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
