"""The diagnostics pane: what ``engine.diagnostics`` found after the phase just run.

One row per finding: its kind, the parameter or module it is about, and the engine's message
(which carries the numbers: the ratio, the share of dead units, how many backwards). The
record is immutable, so the pane keeps the one it drew and skips redrawing the same record.
"""

from __future__ import annotations

from functools import partial

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine import PhaseRecord

from ..background import PLACEHOLDER, PLACEHOLDER_STYLE, background_of, costly_record

# The kinds that mean the numbers are already broken, then the ones that say training will
# not work as written, then the informational ones.
SEVERITY = {
    "nonfinite": "error",
    "exploding": "warn",
    "vanishing": "warn",
    "unused": "warn",
    "dead_relu": "warn",
    "accumulated": "info",
    "tied": "info",
    "frozen": "info",
}


def tab_label(record: PhaseRecord | None) -> str:
    n = len(record.diagnostics) if record is not None else 0
    return f"diagnostics ({n})" if n else "diagnostics"


def render(record: PhaseRecord | None) -> Text:
    if record is None:
        return Text("Nothing has run yet: diagnostics appear after each phase.", style="dim")
    where = f"after {record.phase.value}"
    if record.phase.value != "define":
        where += f" (iteration {record.iteration})"
    if not record.diagnostics:
        return Text(f"{where}: nothing to report.", style="dim")
    text = Text(f"{where}: {len(record.diagnostics)} finding(s)\n", style="bold")
    order = list(SEVERITY)
    ranked = sorted(
        record.diagnostics, key=lambda d: order.index(d.kind) if d.kind in order else len(order)
    )
    for d in ranked:
        style = {"error": "bold red", "warn": "yellow", "info": "cyan"}[
            SEVERITY.get(d.kind, "info")
        ]
        text.append(f"{d.kind:<11}", style=style)
        subject = d.param or d.module
        if subject:
            text.append(f" {subject}", style="bold")
        text.append("\n")
        text.append(f"  {d.message}\n")
    text.rstrip()
    return text


class DiagnosticsPane(VerticalScroll, can_focus=True):
    """Shows the latest record's diagnostics, worst kind first."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.record: PhaseRecord | None = None
        self._drawn = False
        self._waiting = False  # showing the placeholder for ``record``

    def compose(self) -> ComposeResult:
        yield Static(render(None), id="diagnostics-text")

    @property
    def label(self) -> str:
        return tab_label(self.record)

    @property
    def plain(self) -> str:
        return render(self.record).plain

    def show(self, record: PhaseRecord | None) -> None:
        bg = background_of(self.app) if costly_record(record) else None
        if self._drawn and record is self.record:
            if self._waiting and bg is not None:  # ask again: a new snapshot dropped the task
                bg.submit((self, id(record)), partial(render, record), partial(self._ready, record))
            return
        self.record, self._drawn, self._waiting = record, True, bg is not None
        if bg is not None:
            # A big model's diagnostics are read on the background thread (tui/background.py).
            self.query_one("#diagnostics-text", Static).update(
                Text(PLACEHOLDER, style=PLACEHOLDER_STYLE)
            )
            bg.submit((self, id(record)), partial(render, record), partial(self._ready, record))
        else:
            self.query_one("#diagnostics-text", Static).update(render(record))
        self.scroll_home(animate=False)

    def _ready(self, record: PhaseRecord | None, text: Text) -> None:
        if record is self.record and self._waiting:  # still the record on view
            self._waiting = False
            self.query_one("#diagnostics-text", Static).update(text)
