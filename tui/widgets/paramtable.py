"""The parameters table: every parameter, its data and grad, and what the last phase did to it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.coordinate import Coordinate
from textual.css.scalar import Unit
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import Reactive
from textual.render import measure
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets._data_table import RowRenderables, default_cell_formatter
from textual.widgets.data_table import CellDoesNotExist, CellKey, ColumnKey, RowKey

from engine import Phase, PhaseRecord
from engine.summary import TensorSummary, fmt

from ..background import (
    PLACEHOLDER,
    PLACEHOLDER_STYLE,
    background_of,
    costly_record,
    costly_summary,
)
from .virtual import virtual_size_changed

COLUMNS = ("name", "shape", "count", "data", "grad", "last")
# Drawn cells kept across updates (~7 states of ~70 cells for the tutorial's Net).
DRAWN_CELLS = 4096


def shape_cell(shape: tuple[int, ...]) -> str:
    """``6×1×5×5``: the table is narrow, and ``[6, 1, 5, 5]`` costs four more columns."""
    return "×".join(str(d) for d in shape) if shape else "scalar"


def flags(s: TensorSummary) -> str:
    out = []
    if s.nans:
        out.append(f"NaN!×{s.nans}")
    if s.infs:
        out.append(f"Inf!×{s.infs}")
    return " " + " ".join(out) if out else ""


def _all_zeros(s: TensorSummary) -> bool:
    # The norm is read anyway; only a zero norm (or a tiny value's square underflowing to
    # zero) needs the count of zeros, which costs five more passes over the tensor.
    return s.norm == 0 and s.all_zeros


def data_cell(s: TensorSummary) -> str:
    if _all_zeros(s):
        return "all_zeros" + flags(s)
    return f"‖p‖={fmt(s.norm)}{flags(s)}"


def grad_cell(s: TensorSummary | None) -> str:
    if s is None:
        return "None"
    if _all_zeros(s):
        return "all_zeros" + flags(s)
    return f"‖g‖={fmt(s.norm)}{flags(s)}"


def change_of(record: PhaseRecord, name: str) -> str:
    """What ``record``'s phase did to parameter ``name``, in a few words ('' = nothing)."""
    if name not in record.changed:
        return ""
    if record.phase is Phase.DEFINE:
        return "created"
    if record.phase is Phase.ZERO_GRAD:
        return "g=0" if record.zero_grad_mode == "zeros" else "g=None"
    if record.phase is Phase.BACKWARD:
        change = next((c for c in record.grad_changes if c.name == name), None)
        if change is not None and change.accumulated:
            return "g+=new"
        return "g=new"
    if record.phase is Phase.STEP:
        change = next((c for c in record.step_changes if c.name == name), None)
        return "p-=lr·g" if change and change.matches_sgd else "p=step"
    return "changed"


def changes_of(record: PhaseRecord) -> dict[str, str]:
    """``change_of`` for every parameter (reads ``record.changed`` and the SGD checks)."""
    return {p.name: change_of(record, p.name) for p in record.params}


def _cell(text: str, style: str = "") -> Text:
    # One leading space instead of DataTable's two-sided padding: six columns fit in 60 cells.
    return Text(f" {text}", style=style)


class StatCell:
    """A data or grad cell whose statistics are read when it is first drawn, not before.

    The engine computes a summary's numbers on first access: rows scrolled out of view cost
    nothing. Until then the cell measures 0 wide; the table widens its column once drawn.
    A big tensor's numbers are read on the app's background thread (tui.background): the cell
    shows ``PLACEHOLDER`` until they arrive.
    """

    __slots__ = ("summary", "grad", "style", "row", "column", "table", "_text")

    def __init__(
        self, summary: TensorSummary, grad: bool, style: str, row: str, table: ParamsTable
    ) -> None:
        self.summary = summary
        self.grad = grad
        self.style = style
        self.row = row
        self.column = "grad" if grad else "data"
        self.table = table
        self._text: Text | None = None

    @property
    def drawn(self) -> bool:
        return self._text is not None

    @property
    def text(self) -> Text:
        """The cell's text (reads the statistics the first time)."""
        if self._text is None:
            if self.deferred:
                bg = background_of(self.table.app)
                assert bg is not None
                bg.submit(self, self.compute, self.ready)
                return _cell(PLACEHOLDER, PLACEHOLDER_STYLE)
            self._text = _cell(self.compute(), self.style)
        return self._text

    @property
    def deferred(self) -> bool:
        """Its numbers are read on the background thread (a big tensor not read yet)."""
        return background_of(self.table.app) is not None and costly_summary(self.summary)

    def compute(self) -> str:
        """The cell's words (reads the statistics; thread-safe)."""
        return grad_cell(self.summary) if self.grad else data_cell(self.summary)

    def ready(self, words: str) -> None:
        """On the event loop: the background thread computed ``compute()``."""
        if self._text is None:
            self._text = _cell(words, self.style)
        self.table._fit(self)  # only if the table still shows this very cell

    @property
    def width(self) -> int:
        return self._text.cell_len if self._text is not None else 0

    def inherit(self, old: object) -> None:
        """Take ``old``'s words if it showed the same statistics (only the style changed)."""
        if (
            self._text is None
            and isinstance(old, StatCell)
            and old.summary is self.summary
            and old.grad == self.grad
            and old._text is not None
        ):
            self._text = _cell(old._text.plain[1:], self.style)

    def same(self, other: object) -> bool:
        return (
            isinstance(other, StatCell)
            and other.summary is self.summary
            and (other.grad, other.style) == (self.grad, self.style)
        )

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        fresh = not self.drawn
        yield self.text
        if fresh and self.drawn:  # not a placeholder: the column may need to widen
            self.table.drawn_late(self)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.width, self.width)


