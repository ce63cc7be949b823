"""The explanation pane: what the phase just run did, why, and what to look at (en or ko)."""

from __future__ import annotations

from collections import OrderedDict

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Static

from engine import Phase, Recipe
from engine.explain import explain

# Explanations kept as Textual content: the same few come back every iteration, and a kept
# Content keeps its wrapped lines and height (Textual caches them on the object), so a phase
# does not wrap its text again for the layout and the frame.
KEPT = 64


def heading(phase: Phase, ran: bool, lang: str) -> str:
    if lang == "ko":
        return f"{phase.value} · 방금 실행" if ran else f"{phase.value} · 다음 단계"
    return f"{phase.value} · just ran" if ran else f"{phase.value} · next"


class ExplainPane(VerticalScroll, can_focus=True):
    """Shows ``engine.explain`` for the last phase run (before define: for define, next).

    Shown (class ``-shown``) from 120×40 on, or when ``x`` or a language chosen in the palette
    asks for it; styled in ``tui/styles/explain.tcss``.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = ""
        self.title = ""
        self._kept: OrderedDict[tuple[str, str], Content] = OrderedDict()

    def compose(self) -> ComposeResult:
        yield Static(id="explain-text")

    def show(
        self,
        done: Phase | None,
        next_phase: Phase,
        recipe: Recipe,
        accumulate: bool,
        lang: str,
        output_shape: tuple[int, ...] | None = None,
    ) -> None:
        """``output_shape``: what the last forward returned (the forward text names it)."""
        phase = done if done is not None else next_phase
        text = explain(phase, recipe, accumulate, lang, output_shape)
        title = heading(phase, done is not None, lang)
        if (text, title) == (self.text, self.title):
            return  # same words: keep the reader's scroll position
        self.text, self.title = text, title
        self.query_one("#explain-text", Static).update(self._content(title, text))
        self.scroll_home(animate=False)

    def _content(self, title: str, text: str) -> Content:
        content = self._kept.get((title, text))
        if content is None:
            body = Text(title + "\n", style="bold")
            body.append(text)
            # As Static.update converts a Text (textual.visual.visualize).
            content = Content.from_rich_text(body, console=self.app.console)
            self._kept[(title, text)] = content
            if len(self._kept) > KEPT:
                self._kept.popitem(last=False)
        else:
            self._kept.move_to_end((title, text))
        return content
