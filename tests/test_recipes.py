"""Every recipe of issue 4 against the plain-PyTorch oracle: optimizers, losses (with and
without class weights), zero_grad modes, accumulate mode, and the side-by-side checks."""

from __future__ import annotations

import pytest
import torch

from engine import Phase, PhaseRecord, Recipe, Session
from tests.oracle_recipes import PlainNet, plain_run

OPTIMIZERS = ("sgd", "manual", "momentum", "adam", "rmsprop")
LOSSES = (("mse", ()), ("cross-entropy", ()), ("cross-entropy", ((7, 5.0), (2, 0.5))))
STATE_KEYS = {
    "sgd": (),
    "manual": (),
    "momentum": ("momentum_buffer",),
    "adam": ("step", "exp_avg", "exp_avg_sq"),
    "rmsprop": ("step", "square_avg"),
}
ITERATIONS = 3
ZEROS = "tensor([0., 0., 0., 0., 0., 0.])"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two shared cores: intra-op threads only oversubscribe them. Both sides run in this
    # process, so they see the same setting.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_session(recipe: Recipe, accumulate: bool, iterations: int = ITERATIONS):
    session = Session(recipe, accumulate=accumulate)
    define = session.run_next()
    assert define.phase is Phase.DEFINE
    per_iteration = []
    for _ in range(iterations):
        records = session.run_iteration()
        assert all(isinstance(r, PhaseRecord) for r in records), records
        by_phase = {r.phase: r for r in records}
        params = {n: session.tensor(n) for n in session.names}
        state = {
            n: {
                k: v.clone()  # buffers change in place on the next step
                for k, v in session.setup.optimizer.state.get(session.param(n), {}).items()
            }
            for n in session.names
        }
        per_iteration.append((by_phase, params, state))
    return session, per_iteration


@pytest.mark.parametrize("zero_grad", ("none", "zeros"))
@pytest.mark.parametrize("loss,weights", LOSSES, ids=("mse", "ce", "ce-weighted"))
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_recipe_matches_plain_pytorch(optimizer, loss, weights, zero_grad):
    recipe = Recipe(
        loss=loss, class_weights=weights, optimizer=optimizer, zero_grad=zero_grad, lr=0.05
    )
    oracle = plain_run(
        loss=loss, class_weights=weights, optimizer=optimizer, zero_grad=zero_grad, lr=0.05
    )
    session, iterations = run_session(recipe, accumulate=False)
    if weights:
        assert torch.equal(session.setup.criterion.weight, oracle.criterion.weight)
    for i, (records, params, state) in enumerate(iterations):
        assert records[Phase.LOSS].loss == oracle.losses[i]
        # zero_grad: None (set_to_none=True) or zeros, exactly as the plain loop leaves it.
        zg = records[Phase.ZERO_GRAD]
        assert zg.zero_grad_mode == zero_grad
        expected_grad = oracle.grads_after_zero[i]
        assert f"print(net.conv1.bias.grad)\n{expected_grad!r}" in zg.printed
        if zero_grad == "zeros" and i > 0:
            assert repr(expected_grad) == ZEROS and ZEROS in zg.printed
        if zero_grad == "none":
            assert expected_grad is None
        for name, value in oracle.params[i].items():
            assert torch.equal(params[name], value), (i, name)
        step = records[Phase.STEP]
        # The optimizer state the step used, in the record and in its printed output.
        bias = next(c for c in step.step_changes if c.name == "conv1.bias")
        assert tuple(k for k, _ in bias.state) == STATE_KEYS[optimizer]
        if optimizer != "manual":
            for name, values in oracle.states[i].items():
                assert set(values) == set(state[name])
                for key, tensor in values.items():
                    assert torch.equal(state[name][key], tensor), (i, name, key)
            oracle_state = oracle.states[i].get("conv1.bias", {})
            assert f"print(optimizer.state[net.conv1.bias])\n{dict(oracle_state)!r}" in step.printed
            for key, summary in bias.state:
                assert summary.sum == pytest.approx(oracle_state[key].sum().item(), rel=1e-6)
        else:
            assert "optimizer.state" not in step.printed
        if loss == "cross-entropy":
            assert oracle.weighted_vs_functional[i]
            label = "nn.CrossEntropyLoss == F.cross_entropy" + (" (same weight)" * bool(weights))
            assert records[Phase.LOSS].checks == ((label, True),)
            arg = ", weight=weight" if weights else ""
            assert f"print(F.cross_entropy(output, target{arg}))" in records[Phase.LOSS].printed
        else:
            assert records[Phase.LOSS].checks == ()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_accumulate_matches_plain_pytorch(optimizer):
    recipe = Recipe(optimizer=optimizer, loss="cross-entropy", lr=0.02)
    oracle = plain_run(optimizer=optimizer, loss="cross-entropy", lr=0.02, accumulate=True)
    _, iterations = run_session(recipe, accumulate=True)
    for i, (records, params, _) in enumerate(iterations):
        assert records[Phase.ZERO_GRAD].skipped
        assert records[Phase.LOSS].loss == oracle.losses[i]
        assert records[Phase.BACKWARD].backwards == i + 1
        for name, value in oracle.params[i].items():
            assert torch.equal(params[name], value), (i, name)


