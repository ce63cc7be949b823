"""The phase bar: the six phases by name, the one just run and the one next, and the loop state."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from engine import PHASES, Phase
from engine.summary import fmt


@dataclass(frozen=True)
class BarState:
    """Plain values only: safe to compare, safe to keep."""

    done: Phase | None = None
    next_phase: Phase = Phase.DEFINE
    iteration: int = 0
    next_iteration: int = 0
    accumulate: bool = False
    zero_grad_skipped: bool = False  # how zero_grad reads (as it ran, when just run)
    backwards: int = 0
    lr: float = 0.01
    busy: str = ""  # what the worker is doing right now, e.g. "running backward"
    queued: int = 0
    waited: int = 0  # seconds it has been running, once that is long (0: not shown)


class PhaseBar(Static):
    """``define ▸ forward ▸ loss ▸ zero_grad ▸ backward ▸ step`` with just-run and next marked."""

    COMPONENT_CLASSES = {
        "phasebar--done",
        "phasebar--next",
        "phasebar--idle",
        "phasebar--skipped",
        "phasebar--info",
        "phasebar--busy",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state = BarState()
        self._shown: tuple[BarState, str] | None = None
        # Component styles by name: the bar is drawn every phase with the same six.
        self._styles: dict[str, str] = {}

    def show(self, state: BarState) -> None:
        if (state, self.app.theme) == self._shown:
            return  # drawn already: a repaint would change nothing
        self.state = state
        self._shown = (state, self.app.theme)
        # The bar is two lines high whatever it says (#phasebar): no layout needed.
        self.update(self.render_state(state), layout=False)

    def on_mount(self) -> None:
        self.update(self.render_state(self.state))

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = {}  # a new theme or stylesheet: look them up again

    def _style(self, name: str) -> str:
        style = self._styles.get(name)
        if style is None:
            style = str(self.get_component_rich_style(f"phasebar--{name}", partial=True))
            self._styles[name] = style
        return style

    def render_state(self, s: BarState) -> Text:
        line = Text()
        for i, phase in enumerate(PHASES):
            if i:
                line.append(" ▸ ", style=self._style("info"))
            label = phase.value
            if phase is Phase.ZERO_GRAD and s.zero_grad_skipped:
                label = "zero_grad skipped"
            if phase is s.done:
                line.append(f" ✓ {label} ", style=self._style("done"))
            elif phase is s.next_phase:
                line.append(f" ▶ {label} ", style=self._style("next"))
            elif phase is Phase.ZERO_GRAD and s.zero_grad_skipped:
                line.append(f" {label} ", style=self._style("skipped"))
            else:
                line.append(f" {label} ", style=self._style("idle"))
        line.append("\n")
        info = [
            f"iteration {s.iteration}",
            # While it runs, the busy words name the phase: room for them on this line.
            *([] if s.busy else [f"next: {s.next_phase.value} (iteration {s.next_iteration})"]),
            f"accumulate: {'on' if s.accumulate else 'off'}",
            f".grad holds {s.backwards} backward{'s' if s.backwards != 1 else ''}",
            f"lr {fmt(s.lr)}",
        ]
        line.append(" · ".join(info), style=self._style("info"))
        if s.busy:
            extra = f" (+{s.queued} queued)" if s.queued else ""
            line.append(f"  {s.busy}…{extra}", style=self._style("busy"))
            if s.waited:
                # Said, because nothing else moves: a phase that never returns looks frozen.
                line.append(
                    f" {s.waited} s · q quits",
                    style=self._style("busy"),
                )
        return line
