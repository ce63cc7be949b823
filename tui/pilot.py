"""Driving the app headless: press keys and wait until every queued phase has landed.

Shared by the pilot tests, the snapshot tests and ``tools/screenshots.py``, so all three see
the app in the same settled state.
"""

from __future__ import annotations

import asyncio
import time

from textual.pilot import Pilot

from .app import NNTuiApp


async def settle(pilot: Pilot, timeout: float = 30.0) -> None:
    """Wait until the worker is idle and its last snapshot is on screen."""
    app = pilot.app
    assert isinstance(app, NNTuiApp)
    deadline = time.monotonic() + timeout
    while app.busy or app.snapshot is None:
        if time.monotonic() > deadline:
            raise TimeoutError("nntui did not settle: a phase is still running")
        await asyncio.sleep(0.01)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def press(pilot: Pilot, *keys: str) -> None:
    """Press each key and let its phase finish before the next (the way a person reads)."""
    await settle(pilot)
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


def steps(n: int) -> tuple[str, ...]:
    return ("space",) * n


# The states README shows and the snapshot tests pin: name -> (keys from a fresh app, accumulate).
SCENES: dict[str, tuple[tuple[str, ...], bool]] = {
    "start": ((), False),
    "after-loss": (steps(3), False),
    "after-backward": (steps(5), False),
    "accumulate-two-backwards": (steps(10), True),
    "after-step": (steps(6), False),
    "help": (("question_mark",), False),
}
SIZE = (120, 40)


def scene_app(name: str) -> NNTuiApp:
    """A fresh app for scene ``name``: the default recipe, seed 0, animations off."""
    from engine import Recipe

    _, accumulate = SCENES[name]
    app = NNTuiApp(Recipe(seed=0), accumulate=accumulate)
    app.animation_level = "none"
    return app


async def play(pilot: Pilot, name: str) -> None:
    """Drive a fresh ``scene_app(name)`` into its scene."""
    await press(pilot, *SCENES[name][0])
