"""The parameters table: every parameter, its data and grad, and what the last phase did to it."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from engine import Phase, PhaseRecord
from engine.summary import TensorSummary, fmt

COLUMNS = ("name", "shape", "count", "data", "grad", "last")


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


def data_cell(s: TensorSummary) -> str:
    if s.all_zeros:
        return "all_zeros" + flags(s)
    return f"‖p‖={fmt(s.norm)}{flags(s)}"


def grad_cell(s: TensorSummary | None) -> str:
    if s is None:
        return "None"
    if s.all_zeros:
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


def _cell(text: str, style: str = "") -> Text:
    # One leading space instead of DataTable's two-sided padding: six columns fit in 60 cells.
    return Text(f" {text}", style=style)


def _same_cell(old: object, new: object) -> bool:
    """Same text and same look (rich's ``Text ==`` ignores the base style: the highlight)."""
    if isinstance(old, Text) and isinstance(new, Text):
        return (old.plain, old.style, old.spans, old.justify) == (
            new.plain,
            new.style,
            new.spans,
            new.justify,
        )
    return old == new


class ParamsTable(DataTable, inherit_bindings=True):
    """One row per parameter; moving the cursor selects the parameter the views show."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"paramstable--changed"}

    @dataclass
    class Selected(Message):
        """The cursor moved to another parameter."""

        name: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=False, cell_padding=0)
        self.names: tuple[str, ...] = ()
        self.selected: str | None = None

    def on_mount(self) -> None:
        for column in COLUMNS:
            self.add_column(Text(f" {column}"), key=column)

    def show(self, record: PhaseRecord | None, selected: str | None) -> None:
        """Fill from the last record (``None``: before define, no parameters exist)."""
        params = record.params if record else ()
        names = tuple(p.name for p in params)
        changed_style = str(self.get_component_rich_style("paramstable--changed", partial=True))
        rows = []
        for p in params:
            change = change_of(record, p.name) if record else ""
            grad_hit = change.startswith("g") or change == "created"
            data_hit = change.startswith("p") or change == "created"
            rows.append(
                (
                    p.name,
                    _cell(p.name, changed_style if change else ""),
                    _cell(shape_cell(p.shape)),
                    Text(f" {p.numel}", justify="right"),
                    _cell(data_cell(p.data), changed_style if data_hit else ""),
                    _cell(grad_cell(p.grad), changed_style if grad_hit else ""),
                    _cell(change, changed_style),
                )
            )
        self.selected = selected
        if names != self.names:
            self.names = names
            self.clear()
            for key, *cells in rows:
                self.add_row(*cells, key=key)
        else:
            for key, *cells in rows:
                for column, cell in zip(COLUMNS, cells):
                    # Only what changed: each update re-renders the whole table (13 ms a time
                    # here), and most phases change one column of it, or nothing.
                    if not _same_cell(self.get_cell(key, column), cell):
                        self.update_cell(key, column, cell, update_width=True)
        if selected in names:
            self.move_cursor(row=names.index(selected), animate=False)

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
        return (value.plain if isinstance(value, Text) else str(value)).strip()
