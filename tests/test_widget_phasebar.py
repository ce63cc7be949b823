"""The phase bar keeps its component styles between phases, and takes new ones with a theme."""

from __future__ import annotations

from tui.pilot import press, quiet_app
from tui.widgets.phasebar import PhaseBar

NAMES = ("done", "next", "idle", "info")


async def test_phase_bar_styles_follow_the_theme() -> None:
    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, "space")
        bar = app.query_one(PhaseBar)
        dark = [bar._style(name) for name in NAMES]
        app.theme = "nord"  # another accent and success colour than textual-dark
        await pilot.pause()
        await press(pilot, "space")
        nord = [bar._style(name) for name in NAMES]
        looked_up = [
            str(bar.get_component_rich_style(f"phasebar--{name}", partial=True)) for name in NAMES
        ]
        assert nord == looked_up
        assert nord != dark
