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