def _same_cell(old: object, new: object) -> bool:
    """Same text and same look (rich's ``Text ==`` ignores the base style: the highlight)."""
    if isinstance(new, StatCell):
        return new.same(old)
    if isinstance(old, Text) and isinstance(new, Text):
        return (old.plain, old.style, old.spans, old.justify) == (
            new.plain,
            new.style,
            new.spans,
            new.justify,
        )
    return old == new


def _width(cell: object) -> int:
    if isinstance(cell, StatCell):
        return cell.width
    return cell.cell_len if isinstance(cell, Text) else len(str(cell))


def _read(*cells: object) -> None:
    for cell in cells:
        if isinstance(cell, StatCell):
            _ = cell.text


class ParamsTable(DataTable, inherit_bindings=True):
    """One row per parameter; moving the cursor selects the parameter the views show."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"paramstable--changed"}
    # DataTable sets its virtual size whenever a column's width changes (the "last" column,
    # most phases): Widget's reactive lays the whole screen out for it. The table's height
    # follows its rows (height: auto), its width does not follow its columns: only a change
    # of height needs a layout (``watch_virtual_size``).
    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False, repaint=False)

    @dataclass
    class Selected(Message):
        """The cursor moved to another parameter."""

        name: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.names: tuple[str, ...] = ()
        self.selected: str | None = None
        self.record: PhaseRecord | None = None
        # What the record's phase did to each parameter (``changes_of``), once known.
        self._changes: tuple[PhaseRecord | None, dict[str, str]] = (None, {})
        # The widget's and the header's style while a draw runs (``render_lines``).
        self._frame_styles: tuple[Style, Style] | None = None
        # Each row's renderables while a draw runs (``_row_renderables``).
        self._frame_rows: dict[int, RowRenderables] | None = None
        # Cells drawn (``_render_cell``), by their words, look and place.
        self._drawn_cells: dict[tuple[object, ...], list[list[Segment]]] = {}

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(Text(f" {column}"), key=column)

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if old == new:
            return
        if old.height != new.height:
            self.refresh(layout=True)
        else:
            virtual_size_changed(self, new)

    def show(self, record: PhaseRecord | None, selected: str | None) -> None:
        """Fill from the last record (``None``: before define, no parameters exist)."""
        self.record = record
        params = record.params if record else ()
        names = tuple(p.name for p in params)
        changes = self._changes_now(record)
        changed_style = str(self.get_component_rich_style("paramstable--changed", partial=True))
        rebuild = names != self.names
        in_view = self._rows_in_view(rebuild, names.index(selected) if selected in names else 0)
        rows = []
        for i, p in enumerate(params):
            change = changes.get(p.name, "") if changes is not None else ""
            grad_hit = change.startswith("g") or change == "created"
            data_hit = change.startswith("p") or change == "created"
            data = StatCell(p.data, False, changed_style if data_hit else "", p.name, self)
            grad: Text | StatCell = _cell("None")
            if p.grad is not None:
                grad = StatCell(p.grad, True, changed_style if grad_hit else "", p.name, self)
            if i in in_view:  # on screen now: read, so the column fits them in this frame
                _read(data, grad)
            rows.append(
                (
                    p.name,
                    _cell(p.name, changed_style if change else ""),
                    _cell(shape_cell(p.shape)),
                    Text(f" {p.numel}", justify="right"),
                    data,
                    grad,
                    _cell(change, changed_style)
                    if changes is not None
                    else _cell(PLACEHOLDER, PLACEHOLDER_STYLE),
                )
            )
        self.selected = selected
        if rebuild:
            self.names = names
            self.clear()
            for key, *cells in rows:
                self.add_row(*cells, key=key)
        else:
            may_shrink: set[str] = set()
            updates: list[tuple[str, str, object, bool]] = []
            for key, *cells in rows:
                for column, cell in zip(COLUMNS, cells):
                    # Only what changed: each update re-renders the whole table (13 ms a time
                    # here), and most phases change one column of it, or nothing.
                    old = self.get_cell(key, column)
                    if _same_cell(old, cell):
                        continue
                    if isinstance(cell, StatCell):
                        cell.inherit(old)  # restyled once the changes are known
                    # Re-measuring: for a wider cell, or once per column when a cell as wide
                    # as its column got narrower (DataTable measures the whole column then).
                    width = self.columns[ColumnKey(column)].content_width
                    new_width, old_width = _width(cell), _width(old)
                    shrink = new_width < old_width == width and column not in may_shrink
                    if shrink:
                        may_shrink.add(column)
                    updates.append((key, column, cell, shrink or new_width > width))
            self._update_cells(updates)
        for i in in_view:
            if i < len(names):
                # Cells kept from before that still wait for their numbers: ask again (the
                # background drops what an older snapshot queued).
                for column in ("data", "grad"):
                    cell = self.get_cell(names[i], column)
                    if isinstance(cell, StatCell) and not cell.drawn and cell.deferred:
                        _read(cell)
        if selected in names:
            self.move_cursor(row=names.index(selected), animate=False)

    def render_lines(self, crop: Region) -> list[Strip]:
        if not self.is_attached:
            # Removed, its styles gone, but still in the screen's map until the next layout:
            # Textual draws every widget under a repaint, this one too (a table removed and
            # another one repainted before the layout: test_widget_paramtable).
            return [Strip.blank(crop.width)] * crop.height
        # Looked up once per draw, not once per line and row (DataTable asks Textual for the
        # widget's and the header's style on every line: a third of drawing the table).
        self._frame_styles = (self.rich_style, self._get_row_style(-1, Style()))
        self._frame_rows = {}
        try:
            return super().render_lines(crop)
        finally:
            self._frame_styles = None
            self._frame_rows = None

    def render_line(self, y: int) -> Strip:
        if self._frame_styles is None or self.fixed_rows or not self.show_header:
            return super().render_line(y)
        # DataTable.render_line for a table without fixed rows, with its base style looked up
        # once per draw (render_lines).
        if y >= self.header_height:
            y += self.scroll_offset.y
        scroll_x = self.scroll_offset.x
        return self._render_line(y, scroll_x, scroll_x + self.size.width, self._frame_styles[0])

    def _render_line_in_row(
        self,
        row_key: RowKey,
        line_no: int,
        base_style: Style,
        cursor_location: Coordinate,
        hover_location: Coordinate,
    ) -> tuple[list[list[Segment]], list[list[Segment]]]:
        """DataTable's row line for this table's shape (a row cursor, no row labels, no fixed
        columns or rows, no zebra stripes), with the styles looked up once per draw."""
        if (
            self._frame_styles is None
            or self.cursor_type != "row"
            or self.fixed_columns
            or self.fixed_rows
            or self.zebra_stripes
            or (self._labelled_row_exists and self.show_row_labels)
        ):
            return super()._render_line_in_row(
                row_key, line_no, base_style, cursor_location, hover_location
            )
        cache_key = (
            row_key,
            line_no,
            base_style,
            cursor_location,
            hover_location,
            self.cursor_type,
            self.show_cursor,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
            # The line runs to the table's edge (``remaining`` below): a table widened by a
            # resize drew its cursor row and header with the old, shorter run.
            self.size.width,
        )
        cached = self._row_render_cache.get(cache_key)
        if cached is not None:
            return cached
        row_index = self._row_locations.get(row_key) if row_key in self._row_locations else -1
        row_style = self._frame_styles[1] if row_index == -1 else base_style
        columns = self.ordered_columns
        widths = [column.get_render_width(self) for column in columns]
        cursor_row = cursor_location.row == row_index
        hover_row = hover_location.row == row_index
        scrollable_row = [
            self._render_cell(row_index, i, row_style, width, cursor=cursor_row, hover=hover_row)[
                line_no
            ]
            for i, width in enumerate(widths)
        ]
        # The rest of the line, styled as the row (the cursor's highlight runs to the edge).
        remaining = max(0, self.size.width - sum(widths) - self._row_label_column_width)
        extend_style, _ = self._get_styles_to_render_cell(
            row_index == -1,
            False,
            False,
            hover_location.row == (row_index or 0),
            cursor_row,
            self.show_cursor,
            self._show_hover_cursor,
            False,
            False,
        )
        extend_style = row_style + extend_style
        extend_style += Style.from_meta({"row": row_index, "column": 0, "out_of_bounds": True})
        scrollable_row.append([Segment(" " * remaining, extend_style)])
        row_pair: tuple[list[list[Segment]], list[list[Segment]]] = ([], scrollable_row)
        self._row_render_cache[cache_key] = row_pair
        return row_pair

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """One cell's line, as DataTable draws it, without rich's layout machinery.

        DataTable (Textual 8.2.8, pinned) renders each cell through ``Padding``, ``Styled`` and
        ``Console.render_lines`` (about 0.1 ms a cell), and drops every cell it drew when any
        cell changes: most phases change a column of every row, so all ~70 cells of the
        tutorial's Net were drawn again each key press. Our cells are one-line ``Text``s: this
        draws them straight to segments with the same styles (left or right justified, cut to
        the width, padded with the pre/post styles) and keeps them by what they show, so only
        changed cells are drawn. Anything else takes DataTable's own path.
        ``tests/test_widget_paramtable.py`` checks both agree, cell by cell.
        """
        header = row_index == -1
        row_key = self._header_row_key if header else self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        row = None if header or row_key is None else self.rows.get(row_key)
        if column_index < 0 or width <= 0 or (row is not None and row.height != 1):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cache = self._cell_render_cache
        if key in cache:
            return cache[key]
        cell = self._row_renderables(row_index).cells[column_index]
        if isinstance(cell, StatCell):
            fresh = not cell.drawn
            text = cell.text
            if fresh and cell.drawn:  # as StatCell.__rich_console__: the column may widen
                self.drawn_late(cell)
        else:
            text = cell
        justify = text.justify if isinstance(text, Text) else None
        if (
            not isinstance(text, Text)
            or "\n" in text.plain
            or "\t" in text.plain
            or justify not in (None, "default", "left", "right")
        ):
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        component_style, post_style = self._get_styles_to_render_cell(
            header,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        # Kept by what the cell shows and how, not by DataTable's update count: a phase
        # changes a column or two, the other cells come back from here.
        drawn_key = (
            text.plain,
            text.style,
            tuple(text.spans),
            justify,
            text.overflow,
            row_index,
            column_index,
            base_style,
            component_style,
            post_style,
            width,
        )
        drawn = self._drawn_cells.get(drawn_key)
        if drawn is not None:
            cache[key] = drawn
            return drawn
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index})
        pre_style += component_style
        # What Text.wrap(no_wrap=True) and Lines.justify do to a single line.
        overflow = text.overflow or "fold"
        line = text.copy()
        line.rstrip_end(width)
        if justify == "right":
            line.rstrip()
            line.truncate(width, overflow=overflow)
            line.pad_left(width - cell_len(line.plain))
        elif justify == "left":
            line.truncate(width, overflow=overflow, pad=True)
        line.truncate(width, overflow=overflow)
        # Joined as Text.__rich_console__ joins its lines: the line's own style becomes a span.
        segments = list(Text("\n").join([line]).render(self.app.console, end=""))
        if line.cell_len < width:  # Padding's fill, unstyled until Styled adds its styles
            segments.append(Segment(" " * (width - line.cell_len)))
        lines = [list(Segment.apply_style(segments, pre_style, post_style))]
        cache[key] = lines
        if len(self._drawn_cells) >= DRAWN_CELLS:
            self._drawn_cells.clear()  # a rare reset beats bookkeeping an LRU per cell
        self._drawn_cells[drawn_key] = lines
        return lines

    def _row_renderables(self, row_index: int) -> RowRenderables:
        """DataTable's renderables of a row, made once per row in a draw (DataTable makes the
        whole row's for each of its cells: six times per row)."""
        rows = self._frame_rows
        if rows is None:
            return self._get_row_renderables(row_index)
        renderables = rows.get(row_index)
        if renderables is None:
            renderables = rows[row_index] = self._get_row_renderables(row_index)
        return renderables

    def _changes_now(self, record: PhaseRecord | None) -> dict[str, str] | None:
        """What ``record``'s phase changed per parameter; None while the background thread
        reads it (a big model: comparing every tensor bit for bit, the SGD check)."""
        if record is None:
            return {}
        known, changes = self._changes
        if known is record:
            return changes
        bg = background_of(self.app) if costly_record(record) else None
        if bg is None:
            self._changes = (record, changes_of(record))
            return self._changes[1]
        bg.submit((self, id(record)), partial(changes_of, record), partial(self._ready, record))
        return None

    def _ready(self, record: PhaseRecord, changes: dict[str, str]) -> None:
        if record is self.record:  # still the record shown: restyle the rows
            self._changes = (record, changes)
            self.show(record, self.selected)

    def _rows_in_view(self, rebuild: bool, cursor: int) -> range:
        """Rows on screen after this update (a bound: the cursor's row is scrolled to)."""
        height = self.scrollable_content_region.height - 1  # the header
        if rebuild or height <= 0:
            # Not laid out with these rows yet: as many as its (max) height or the screen has.
            fixed = [
                int(scalar.value)
                for scalar in (self.styles.height, self.styles.max_height)
                if scalar is not None and scalar.unit is Unit.CELLS
            ]
            height = min(fixed, default=self.app.size.height)
        top = 0 if rebuild else int(self.scroll_y)
        if not top <= cursor < top + height:
            top = max(0, cursor - height + 1) if cursor >= top else cursor
        return range(top, top + height)

    def _measure(self, value: object, height: int) -> int:
        """What DataTable measures a cell ``value`` at: ``measure(console,
        default_cell_formatter(value), 1)``. Our cells take a shortcut to the same number
        (``Text.__rich_measure__``'s maximum; a StatCell's own width): rich's way builds the
        console's options, asking the terminal its size, for every cell measured."""
        if isinstance(value, StatCell):
            return value.width
        if isinstance(value, Text):
            return max((cell_len(line) for line in value.plain.splitlines()), default=0)
        renderable = default_cell_formatter(value, wrap=height != 1, height=height)
        return measure(self.app.console, renderable, 1)

    def _update_column_widths(self, updated_cells: set[CellKey]) -> None:
        # DataTable._update_column_widths (Textual 8.2.8, pinned) measuring with ``_measure``:
        # a phase updates most of the "last" column, measured again at each key's idle.
        for row_key, column_key in updated_cells:
            column = self.columns.get(column_key)
            row = self.rows.get(row_key)
            if column is None or row is None:
                continue
            label_width = self._measure(column.label, 0)
            new_content_width = self._measure(self._data[row_key][column_key], row.height)
            if new_content_width < column.content_width:
                cell_widths = [
                    self._measure(cell, row.height) for cell in self.get_column(column_key)
                ]
                column.content_width = max([*cell_widths, label_width])
            else:
                column.content_width = max(new_content_width, label_width)
        self._require_update_dimensions = True

    def _update_cells(self, updates: list[tuple[str, str, object, bool]]) -> None:
        """``update_cell(row, column, value, update_width=...)`` for each, with one refresh:
        DataTable's refreshes the widget per cell, about a hundred a phase on a big model.
        What it does per cell (Textual 8.2.8, pinned) is the body of this loop."""
        for row, column, value, update_width in updates:
            row_key, column_key = RowKey(row), ColumnKey(column)
            if row_key not in self._row_locations or column_key not in self._column_locations:
                raise CellDoesNotExist(
                    f"No cell exists for row_key={row!r}, column_key={column!r}."
                )
            self._data[row_key][column_key] = value
            self._update_count += 1
            if update_width:
                self._updated_cells.add(CellKey(row_key, column_key))
                self._require_update_dimensions = True
        if updates:
            self.refresh()

    def drawn_late(self, cell: StatCell) -> None:
        """A cell scrolled into view was drawn for the first time: fit its column to it."""
        self.call_later(self._fit, cell)

    def _fit(self, cell: StatCell) -> None:
        if cell.row in self.names and self.get_cell(cell.row, cell.column) is cell:
            self.update_cell(cell.row, cell.column, cell, update_width=True)

    @property
    def cursor_name(self) -> str | None:
        if not self.names or not 0 <= self.cursor_row < len(self.names):
            return None
        return self.names[self.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        # Read the cursor now, not the event's row: rebuilding the table moves the cursor
        # through row 0 on its way back to the selection, and those stale moves are not choices.
        name = self.cursor_name
        if name is not None and name != self.selected:
            self.selected = name
            self.post_message(self.Selected(name))

    def cell_text(self, name: str, column: str) -> str:
        """Plain text of one cell (for tests)."""
        value = self.get_cell(name, column)
        if isinstance(value, StatCell):
            value = value.text
        return (value.plain if isinstance(value, Text) else str(value)).strip()
