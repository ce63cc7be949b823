"""Growing a line-drawn widget's scrollable area without laying out the whole screen."""

from __future__ import annotations

from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget


def set_virtual_size(widget: Widget, size: Size) -> None:
    """Give ``widget`` (a ScrollView whose own size does not follow its virtual size) a new
    virtual size, and lay the screen out only if a scrollbar appears or disappears.

    ``Widget.virtual_size`` is a reactive that lays out the whole screen on every change: a
    reflow of every widget and a redraw of every region that moved, milliseconds of each key's
    frame, although a ScrollView's place and size do not depend on what it scrolls over.
    """
    if size != widget.virtual_size:
        widget.set_reactive(Widget.virtual_size, size)
        virtual_size_changed(widget, size)


def virtual_size_changed(widget: Widget, size: Size) -> None:
    """Do for ``widget`` what a layout would after its virtual size changed: update its
    scrollbars (showing or hiding one is a reactive that lays the screen out itself), keep its
    scroll offset in range, repaint it."""
    if not widget.is_attached:
        # Removed (a DataTable measures its columns on idle, even after its removal): a
        # repaint would draw it while the screen's map still holds it, its styles gone.
        return
    # As ScrollView._size_updated: scrollbar changes are remembered within one layout only.
    widget._scrollbar_changes.clear()
    widget._scroll_update(size)
    widget.refresh()


class SteadyScrollView(ScrollView):
    """A ScrollView whose scrollbars are repainted only when what they draw changed.

    Widget._scroll_update repaints both scrollbars each time it runs, and ScrollView runs it
    in every layout of the screen: it compares the layout's virtual size (the content box)
    with the widget's own (what it scrolls over, set by the widget), which for a line-drawn
    pane never agree. Each key's frame redrew the output and explanation panes' scrollbars (a
    few tenths of a millisecond each) though nothing they draw had changed.

    What a scrollbar draws is its reactives (sizes, position), which repaint it when set to a
    new value, and its parent's scrollbar styles: a restyle of the parent repaints it no more
    here than Textual does outside a layout.
    """

    def _scroll_update(self, virtual_size: Size) -> None:
        # Widget._scroll_update (Textual 8.2.8, pinned) without its repaint of the scrollbars.
        self._refresh_scrollbars()
        width, height = self.container_size
        if self.show_vertical_scrollbar and self.styles.scrollbar_size_vertical:
            self.vertical_scrollbar.window_virtual_size = virtual_size.height
            self.vertical_scrollbar.window_size = height - self.scrollbar_size_horizontal
        if self.show_horizontal_scrollbar and self.styles.scrollbar_size_horizontal:
            self.horizontal_scrollbar.window_virtual_size = virtual_size.width
            self.horizontal_scrollbar.window_size = width - self.scrollbar_size_vertical
        self.scroll_x = self.validate_scroll_x(self.scroll_x)
        self.scroll_y = self.validate_scroll_y(self.scroll_y)
