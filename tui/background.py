"""Costly statistics read off the event loop, so a phase's first frame does not wait for them.

A record's numbers are computed when first read (engine.lazy), from tensors nothing writes to:
reading them is thread-safe. On a big model (20 × 1024² parameters) reading what the panes
show costs more than 100 ms after a step (the output block's SGD check over every parameter,
a norm per 1 M-element tensor). There the panes draw a placeholder (``PLACEHOLDER``) first and
ask ``Background`` for the values: one thread computes them, one task at a time, newest
snapshot first (queued work for an older one is dropped, and the panes ask again for what they
still show), starting once the frame that shows the phase is painted, and posts each result
back; the pane applies it only if it still shows the same record or cell, so a value on screen
is never stale. Small tensors (the tutorial Net's) are read synchronously as before: nothing
about them changes.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from textual.app import App

    from engine import PhaseRecord
    from engine.summary import TensorSummary

# A summary of more elements than this is read off the event loop (a norm of 2^18 float32
# is ~0.5 ms here; a 1024×1024 weight ~3 ms).
DEFER_NUMEL = 1 << 18
# A record whose parameters hold more elements than this computes its printed text, checks and
# diagnostics off the event loop (the tutorial Net has 61,706).
DEFER_RECORD_NUMEL = 1 << 20
PLACEHOLDER = "…"
PLACEHOLDER_STYLE = "dim"
# Seconds after a submit by which the thread has started even if the call filed for after the
# frame was lost with its screen.
START_LATEST = 0.5


def costly_summary(summary: TensorSummary | None) -> bool:
    """Reading ``summary``'s norm (and flags) would pass over a big tensor not read yet."""
    if summary is None or summary.numel <= DEFER_NUMEL:
        return False
    # Already read (a parameter unchanged since the last phase reuses its summary): the
    # values are plain numbers now. A zero or non-finite norm needs more passes.
    norm = summary.known_norm
    return norm is None or norm == 0 or not math.isfinite(norm)


def costly_record(record: PhaseRecord | None) -> bool:
    return record is not None and sum(p.numel for p in record.params) > DEFER_RECORD_NUMEL


class _Start:
    """Starts the background thread once, whichever of its two callers comes first."""

    def __init__(self, background: Background) -> None:
        self.background: Background | None = background

    def __call__(self) -> None:
        background, self.background = self.background, None
        if background is not None:
            background._run()


@dataclass
class Task:
    key: object  # what it computes (deduplicated among queued tasks)
    compute: Callable[[], Any]  # thread-safe: runs on the background thread
    apply: Callable[[Any], None]  # runs on the event loop; checks it still applies


class Background:
    """One background thread at a time computing ``Task``s; results posted to the app."""

    @dataclass
    class Done(Message):
        """Posted by the background thread: ``task`` computed ``value`` (or raised ``error``)."""

        task: Task
        value: Any
        error: Exception | None

    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._queue: deque[Task] = deque()
        self._keys: set[object] = set()
        self._running = False
        self._unapplied = 0  # computed (or computing), not yet applied on the event loop

    @property
    def pending(self) -> int:
        """Tasks queued, running, or computed but not yet applied: 0 once nothing on screen
        waits for a value (tools/bench.py's "complete" frame)."""
        with self._lock:
            return len(self._queue) + self._unapplied

    def new_snapshot(self) -> None:
        """A newer snapshot is being drawn: drop what was queued for the older one (the panes
        submit again what they still show)."""
        with self._lock:
            self._queue.clear()
            self._keys.clear()

    def submit(self, key: object, compute: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        with self._lock:
            if key in self._keys:
                return
            self._keys.add(key)
            self._queue.append(Task(key, compute, apply))
            if self._running:
                return
            self._running = True
        # The thread starts after the frame being prepared, not now: its passes over big
        # tensors on the other core (and its share of the GIL) slowed the very frame that
        # shows the phase, about 10 ms of a 20x1024 MLP key's p95 (tools/bench.py latency).
        # ``call_after_refresh`` runs at once when nothing waits to be painted. It files the
        # call with the screen on top, which drops it if popped first (help closed as a
        # phase ends): a timer starts the thread then, or the values would never come.
        start = _Start(self)
        if self.app.call_after_refresh(start):
            self.app.set_timer(START_LATEST, start, name="background-start")
            return
        # The app is closing (its queue takes nothing more): no thread for values nobody will
        # see, which Python would wait for at exit.
        with self._lock:
            self._queue.clear()
            self._keys.clear()
            self._running = False

    def _run(self) -> None:
        self.app.run_worker(self._drain, thread=True, group="background", exit_on_error=False)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    return
                task = self._queue.popleft()
                self._keys.discard(task.key)
                self._unapplied += 1
            try:
                value, error = task.compute(), None
            except Exception as exc:  # reported on the event loop (``done``)
                value, error = None, exc
            self.app.post_message(self.Done(task, value, error))

    def done(self, message: Done) -> Exception | None:
        """On the event loop: apply a result; returns the error the task raised, if any."""
        with self._lock:
            self._unapplied -= 1
        if message.error is None:
            message.task.apply(message.value)
        return message.error


def background_of(app: object) -> Background | None:
    """The app's ``Background`` (None in a bare test app: everything is then read at once)."""
    bg = getattr(app, "background", None)
    return bg if isinstance(bg, Background) else None
