"""The output pane: what each phase printed, as the tutorial's ``Out:`` blocks, newest last."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from functools import lru_cache, partial

from rich.syntax import Syntax
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip

from engine import PhaseRecord

from ..background import PLACEHOLDER, PLACEHOLDER_STYLE, background_of, costly_record
from .codepane import THEME
from .lines import text_strip
from .virtual import SteadyScrollView, set_virtual_size

# Older blocks are dropped from the screen (not from the session) so a long run stays fast.
MAX_BLOCKS = 60
# A printed line that is code (``print(...)``, an assignment, a comment), not program output.
_CODE_LINE = re.compile(r"^(print\(|#|[A-Za-z_][\w.]*\s*=\s)")
STYLE_NAMES = ("title", "skipped", "out", "note", "warn")


def title(record: PhaseRecord) -> str:
    name = record.phase.value + (" skipped" if record.skipped else "")
    return f"iteration {record.iteration} · {name}"


def notes(record: PhaseRecord, watch: str | None) -> list[str]:
    """Short facts the printed text leaves implicit: accumulation and the SGD identity."""
    out: list[str] = []
    for change in record.grad_changes:
        if change.name != watch or change.after is None:
            continue
        if change.accumulated and change.before is not None and change.fresh is not None:
            out.append(f"# {watch}.grad = before + this backward's grad")
            out.append(f"# after == before + fresh, bit for bit: {change.exact}")
        else:
            out.append(f"# {watch}.grad was None: it is now this backward's grad")
    checked = [c.matches_sgd for c in record.step_changes if c.matches_sgd is not None]
    if checked:
        out.append(f"# p ← p − lr·grad, bit-exact: {all(checked)} ({len(checked)} params)")
    if record.zero_grad_mode == "none":
        out.append("# every .grad is now None")
        out.append("# (set_to_none=True, the default since 2.0)")
    elif record.zero_grad_mode == "zeros":
        out.append("# every .grad is now filled with 0 (set_to_none=False)")
    return out


# What a block shows below its code: printed lines, notes, diagnostics (one per line).
Parts = tuple[str, tuple[str, ...], tuple[str, ...]]


def block_parts(record: PhaseRecord, watch: str | None) -> Parts:
    """Everything of a block read from the record's deferred values (thread-safe)."""
    return (
        record.printed,
        tuple(notes(record, watch)),
        tuple(f"⚠ {d.kind}: {d.message}" for d in record.diagnostics),
    )


@lru_cache(maxsize=512)
def _code(line: str) -> Text:
    """One highlighted line; the same few lines come back every iteration (a third of a
    block's drawing). Cached: callers append it (a copy), never change it."""
    text = Syntax("", "python", theme=THEME, background_color="default").highlight(line)
    text.rstrip()
    return text


class Block:
    """One phase's block: its record, what the background thread read of it, its lines.

    A big model's block (``costly_record``) shows its code and ``PLACEHOLDER`` first; the
    printed text, notes and diagnostics are read on the app's background thread.
    """

    __slots__ = ("record", "watch", "parts", "lines", "width", "strips")

    def __init__(self, record: PhaseRecord, watch: str | None) -> None:
        self.record = record
        self.watch = watch
        self.parts: Parts | None = None
        self.lines: list[Text] = []
        self.width = 0  # of its widest line
        # (line, width) -> the line drawn at that width (the pane's virtual width).
        self.strips: dict[tuple[int, int], Strip] = {}


