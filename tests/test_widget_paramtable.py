"""The parameters table reads the statistics of the rows it shows, and only those.

The engine computes a summary's numbers when first read (a norm of a 20x1024 MLP's weight costs
milliseconds): rows scrolled out of view must not pay for it until they are scrolled to.
"""

from __future__ import annotations

import torch
from rich.segment import Segment
from rich.style import Style
from textual.app import App, ComposeResult
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.widgets import DataTable

from engine import Phase, PhaseRecord, Recipe, Session
from engine.lazy import Deferred
from engine.records import ParamState
from engine.summary import fmt, summarize
from tui.widgets.paramtable import ParamsTable

ROWS = 40


class Counting:
    """A summary that counts how often its numbers are read."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.inner = summarize(tensor)
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        if name in ("norm", "nans", "infs", "zeros", "all_zeros", "sum"):
            self.reads += 1
        return getattr(self.inner, name)


def record(phase: Phase, params: tuple[ParamState, ...]) -> PhaseRecord:
    return PhaseRecord(
        phase=phase,
        iteration=1,
        skipped=False,
        code="",
        printed_=Deferred.now(""),
        loss=None,
        params=params,
        changed_=Deferred.now(tuple(p.name for p in params)),
    )


class TableApp(App[None]):
    CSS = "ParamsTable { height: 12; }"

    def compose(self) -> ComposeResult:
        yield ParamsTable(id="params")


async def test_only_rows_in_view_read_their_statistics() -> None:
    torch.manual_seed(0)
    tensors = [torch.randn(3, 4) * (i + 1) for i in range(ROWS)]
    summaries = [Counting(t) for t in tensors]
    params = tuple(
        ParamState(f"layer{i}.weight", (3, 4), 12, True, s, None)  # type: ignore[arg-type]
        for i, s in enumerate(summaries)
    )
    app = TableApp()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(ParamsTable)
        table.show(record(Phase.DEFINE, params), "layer0.weight")
        await pilot.pause()
        read = [i for i, s in enumerate(summaries) if s.reads]
        assert read and read == list(range(len(read)))  # the rows from the top
        assert len(read) < ROWS // 2
        # Scrolled to the last row: drawn as it comes into view, its column fits it.
        table.move_cursor(row=ROWS - 1, animate=False)
        await pilot.pause()
        await pilot.pause()
        assert summaries[-1].reads
        text = table.cell_text(f"layer{ROWS - 1}.weight", "data")
        assert text == f"‖p‖={fmt(tensors[-1].norm().item())}"
        column = table.columns[next(k for k in table.columns if k.value == "data")]
        assert column.content_width >= len(text) + 1
        assert 0 in [i for i, s in enumerate(summaries) if s.reads]


class TwoTables(App[None]):
    CSS = "ParamsTable { height: 12; }"

    def compose(self) -> ComposeResult:
        yield ParamsTable(id="updated")
        yield ParamsTable(id="fresh")


def _lines(table: ParamsTable) -> list[str]:
    return [
        "".join(f"{seg.text}|{seg.style}" for seg in table.render_line(y))
        for y in range(table.size.height)
    ]


async def test_a_table_updated_phase_by_phase_draws_as_a_fresh_one() -> None:
    # Changed cells are updated in place, the rest kept: the picture must match a fresh one.
    session = Session(Recipe(seed=0))
    app = TwoTables()
    async with app.run_test(size=(80, 30)) as pilot:
        updated = app.query_one("#updated", ParamsTable)
        for _ in range(14):
            session.run_next()
            record = session.records[-1]
            updated.show(record, "conv1.bias")
            fresh = ParamsTable(id="fresh")
            await app.query_one("#fresh").remove()
            await app.mount(fresh)
            fresh.show(record, "conv1.bias")
            app.set_focus(None)  # the focused table draws its header and cursor brighter
            await pilot.pause()
            assert _lines(updated) == _lines(fresh), record.phase


async def test_a_phase_repaints_the_table_once_and_only_when_a_cell_changed() -> None:
    # DataTable.update_cell refreshes the widget per cell: ~30 a phase here, ~100 on a
    # 20x1024 MLP. The table's own batch refreshes once, and not at all when nothing changed.
    session = Session(Recipe(seed=0))
    app = TwoTables()
    async with app.run_test(size=(80, 30)) as pilot:
        updated = app.query_one("#updated", ParamsTable)
        session.run_next()  # define: the rows are built (a rebuild, not an update)
        updated.show(session.records[-1], "conv1.bias")
        await pilot.pause()
        refresh = updated.refresh
        calls = 0

        def counted(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            return refresh(*args, **kwargs)

        updated.refresh = counted  # type: ignore[method-assign]
        seen = set()
        for _ in range(12):
            session.run_next()
            record = session.records[-1]
            before = _lines(updated)
            calls = 0
            updated.show(record, "conv1.bias")
            shown = calls
            await pilot.pause()
            changed = _lines(updated) != before
            assert shown == int(changed), (record.phase, record.iteration, shown)
            seen.add(changed)
        assert seen == {True, False}


class StyledTable(App[None]):
    CSS = """
    ParamsTable { height: 12; }
    ParamsTable > .paramstable--changed { color: $warning; text-style: bold; }
    """

    def compose(self) -> ComposeResult:
        yield ParamsTable(id="params")


async def test_cells_draw_as_datatable_draws_them() -> None:
    # ParamsTable draws its one-line cells itself (DataTable's rich pipeline was most of each
    # frame): every cell, header included, in every cursor/hover state and focused or not,
    # must come out as DataTable's own _render_cell makes it.
    session = Session(Recipe(seed=0))
    app = StyledTable()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(ParamsTable)
        for _ in range(6):  # define … step: created, g=new, p-=lr·g, None grads, highlights
            session.run_next()
            table.show(session.records[-1], "conv1.bias")
            for focused in (True, False):
                app.set_focus(table if focused else None)
                await pilot.pause()
                table._pseudo_class_state = table.get_pseudo_class_state()
                for row in range(-1, table.row_count):
                    for column, key in enumerate(table.columns):
                        width = table.columns[key].get_render_width(table)
                        for cursor in (False, True):
                            for hover in (False, True):
                                args = (row, column, table.rich_style, width, cursor, hover)
                                table._cell_render_cache.clear()
                                table._drawn_cells.clear()
                                ours = table._render_cell(*args)
                                table._cell_render_cache.clear()
                                theirs = DataTable._render_cell(table, *args)
                                assert _simple(ours) == _simple(theirs), (row, key, args)


def _simple(lines: list[list[Segment]]) -> list[list[tuple[str, Style | None]]]:
    """Text and style per cell position (how segments are split does not show)."""
    return [[(ch, seg.style) for seg in line for ch in seg.text] for line in lines]


def _fresh(table: ParamsTable) -> None:
    """Forget every line, row and cell drawn, so the next draw computes them all."""
    for cache in (table._line_cache, table._row_render_cache, table._cell_render_cache):
        cache.clear()
    table._drawn_cells.clear()
    table._styles_cache.clear()


async def test_lines_draw_as_datatable_draws_them() -> None:
    # ParamsTable draws its lines with styles looked up once per draw: the whole widget
    # (border, header, rows, cursor and hover highlight, scrolled or not) must come out as
    # DataTable's own render_lines makes it.
    session = Session(Recipe(seed=0))
    app = StyledTable()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(ParamsTable)
        for _ in range(6):
            session.run_next()
            table.show(session.records[-1], "conv1.bias")
            for focused, cursor, hover in ((True, 0, None), (False, 3, None), (True, 9, 2)):
                app.set_focus(table if focused else None)
                table.move_cursor(row=cursor, animate=False)
                table._show_hover_cursor = hover is not None
                table.hover_coordinate = Coordinate(hover or 0, 0)
                await pilot.pause()
                region = Region(0, 0, table.outer_size.width, table.outer_size.height)
                _fresh(table)
                ours = table.render_lines(region)
                _fresh(table)
                theirs = DataTable.render_lines(table, region)
                assert [_simple([list(s)]) for s in ours] == [_simple([list(s)]) for s in theirs], (
                    focused,
                    cursor,
                    hover,
                )


async def test_a_widened_table_draws_its_header_and_cursor_row_to_the_new_edge() -> None:
    """A row's line is kept once drawn; it runs to the table's edge, so a resize that widens
    the table must draw it anew (the header and cursor row kept their old, shorter run)."""
    session = Session(Recipe(seed=0))
    app = StyledTable()
    async with app.run_test(size=(80, 20)) as pilot:
        table = app.query_one(ParamsTable)
        for _ in range(3):
            session.run_next()
        table.show(session.records[-1], "conv1.bias")
        app.set_focus(table)
        await pilot.pause()
        table.render_lines(Region(0, 0, table.outer_size.width, table.outer_size.height))
        await pilot.resize_terminal(110, 24)
        await pilot.pause()
        region = Region(0, 0, table.outer_size.width, table.outer_size.height)
        kept = table.render_lines(region)
        _fresh(table)
        fresh = table.render_lines(region)
        assert [_simple([list(s)]) for s in kept] == [_simple([list(s)]) for s in fresh]
