"""AccumulationPane: what ``backward`` added into one parameter's ``.grad``, and its history.

Everything is recomputed from the records passed in (:func:`accumulation_view`), so a rewind
that trims the log is reflected without any state kept here. The pane shows:

- grad before this backward, this backward's contribution, grad after (first values and
  norms) and whether PyTorch's sum was bit-exact (``GradChange.exact``, engine.bitwise);
- how many backwards have been added up since the last ``zero_grad``;
- a plot of the grad norm over backward calls (a staircase when ``zero_grad`` is skipped) and
  the loss over iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plotext._utility import colors_to_ansi
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.geometry import Size
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widgets import Static
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from engine.phases import Phase
from engine.records import GradChange, PhaseRecord
from engine.summary import TensorSummary, fmt

DEFAULT_PARAM = "conv1.bias"  # the parameter the tutorial prints around backward


@dataclass(frozen=True)
class BackwardPoint:
    """One backward call in the log, for the selected parameter."""

    call: int  # 1-based count of backward calls in the log
    iteration: int
    since_zero_grad: int  # backwards added into .grad since the last zero_grad, this included
    after_norm: float | None  # None: the parameter got no grad
    fresh_norm: float | None


@dataclass(frozen=True)
class AccumulationView:
    """What the pane shows, as plain data (tests and the app can read it too)."""

    param: str | None  # None: no parameters yet (no define in the log)
    change: GradChange | None  # the latest backward's change of ``param``
    change_iteration: int | None
    backwards: int  # since the last zero_grad, as of the latest record
    grad_now: TensorSummary | None  # ``param.grad`` after the latest record
    zeroed_after: str | None  # "none"/"zeros": a zero_grad ran after the latest backward
    series: tuple[BackwardPoint, ...]
    losses: tuple[tuple[int, float], ...]  # (iteration, loss), one per iteration


def pick_param(records: Sequence[PhaseRecord], param: str | None) -> str | None:
    names = [p.name for p in records[-1].params] if records else []
    if param in names:
        return param
    if DEFAULT_PARAM in names:
        return DEFAULT_PARAM
    return names[0] if names else None


def accumulation_view(
    records: Sequence[PhaseRecord],
    param: str | None = None,
    losses: tuple[tuple[int, float], ...] | None = None,
    backwards_before: int = 0,
) -> AccumulationView:
    """Derive the pane's content from a records log (any prefix of a session's log), and the
    loss plot from ``losses`` (the session's whole run) if given, else from the records;
    ``backwards_before`` backwards ran before ``records[0]`` (the session let go of them)."""
    name = pick_param(records, param)
    change: GradChange | None = None
    change_iteration: int | None = None
    zeroed_after: str | None = None
    series: list[BackwardPoint] = []
    for record in records:
        if record.phase is Phase.ZERO_GRAD and not record.skipped:
            zeroed_after = record.zero_grad_mode
        elif record.phase is Phase.BACKWARD:
            found = next((c for c in record.grad_changes if c.name == name), None)
            change, change_iteration, zeroed_after = found, record.iteration, None
            series.append(
                BackwardPoint(
                    call=backwards_before + len(series) + 1,
                    iteration=record.iteration,
                    since_zero_grad=record.backwards,
                    after_norm=None if found is None or found.after is None else found.after.norm,
                    fresh_norm=None if found is None or found.fresh is None else found.fresh.norm,
                )
            )
    state = records[-1].param(name) if records and name else None
    return AccumulationView(
        param=name,
        change=change,
        change_iteration=change_iteration,
        backwards=records[-1].backwards if records else 0,
        grad_now=None if state is None else state.grad,
        zeroed_after=zeroed_after,
        series=tuple(series),
        losses=loss_series(records) if losses is None else losses,
    )


def loss_series(records: Sequence[PhaseRecord]) -> tuple[tuple[int, float], ...]:
    """``(iteration, loss)`` for every iteration whose loss ran, oldest first."""
    losses: dict[int, float] = {}
    for record in records:
        if record.phase is Phase.LOSS and record.loss is not None:
            losses[record.iteration] = record.loss  # a later loss of the same iteration wins
    return tuple(sorted(losses.items()))


# ----------------------------------------------------------------------------- text


def value(x: float) -> str:
    """Fixed width, full sign and 5 significant digits: enough to see a sum add up."""
    return f"{x:+.4e}"


def header_text(view: AccumulationView) -> Text:
    text = Text()
    if view.param is None:
        text.append("no parameters yet: run define", style="dim")
        return text
    text.append(view.param, style="bold")
    text.append(".grad  ")
    n = view.backwards
    style = "bold yellow" if n > 1 else ""
    text.append(f"{n} backward{'s' if n != 1 else ''} since the last zero_grad", style=style)
    if n > 1:
        text.append(" (accumulating)", style="yellow")
    return text


def values_table(change: GradChange) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("", style="dim", justify="right")
    table.add_column("before", justify="right")
    table.add_column("+ fresh", justify="right")
    table.add_column("= after", justify="right")
    for label, cells in values_rows(change):
        if label == NORM_LABEL:
            table.add_row(Text(label), *cells, style="bold")
        else:
            table.add_row(Text(label), *cells)  # Text: "[0]" must not be read as markup
    return table


NORM_LABEL = "‖·‖"
VALUE_HEADERS = ("before", "+ fresh", "= after")


def values_rows(change: GradChange) -> list[tuple[str, list[str]]]:
    """The table's rows: a label and the before/fresh/after cells, the norms last."""
    cols = (change.before, change.fresh, change.after)
    rows = max((len(s.head) for s in cols if s is not None), default=0)
    out: list[tuple[str, list[str]]] = []
    for i in range(rows):
        cells = [value(s.head[i]) if s is not None and i < len(s.head) else "None" for s in cols]
        out.append((f"[{i}]", cells))
    out.append((NORM_LABEL, [fmt(s.norm) if s is not None else "None" for s in cols]))
    return out


class ValuesTable:
    """:func:`values_table` as rich draws it, written out directly.

    A rich Table measures and lays out every cell each draw (3-5 ms at each backward). This
    one is a fixed grid: right-justified cells padded by one space, styled as rich styles
    them (the header bold; the label column dim; the norms row bold). Narrower than the grid:
    the real Table, which knows how to squeeze.
    """

    def __init__(self, change: GradChange) -> None:
        self.change = change
        self.rows = values_rows(change)
        self.widths = [
            max(len(cells[c]) if c >= 0 else len(label) for label, cells in self.rows)
            for c in (-1, 0, 1, 2)
        ]
        self.widths[1:] = [max(w, len(h)) for w, h in zip(self.widths[1:], VALUE_HEADERS)]

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, values_table(self.change))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if options.max_width < sum(w + 2 for w in self.widths):
            yield values_table(self.change)
            return
        bold, dim, plain = Style(bold=True), Style(dim=True), Style()
        bold_dim = bold + dim
        pad = " "
        header = ("", *VALUE_HEADERS)
        for width, text in zip(self.widths, header):
            yield from (Segment(pad, bold), Segment(text.rjust(width), bold), Segment(pad, bold))
        yield Segment.line()
        for label, cells in self.rows:
            norms = label == NORM_LABEL
            style = bold_dim if norms else dim
            yield from (Segment(pad, style), Segment(label.rjust(self.widths[0]), style))
            yield Segment(pad, style)
            pad_style, text_style = (bold, bold) if norms else (plain, None)
            for width, text in zip(self.widths[1:], cells):
                yield Segment(pad, pad_style)
                yield Segment(text.rjust(width), text_style)
                yield Segment(pad, pad_style)
            yield Segment.line()


