"""The diagnostics tab: the latest record's findings, its count in the tab label, kept across a
failing phase and redrawn after a rewind. Expected findings come from plain PyTorch."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
from textual.widgets import TabbedContent

from engine import Recipe
from tests import user_models
from tui.app import NNTuiApp
from tui.pilot import press, show_view, steps
from tui.widgets.diagnostics import DiagnosticsPane
from tui.widgets.errorbar import ErrorBar

USER = str(Path(__file__).parent / "user_models.py")
SIZE = (120, 40)


def _label(app: NNTuiApp) -> str:
    return str(app.query_one(TabbedContent).get_tab("tab-diagnostics").label)


async def test_unused_parameters_show_after_backward_and_go_with_a_rewind() -> None:
    # Plain PyTorch: which parameters have no grad after one backward.
    torch.manual_seed(0)
    net = user_models.Unused()
    output = net(torch.randn(4, 6))
    nn.MSELoss()(output, torch.randn(*output.shape)).backward()
    unused = sorted(n for n, p in net.named_parameters() if p.grad is None)

    app = NNTuiApp(Recipe(model=f"{USER}:Unused", input_shape=(4, 6)))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(DiagnosticsPane)
        await press(pilot, *steps(1))
        await show_view(pilot, "tab-diagnostics")  # a hidden pane is drawn when shown
        assert "after define: nothing to report." in pane.plain
        assert _label(app) == "diagnostics"
        await press(pilot, *steps(4))  # forward, loss, zero_grad, backward
        await show_view(pilot, "tab-diagnostics")
        text = pane.plain
        assert text.startswith(f"after backward (iteration 1): {len(unused)} finding(s)")
        for name in unused:
            assert f"unused      {name}" in text
        assert _label(app) == f"diagnostics ({len(unused)})"
        app.query_one(TabbedContent).active = "tab-diagnostics"
        await press(pilot, "left")  # rewind to after zero_grad: nothing to report there
        assert "after zero_grad (iteration 1): nothing to report." in pane.plain
        assert _label(app) == "diagnostics"


async def test_a_failing_phase_keeps_the_finding_that_explains_it() -> None:
    app = NNTuiApp(Recipe(model=f"{USER}:NaNMiddle", input_shape=(4, 6)))
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(3))  # define, forward, loss (refused by the NaN guard)
        assert "NaN guard" in app.query_one(ErrorBar).message
        await show_view(pilot, "tab-diagnostics")  # a hidden pane is drawn when shown
        text = app.query_one(DiagnosticsPane).plain
        assert text.startswith("after forward (iteration 1): 1 finding(s)")
        assert "nonfinite   bad" in text
        assert "bad (Log) is the first module whose output holds NaN/Inf" in text
