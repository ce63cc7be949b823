"""What the user's code prints while a phase runs, kept with the phase.

A ``print(x.shape)`` in ``forward`` is how people debug a model. A terminal app owns the
terminal (Textual redirects ``sys.stdout`` and ``sys.stderr`` for the whole process), so
without this such prints vanish. While a phase runs, both streams are wrapped: what the
phase's own thread writes is kept for its record, whatever other threads write goes where it
went before. Python-level writes only: a C extension writing to file descriptor 1 is not seen.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .blame import ESCAPES

# A model printing in a loop must not fill memory: the last lines are the ones that explain a
# failure, so the head is dropped.
MAX_CHARS = 20_000


class _PhaseStream:
    """Stands in for ``sys.stdout``/``sys.stderr`` while a phase runs."""

    def __init__(self, passthrough: Any, thread: int, sink: list[str]) -> None:
        self._passthrough = passthrough
        self._thread = thread
        self.sink = sink

    def write(self, text: str) -> int:
        if threading.get_ident() == self._thread:
            self.sink.append(str(text))
            return len(text)
        if self._passthrough is None:
            return len(text)
        return self._passthrough.write(text)

    def flush(self) -> None:
        if threading.get_ident() != self._thread and self._passthrough is not None:
            self._passthrough.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self._passthrough, "encoding", None) or "utf-8"

    def __getattr__(self, name: str) -> Any:
        # ``fileno``, ``errors``, …: what the stream stood in for has them (or raises).
        return getattr(self._passthrough, name)


@contextmanager
def capture_prints(sink: list[str]) -> Iterator[None]:
    """Inside the block, what this thread writes to ``sys.stdout`` and ``sys.stderr`` is
    appended to ``sink`` instead (use ``joined`` to read it)."""
    thread = threading.get_ident()
    out, err = sys.stdout, sys.stderr
    sys.stdout = _PhaseStream(out, thread, sink)  # type: ignore[assignment]
    sys.stderr = _PhaseStream(err, thread, sink)  # type: ignore[assignment]
    try:
        yield
    finally:
        # Put back only what is still ours: someone may have replaced a stream meanwhile.
        if isinstance(sys.stdout, _PhaseStream) and sys.stdout.sink is sink:
            sys.stdout = out
        if isinstance(sys.stderr, _PhaseStream) and sys.stderr.sink is sink:
            sys.stderr = err


# Colour codes and cursor movement (a progress bar's): shown raw in a terminal app they would
# move its cursor and repaint the wrong cells.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _plain(text: str) -> str:
    """``text`` as a terminal would leave it on screen, without control codes: escape
    sequences removed, and a line rewritten after ``\r`` keeps what was written last."""
    lines = []
    for line in ESCAPES.sub("", text).split("\n"):
        if "\r" in line:
            parts = [p for p in line.split("\r") if p]
            line = parts[-1] if parts else ""
        lines.append(_CONTROLS.sub("", line))
    return "\n".join(lines)


def joined(sink: list[str]) -> str:
    """The captured text as plain lines, its last ``MAX_CHARS`` characters when longer (and
    how much went)."""
    text = _plain("".join(sink))
    if len(text) <= MAX_CHARS:
        return text
    tail = text[-MAX_CHARS:]
    tail = tail[tail.find("\n") + 1 :] if "\n" in tail else tail
    return f"[{len(text) - len(tail)} earlier characters not kept]\n{tail}"
