"""The output pane: what each phase printed, as the tutorial's ``Out:`` blocks, newest last."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache, partial

from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from engine import PhaseRecord

from ..background import PLACEHOLDER, PLACEHOLDER_STYLE, background_of, costly_record
from .codepane import THEME

# Older blocks are dropped from the screen (not from the session) so a long run stays fast.
MAX_BLOCKS = 60
# A printed line that is code (``print(...)``, an assignment, a comment), not program output.
_CODE_LINE = re.compile(r"^(print\(|#|[A-Za-z_][\w.]*\s*=\s)")


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


class OutBlock(Static):
    """One phase's block; remembers its record so a rewound-and-rerun phase is replaced.

    A big model's block (``costly_record``) shows its code and ``PLACEHOLDER`` first; the
    printed text, notes and diagnostics are read on the app's background thread.
    """

    COMPONENT_CLASSES = {"outblock--title", "outblock--out", "outblock--note", "outblock--warn"}

    def __init__(self, record: PhaseRecord, watch: str | None) -> None:
        super().__init__(classes="skipped" if record.skipped else "")
        self.record = record
        self.watch = watch
        self._parts: Parts | None = None

    def on_mount(self) -> None:
        self.ask()
        self.update(self.render_block())

    @property
    def waiting(self) -> bool:
        """Shows the placeholder until the background thread reads the record."""
        return self._parts is None and costly_record(self.record) and bool(background_of(self.app))

    def ask(self) -> None:
        """Queue the record's reading if this block waits for it (again after a new snapshot:
        the background drops what an older one queued)."""
        bg = background_of(self.app)
        if bg is not None and self.waiting:
            bg.submit(self, partial(block_parts, self.record, self.watch), self.ready)

    def ready(self, parts: Parts) -> None:
        """On the event loop: the background thread read the record."""
        if self._parts is not None or not self.is_attached:
            return  # removed (rewound away, or scrolled out of the window): nothing to show
        self._parts = parts
        self.update(self.render_block())
        if isinstance(self.parent, OutputPane) and self.parent.children[-1] is self:
            self.parent.scroll_end(animate=False)  # the newest block grew: keep it in view

    def _style(self, name: str) -> str:
        return str(self.get_component_rich_style(f"outblock--{name}", partial=True))

    def render_block(self) -> Text:
        record = self.record
        text = Text(no_wrap=True)
        text.append(title(record), style=self._style("title"))
        text.append("\n")
        for line in record.code.splitlines():
            text.append(">>> ", style=self._style("out"))
            text.append_text(_code(line))
            text.append("\n")
        if self.waiting:
            text.append(PLACEHOLDER, style=PLACEHOLDER_STYLE)
            return text
        printed, block_notes, diagnostics = self._parts or block_parts(record, self.watch)
        in_output = False
        for line in printed.splitlines():
            if not line.strip():
                continue  # the tutorial's blank separators cost a row each in a small pane
            if line.startswith("#"):
                text.append(line, style=self._style("note"))  # a remark, not code that ran
                in_output = False
            elif _CODE_LINE.match(line):
                text.append(">>> ", style=self._style("out"))
                text.append_text(_code(line))
                in_output = False
            else:
                if not in_output:
                    text.append("Out:\n", style=self._style("out"))
                    in_output = True
                text.append(line)
            text.append("\n")
        for note in block_notes:
            text.append(note + "\n", style=self._style("note"))
        for diag in diagnostics:
            text.append(diag + "\n", style=self._style("warn"))
        text.rstrip()
        return text

    @property
    def plain(self) -> str:
        return self.render_block().plain


class OutputPane(VerticalScroll, can_focus=True):
    """Mirrors the session's log: blocks for records gone after a rewind are removed."""

    def sync(self, records: Sequence[PhaseRecord], watch: str | None) -> None:
        shown = list(records[-MAX_BLOCKS:])
        alive = {id(r) for r in shown}
        blocks = list(self.query(OutBlock))
        # Blocks whose record slid out of the window (or was rewound away) go first.
        while blocks and id(blocks[0].record) not in alive:
            blocks.pop(0).remove()
        if blocks and blocks[0].record is not shown[0]:
            # Rewound to before the oldest block on screen: rebuild the window.
            for block in blocks:
                block.remove()
            blocks = []
        keep = 0
        while keep < len(blocks) and keep < len(shown) and blocks[keep].record is shown[keep]:
            keep += 1
        for block in blocks[keep:]:
            block.remove()
        for block in blocks[:keep]:
            block.ask()
        self._append(shown[keep:], watch)

    def _append(self, records: Sequence[PhaseRecord], watch: str | None) -> None:
        if records:
            self.mount_all(OutBlock(r, watch) for r in records)
        # scroll_end waits for the next layout itself (the new blocks' heights): deferring it
        # once more cost another frame after the phase's, painted late.
        self.scroll_end(animate=False)

    @property
    def texts(self) -> list[str]:
        """Plain text of every block, oldest first (for tests and copy)."""
        return [b.plain for b in self.query(OutBlock)]