def check_text(change: GradChange) -> Text:
    """The claim PyTorch makes about accumulation, and whether it held bit for bit."""
    if change.fresh is None:
        if change.after is None:
            return Text("no grad flowed into this parameter (it is not in the loss's graph)")
        if change.exact:
            return Text("no grad flowed here this backward: after = before ✓", style="dim")
        # .grad changed although this backward added nothing to it: say so, never claim "=".
        return Text(
            "no grad flowed here this backward: after ≠ before ✗ (not bit-equal)",
            style="bold red",
        )
    if not change.accumulated:
        claim, why = "after = fresh", "  (.grad was None, so backward stored it)"
    else:
        claim, why = "after = before + fresh", "  (backward adds into .grad)"
    if change.exact:
        text = Text(f"{claim} ✓", style="bold green")
    else:
        text = Text(f"{claim} ✗ (not bit-equal)", style="bold red")
    text.append(why, style="dim")
    return text


def body(view: AccumulationView) -> Group | Text:
    if view.param is None:
        return Text("")
    parts: list[Text | ValuesTable] = []
    if view.change is None:
        parts.append(Text("no backward yet: .grad is None until the first loss.backward()"))
    else:
        change = view.change
        parts.append(Text(f"last backward (iteration {view.change_iteration})", style="dim"))
        if change.after is None:
            parts.append(check_text(change))
        else:
            parts.append(ValuesTable(change))
            shown = change.after
            if shown.numel > len(shown.head):
                parts.append(Text(f"first {len(shown.head)} of {shown.numel} values", style="dim"))
            parts.append(check_text(change))
    if view.change is None:
        pass  # a zero_grad before any backward changed nothing worth a line
    elif view.zeroed_after == "none":
        parts.append(Text("since then zero_grad() set .grad to None", style="cyan"))
    elif view.zeroed_after == "zeros":
        parts.append(
            Text("since then zero_grad(set_to_none=False) filled .grad with 0", style="cyan")
        )
    return Group(*parts)


