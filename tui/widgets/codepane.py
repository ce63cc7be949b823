"""The code pane: the recipe's training loop, the phase just run highlighted, the next marked."""

from __future__ import annotations

from functools import lru_cache

from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widgets import Static

from engine import Phase
from engine.codegen import Listing

# Fixed, so highlighted code looks the same in every terminal and snapshot.
THEME = "monokai"
GUTTER = 2  # "✓ " / "▶ " before each line


@lru_cache(maxsize=8)
def highlight(text: str) -> tuple[Text, ...]:
    """The listing's lines, highlighted (a third of drawing a phase; only the marks change).

    Callers copy a line before styling it: the cached ``Text`` objects are never changed.
    """
    syntax = Syntax("", "python", theme=THEME, background_color="default")
    return tuple(syntax.highlight(text).split("\n", allow_blank=True))


class CodePane(VerticalScroll, can_focus=True):
    """A read-only listing; ``show`` re-renders it for a phase and accumulate setting."""

    COMPONENT_CLASSES = {
        "codepane--done",
        "codepane--next",
        "codepane--skipped",
        "codepane--gutter",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.listing: Listing | None = None
        self.done: Phase | None = None
        self.next_phase: Phase = Phase.DEFINE
        self.accumulate = False
        self._code = Static(id="code-text")

    def compose(self):  # noqa: ANN201 - Textual's ComposeResult
        yield self._code

    def show(
        self, listing: Listing, done: Phase | None, next_phase: Phase, accumulate: bool
    ) -> None:
        # The same listing is as high and as wide as before (lines are padded to the pane's
        # width): only the marks change, no layout needed.
        same_size = self.listing is not None and self.listing.lines == listing.lines
        self.listing = listing
        self.done = done
        self.next_phase = next_phase
        self.accumulate = accumulate
        self._code.update(self.render_listing(), layout=not same_size)
        lines = listing.phase_lines.get(done) if done else None
        if lines:
            self.call_after_refresh(self._reveal, lines[0], lines[-1])

    def on_resize(self) -> None:
        self._code.update(self.render_listing())

    def _reveal(self, first: int, last: int) -> None:
        self.scroll_to_region(Region(0, first, 1, last - first + 1), animate=False)

    def _style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"codepane--{name}", partial=True))

    def render_listing(self) -> Text:
        """Gutter marks: ``✓`` the phase just run, ``▶`` the next one, ``⤼`` a skipped line."""
        if self.listing is None:
            return Text()
        listing = self.listing
        done_lines = set(listing.phase_lines.get(self.done, ())) if self.done else set()
        next_lines = set(listing.phase_lines.get(self.next_phase, ()))
        skipped = set(listing.phase_lines.get(Phase.ZERO_GRAD, ())) if self.accumulate else set()
        highlighted = highlight(listing.text)
        out = Text(no_wrap=True, overflow="ellipsis")
        # Pad to the visible width, no further: a wider line would be cut with an ellipsis.
        visible = self.scrollable_content_region.width - GUTTER
        width = visible if visible > 0 else max((len(line) for line in listing.lines), default=0)
        for i, code in enumerate(highlighted[: len(listing.lines)]):
            mark = "✓" if i in done_lines else "▶" if i in next_lines else " "
            out.append(f"{mark} ", style=self._style("gutter"))
            code = code.copy()
            code.rstrip()
            if len(code) < width:
                code.pad_right(width - len(code))
            if i in skipped:
                code.stylize(self._style("skipped"))
            if i in done_lines:
                code.stylize(self._style("done"))
            elif i in next_lines:
                code.stylize(self._style("next"))
            out.append_text(code)
            out.append("\n")
        out.rstrip()
        return out
