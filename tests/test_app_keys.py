"""Every key of the app, checked against the engine's state and the widgets' content."""

from __future__ import annotations

import torch

from engine import Phase
from tui.pilot import press, quiet_app, settle, show_view, steps
from tui.screens.help import HelpScreen
from tui.widgets.heatmap import TensorView
from tui.widgets.paramtable import ParamsTable
from tui.widgets.phasebar import PhaseBar

SIZE = (120, 40)


make_app = quiet_app  # seed 0, animations off (tui.pilot)


async def test_next_phase_keys_each_run_one_phase() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.session.done is None
        for key, phase in (
            ("space", Phase.DEFINE),
            ("n", Phase.FORWARD),
            ("right", Phase.LOSS),
        ):
            await press(pilot, key)
            assert app.session.done is phase
            assert app.query_one(PhaseBar).state.done is phase
        assert [r.phase for r in app.session.records] == [
            Phase.DEFINE,
            Phase.FORWARD,
            Phase.LOSS,
        ]


async def test_next_keys_work_while_the_table_has_focus() -> None:
    # right/left would otherwise scroll the DataTable; the bindings are priority bindings.
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        assert app.focused is app.query_one(ParamsTable)
        await press(pilot, "right", "right", "left")
        assert app.session.done is Phase.FORWARD


async def test_rewind_keys_undo_one_phase_each() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))
        assert app.session.done is Phase.BACKWARD
        grad = app.session.tensor("conv1.bias", "grad")
        assert grad is not None
        await press(pilot, "left")
        assert app.session.done is Phase.ZERO_GRAD
        assert app.session.tensor("conv1.bias", "grad") is None  # zero_grad set it to None
        await press(pilot, "p")
        assert app.session.done is Phase.LOSS
        assert len(app.session.records) == 3
        assert app.query_one(PhaseBar).state.next_phase is Phase.ZERO_GRAD
        # Running forward again recomputes the same backward, bit for bit.
        await press(pilot, "space", "space")
        assert torch.equal(app.session.tensor("conv1.bias", "grad"), grad)


async def test_rewind_at_the_start_is_harmless() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "left", "p")
        assert app.session.done is None
        assert app.session.records == []


async def test_a_toggles_accumulate_and_zero_grad_is_skipped() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "a")
        assert app.session.accumulate is True
        bar = app.query_one(PhaseBar)
        assert bar.state.accumulate is True
        assert "zero_grad skipped" in bar.render_state(bar.state).plain
        assert "accumulate: on" in bar.render_state(bar.state).plain
        await press(pilot, *steps(4))
        record = app.session.records[-1]
        assert record.phase is Phase.ZERO_GRAD and record.skipped
        await press(pilot, "a")
        assert app.session.accumulate is False
        # The zero_grad just run was skipped and still reads so; the setting shows beside it.
        assert "✓ zero_grad skipped" in bar.render_state(bar.state).plain
        assert "accumulate: off" in bar.render_state(bar.state).plain
        await press(pilot, "space")  # past it: zero_grad reads as the setting will run it
        assert "zero_grad skipped" not in bar.render_state(bar.state).plain


async def test_r_resets_to_before_define() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(6))
        await press(pilot, "r")
        assert app.session.done is None
        assert app.session.records == []
        table = app.query_one(ParamsTable)
        assert table.row_count == 0
        assert app.query_one(PhaseBar).state.next_phase is Phase.DEFINE


async def test_tab_moves_focus_between_panes() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        seen = []
        for _ in range(6):
            await pilot.press("tab")
            await pilot.pause()
            seen.append(app.focused.id if app.focused else None)
        # Code, output and parameters are all reachable by tab.
        assert {"code", "output", "params"} <= set(seen)
        assert app.session.done is Phase.DEFINE  # tab ran nothing


async def test_question_mark_opens_help_and_escape_closes_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("#help-text").source
        for phase in ("define", "forward", "loss", "zero_grad", "backward", "step"):
            assert f"`{phase}`" in text
        # The stepper's keys are priority bindings; behind help they must not run a phase.
        await pilot.press("space", "a", "r")
        await pilot.pause()
        assert app.session.done is None and not app.busy
        assert app.session.accumulate is False
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        await press(pilot, "question_mark")
        await pilot.press("question_mark")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert not app.is_running


async def test_g_flips_the_tensor_view_between_data_and_grad() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, "space")
        view = app.query_one(TensorView)
        assert view.title_text == "conv1.bias.data"
        await press(pilot, "g")
        assert view.title_text == "conv1.bias.grad"
        assert "grad=None" in view.summary_text
        assert app.snapshot.values is None  # no grad before backward: nothing to draw
        await press(pilot, "g")
        assert view.title_text == "conv1.bias.data"
        assert torch.equal(torch.from_numpy(app.snapshot.values), app.session.tensor("conv1.bias"))


async def test_selecting_a_row_selects_the_parameter() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(5))  # through backward: the view follows to .grad
        table = app.query_one(ParamsTable)
        table.focus()
        assert table.cursor_name == "conv1.bias"
        await press(pilot, "down")
        assert table.cursor_name == "conv2.weight"
        assert app.selected == "conv2.weight"
        await show_view(pilot, "tab-tensor")  # behind the accumulation view after backward
        view = app.query_one(TensorView)
        assert view.title_text == "conv2.weight.grad"
        assert app.snapshot.values.shape == (16, 6, 5, 5)
        assert torch.equal(
            torch.from_numpy(app.snapshot.values), app.session.tensor("conv2.weight", "grad")
        )
        # The selection survives the next phase.
        await press(pilot, "space")
        assert app.selected == "conv2.weight"
        assert table.cursor_name == "conv2.weight"
