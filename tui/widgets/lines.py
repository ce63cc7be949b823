"""Drawing one line of text the way a Static would, for widgets that draw line by line."""

from __future__ import annotations

from rich.text import Text
from textual.content import Content
from textual.strip import Strip
from textual.visual import Visual
from textual.widget import Widget


def text_strip(widget: Widget, text: Text, width: int) -> Strip | None:
    """``text`` (one line) drawn ``width`` cells wide through Textual's own pipeline for text,
    so the cells are those a Static showing it would have; None when it draws nothing."""
    strips = Visual.to_strips(widget, Content.from_rich_text(text), width, 1, widget.visual_style)
    return strips[0] if strips else None
