"""The explanation pane: what the phase just run did, why, and what to look at (en or ko)."""

from __future__ import annotations

from collections import OrderedDict

from rich.text import Text
from textual.content import Content
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget

from engine import Phase, Recipe
from engine.explain import explain

from .virtual import SteadyScrollView, set_virtual_size

# Explanations kept as Textual content: the same few come back every iteration, and a kept
# Content keeps its wrapped lines and height (Textual caches them on the object), so a phase
# does not wrap its text again for the layout and the frame.
KEPT = 64
EMPTY = Content("")  # never freed: heights are kept by the id of their content


def heading(phase: Phase, ran: bool, lang: str) -> str:
    if lang == "ko":
        return f"{phase.value} · 방금 실행" if ran else f"{phase.value} · 다음 단계"
    return f"{phase.value} · just ran" if ran else f"{phase.value} · next"


class ExplainPane(SteadyScrollView, can_focus=True):
    """Shows ``engine.explain`` for the last phase run (before define: for define, next).

    Shown (class ``-shown``) from 120×40 on, or when ``x`` or a language chosen in the palette
    asks for it; styled in ``tui/styles/explain.tcss``.

    Drawn line by line, as a ``Static`` in a ``VerticalScroll`` (what it was) would draw the
    text, at the same width and height: a new explanation every phase laid the whole screen
    out (the Static's height), where only this pane's lines and scrollbar change. The screen
    is laid out only when the pane's own height changes (``_set_content``).
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = ""
        self.title = ""
        self._kept: OrderedDict[tuple[str, str], Content] = OrderedDict()
        self._content = EMPTY
        # (id of a kept content, width, wrapping styles) -> its height (``_lines_at``).
        self._heights: dict[tuple[object, ...], int] = {}
        # (id of a kept content, width, style) -> its lines drawn (``render_line``).
        self._drawn: dict[tuple[object, ...], list[Strip]] = {}

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
        self._set_content(self._content_for(title, text))
        self.scroll_home(animate=False)

    def _content_for(self, title: str, text: str) -> Content:
        content = self._kept.get((title, text))
        if content is None:
            body = Text(title + "\n", style="bold")
            body.append(text)
            # As Static.update converts a Text (textual.visual.visualize).
            content = Content.from_rich_text(body, console=self.app.console)
            self._kept[(title, text)] = content
            if len(self._kept) > KEPT:
                self._kept.popitem(last=False)
                # The ids of dropped contents may come back.
                self._heights.clear()
                self._drawn.clear()
        else:
            self._kept.move_to_end((title, text))
        return content

    # ------------------------------------------------------------------ size
    def _lines_at(self, width: int, content: Content | None = None) -> int:
        """The content's height wrapped at ``width`` (0 at no width, as a Static's)."""
        content = self._content if content is None else content
        if width <= 0:
            return 0
        # Content remembers one width only, and the pane asks at two (with and without its
        # scrollbar) for two texts each phase: wrapping again each time cost milliseconds.
        styles = self.styles
        key = (id(content), width, styles.line_pad, styles.text_overflow, styles.text_wrap)
        height = self._heights.get(key)
        if height is None:
            if len(self._heights) >= 4 * KEPT:
                self._heights.clear()
            height = self._heights[key] = content.get_height(styles, width)
        return height

    def _set_content(self, content: Content) -> None:
        old = self._content
        self._content = content
        width, height = self.outer_size - self.styles.gutter.totals  # inside padding, border
        parent = self.parent
        if not self.display or height <= 0 or not isinstance(parent, Widget):
            self.refresh(layout=True)  # laid out (and sized) when shown
            return
        before, after = self._lines_at(width, old), self._lines_at(width)
        # The pane's height (height: auto) is its text's height at its full content width,
        # up to its max-height: it stays when both texts fill it (the pane was cut short).
        # Unless the cap is a share of a parent as tall as its content (narrow screens: the
        # pane and its parent size each other, and each layout moves them).
        fixed_cap = not parent.styles.is_auto_height
        if before != after and not (fixed_cap and before > height and after >= height):
            # Measured in the layout, at the new height: measured now, at the old one, the
            # text could show a scrollbar the new height does not need.
            self.refresh(layout=True)
            return
        set_virtual_size(self, self._measure(self.outer_size))  # a scrollbar shown lays out
        self.refresh()

    def _text_width(self, outer: Size) -> int:
        """The width the text is drawn at in a pane ``outer`` big: inside padding and border,
        less the vertical scrollbar when one shows (``scrollable_content_region``, which asks
        the screen's map for the pane's region: a whole arrangement when the map is stale)."""
        return max(0, outer.width - self.styles.gutter.width - self.scrollbar_size_vertical)

    def _measure(self, outer: Size) -> Size:
        """The text's size at the width it is drawn, as a VerticalScroll measures its Static."""
        width = self._text_width(outer)
        return Size(width, self._lines_at(width))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # As a VerticalScroll of height auto measures its Static: at the full content width.
        return self._lines_at(width)

    def _size_updated(
        self, size: Size, virtual_size: Size, container_size: Size, layout: bool = True
    ) -> bool:
        # Measured at the width this layout gives, before the scrollbars are updated to it.
        before = self.virtual_size
        after = self._measure(size)
        self.set_reactive(ScrollView.virtual_size, after)
        resized = super()._size_updated(size, virtual_size, container_size, layout)
        if after != before:
            self._scroll_update(after)  # super may have seen nothing else change
            self.refresh()
        return resized

    # ------------------------------------------------------------------ drawing
    def render_line(self, y: int) -> Strip:
        width = self._text_width(self.outer_size)
        style = self.visual_style
        # The same few explanations come back every iteration: their lines are kept drawn
        # (not while text is selected: the selection is drawn into them).
        key = (id(self._content), width, style)
        strips = self._drawn.get(key) if self.text_selection is None else None
        if strips is None:
            if len(self._drawn) >= KEPT:
                self._drawn.clear()
            strips = Visual.to_strips(self, self._content, width, self._lines_at(width), style)
            self._drawn[key] = strips
        index = y + self.scroll_offset.y
        return strips[index] if 0 <= index < len(strips) else Strip.blank(width, style.rich_style)
