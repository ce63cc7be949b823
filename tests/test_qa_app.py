"""QA: user model code that would take the app down, driven by key presses."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Phase, Recipe
from tests.qa_models import MODELS
from tui.app import NNTuiApp
from tui.pilot import press, steps
from tui.widgets.codepane import CodePane
from tui.widgets.errorbar import ErrorBar
from tui.widgets.phasebar import PhaseBar

SIZE = (120, 40)


def make_app(tmp_path: Path, name: str) -> NNTuiApp:
    path = tmp_path / "qa_app_models.py"
    path.write_text(MODELS)
    # --target-shape: no dry forward at define, so the first forward call is the forward phase.
    app = NNTuiApp(Recipe(model=f"{path}:{name}", input_shape=(2, 4), target_shape=(2, 3)))
    app.animation_level = "none"
    return app


@pytest.mark.parametrize("name", ["Exits", "Interrupts"])
async def test_forward_that_exits_or_interrupts_is_a_phase_error(tmp_path: Path, name: str) -> None:
    app = make_app(tmp_path, name)
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(2))  # define, forward (raises)
        assert app.is_running
        message = app.query_one(ErrorBar).message
        assert message.startswith("✗ forward failed (iteration 1): net ("), message
        assert message.endswith("the loop is still after define.")
        assert app.session.done is Phase.DEFINE and app.snapshot.done is Phase.DEFINE
        await press(pilot, "left")  # and the app goes on
        assert app.session.done is None and app.query_one(ErrorBar).message == ""


async def test_rewind_whose_forward_fails_shows_why_and_stays(tmp_path: Path) -> None:
    app = make_app(tmp_path, "FailsOnSecondCall")
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(3))  # define, forward, loss
        await press(pilot, "left")  # rewinding to after forward recomputes it: call 2 raises
        assert app.is_running
        message = app.query_one(ErrorBar).message
        assert message == (
            "✗ forward failed (iteration 1): net (FailsOnSecondCall): input [2, 4]: second call"
            " — nothing changed, the loop is still after loss."
        )
        assert app.session.done is Phase.LOSS and app.snapshot.done is Phase.LOSS
        assert app.snapshot.next_phase is Phase.ZERO_GRAD
        assert len(app.session.records) == 3
        await press(pilot, "left")  # call 3 works: the rewind goes through this time
        assert app.session.done is Phase.FORWARD and app.query_one(ErrorBar).message == ""


def _bar(app: NNTuiApp) -> str:
    bar = app.query_one(PhaseBar)
    return bar.render_state(bar.state).plain


def _zero_grad_line(app: NNTuiApp) -> str:
    pane = app.query_one(CodePane)
    line = pane.listing.phase_lines[Phase.ZERO_GRAD][0]
    return pane.render_listing().plain.splitlines()[line]


@pytest.mark.parametrize("accumulate", [False, True])
async def test_the_zero_grad_just_run_reads_as_it_ran_after_toggling_accumulate(
    accumulate: bool,
) -> None:
    # Was: "✓ zero_grad skipped" and "✓ # optimizer.zero_grad()  # skipped" for a zero_grad
    # that had just set every .grad to None, because the label followed the new setting.
    app = NNTuiApp(Recipe(seed=0), accumulate=accumulate)
    app.animation_level = "none"
    async with app.run_test(size=SIZE) as pilot:
        await press(pilot, *steps(4))  # define, forward, loss, zero_grad
        assert app.session.records[-1].skipped is accumulate
        await press(pilot, "a")  # the setting flips; what ran does not
        assert app.session.accumulate is not accumulate
        ran = "✓ zero_grad skipped " if accumulate else "✓ zero_grad "
        assert ran in _bar(app) and f"accumulate: {'off' if accumulate else 'on'}" in _bar(app)
        assert ("# skipped" in _zero_grad_line(app)) is accumulate
        assert _zero_grad_line(app).startswith("✓")
        await press(pilot, *steps(4))  # backward, step, forward, loss: the next zero_grad
        upcoming = "▶ zero_grad " if accumulate else "▶ zero_grad skipped "
        assert upcoming in _bar(app)
        assert ("# skipped" in _zero_grad_line(app)) is not accumulate
