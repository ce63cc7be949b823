"""Phase explanations: every phase in both languages, the variants that matter, and the
PyTorch facts they state checked against plain PyTorch."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
from click.testing import CliRunner

from engine import PHASES, Phase, Recipe
from engine.explain import explain, explanation
from tests.oracle_recipes import PlainNet
from tui.cli import cli, main

HANGUL = re.compile("[\uac00-\ud7a3]")
OPTIMIZERS = ("sgd", "manual", "momentum", "adam", "rmsprop")


def recipes():
    for optimizer in OPTIMIZERS:
        for loss, weights in (("mse", ()), ("cross-entropy", ()), ("cross-entropy", ((7, 5),))):
            for zero_grad in ("none", "zeros"):
                for data in ("random", "digits"):
                    yield Recipe(
                        optimizer=optimizer,
                        loss=loss,
                        class_weights=weights,
                        zero_grad=zero_grad,
                        data=data,
                    )


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_every_phase_has_three_parts_in_its_language(lang):
    why, look = ("왜: ", "화면에서: ") if lang == "ko" else ("Why: ", "On screen: ")
    for recipe in recipes():
        for accumulate in (False, True):
            for phase in PHASES:
                text = explain(phase, recipe, accumulate, lang)
                what, rest = text.split(f"\n\n{why}")
                assert what and f"\n\n{look}" in rest
                assert len(text) < 1200  # short: a pane, not a chapter
                assert bool(HANGUL.search(text)) == (lang == "ko")


def test_variants_differ_where_the_loop_differs():
    base = Recipe()
    for lang in ("en", "ko"):
        skipped = explain(Phase.ZERO_GRAD, base, True, lang)
        to_none = explain(Phase.ZERO_GRAD, base, False, lang)
        to_zeros = explain(Phase.ZERO_GRAD, base.with_(zero_grad="zeros"), False, lang)
        assert len({skipped, to_none, to_zeros}) == 3
        assert "after = before + fresh" in skipped
        assert "set_to_none=True" in to_none and "None" in to_none
        assert "set_to_none=False" in to_zeros
        assert "tensor([0., 0., 0., 0., 0., 0.])" in to_zeros
        manual = explain(Phase.ZERO_GRAD, base.with_(optimizer="manual"), False, lang)
        assert "net.zero_grad()" in manual
        steps = {o: explain(Phase.STEP, base.with_(optimizer=o), False, lang) for o in OPTIMIZERS}
        assert len(set(steps.values())) == len(OPTIMIZERS)
        assert "momentum_buffer" in steps["momentum"]
        assert "exp_avg" in steps["adam"] and "exp_avg_sq" in steps["adam"]
        assert "square_avg" in steps["rmsprop"]
        assert "f.data.sub_(f.grad.data * learning_rate)" in steps["manual"]
        assert "new weight = weight" in steps["sgd"]
        assert explain(Phase.STEP, base, True, lang) != steps["sgd"]  # the accumulated sum
        weighted = base.with_(loss="cross-entropy", class_weights=((7, 5.0),))
        loss_text = explain(Phase.LOSS, weighted, False, lang)
        assert "F.cross_entropy(output, target, weight=w)" in loss_text
        assert "7→5" in loss_text
        assert "NllLossBackward0" in loss_text
        assert "MseLossBackward0" in explain(Phase.LOSS, base, False, lang)
        digits = explain(Phase.FORWARD, base.with_(data="digits", batch_size=32), False, lang)
        assert "DataLoader" in digits and "32" in digits
        assert "torch.manual_seed(5)" in explain(Phase.DEFINE, base.with_(seed=5), False, lang)


def test_unknown_language_is_an_error():
    with pytest.raises(ValueError, match="unknown language"):
        explanation(Phase.LOSS, Recipe(), lang="fr")


# The facts the texts state, checked on plain PyTorch -----------------------------------


def _first_step(optimizer: str, lr: float = 0.01) -> tuple[list[torch.Tensor], nn.Module]:
    torch.manual_seed(0)
    net = PlainNet()
    before = [p.detach().clone() for p in net.parameters()]
    opt = {
        "sgd": lambda: optim.SGD(net.parameters(), lr=lr),
        "momentum": lambda: optim.SGD(net.parameters(), lr=lr, momentum=0.9),
        "adam": lambda: optim.Adam(net.parameters(), lr=lr),
        "rmsprop": lambda: optim.RMSprop(net.parameters(), lr=lr),
    }[optimizer]()
    loss = nn.MSELoss()(net(torch.randn(1, 1, 32, 32)), torch.randn(1, 10))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return [p.detach() - b for p, b in zip(net.parameters(), before)], net


def test_first_steps_move_as_the_texts_say():
    sgd, _ = _first_step("sgd")
    momentum, _ = _first_step("momentum")
    assert all(torch.equal(a, b) for a, b in zip(sgd, momentum))  # buf = grad at first
    # Adam: lr·g/(|g| + 1e-8); RMSprop: lr·g/(0.1·|g| + 1e-8). Away from eps, a fixed size.
    for name, factor, not_tiny in (("adam", 1.0, 1e-4), ("rmsprop", 10.0, 1e-3)):
        deltas, net = _first_step(name)
        for d, p in zip(deltas, net.parameters()):
            moved = d[p.grad.abs() > not_tiny].abs()
            assert torch.allclose(moved, torch.full_like(moved, 0.01 * factor), rtol=1e-3)


def test_zero_grad_modes_are_as_the_texts_say():
    torch.manual_seed(0)
    net = PlainNet()
    opt = optim.SGD(net.parameters(), lr=0.01)
    net(torch.randn(1, 1, 32, 32)).sum().backward()
    opt.zero_grad()  # the default since PyTorch 2.0: set_to_none=True
    assert net.conv1.bias.grad is None
    net(torch.randn(1, 1, 32, 32)).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert repr(net.conv1.bias.grad) == "tensor([0., 0., 0., 0., 0., 0.])"


# nntui trace prints them ---------------------------------------------------------------


def test_trace_prints_each_explanation_once(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = CliRunner().invoke(cli, ["trace", "--iterations", "2", "--lang", "ko"])
    assert out.exit_code == 0, out.output
    assert out.output.count("왜: ") == len(PHASES)  # define + five phases, not eleven
    first = explain(Phase.ZERO_GRAD, Recipe(), False, "ko").split("\n\n")[0]
    assert " ".join(first.split()) in " ".join(out.output.split())
    out = CliRunner().invoke(cli, ["trace", "--iterations", "1", "--accumulate"])
    assert "Skipped (accumulate mode)" in " ".join(out.output.split())


def test_bad_lang_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["trace", "--lang", "fr"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def _digits_losses(**kw: object) -> tuple[float, float]:
    """Means of the first and the last 10 of 100 losses, a plain PyTorch loop on the digits
    batches the engine serves (the hint's figures must be what training really does)."""
    from engine.recipe import build

    recipe = Recipe(data="digits", loss="cross-entropy", **kw)
    setup = build(recipe)
    losses = []
    for i in range(1, 101):
        input, target = setup.data.batch(i)
        setup.optimizer.zero_grad()
        loss = setup.criterion(setup.net(input), target)
        loss.backward()
        setup.optimizer.step()
        losses.append(loss.item())
    return sum(losses[:10]) / 10, sum(losses[-10:]) / 10


def test_slow_sgd_on_digits_is_said_with_figures_that_hold():
    hint = explanation(Phase.STEP, Recipe(data="digits", loss="cross-entropy")).look
    first, last = _digits_losses()
    assert f"cross-entropy {first:.3f} → {last:.3f}" in hint
    assert last > 0.99 * first  # "very slowly"
    a, b = _digits_losses(optimizer="adam", lr=0.001)
    assert f"--lr 0.001 ({a:.2f} → {b:.2f})" in hint and b < 0.3 * a
    a, b = _digits_losses(lr=0.1)
    assert f"lr 0.1 ({a:.2f} → {b:.2f})" in hint and b < 0.9 * a
    ko = explanation(Phase.STEP, Recipe(data="digits", optimizer="manual"), lang="ko").look
    assert f"{first:.3f} → {last:.3f}" in ko and HANGUL.search(ko)
    # Only where it applies: random data, a faster lr, another optimizer.
    for recipe in (
        Recipe(),
        Recipe(data="digits", lr=0.1),
        Recipe(data="digits", optimizer="adam"),
    ):
        assert "digits loss" not in explanation(Phase.STEP, recipe).look
