"""TensorView: one tensor as a diverging-colour heatmap drawn with half-block cells.

Each terminal cell holds two pixels (``▀``: foreground = top pixel, background = bottom pixel),
so a pixel is roughly square. Colours diverge around zero on a symmetric scale (max |x| of the
drawn finite values): blue below, red above, near-white at exactly zero. NaN and ±Inf get colours
outside that ramp so they can never be mistaken for a large value.

The layout is pure numpy (:func:`layout_tensor`) so it is fast and testable without a terminal;
the widgets only turn pixel codes into cached ``Strip`` lines.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from engine.summary import fmt

from .. import background

LEVELS = 12  # colour steps on each side of zero; enough to read, few enough to cache styles
ZERO = LEVELS  # code of an exact zero
GAP = -1  # background pixel: between kernels, or padding
NAN = 2 * LEVELS + 1
INF = 2 * LEVELS + 2
MAX_UPSCALE = 4  # small tensors are enlarged, but a 2-element bias should not fill the pane
TILE_GAP = 1  # pixels between the kernels of a conv weight

NEG_RGB = (33, 102, 172)
MID_RGB = (247, 247, 247)
POS_RGB = (178, 24, 43)
NAN_RGB = (255, 215, 0)
INF_RGB = (255, 0, 255)


def _ramp() -> list[tuple[int, int, int]]:
    out = []
    for code in range(2 * LEVELS + 1):
        t = (code - ZERO) / LEVELS
        end = POS_RGB if t > 0 else NEG_RGB
        a = abs(t)
        out.append(tuple(round(m + (e - m) * a) for m, e in zip(MID_RGB, end)))  # type: ignore[misc]
    return out


RGB: list[tuple[int, int, int]] = [*_ramp(), NAN_RGB, INF_RGB]


def code_rgb(code: int) -> tuple[int, int, int] | None:
    """The colour of a pixel code; ``None`` for a gap (the widget's own background)."""
    return None if code == GAP else RGB[code]


@dataclass(frozen=True)
class HeatmapLayout:
    """Pixel codes of one tensor laid out for a canvas, and how they were made."""

    codes: np.ndarray  # (pixel rows, columns) int16: GAP, 0..2·LEVELS, NAN or INF
    scale: float  # max |x| of the drawn finite values (block means when reduced); 0 if none
    nans: int
    infs: int
    upscale: int  # pixels per element side (>1 only when the tensor is small)
    reduce: tuple[int, int]  # block-mean factors (rows, columns); (1, 1) = every value shown
    note: str  # how the tensor is laid out, for the legend

    @property
    def height(self) -> int:
        """Terminal lines: two pixel rows per line."""
        return (self.codes.shape[0] + 1) // 2

    @property
    def width(self) -> int:
        return int(self.codes.shape[1])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _block_mean(a: np.ndarray, fy: int, fx: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean of the finite values of each fy×fx block over the last two axes.

    Also returns whether a block holds a NaN, and an Inf, so downsampling never hides them.
    """
    finite = np.isfinite(a)
    if fy == 1 and fx == 1:
        return np.where(finite, a, 0.0), np.isnan(a), np.isinf(a)
    *lead, h, w = a.shape
    # A block taller (wider) than the array covers the same values as one exactly as tall:
    # the padding is no value at all. Without this a 3-row map of a million columns, shrunk
    # by square blocks, was padded to a block's 12,500 rows (186 GiB).
    fy, fx = min(fy, max(h, 1)), min(fx, max(w, 1))
    bh, bw = _ceil_div(h, fy), _ceil_div(w, fx)
    pad = [(0, 0)] * len(lead) + [(0, bh * fy - h), (0, bw * fx - w)]
    shape = (*lead, bh, fy, bw, fx)
    axes = (-3, -1)
    total = np.pad(np.where(finite, a, 0.0), pad).reshape(shape).sum(axis=axes)
    count = np.pad(finite, pad).reshape(shape).sum(axis=axes)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    has_nan = np.pad(np.isnan(a), pad).reshape(shape).any(axis=axes)
    has_inf = np.pad(np.isinf(a), pad).reshape(shape).any(axis=axes)
    return mean, has_nan, has_inf


def _codes(mean: np.ndarray, has_nan: np.ndarray, has_inf: np.ndarray) -> tuple[np.ndarray, float]:
    """Colour codes of what is drawn, and the scale: max |x| of the drawn (finite) values.

    The scale follows the drawn values, not the raw extremes: a block mean of a sparse
    gradient is much smaller than its largest entry and would otherwise fade to white. The
    legend states the scale and the block size, so the picture stays honest.
    """
    scale = float(np.abs(mean).max()) if mean.size else 0.0
    if scale > 0:
        level = np.rint(np.abs(mean) / scale * LEVELS)
        # Any non-zero value gets at least the faintest tint: its sign is always visible.
        level = np.where(mean != 0, np.clip(level, 1, LEVELS), 0)
        codes = (ZERO + np.sign(mean) * level).astype(np.int16)
    else:
        codes = np.full(mean.shape, ZERO, dtype=np.int16)
    codes[has_inf] = INF
    codes[has_nan] = NAN  # NaN wins: a block with both is poisoned either way
    return codes, scale


def _upscale(codes: np.ndarray, k: int) -> np.ndarray:
    return codes if k == 1 else np.repeat(np.repeat(codes, k, axis=0), k, axis=1)


def _fit(rows: int, cols: int, width: int, height_px: int) -> int:
    """Integer enlargement that keeps ``rows×cols`` pixels inside the canvas."""
    return max(1, min(MAX_UPSCALE, width // max(cols, 1), height_px // max(rows, 1)))


def _matrix(a: np.ndarray, width: int, height_px: int, what: str) -> HeatmapLayout:
    h, w = a.shape
    fy, fx = _ceil_div(h, max(height_px, 1)), _ceil_div(w, max(width, 1))
    mean, has_nan, has_inf = _block_mean(a, fy, fx)
    codes, scale = _codes(mean, has_nan, has_inf)
    k = _fit(*codes.shape, width, height_px) if (fy, fx) == (1, 1) else 1
    note = what
    if (fy, fx) != (1, 1):
        note += f", block mean {fy}×{fx}"
    return _layout(_upscale(codes, k), a, scale, k, (fy, fx), note)


def _strip(a: np.ndarray, width: int, height_px: int) -> HeatmapLayout:
    n = a.shape[0]
    fx = _ceil_div(n, max(width, 1))
    mean, has_nan, has_inf = _block_mean(a.reshape(1, n), 1, fx)
    codes, scale = _codes(mean, has_nan, has_inf)
    k = _fit(1, codes.shape[1], width, height_px) if fx == 1 else 1
    wide = np.repeat(codes, k, axis=1)
    # A strip is at least one full text line tall: a lone half-line is easy to miss.
    tall = np.repeat(wide, max(k, 2), axis=0)
    note = f"strip of {n}" + (f", block mean 1×{fx}" if fx > 1 else "")
    return _layout(tall, a, scale, k, (1, fx), note)


def _kernels(a: np.ndarray, width: int, height_px: int) -> HeatmapLayout:
    """A conv weight (out, in, kh, kw) as out rows × in columns of kernel tiles with gaps.

    The grid is fitted to the width (kernels shrunk by block mean when needed) and may be
    taller than the canvas: the canvas scrolls, so every kernel keeps its shape.
    """
    o, i, kh, kw = a.shape
    f = 1
    while i * _ceil_div(kw, f) + (i - 1) * TILE_GAP > width and f < max(kh, kw):
        f += 1
    th, tw = _ceil_div(kh, f), _ceil_div(kw, f)
    if i * tw + (i - 1) * TILE_GAP > width:
        # Too many input channels for tiles: one pixel per kernel (its mean), as a matrix.
        means = _block_mean(a, kh, kw)
        flat = np.where(means[1], np.nan, np.where(means[2], np.inf, means[0])).reshape(o, i)
        layout = _matrix(flat, width, height_px, f"{o}×{i} kernel means")
        return replace(layout, nans=int(np.isnan(a).sum()), infs=int(np.isinf(a).sum()))
    mean, has_nan, has_inf = _block_mean(a, f, f)
    codes, scale = _codes(mean, has_nan, has_inf)  # (o, i, th, tw)
    grid = np.full((o, th + TILE_GAP, i, tw + TILE_GAP), GAP, dtype=np.int16)
    grid[:, :th, :, :tw] = codes.transpose(0, 2, 1, 3)
    grid = grid.reshape(o * (th + TILE_GAP), i * (tw + TILE_GAP))
    grid = grid[: grid.shape[0] - TILE_GAP, : grid.shape[1] - TILE_GAP]
    k = _fit(*grid.shape, width, height_px)
    fy, fx = min(f, kh), min(f, kw)  # the block as drawn: never taller or wider than a kernel
    note = f"{o}×{i} kernels {kh}×{kw}" + (f", block mean {fy}×{fx}" if f > 1 else "")
    return _layout(_upscale(grid, k), a, scale, k, (fy, fx), note)


def _feature_maps(a: np.ndarray, width: int, height_px: int) -> HeatmapLayout | None:
    """One sample's activation (1, c, h, w): its c maps wrapped into rows, all on screen.

    A conv layer's output has few channels of large maps; a single row of them (the kernel
    grid) would shrink each map to a smudge. The smallest block mean whose wrapped grid fits
    the canvas wins; ``None`` when not even one map fits the width (the kernel grid then).
    """
    _, c, h, w = a.shape
    chosen: tuple[int, int] | None = None
    for f in range(1, max(h, w) + 1):
        th, tw = _ceil_div(h, f), _ceil_div(w, f)
        per_row = min(c, (width + TILE_GAP) // (tw + TILE_GAP))
        if per_row < 1:
            continue
        if chosen is None:
            chosen = (f, per_row)  # the sharpest that fits the width: scrolls if too tall
        if _ceil_div(c, per_row) * (th + TILE_GAP) - TILE_GAP <= height_px:
            chosen = (f, per_row)
            break
    if chosen is None:
        return None
    f, per_row = chosen
    rows = _ceil_div(c, per_row)
    mean, has_nan, has_inf = _block_mean(a[0], f, f)
    codes, scale = _codes(mean, has_nan, has_inf)  # (c, th, tw)
    th, tw = codes.shape[1:]
    grid = np.full((rows * per_row, th + TILE_GAP, tw + TILE_GAP), GAP, dtype=np.int16)
    grid[:c, :th, :tw] = codes
    grid = grid.reshape(rows, per_row, th + TILE_GAP, tw + TILE_GAP).transpose(0, 2, 1, 3)
    grid = grid.reshape(rows * (th + TILE_GAP), per_row * (tw + TILE_GAP))
    grid = grid[: grid.shape[0] - TILE_GAP, : grid.shape[1] - TILE_GAP]
    k = _fit(*grid.shape, width, height_px)
    fy, fx = min(f, h), min(f, w)  # the block as drawn: never taller or wider than a map
    # Short: the legend line is narrow, and the summary line below gives the full shape.
    note = f"{c} maps" + (f", {fy}×{fx} block mean" if f > 1 else "")
    return _layout(_upscale(grid, k), a, scale, k, (fy, fx), note)


def _layout(
    codes: np.ndarray,
    a: np.ndarray,
    scale: float,
    k: int,
    reduce: tuple[int, int],
    note: str,
) -> HeatmapLayout:
    return HeatmapLayout(
        codes, scale, int(np.isnan(a).sum()), int(np.isinf(a).sum()), k, reduce, note
    )


def layout_tensor(
    values: np.ndarray, width: int, height_px: int, maps: bool = False
) -> HeatmapLayout:
    """Lay ``values`` out in at most ``width`` columns (and ``height_px`` pixel rows, except
    for a kernel grid, which scrolls). 0-D and 2-D: a matrix; 1-D: a strip; 3-D (c, h, w):
    one row of c tiles; 4-D and more: a grid of the last two dimensions' kernels.

    ``maps``: ``values`` is an activation; one sample's (1, c, h, w) maps wrap into rows."""
    a = np.asarray(values, dtype=np.float64)
    width, height_px = max(width, 1), max(height_px, 2)
    if a.ndim == 0:
        return _matrix(a.reshape(1, 1), width, height_px, "scalar")
    if a.ndim == 1:
        return _strip(a, width, height_px)
    if a.ndim == 2:
        return _matrix(a, width, height_px, f"{a.shape[0]}×{a.shape[1]} matrix")
    if a.ndim == 3:
        a = a.reshape(1, *a.shape)
    elif a.ndim > 4:
        a = a.reshape(-1, *a.shape[-3:])
    if maps and a.shape[0] == 1:
        wrapped = _feature_maps(a, width, height_px)
        if wrapped is not None:
            return wrapped
    return _kernels(a, width, height_px)


# ----------------------------------------------------------------------------- rendering

_STYLE_CACHE: dict[tuple[int, int], Segment] = {}


def _rich_color(code: int) -> Color:
    r, g, b = RGB[code]
    return Color(r, g, b)


def _cell(top: int, bottom: int) -> Segment:
    """The one-character segment showing two stacked pixels (cached: a few hundred exist)."""
    seg = _STYLE_CACHE.get((top, bottom))
    if seg is None:
        if top == GAP and bottom == GAP:
            seg = Segment(" ")
        elif top == GAP:
            seg = Segment("▄", Style(color=_rich_color(bottom).rich_color))
        elif bottom == GAP:
            seg = Segment("▀", Style(color=_rich_color(top).rich_color))
        else:
            seg = Segment(
                "▀",
                Style(color=_rich_color(top).rich_color, bgcolor=_rich_color(bottom).rich_color),
            )
        _STYLE_CACHE[(top, bottom)] = seg
    return seg


def strips_for(codes: np.ndarray) -> list[Strip]:
    """One ``Strip`` per text line (two pixel rows each)."""
    if codes.shape[0] % 2:
        codes = np.vstack([codes, np.full((1, codes.shape[1]), GAP, dtype=codes.dtype)])
    width = int(codes.shape[1])
    cell = _cell
    return [
        Strip([cell(t, b) for t, b in zip(top, bottom)], width)
        for top, bottom in zip(codes[0::2].tolist(), codes[1::2].tolist())
    ]


def legend(scale: float, note: str) -> Text:
    """``-0.31 ▀▀▀…0…▀▀▀ 0.31  (16×6 kernels 5×5)``: the colour ramp and what it spans."""
    text = Text()
    if scale <= 0:
        text.append("scale: all values are 0 ", style="dim")
        text.append("█", style=Style(color=_rich_color(ZERO).rich_color))
    else:
        text.append(f"{fmt(-scale)} ")
        for code in range(2 * LEVELS + 1):
            char = "0" if code == ZERO else "█"
            style = "bold" if code == ZERO else Style(color=_rich_color(code).rich_color)
            text.append(char, style=style)
        text.append(f" {fmt(scale)}")
    if note:
        text.append(f"  ({note})", style="dim")
    return text


def flags(nans: int, infs: int) -> Text:
    """Coloured NaN / Inf counts, matching the pixels that mark them."""
    text = Text()
    if nans:
        text.append("  ■", style=Style(color=_rich_color(NAN).rich_color))
        text.append(f" NaN×{nans}", style="bold")
    if infs:
        text.append("  ■", style=Style(color=_rich_color(INF).rich_color))
        text.append(f" Inf×{infs}", style="bold")
    return text


class HeatmapCanvas(ScrollView):
    """The pixels of a :class:`TensorView`; scrolls when a kernel grid is taller than it."""

    class LaidOut(Message):
        """The pixels were recomputed (new values or new size): legends should follow."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._values: np.ndarray | None = None
        self._maps = False
        self._message = ""
        self.heatmap: HeatmapLayout | None = None
        self._strips: list[Strip] = []
        # Laid out on the background thread, not drawn yet: (values, width, height, maps).
        self.pending: tuple[np.ndarray, int, int, bool] | None = None
        # The content size it last had on screen, and what the strips (or the pending layout)
        # are for: (values, width, height in pixels, maps).
        self._screen_size: Size | None = None
        self._laid_for: tuple[np.ndarray | None, int, int, bool] | None = None

    def set_values(self, values: np.ndarray | None, message: str = "", maps: bool = False) -> None:
        self._values = values
        self._maps = maps
        self._message = message
        self.relayout()

    def relayout(self) -> None:
        """Recompute pixels for the current size (called on show and on resize).

        A big tensor (a 1024×1024 weight: ~10 ms of block means) is laid out on the app's
        background thread (tui.background): the canvas shows the placeholder until then.
        """
        size = self.scrollable_content_region.size
        if size.width > 0 and size.height > 0:
            self._screen_size = size
        elif self._screen_size is not None:
            # Hidden (another tab is shown; step fills this one before bringing it forward):
            # laid out at the size it had on screen, which it has again when its tab comes
            # back, so that frame shows the picture instead of a blank canvas and the picture
            # only in the frame after.
            size = self._screen_size
        self.pending = None
        values = self._values
        self._laid_for = None
        if values is None or size.width <= 0 or size.height <= 0:
            self._laid_out(None)
            return
        width, height_px, maps = size.width, size.height * 2, self._maps
        self._laid_for = (values, width, height_px, maps)
        bg = background.background_of(self.app)
        if bg is None or values.size <= background.DEFER_NUMEL:
            self._laid_out(layout_tensor(values, width, height_px, maps=maps))
            return
        self.pending = (values, width, height_px, maps)
        self._laid_out(None)

        def apply(layout: HeatmapLayout) -> None:
            # Only if still waiting for these very values at this size (a task asked again
            # for the same, by a newer snapshot, may land second: it then finds none pending).
            asked = self.pending
            if asked is not None and asked[0] is values and asked[1:] == (width, height_px, maps):
                self.pending = None
                self._laid_out(layout)

        key = ("heatmap", id(self), id(values), width, height_px, maps)
        bg.submit(key, lambda: layout_tensor(values, width, height_px, maps=maps), apply)

    def _laid_out(self, layout: HeatmapLayout | None) -> None:
        self.heatmap = layout
        if layout is None:
            self._strips = []
            self.virtual_size = Size(0, 0)
        else:
            self._strips = strips_for(layout.codes)
            self.virtual_size = Size(layout.width, layout.height)
        self.scroll_to(0, 0, animate=False)
        self.refresh()
        self.post_message(self.LaidOut())

    def on_resize(self) -> None:
        size = self.scrollable_content_region.size
        laid = self._laid_for
        if (
            laid is not None
            and laid[0] is self._values
            and laid[1:] == (size.width, size.height * 2, self._maps)
        ):
            self._screen_size = size
            return  # shown again at the size it was laid out for while hidden
        self.relayout()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        style = self.rich_style
        line = scroll_y + y
        if self.pending is not None:
            if y == self.size.height // 3:
                text = background.PLACEHOLDER[:width].center(width)
                dim = Style.parse(background.PLACEHOLDER_STYLE)
                return Strip([Segment(text, dim)], width).apply_style(style)
            return Strip.blank(width, style)
        if self._values is None:
            # The message sits a third of the way down, centred: hard to miss, not shouting.
            if self._message and y == self.size.height // 3:
                text = self._message[:width].center(width)
                return Strip([Segment(text, Style(bold=True))], width).apply_style(style)
            return Strip.blank(width, style)
        if line >= len(self._strips):
            return Strip.blank(width, style)
        return self._strips[line].crop_extend(scroll_x, scroll_x + width, style).apply_style(style)


def _text_key(text: Text) -> tuple[object, ...]:
    """What a Text shows (rich's ``Text ==`` ignores the base style)."""
    return (text.plain, text.style, tuple(text.spans))


def _same_view(
    old: tuple[str, str, str, bool, np.ndarray | None],
    new: tuple[str, str, str, bool, np.ndarray | None],
) -> bool:
    """Same words and the very same values, bit for bit (``-0.0`` is not ``0.0``, a NaN is
    itself): only then may the drawing stay."""
    if old[:4] != new[:4]:
        return False
    a, b = old[4], new[4]
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and np.array_equal(a.view(np.int64), b.view(np.int64))


class TensorView(Vertical):
    """A titled heatmap of one tensor with its colour legend and summary line."""

    def __init__(
        self, *, id: str | None = None, classes: str | None = None, name: str | None = None
    ) -> None:
        super().__init__(id=id, classes=classes, name=name)
        self.title_text = ""
        self.summary_text = ""
        # What is on screen: a phase that left the tensor as it was (forward, loss after a
        # step) redraws nothing.
        self._shown: tuple[str, str, str, bool, np.ndarray | None] | None = None
        # The legend's and summary's words and styles on screen (``_update_text``).
        self._texts: tuple[tuple[object, ...], tuple[object, ...]] | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="tensor-title", classes="tensor-title", markup=False)
        yield HeatmapCanvas(id="tensor-canvas", classes="tensor-canvas")
        yield Static("", id="tensor-legend", classes="tensor-legend", markup=False)
        yield Static("", id="tensor-summary", classes="tensor-summary", markup=False)

    @property
    def canvas(self) -> HeatmapCanvas:
        return self.query_one(HeatmapCanvas)

    def show(
        self,
        title: str,
        values: np.ndarray | None,
        summary: str,
        *,
        none_text: str = "grad is None",
        maps: bool = False,
    ) -> None:
        """Show ``values`` (any array-like; ``None`` = the tensor does not exist, e.g. a
        ``.grad`` before the first backward, shown as ``none_text``). ``maps``: an
        activation, whose feature maps wrap into rows (:func:`layout_tensor`)."""
        array = None if values is None else np.array(values, dtype=np.float64, copy=True)
        if self._shown is not None and _same_view(
            self._shown, (title, summary, none_text, maps, array)
        ):
            if self.canvas.pending is not None:
                # Its layout was queued for an older snapshot: a newer one drops such work
                # (tui.background), and the panes ask again for what they still show.
                self.canvas.relayout()
            return
        self._shown = (title, summary, none_text, maps, array)
        self.title_text = title
        self.summary_text = summary
        self.query_one("#tensor-title", Static).update(Text(title, style="bold"))
        if array is not None and array.size == 0:
            self.canvas.set_values(None, f"empty tensor {list(array.shape)}")
            array = None
        else:
            self.canvas.set_values(array, none_text, maps=maps)
        self._update_text()

    def on_heatmap_canvas_laid_out(self, event: HeatmapCanvas.LaidOut) -> None:
        event.stop()
        self._update_text()

    def _update_text(self) -> None:
        layout = self.canvas.heatmap
        summary = Text(self.summary_text)
        key = Text("")
        if layout is not None:
            key = legend(layout.scale, layout.note)
            summary.append_text(flags(layout.nans, layout.infs))
        elif self.canvas.pending is not None:
            key = Text(background.PLACEHOLDER, style=background.PLACEHOLDER_STYLE)
        texts = (_text_key(key), _text_key(summary))
        if texts == self._texts:
            return  # the canvas laid out again (a resize, a new tensor) with the same words
        self._texts = texts
        self.query_one("#tensor-legend", Static).update(key)
        # The Statics repaint (and lay out) themselves; the view around them draws nothing
        # that changed (a repaint of it redrew its whole height every step).
        self.query_one("#tensor-summary", Static).update(summary)
