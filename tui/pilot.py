"""Driving the app headless: press keys and wait until every queued phase has landed.

Shared by the pilot tests, the snapshot tests and ``tools/screenshots.py``, so all three see
the app in the same settled state.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from textual.pilot import Pilot

from engine import Recipe

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


async def show_view(pilot: Pilot, view: str) -> None:
    """Bring tab ``view`` forward as a phase would (not pinned), and let its pane draw.

    Panes in hidden tabs are drawn when their tab is shown: a test reads one after this.
    """
    app = pilot.app
    assert isinstance(app, NNTuiApp)
    app._activate_view(view)
    await settle(pilot)


def steps(n: int) -> tuple[str, ...]:
    return ("space",) * n


@dataclass(frozen=True)
class Scene:
    """Keys pressed on a fresh app (seed 0) and the options it was started with."""

    keys: tuple[str, ...]
    accumulate: bool = False
    lang: str = "en"
    data: str = "random"
    loss: str = "mse"


# The states README shows and the snapshot tests pin.
SCENES: dict[str, Scene] = {
    "start": Scene(()),
    "after-loss": Scene(steps(3)),
    "after-backward": Scene(steps(5)),
    "accumulate-two-backwards": Scene(steps(10), accumulate=True),
    "after-step": Scene(steps(6)),
    "help": Scene(("question_mark",)),
    "activation-after-forward": Scene(steps(2) + ("m",)),
    "explain-ko": Scene(steps(5), lang="ko"),
    # After step the tensor view follows; v ×4 (tensor → … → digits) shows the batch.
    "digits-after-step": Scene(steps(6) + ("v",) * 4, data="digits", loss="cross-entropy"),
}
SIZE = (120, 40)


def quiet_app(recipe: Recipe | None = None, **kw: Any) -> NNTuiApp:
    """An app for tests and pictures: seed 0 unless a recipe is given, animations off."""
    app = NNTuiApp(recipe or Recipe(seed=0), **kw)
    app.animation_level = "none"
    return app


def scene_app(name: str) -> NNTuiApp:
    """A fresh app for scene ``name``: seed 0, the scene's recipe, animations off."""
    scene = SCENES[name]
    recipe = Recipe(seed=0, data=scene.data, loss=scene.loss)
    return quiet_app(recipe, accumulate=scene.accumulate, lang=scene.lang)


async def play(pilot: Pilot, name: str) -> None:
    """Drive a fresh ``scene_app(name)`` into its scene."""
    await press(pilot, *SCENES[name].keys)
