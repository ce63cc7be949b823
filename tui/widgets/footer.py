"""The key footer, which leaves out a few keys when the terminal is narrow.

At 80 columns the full list runs past the edge and takes help and quit with it. Below
``narrow_width`` the keys in ``narrow_hidden`` are left out (they stay bound, and the help
screen lists them) so that ``?`` and ``q`` always show.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.reactive import reactive
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # not re-exported; Textual is pinned exactly


class LoopFooter(Footer):
    narrow: reactive[bool] = reactive(False, recompose=True)

    def __init__(self, narrow_hidden: frozenset[str], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.narrow_hidden = narrow_hidden

    def compose(self) -> ComposeResult:
        shown = 0
        for widget in super().compose():
            if (
                self.narrow
                and isinstance(widget, FooterKey)
                and widget.action in self.narrow_hidden
            ):
                continue
            shown += isinstance(widget, FooterKey)
            yield widget
        self.styles.grid_size_columns = shown  # super() counted the left-out keys too
