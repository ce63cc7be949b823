"""The tabbed views (tensor, grad_fn, accumulation, diagnostics, digits)."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import ContentSwitcher, TabbedContent, Tabs
from textual.widgets._tabbed_content import ContentTab, ContentTabs


class Views(TabbedContent):
    """Textual's TabbedContent, without repainting itself or its content switcher when the
    active tab changes.

    Both draw only their background (and the border here): switching tabs restyles the tab
    strip and lays out the pane shown, which repaints what changed. Their repaints redrew
    their whole height (about 20 lines each on the tutorial's screen) in every phase that
    switches the view.
    """

    active: reactive[str] = reactive("", init=False, repaint=False)

    def _watch_active(self, active: str) -> None:
        # TabbedContent._watch_active (Textual 8.2.8, pinned), with the switcher's ``current``
        # set as its reactive would, less the repaint (its watcher shows and hides the panes).
        with self.prevent(Tabs.TabActivated, Tabs.Cleared):
            self.get_child_by_type(ContentTabs).active = ContentTab.add_prefix(active)
        switcher = self.get_child_by_type(ContentSwitcher)
        previous = switcher.current
        if previous != active:
            switcher.set_reactive(ContentSwitcher.current, active)
            switcher.watch_current(previous, active)
        if active:
            self.post_message(
                TabbedContent.TabActivated(
                    tabbed_content=self,
                    tab=self.get_child_by_type(ContentTabs).get_content_tab(active),
                )
            )
        else:
            self.post_message(TabbedContent.Cleared(tabbed_content=self).set_sender(self))
