"""Slow work that is not a phase, queued on the same one-at-a-time worker as the phases.

Checking a user model (the model modal) and resolving a recipe for export both import and
build the user's model under ``fork_rng``: too slow for the event loop, and never safe beside a
running phase. A ``Job`` waits in the app's queue with the key presses; ``run`` happens on the
worker thread, ``done`` back on the event loop with what ``run`` returned or raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import Recipe
from engine.export import export_script


@dataclass(frozen=True, eq=False)
class Job:
    label: str  # what the phase bar says while it runs, e.g. "checking model"
    run: Callable[[], Any]  # on the worker thread
    # On the event loop: ``run``'s result and None, or None and the exception it raised.
    done: Callable[[Any, Exception | None], None]


def write_export(recipe: Recipe, accumulate: bool, iterations: int, path: str) -> None:
    """Write ``recipe`` as a plain PyTorch script to ``path`` (``resolve`` may build a model)."""
    script = export_script(recipe, accumulate, iterations)
    with open(path, "w", encoding="utf-8") as f:
        f.write(script)
