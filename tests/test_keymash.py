"""500 random keys, resizes among them, many pressed while a phase is still running.

Every 50 keys (and at the end) the app must be alive, show no internal error, and its screen
must agree with the engine: the phase bar's state and its painted text name the session's
last phase, next phase, iteration and accumulate setting; the parameter table has one row per
parameter. Keys are drawn from a seeded ``random.Random`` so a failure replays exactly.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from textual import events
from textual.geometry import Region, Size

from engine import Phase, Recipe
from tui.app import NNTuiApp
from tui.pilot import settle
from tui.widgets.errorbar import ErrorBar
from tui.widgets.paramtable import ParamsTable
from tui.widgets.phasebar import PhaseBar

# Loop keys weighted up so the run gets through many iterations; the rest is everything else
# the app binds (bar q, which quits, and ctrl+p, whose palette would type the keys into a
# search box and could run any command) plus keys it does not bind.
LOOP_KEYS = ["space"] * 6 + ["n", "right"] * 2 + ["left", "p"] * 2
OTHER_KEYS = [
    "a",
    "r",
    "g",
    "v",
    "x",
    "e",
    "tab",
    "shift+tab",
    "question_mark",
    "escape",
    "up",
    "down",
    "enter",
    "home",
    "end",
    "pagedown",
    "z",
    "1",
]
KEYS = LOOP_KEYS + OTHER_KEYS
SIZES = [(120, 40), (80, 24), (60, 18), (140, 45), (40, 12), (100, 30)]
CHECK_SIZE = (120, 40)  # wide enough that the two-line phase bar is painted unwrapped
N_KEYS = 500
# The character a terminal sends with each named key (None: an escape sequence, no char).
CHARS = {"space": " ", "question_mark": "?", "escape": "\x1b", "enter": "\r", "tab": "\t"}


def send_key(app: NNTuiApp, key: str) -> None:
    """Deliver a key the way the terminal driver does, without waiting for anything.

    ``pilot.press`` waits until the process is idle, which with a phase running on the
    worker thread means until the phase is done: keys would never arrive mid-phase.
    """
    char = CHARS.get(key, key if len(key) == 1 else None)
    event = events.Key(key, char)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)


def resize(app: NNTuiApp, width: int, height: int) -> None:
    """What ``pilot.resize_terminal`` does, minus its wait for idle (so mid-phase too)."""
    size = Size(width, height)
    app._driver._size = size  # type: ignore[union-attr]  # the headless driver's size
    app.post_message(events.Resize(size, size))


def painted(widget: PhaseBar) -> str:
    """The text the compositor gets from the phase bar for its current size."""
    width, height = widget.size
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, width, height)))


async def check(app: NNTuiApp, pilot) -> None:  # type: ignore[no-untyped-def]
    while app.screen is not app.screen_stack[0]:  # help screen open: close it
        await pilot.press("escape")
    await pilot.resize_terminal(*CHECK_SIZE)
    await settle(pilot)
    assert app.is_running
    assert "internal error" not in app.query_one(ErrorBar).message
    s = app.session
    bar = app.query_one(PhaseBar)
    state = bar.state
    assert (state.done, state.iteration) == (s.done, s.iteration)
    assert (state.next_phase, state.next_iteration) == (s.next_phase, s.next_iteration)
    assert (state.accumulate, state.backwards, state.busy) == (s.accumulate, s.backwards, "")
    text = painted(bar)
    if s.done is not None:
        # The phase just run reads as it ran (the record), whatever accumulate says now.
        ran_skipped = s.done is Phase.ZERO_GRAD and s.records[-1].skipped
        label = "zero_grad skipped" if ran_skipped else s.done.value
        assert f"✓ {label}" in text, text
    assert f"▶ {s.next_phase.value}" in text or (
        s.next_phase is Phase.ZERO_GRAD and s.accumulate
    ), text
    assert re.search(rf"\biteration {s.iteration}\b", text), text
    assert f"accumulate: {'on' if s.accumulate else 'off'}" in text, text
    table = app.query_one(ParamsTable)
    assert table.row_count == (len(s.names) if s.records else 0)
    assert [r.phase for r in s.records][-1:] == ([s.done] if s.done else [])


async def test_500_random_keys_keep_the_app_alive_and_truthful(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # ``e`` exports a script into the working directory
    rng = random.Random(20240607)
    app = NNTuiApp(Recipe(seed=0), history_bytes=8 * 2**20)
    app.animation_level = "none"
    pressed_while_busy = 0
    phases_run = 0
    async with app.run_test(size=CHECK_SIZE) as pilot:
        await settle(pilot)
        for i in range(N_KEYS):
            if i % 37 == 36:
                resize(app, *rng.choice(SIZES))
            pressed_while_busy += app.busy
            send_key(app, rng.choice(KEYS))
            # Sometimes straight on (keys pile up behind the phase), sometimes a typist's gap.
            await asyncio.sleep(rng.choice([0, 0, 0.002, 0.01, 0.03]))
            if i % 50 == 49:
                phases_run = max(phases_run, len(app.session.records))
                await check(app, pilot)
        await check(app, pilot)
        # The mashing reached real states: several phases deep, and keys landed mid-phase.
        assert phases_run >= 6
        assert pressed_while_busy >= 10
        # And the app still does the next thing asked of it, exactly once.
        before = (app.session.done, len(app.session.records))
        await pilot.press("space")
        await settle(pilot)
        assert app.session.done is app.session.records[-1].phase
        assert len(app.session.records) == before[1] + 1 or (
            before[0] is None and app.session.done is Phase.DEFINE
        )
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code in (0, None)


async def test_many_iterations_in_a_row_stay_alive() -> None:
    """Past ten iterations the plots stop labelling every tick; that must not crash the app."""
    app = NNTuiApp(Recipe(seed=0))
    app.animation_level = "none"
    iterations = 12
    async with app.run_test(size=CHECK_SIZE) as pilot:
        await settle(pilot)
        for _ in range(1 + iterations * 5):
            send_key(app, "space")
            await settle(pilot)
        assert app.is_running
        assert (app.session.done, app.session.iteration) == (Phase.STEP, iterations)
        await check(app, pilot)
