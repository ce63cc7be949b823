"""The app's main screen: Textual's Screen with one arrangement per layout instead of two."""

from __future__ import annotations

from textual._compositor import Compositor, ReflowResult
from textual.geometry import Size
from textual.screen import Screen
from textual.widget import Widget


class _Compositor(Compositor):
    """Textual 8.2.8's Compositor, with its full map marked current after a reflow.

    A widget repainted while it was not on screen (the panes of the tab a phase brings
    forward, drawn before the switch is laid out) marks the full map stale. The reflow that
    follows arranges every widget, the full map included, but leaves the mark: the first
    widget to ask for its region afterwards (every resized one does) arranged the whole
    screen a second time, milliseconds of each phase that switches the view.
    """

    def reflow(self, parent: Widget, size: Size) -> ReflowResult:
        result = super().reflow(parent, size)
        # What ``full_map`` would arrange again: the same root, size and widgets.
        self._full_map_invalidated = False
        return result

    def update_widgets(self, widgets: set[Widget]) -> None:
        """Textual's, except that a repainted widget inside a hidden container (the loss plot,
        drawn after loss's frame while its tab is hidden) does not mark the full map stale:
        it has no place in the map, and arranging the screen again gives it none. Textual
        takes any repainted widget not on screen for a new one (a new widget may need a
        place), and the next widget to ask for its region arranged the whole screen."""
        visible = self.visible_widgets.keys()
        if not self._full_map_invalidated and not widgets <= visible:
            widgets = {widget for widget in widgets if widget in visible or _may_show(widget)}
        super().update_widgets(widgets)


def _may_show(widget: Widget) -> bool:
    """Whether ``widget`` and all its containers are displayed (only then is it arranged)."""
    return all(node.display for node in widget.ancestors_with_self)


class MainScreen(Screen[None]):
    """The screen the app runs on (``NNTuiApp.get_default_screen``)."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self._compositor = _Compositor()
