"""A phase that switches the view arranges the screen once (tui/screens/main.py)."""

from __future__ import annotations

from engine import Phase
from tui.pilot import press, quiet_app, settle, steps
from tui.screens.main import MainScreen


async def test_a_view_switch_arranges_the_screen_once_per_layout() -> None:
    app = quiet_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await press(pilot, *steps(7))  # an iteration, and the next forward
        assert isinstance(app.screen, MainScreen)
        compositor = app.screen._compositor
        arrange = compositor._arrange_root
        calls: list[str] = []

        def counting(root, size, visible_only=True):  # type: ignore[no-untyped-def]
            calls.append("arrange")
            return arrange(root, size, visible_only)

        reflow = type(compositor).reflow

        def counting_reflow(parent, size):  # type: ignore[no-untyped-def]
            calls.append("reflow")
            return reflow(compositor, parent, size)

        compositor._arrange_root = counting  # type: ignore[method-assign]
        compositor.reflow = counting_reflow  # type: ignore[method-assign]
        for phase in (Phase.LOSS, Phase.ZERO_GRAD, Phase.BACKWARD, Phase.STEP):
            calls.clear()
            await press(pilot, "space")
            await settle(pilot)
            assert app.snapshot is not None and app.snapshot.done is phase
            # Each layout's reflow arranges every widget; nothing arranges them again
            # (Textual's full map was left marked stale by the hidden panes drawn first).
            assert calls.count("arrange") == calls.count("reflow"), (phase, calls)
            if phase is not Phase.ZERO_GRAD:
                assert calls.count("reflow") >= 1, phase  # the view switched: laid out