def test_class_weights_cancel_for_one_sample_and_matter_for_a_mixed_batch():
    """The notes' class weight, with PyTorch's weighted mean: sum(w·l) / sum(w)."""
    plain = plain_run(loss="cross-entropy", iterations=1)
    weighted = plain_run(loss="cross-entropy", class_weights=((7, 5.0),), iterations=1)
    assert plain.losses == weighted.losses  # one sample: its weight divides out
    session = Session(Recipe(loss="cross-entropy", class_weights=((7, 5.0),)))
    records = [session.run_next() for _ in range(3)]
    assert "its weight cancels in the mean" in records[-1].printed
    mixed = plain_run(loss="cross-entropy", class_weights=((7, 5.0),), data="digits", iterations=1)
    unweighted = plain_run(loss="cross-entropy", data="digits", iterations=1)
    assert 7 in mixed.labels[0].tolist() and len(set(mixed.labels[0].tolist())) > 1
    assert mixed.losses != unweighted.losses
    session = Session(Recipe(loss="cross-entropy", class_weights=((7, 5.0),), data="digits"))
    records = [session.run_next() for _ in range(3)]
    assert records[-1].loss == mixed.losses[0]
    assert f"weight forgotten\n{torch.tensor(unweighted.losses[0])!r}" in records[-1].printed
    assert "cancels" not in records[-1].printed


def test_sgd_and_manual_give_the_same_parameters():
    """optim.SGD and the notes' loop: equal up to one float rounding, every step."""
    lr = 0.05
    _, sgd = run_session(Recipe(optimizer="sgd", lr=lr), accumulate=False)
    _, manual = run_session(Recipe(optimizer="manual", lr=lr), accumulate=False)
    for (rs, ps, _), (rm, pm, _) in zip(sgd, manual):
        for records in (rs, rm):
            step = records[Phase.STEP]
            assert step.checks == (("optim.SGD and the manual loop agree to float rounding", True),)
            assert all(c.matches_sgd for c in step.step_changes)
        for name in ps:
            assert torch.allclose(ps[name], pm[name], rtol=0, atol=1e-6), name
        assert rs[Phase.LOSS].loss == pytest.approx(rm[Phase.LOSS].loss, rel=1e-5)
    # The record says how many elements are bit-equal: recount on the plain loop's first step.
    oracle = plain_run(optimizer="sgd", lr=lr, iterations=1)
    grads = [p.grad for p in oracle.net.parameters()]  # step leaves .grad as backward made it
    torch.manual_seed(0)
    before = [p.detach().clone() for p in PlainNet().parameters()]  # the weights step 1 saw
    equal = sum(int((p.add(g, alpha=-lr) == p.sub(g * lr)).sum()) for p, g in zip(before, grads))
    total = sum(p.numel() for p in before)
    step = sgd[0][0][Phase.STEP]
    assert f"bit-equal in {equal} of {total} elements" in step.printed


def test_parse_shape_is_one_pure_parser_for_cli_and_app() -> None:
    from engine.recipe import RecipeError, parse_shape

    assert parse_shape("8,3,32,32") == (8, 3, 32, 32)
    assert parse_shape("2x4") == (2, 4)
    assert parse_shape("5") == (5,)
    for bad in ("", "1,a", "0,3", "1,,3", "x", "-1"):
        with pytest.raises(RecipeError) as info:
            parse_shape(bad)
        assert str(info.value) == f"{bad!r} is not a shape of positive sizes (e.g. 8,3,32,32)"
