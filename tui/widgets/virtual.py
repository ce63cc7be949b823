"""Growing a line-drawn widget's scrollable area without laying out the whole screen."""

from __future__ import annotations

from textual.geometry import Size
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
