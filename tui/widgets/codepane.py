"""The code pane: the recipe's training loop, the phase just run highlighted, the next marked."""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from rich.syntax import Syntax
from rich.text import Text
from textual.geometry import Region, Size
from textual.strip import Strip

from engine import Phase
from engine.codegen import Listing

from .lines import text_strip
from .virtual import SteadyScrollView

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


class LineMark(NamedTuple):
    """How one line is marked: all a line's look depends on besides its code and width."""

    done: bool
    next: bool
    skipped: bool


class CodePane(SteadyScrollView, can_focus=True):
    """A read-only listing, drawn line by line.

    A phase changes the marks of a few lines: only those are drawn again (each line's strip is
    kept), instead of the whole listing and a layout of the pane every key press.
    """

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
        self._marks: tuple[LineMark, ...] = ()
        # (line, its marks, width) -> the line drawn; emptied when the listing or styles change.
        self._strips: dict[tuple[int, LineMark, int], Strip] = {}

    def show(
        self, listing: Listing, done: Phase | None, next_phase: Phase, accumulate: bool
    ) -> None:
        same_listing = self.listing is not None and self.listing.lines == listing.lines
        old_marks = self._marks
        self.listing = listing
        self.done = done
        self.next_phase = next_phase
        self.accumulate = accumulate
        self._marks = self._line_marks()
        if same_listing and len(old_marks) == len(self._marks):
            for i, (old, new) in enumerate(zip(old_marks, self._marks)):
                if old != new:
                    self.refresh_line(i)
        else:
            self._strips.clear()
            width = max((len(line) for line in listing.lines), default=0) + GUTTER
            self.virtual_size = Size(width, len(listing.lines))
            self.refresh()
        lines = listing.phase_lines.get(done) if done else None
        if lines:
            self.call_after_refresh(self._reveal, lines[0], lines[-1])

    def _line_marks(self) -> tuple[LineMark, ...]:
        listing = self.listing
        if listing is None:
            return ()
        done_lines = set(listing.phase_lines.get(self.done, ())) if self.done else set()
        next_lines = set(listing.phase_lines.get(self.next_phase, ()))
        skipped = set(listing.phase_lines.get(Phase.ZERO_GRAD, ())) if self.accumulate else set()
        return tuple(
            LineMark(i in done_lines, i in next_lines, i in skipped)
            for i in range(len(listing.lines))
        )

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # a new theme or class: the marks' colours may differ

    def on_resize(self) -> None:
        self._strips.clear()  # lines are padded to the visible width
        self.refresh()

    def _reveal(self, first: int, last: int) -> None:
        self.scroll_to_region(Region(0, first, 1, last - first + 1), animate=False)

    def _style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"codepane--{name}", partial=True))

    def _width(self) -> int:
        """Lines are padded to the visible width, no further: wider ones end in an ellipsis."""
        visible = self.scrollable_content_region.width - GUTTER
        if visible > 0 or self.listing is None:
            return visible
        return max((len(line) for line in self.listing.lines), default=0)

    def line_text(self, index: int, width: int) -> Text:
        """Line ``index`` with its gutter mark: ``✓`` the phase just run, ``▶`` the next one,
        ``⤼`` a skipped line (struck through)."""
        assert self.listing is not None
        mark = self._marks[index]
        out = Text(no_wrap=True, overflow="ellipsis")
        gutter = "✓" if mark.done else "▶" if mark.next else " "
        out.append(f"{gutter} ", style=self._style("gutter"))
        code = highlight(self.listing.text)[index].copy()
        code.rstrip()
        # The last line is not padded: its marks end with its code (as they always did).
        if len(code) < width and index < len(self._marks) - 1:
            code.pad_right(width - len(code))
        if mark.skipped:
            code.stylize(self._style("skipped"))
        if mark.done:
            code.stylize(self._style("done"))
        elif mark.next:
            code.stylize(self._style("next"))
        out.append_text(code)
        return out

    def render_listing(self) -> Text:
        """The whole listing as drawn (for tests and copy)."""
        if self.listing is None:
            return Text()
        width = self._width()
        out = Text(no_wrap=True, overflow="ellipsis")
        for i in range(len(self.listing.lines)):
            out.append_text(self.line_text(i, width))
            out.append("\n")
        out.rstrip()
        return out

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        size = self.scrollable_content_region.width
        if self.listing is None or not 0 <= index < len(self._marks):
            return Strip.blank(size, self.visual_style.rich_style)
        key = (index, self._marks[index], size)
        strip = self._strips.get(key)
        if strip is None:
            strip = text_strip(self, self.line_text(index, self._width()), size)
            if strip is None:
                strip = Strip.blank(size, self.visual_style.rich_style)
            self._strips[key] = strip
        return strip
