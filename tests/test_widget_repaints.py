"""Widgets that skip work a key's frame did for nothing: repaints of what did not change, a
second drawing of the grad_fn tree, cells measured through rich's machinery. What is on screen
must stay what it was (tests/test_snapshots.py); these check the work is skipped, and only
when nothing it would have changed did change."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.geometry import Size
from textual.render import measure
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Static, TabbedContent, TabPane
from textual.widgets._data_table import default_cell_formatter

from engine import Recipe, Session
from tui.widgets.gradtree import GradTree
from tui.widgets.heatmap import TensorView, legend
from tui.widgets.paramtable import COLUMNS, ParamsTable, StatCell
from tui.widgets.views import Views
from tui.widgets.virtual import SteadyScrollView, set_virtual_size


def count_repaints(widget: Widget, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list whose length is the number of whole-widget repaints of ``widget`` from now."""
    calls: list[int] = []
    original = widget._set_dirty

    def spy(*regions: Any) -> None:
        if not regions:
            calls.append(1)
        original(*regions)

    monkeypatch.setattr(widget, "_set_dirty", spy)
    return calls


class Lines(SteadyScrollView):
    def render_line(self, y: int) -> Strip:
        return Strip.blank(self.size.width)


class PlainLines(ScrollView):
    """The same pane on Textual's own ScrollView."""

    def render_line(self, y: int) -> Strip:
        return Strip.blank(self.size.width)


class LinesApp(App[None]):
    CSS = "Lines, PlainLines { height: 1fr; overflow: auto; }"

    def compose(self) -> ComposeResult:
        yield Lines(id="steady")
        yield PlainLines(id="plain")


def bars(pane: Widget) -> tuple[object, ...]:
    v, h = pane.vertical_scrollbar, pane.horizontal_scrollbar
    return (
        pane.show_vertical_scrollbar,
        pane.show_horizontal_scrollbar,
        v.window_virtual_size,
        v.window_size,
        h.window_virtual_size,
        h.window_size,
        pane.scroll_offset,
    )


async def test_a_layout_repaints_no_scrollbar_that_did_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = LinesApp()
    async with app.run_test(size=(40, 20)) as pilot:
        steady, plain = app.query_one(Lines), app.query_one(PlainLines)
        for pane in (steady, plain):
            set_virtual_size(pane, Size(80, 50))  # both scrollbars
        await pilot.pause()
        assert bars(steady) == bars(plain)
        assert steady.show_vertical_scrollbar and steady.show_horizontal_scrollbar
        repaints = [
            count_repaints(bar, monkeypatch)
            for bar in (steady.vertical_scrollbar, steady.horizontal_scrollbar)
        ]
        app.screen.refresh(layout=True)  # a layout where nothing of the pane changed
        await pilot.pause()
        assert repaints == [[], []]
        # A new virtual size, a new terminal size: the scrollbars follow as ScrollView's do.
        for pane in (steady, plain):
            set_virtual_size(pane, Size(30, 70))
            pane.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert bars(steady) == bars(plain)
        assert repaints[0]  # its thumb moved: repainted
        await pilot.resize_terminal(60, 30)
        await pilot.pause()
        assert bars(steady) == bars(plain)


class ViewsApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.activated: list[str] = []

    def compose(self) -> ComposeResult:
        with Views(id="views"):
            with TabPane("a", id="a"):
                yield Static("pane a")
            with TabPane("b", id="b"):
                yield Static("pane b")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.activated.append(event.pane.id or "")


async def test_switching_views_repaints_neither_the_views_nor_the_switcher(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ViewsApp()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        views = app.query_one(Views)
        switcher = views.query_one(ContentSwitcher)
        repaints = count_repaints(views, monkeypatch), count_repaints(switcher, monkeypatch)
        views.active = "b"
        await pilot.pause()
        assert repaints == ([], [])
        # Everything else as TabbedContent does it: the pane shown, the message, the tab.
        assert switcher.current == "b"
        assert app.query_one("#b").display and not app.query_one("#a").display
        assert app.query_one("#b").region.height > 0
        assert app.activated[-1] == "b"
        assert views.query_one("ContentTabs").active == "--content-tab-b"  # type: ignore[attr-defined]
        views.active = "a"
        await pilot.pause()
        assert switcher.current == "a" and app.activated[-1] == "a"


class TensorApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TensorView(id="tensor")


async def test_tensor_view_updates_its_words_without_repainting_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = TensorApp()
    async with app.run_test(size=(60, 24)) as pilot:
        view = app.query_one(TensorView)
        view.show("w", np.arange(12.0).reshape(3, 4), "mean 5.5")
        await pilot.pause()
        repaints = count_repaints(view, monkeypatch)
        view.show("w", -np.arange(12.0).reshape(3, 4), "mean -5.5")
        await pilot.pause()
        assert repaints == []
        summary = app.query_one("#tensor-summary", Static)
        assert str(summary.render()).startswith("mean -5.5")
        assert str(app.query_one("#tensor-legend", Static).render()) == str(
            legend(view.canvas.heatmap.scale, view.canvas.heatmap.note)
        )


class TreeApp(App[None]):
    def compose(self) -> ComposeResult:
        tree: GradTree = GradTree("grad_fn", id="tree")
        for i in range(5):
            tree.root.add_leaf(f"node {i}")
        tree.root.expand()
        yield tree


async def test_grad_tree_forgets_its_lines_on_a_new_size_only() -> None:
    app = TreeApp()
    async with app.run_test(size=(40, 12)) as pilot:
        await pilot.pause()
        tree = app.query_one(GradTree)
        updates = tree._updates
        same = events.Resize(tree.size, tree.virtual_size, tree.container_size)
        tree.post_message(same)  # what a pane shown again gets
        await pilot.pause()
        assert tree._updates == updates
        await pilot.resize_terminal(30, 12)
        await pilot.pause()
        assert tree._updates > updates  # Tree._on_resize ran: the lines are drawn anew
        assert tree.size.width == 30


class TableApp(App[None]):
    CSS = "ParamsTable { height: 14; }"

    def compose(self) -> ComposeResult:
        yield ParamsTable(id="params")


async def test_cells_measure_as_datatable_measures_them() -> None:
    session = Session(Recipe(seed=0))
    app = TableApp()
    async with app.run_test(size=(90, 20)) as pilot:
        table = app.query_one(ParamsTable)
        console = app.console
        for _ in range(8):  # define to step, and the next iteration's first phases
            session.run_next()
            table.show(session.records[-1], "conv1.bias")
            await pilot.pause()
            for name in table.names:
                for column in COLUMNS:
                    cell = table.get_cell(name, column)
                    expected = measure(console, default_cell_formatter(cell, False, 1), 1)
                    assert table._measure(cell, 1) == expected, (name, column)
            for key, column in table.columns.items():
                cells = [table.get_cell(name, key) for name in table.names]
                widths = [measure(console, default_cell_formatter(c, False, 1), 1) for c in cells]
                label = measure(console, column.label, 1)
                assert column.content_width == max([*widths, label]), key
        for cell in (Text("a\tb"), Text("two\nlines"), Text(""), "plain [b]markup[/b]", 3.14159):
            expected = measure(console, default_cell_formatter(cell, False, 1), 1)
            assert table._measure(cell, 1) == expected
        stat = next(c for c in (table.get_cell(table.names[0], "data"),) if isinstance(c, StatCell))
        assert table._measure(stat, 1) == measure(console, stat, 1)
