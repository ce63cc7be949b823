"""Bytes written straight to file descriptors 1 and 2, caught for the app.

``userprints`` catches what Python code writes to ``sys.stdout`` and ``sys.stderr``. Code
below Python (a C extension's ``printf``, a C++ library's log line, ``os.write(1, ...)``, a
subprocess inheriting the descriptors) writes to the descriptors themselves, which in the app
are the terminal Textual draws on: the bytes landed in the middle of its screen and stayed
there until the next repaint of those cells.

``FdCapture`` points both descriptors at one pipe for as long as it is installed and keeps
what arrives; a phase takes what arrived by its end (``take``), so the bytes show in the
phase's block after what it printed through Python. The terminal itself stays reachable
through copies of the old descriptors, which ``sys.__stdout__`` and ``sys.__stderr__`` are
pointed at while installed: Textual draws on ``sys.__stderr__`` and takes its size from
``sys.__stdout__`` (``shutil.get_terminal_size``), so it is installed before the app starts.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
import sys
import threading
from typing import Any

# Bytes held between two ``take`` calls past which the oldest go (a thread of the user's
# printing in a loop while no phase runs); a phase keeps its last 20,000 characters anyway.
MAX_HELD = 1 << 20
# How long ``take`` waits for the pipe to hand over what was written before it (the reader
# thread is woken by the write; it only waits if the machine is starved).
TAKE_TIMEOUT = 2.0

_ACTIVE: FdCapture | None = None


def active() -> FdCapture | None:
    """The capture installed now, if any."""
    return _ACTIVE


# A mark ``take`` wrote whose wait timed out arrives later, amid the next phase's bytes.
_MARK = re.compile(rb"\x00nntui-take-\d+\x00")


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # no C library to look symbols up in: nothing of C's to flush
        return None


_LIBC = _libc()


def _flush_c_stdio() -> None:
    """C's ``stdout`` buffers up to 4 KiB when it is a pipe: flush it (and every stream)."""
    if _LIBC is not None:
        _LIBC.fflush(None)


class FdCapture:
    """Points file descriptors 1 and 2 at a pipe while installed (a context manager)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._marks = itertools.count()
        self._waiting = 0  # ``take`` calls waiting for their mark
        self._saved: dict[int, int] = {}
        self._streams: dict[str, Any] = {}
        self._read = -1
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FdCapture:
        global _ACTIVE
        if _ACTIVE is not None:
            raise RuntimeError("file descriptors 1 and 2 are already captured")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        read, write = os.pipe()
        self._saved = {fd: os.dup(fd) for fd in (1, 2)}
        for fd in (1, 2):
            os.dup2(write, fd)
        os.close(write)
        self._read = read
        # Copies of the terminal for what must reach it; closefd=False: the saved descriptors
        # are closed on exit, after the descriptors are back.
        self._streams = {"__stdout__": sys.__stdout__, "__stderr__": sys.__stderr__}
        sys.__stdout__ = os.fdopen(self._saved[1], "w", closefd=False)  # type: ignore[misc]
        sys.__stderr__ = os.fdopen(self._saved[2], "w", closefd=False)  # type: ignore[misc]
        self._thread = threading.Thread(target=self._pump, name="nntui-fd-capture", daemon=True)
        self._thread.start()
        _ACTIVE = self
        return self

    def __exit__(self, *_: object) -> None:
        global _ACTIVE
        _ACTIVE = None
        _flush_c_stdio()
        for name, stream in self._streams.items():
            getattr(sys, name).flush()
            setattr(sys, name, stream)
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)  # the pipe's last writer closes: the reader sees its end
        if self._thread is not None:
            self._thread.join(TAKE_TIMEOUT)
        os.close(self._read)
        with self._cond:
            rest = bytes(self._buf)
            self._buf.clear()
        if rest:
            # Written after the last phase took its share: the terminal gets it now, after
            # the app has left the screen, rather than nobody.
            os.write(self._saved[1], rest)
        for saved in self._saved.values():
            os.close(saved)

    def _pump(self) -> None:
        while True:
            data = os.read(self._read, 65536)
            if not data:
                return
            with self._cond:
                self._buf += data
                if not self._waiting and len(self._buf) > MAX_HELD:
                    del self._buf[: len(self._buf) - MAX_HELD]
                self._cond.notify_all()

    def take(self) -> str:
        """What reached the descriptors since the last ``take``, as text. Call it from the
        thread that wrote (the phase's, when it ends): everything that thread wrote before
        is returned, C's buffered output included."""
        _flush_c_stdio()
        mark = b"\x00nntui-take-%d\x00" % next(self._marks)
        with self._cond:
            self._waiting += 1
        try:
            os.write(1, mark)  # after every byte written before it, in the pipe's order
            with self._cond:
                found = self._cond.wait_for(lambda: mark in self._buf, TAKE_TIMEOUT)
                if found:
                    end = self._buf.index(mark)
                    data = bytes(self._buf[:end])
                    del self._buf[: end + len(mark)]
                else:  # the reader is starved: what it has now, and the mark later
                    data = bytes(self._buf)
                    self._buf.clear()
        finally:
            with self._cond:
                self._waiting -= 1
        return _MARK.sub(b"", data).decode("utf-8", "replace")