class OutputPane(SteadyScrollView, can_focus=True):
    """Mirrors the session's log: blocks for records gone after a rewind are removed.

    One widget draws every block line by line (a blank line after each): a phase adds its
    lines and draws them, instead of mounting a widget and laying the pane out again.
    """

    COMPONENT_CLASSES = {f"outputpane--{name}" for name in STYLE_NAMES}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._blocks: list[Block] = []
        self._tops: list[int] = []  # first line of each block
        self._styles: tuple[str, ...] = ()

    # ------------------------------------------------------------------ the log
    def sync(self, records: Sequence[PhaseRecord], watch: str | None) -> None:
        shown = list(records[-MAX_BLOCKS:])
        alive = {id(r) for r in shown}
        blocks = self._blocks
        # Blocks whose record slid out of the window (or was rewound away) go first.
        first = 0
        while first < len(blocks) and id(blocks[first].record) not in alive:
            first += 1
        kept = blocks[first:]
        if kept and kept[0].record is not shown[0]:
            kept = []  # rewound to before the oldest block on screen: rebuild the window
        keep = 0
        while keep < len(kept) and keep < len(shown) and kept[keep].record is shown[keep]:
            keep += 1
        removed = first > 0 or keep < len(kept)
        kept = kept[:keep]
        for block in kept:
            self._ask(block)
        new = [Block(r, watch) for r in shown[keep:]]
        for block in new:
            self._ask(block)
            self._draw(block)
        self._blocks = kept + new
        self._layout_lines()
        if removed:
            self.refresh()
        elif new:
            start = self._tops[len(kept)]
            self.refresh_lines(start, self.virtual_size.height - start)
        self._scroll_to_end()

    def _ask(self, block: Block) -> None:
        """Queue the record's reading if ``block`` waits for it (again after a new snapshot:
        the background drops what an older one queued)."""
        bg = background_of(self.app)
        if bg is not None and self._waiting(block):
            bg.submit(
                block, partial(block_parts, block.record, block.watch), partial(self._ready, block)
            )

    def _waiting(self, block: Block) -> bool:
        """Shows the placeholder until the background thread reads the record."""
        return block.parts is None and costly_record(block.record) and bool(background_of(self.app))

    def _ready(self, block: Block, parts: Parts) -> None:
        """On the event loop: the background thread read ``block``'s record."""
        if block.parts is not None or block not in self._blocks:
            return  # removed (rewound away, or scrolled out of the window): nothing to show
        block.parts = parts
        self._draw(block)
        self._layout_lines()
        self.refresh()
        if block is self._blocks[-1]:
            self._scroll_to_end()  # the newest block grew: keep it in view

    def _scroll_to_end(self) -> None:
        # At once, so this frame already shows the newest lines; once more after the layout,
        # in case a new horizontal scrollbar took a line of the view.
        self.scroll_end(animate=False, immediate=True)
        self.scroll_end(animate=False)

    def _layout_lines(self) -> None:
        tops, y, width = [], 0, 0
        for block in self._blocks:
            tops.append(y)
            y += len(block.lines) + 1  # a blank line after every block
            width = max(width, block.width)
        self._tops = tops
        set_virtual_size(self, Size(width, y))

    # ------------------------------------------------------------------ drawing
    def _style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"outputpane--{name}", partial=True))

    def _draw(self, block: Block) -> None:
        block.lines = self.block_text(block).split("\n", allow_blank=True)
        # Measured once: the pane's width is the widest of up to MAX_BLOCKS blocks each phase.
        block.width = max((line.cell_len for line in block.lines), default=0)
        block.strips.clear()

    def block_text(self, block: Block) -> Text:
        record = block.record
        style = {name: self._style(name) for name in STYLE_NAMES}
        text = Text(no_wrap=True)
        text.append(title(record), style=style["skipped" if record.skipped else "title"])
        text.append("\n")
        for line in record.code.splitlines():
            text.append(">>> ", style=style["out"])
            text.append_text(_code(line))
            text.append("\n")
        if self._waiting(block):
            text.append(PLACEHOLDER, style=PLACEHOLDER_STYLE)
            return text
        printed, block_notes, diagnostics = block.parts or block_parts(record, block.watch)
        in_output = False
        for line in printed.splitlines():
            if not line.strip():
                continue  # the tutorial's blank separators cost a row each in a small pane
            if line.startswith("#"):
                text.append(line, style=style["note"])  # a remark, not code that ran
                in_output = False
            elif _CODE_LINE.match(line):
                text.append(">>> ", style=style["out"])
                text.append_text(_code(line))
                in_output = False
            else:
                if not in_output:
                    text.append("Out:\n", style=style["out"])
                    in_output = True
                text.append(line)
            text.append("\n")
        for note in block_notes:
            text.append(note + "\n", style=style["note"])
        for diag in diagnostics:
            text.append(diag + "\n", style=style["warn"])
        text.rstrip()
        return text

    def notify_style_update(self) -> None:
        super().notify_style_update()
        if not self.is_mounted:
            return
        styles = tuple(self._style(name) for name in STYLE_NAMES)
        if styles != self._styles:  # a new theme: the lines carry the old colours
            self._styles = styles
            for block in self._blocks:
                self._draw(block)
            self.refresh()

    def on_resize(self) -> None:
        for block in self._blocks:
            block.strips.clear()  # drawn as wide as the pane, at least
        self.refresh()

    def render_line(self, y: int) -> Strip:
        # Lines are not padded: Textual fills the rest of the row with the pane's background,
        # as it did around the blocks' text before.
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        index = y + scroll_y
        i = bisect_right(self._tops, index) - 1
        line = index - self._tops[i] if i >= 0 else -1
        if i < 0 or not 0 <= line < len(self._blocks[i].lines):
            return Strip([], 0)  # the blank line after a block, or below the last
        block = self._blocks[i]
        full = max(self.virtual_size.width, width)
        strip = block.strips.get((line, full))
        if strip is None:
            strip = text_strip(self, block.lines[line], full)
            if strip is None:
                strip = Strip([], 0)
            block.strips[(line, full)] = strip
        return strip.crop(scroll_x, scroll_x + width)

    @property
    def texts(self) -> list[str]:
        """Plain text of every block, oldest first (for tests and copy)."""
        return [self.block_text(b).plain for b in self._blocks]
