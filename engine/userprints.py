"""What the user's code prints while a phase runs, kept with the phase.

A ``print(x.shape)`` in ``forward`` is how people debug a model. A terminal app owns the
terminal (Textual redirects ``sys.stdout`` and ``sys.stderr`` for the whole process), so
without this such prints vanish. While a phase runs, both streams are wrapped: what the
phase's own thread writes is kept for its record, whatever other threads write goes where it
went before. Bytes written to the descriptors themselves (C code, ``os.write``) are caught by
the app (tui.fdcapture) and handed over through ``take_descriptors`` at the phase's end.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .blame import ESCAPES

# A model printing in a loop must not fill memory: the last lines are the ones that explain a
# failure, so the head is dropped.
MAX_CHARS = 20_000
# A sink holds at most this many characters as they come (plain text made at the end is cut to
# MAX_CHARS): a forward printing megabytes kept every string until the phase ended (8 MB of
# prints held 69 MB).
_HELD = 4 * MAX_CHARS

# Thread -> the sink of the phase it runs. Streams look their sink up here when written to, so
# a stream object kept from an earlier phase (``logging.basicConfig()`` at import, at define;
# ``self.out = sys.stdout`` in ``__init__``) writes into the phase running now, and outside a
# phase writes where it wrote before, instead of into a finished phase's sink (lost, and
# growing for ever when the thread's id is reused by the next phase's worker).
_ACTIVE: dict[int, list[str]] = {}


class Printed(list):  # type: ignore[type-arg]
    """A phase's sink: the strings written, at most about ``_HELD`` characters of them."""

    def __init__(self) -> None:
        super().__init__()
        self.size = 0  # characters held
        self.dropped = 0  # characters let go


def _keep(sink: list[str], text: str) -> None:
    sink.append(text)
    if not isinstance(sink, Printed):
        return
    sink.size += len(text)
    if sink.size > _HELD:
        whole = "".join(sink)
        tail = whole[-(_HELD // 2) :]
        sink.dropped += len(whole) - len(tail)
        sink[:] = [tail]
        sink.size = len(tail)


class _PhaseStream:
    """Stands in for ``sys.stdout``/``sys.stderr`` while a phase runs."""

    def __init__(self, passthrough: Any) -> None:
        self._passthrough = passthrough

    def write(self, text: str) -> int:
        sink = _ACTIVE.get(threading.get_ident())
        if sink is not None:
            _keep(sink, str(text))
            return len(text)
        if self._passthrough is None:
            return len(text)
        return self._passthrough.write(text)

    def flush(self) -> None:
        if threading.get_ident() not in _ACTIVE and self._passthrough is not None:
            self._passthrough.flush()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:
        return getattr(self._passthrough, "encoding", None) or "utf-8"

    @property
    def buffer(self) -> Any:
        """``sys.stdout.buffer.write(b"...")`` is kept as text too (Textual's stand-in
        streams have no ``buffer``: the phase failed on an AttributeError)."""
        if threading.get_ident() in _ACTIVE:
            return _BytesStream(self)
        return self._passthrough.buffer

    def __getattr__(self, name: str) -> Any:
        # ``fileno``, ``errors``, …: what the stream stood in for has them (or raises).
        return getattr(self._passthrough, name)


class _BytesStream:
    def __init__(self, text: _PhaseStream) -> None:
        self._text = text

    def write(self, data: bytes) -> int:
        self._text.write(bytes(data).decode("utf-8", "replace"))
        return len(data)

    def flush(self) -> None:
        pass


@contextmanager
def capture_prints(sink: list[str]) -> Iterator[None]:
    """Inside the block, what this thread writes to ``sys.stdout`` and ``sys.stderr`` is
    appended to ``sink`` instead (use ``joined`` to read it)."""
    thread = threading.get_ident()
    out, err = sys.stdout, sys.stderr
    outer = _ACTIVE.get(thread)
    _ACTIVE[thread] = sink
    sys.stdout = _PhaseStream(out)  # type: ignore[assignment]
    sys.stderr = _PhaseStream(err)  # type: ignore[assignment]
    mine = sys.stdout, sys.stderr
    try:
        yield
    finally:
        if outer is None:
            del _ACTIVE[thread]
        else:
            _ACTIVE[thread] = outer
        # Put back only what is still ours: someone may have replaced a stream meanwhile.
        if sys.stdout is mine[0]:
            sys.stdout = out
        if sys.stderr is mine[1]:
            sys.stderr = err


# What reached file descriptors 1 and 2 since it was last called, when the app has them
# captured (tui.fdcapture); None otherwise.
_DESCRIPTORS: Callable[[], str] | None = None


def set_descriptor_source(take: Callable[[], str] | None) -> None:
    global _DESCRIPTORS
    _DESCRIPTORS = take


def descriptors_captured() -> bool:
    return _DESCRIPTORS is not None


def take_descriptors(sink: list[str]) -> None:
    """Append to ``sink`` what reached descriptors 1 and 2 since the last call (nothing unless
    the app captures them); call it where the phase's user code has ended."""
    take = _DESCRIPTORS  # once: the app may clear it meanwhile, quitting
    text = take() if take is not None else ""
    if text:
        _keep(sink, text)


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
    dropped = sink.dropped if isinstance(sink, Printed) else 0
    text = _plain("".join(sink))
    if len(text) <= MAX_CHARS and not dropped:
        return text
    tail = text[-MAX_CHARS:]
    tail = tail[tail.find("\n") + 1 :] if "\n" in tail else tail
    return f"[{dropped + len(text) - len(tail)} earlier characters not kept]\n{tail}"