# ----------------------------------------------------------------------------- plots


class FastPlot(PlotextPlot):
    """A PlotextPlot drawn line by line from plotext's own cell matrix, cell for cell the same.

    PlotextPlot has plotext write its matrix out as an ANSI string, reads that back into a rich
    Text, then Content, then strips: about 70% of its 5 ms per draw, twice each backward.
    Here plotext only fills its matrix (characters and colours per cell, what ``build`` does
    before writing it out); runs of one colour become segments. plotext uses a handful of
    colours, so each is styled once through Textual's own path (its ANSI prefix on a one-cell
    sample). The strips are kept while the plotted data, size and styles stay the same.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_key: object = None  # set by the pane with what it plotted
        self._spare: Plot | None = None
        self._strips: list[Strip] = []
        self._strips_key: object = None
        self._styles: dict[str, Style] = {}
        self._styles_key: object = None

    def fresh(self) -> Plot:
        """An empty figure to plot on, as ``clear_figure()`` leaves one (it runs
        ``Plot.__init__`` again: a new ``Plot``).

        Making one deep-copies plotext's defaults, ~0.4 ms per plot: the next one is made
        after this key's frame is on screen, not inside the frame.
        """
        self._plot = self._spare if self._spare is not None else Plot()
        self._spare = None
        self.call_after_refresh(self._make_spare)
        return self._plot

    def _make_spare(self) -> None:
        if self._spare is None:
            self._spare = Plot()

    def render_line(self, y: int) -> Strip:
        if self.text_selection is not None:
            return super().render_line(y)  # the selection is drawn by Textual's own path
        self._draw_for(self.size)
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.size.width, self.visual_style.rich_style)

    def predraw(self) -> None:
        """Draw now, at the size the plot had when last on screen (its tab is hidden: it has
        no region now), so that showing the tab again draws nothing (``render_line``)."""
        size = self.outer_size - self.styles.gutter.totals
        if size:  # never on screen yet: drawn when it is
            self._draw_for(size)

    def _draw_for(self, size: Size) -> None:
        key = (self.data_key, size, self.app.theme, self.visual_style)
        if key != self._strips_key:
            self._strips = self._draw(size)
            self._strips_key = key

    def _draw(self, size: Size) -> list[Strip]:
        width, height = size
        plt = self._plot
        plt.plotsize(width, height)
        plt._set_size(width, height)
        plt.theme(self._get_plotext_theme_name(self.app.theme))
        # plotext's build() without its last step (matrix.set_canvas, the ANSI string).
        plt._set_sizes()
        plt._build_matrix()
        matrix = plt.monitor.matrix
        rows = [self._strip(matrix, row, y) for y, row in enumerate(reversed(matrix.Rows))]
        blank = Strip.blank(width, self.visual_style.rich_style)
        strips = [strip.crop_extend(0, width, self.visual_style.rich_style) for strip in rows]
        strips = strips[:height]
        strips.extend(blank for _ in range(height - len(strips)))
        return strips

    def _strip(self, matrix: Any, row: int, y: int) -> Strip:
        markers = matrix.marker[row]
        colors = list(zip(matrix.fullground[row], matrix.style[row], matrix.background[row]))
        segments: list[Segment] = []
        start = 0
        for col in range(1, len(colors) + 1):
            # A run ends where set_canvas would write the next ANSI prefix.
            if col == len(colors) or colors[col] != colors[start]:
                text = "".join(markers[start:col])
                segments.append(
                    Segment(text, self._style(colors_to_ansi(*colors[start]), start, y))
                )
                start = col
        return Strip(segments, len(colors))  # plotext writes one cell per character

    def _style(self, prefix: str, x: int, y: int) -> Style:
        """The style Textual gives a cell written after ``prefix``, at offset (x, y)."""
        if self._styles_key != (self.visual_style, self.app.theme):
            self._styles = {}
            self._styles_key = (self.visual_style, self.app.theme)
        base = self._styles.get(prefix)
        if base is None:
            sample = visualize(self, Text.from_ansi(f"{prefix}x\x1b[0m"), markup=False)
            strips = Visual.to_strips(self, sample, 1, 1, self.visual_style)
            style = strips[0]._segments[0].style or Style()
            base = self._styles[prefix] = style.clear_meta_and_links()
        # The offset is what text selection reads to know which character was clicked.
        return base + Style.from_meta({"offset": (x, y)})


# ----------------------------------------------------------------------------- widget


class AccumulationPane(Vertical):
    """Grad before/fresh/after for one parameter, plus grad-norm and loss plots."""

    def __init__(
        self, *, id: str | None = None, classes: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes, name=name)
        self.view: AccumulationView = accumulation_view(())

    def compose(self) -> ComposeResult:
        yield Static("", id="accum-header", classes="accum-header", markup=False)
        yield Static("", id="accum-values", classes="accum-values", markup=False)
        with Horizontal(id="accum-plots", classes="accum-plots"):
            yield FastPlot(id="accum-norm-plot", classes="accum-plot")
            yield FastPlot(id="accum-loss-plot", classes="accum-plot")

    def on_mount(self) -> None:
        self._render_view()

    def update_from(
        self,
        records: Sequence[PhaseRecord],
        param: str | None = None,
        losses: tuple[tuple[int, float], ...] | None = None,
        backwards_before: int = 0,
    ) -> None:
        """Recompute from ``records`` (the session's kept log) for ``param`` (default
        ``conv1.bias``, else the first parameter); see ``accumulation_view``."""
        self.view = accumulation_view(records, param, losses, backwards_before)
        self._render_view()

    def _render_view(self) -> None:
        view = self.view
        self.query_one("#accum-header", Static).update(header_text(view))
        self.query_one("#accum-values", Static).update(body(view))
        self._plot_norms(view)
        self._plot_losses(view.losses)

    def _plot_norms(self, view: AccumulationView) -> None:
        widget = self.query_one("#accum-norm-plot", FastPlot)
        points = [p for p in view.series if p.after_norm is not None]
        name = view.param or "param"
        key = (name, tuple((p.call, p.after_norm, p.fresh_norm) for p in points))
        if key == widget.data_key:
            return  # the same picture (another tab shown and back, a rewind and redo)
        widget.data_key = key
        plt = widget.fresh()
        if not points:
            plt.title(f"‖{name}.grad‖: no backward yet")
        else:
            calls = [p.call for p in points]
            plt.plot(calls, [p.after_norm for p in points], marker="braille", label="after")
            fresh = [p for p in points if p.fresh_norm is not None]
            plt.plot(
                [p.call for p in fresh],
                [p.fresh_norm for p in fresh],
                marker="braille",
                label="fresh",
            )
            plt.title(f"‖{name}.grad‖ per backward")
            if len(calls) <= 10:  # more: plotext's own ticks (xticks(None) raises)
                plt.xticks(calls)
        plt.xlabel("backward call")
        widget.refresh()

    def predraw_losses(self, losses: tuple[tuple[int, float], ...]) -> None:
        """Plot and draw ``losses`` (``(iteration, loss)``) while the pane is hidden.

        The loss plot changes at loss and is on screen at backward, which brings this pane
        forward: drawn between the keys (plotext's matrix, ~2 ms), backward's frame finds it
        drawn (the norm plot and the values change with backward itself).
        """
        # Only the losses: the rest of the view reads statistics (norms) nobody may look at.
        self._plot_losses(losses)
        self.query_one("#accum-loss-plot", FastPlot).predraw()

    def _plot_losses(self, losses: tuple[tuple[int, float], ...]) -> None:
        widget = self.query_one("#accum-loss-plot", FastPlot)
        if losses == widget.data_key:
            return
        widget.data_key = losses
        plt = widget.fresh()
        if not losses:
            plt.title("loss: none yet")
        else:
            iterations = [i for i, _ in losses]
            plt.plot(iterations, [v for _, v in losses], marker="braille")
            plt.title(f"loss {fmt(losses[-1][1])}")
            if len(iterations) <= 10:  # more: plotext's own ticks (xticks(None) raises)
                plt.xticks(iterations)
        plt.xlabel("iteration")
        widget.refresh()
