"""Bytes written straight to file descriptors 1 and 2, caught while the app runs.

``engine.userprints`` catches what Python code writes to ``sys.stdout`` and ``sys.stderr``.
Code below Python (a C extension's ``printf``, a C++ library's log line, ``os.write(1, ...)``,
a subprocess inheriting the descriptors) writes to the descriptors themselves, which in the
app are the terminal Textual draws on: the bytes landed in the middle of its screen and stayed
there until the next repaint of those cells.

``FdCapture`` points both descriptors at one unlinked temporary file opened for appending, for
as long as it is installed, and hands the session a ``take`` that returns what was appended
since the last call (engine.userprints.set_descriptor_source); a phase takes what arrived by
its end, so the bytes show in the phase's block after what it printed through Python. A file,
not a pipe: a write never blocks, so a writer holding the interpreter lock (a C extension
printing 300 KB) cannot wait for a reader that needs that lock, and a child process still
holding the descriptors at quit delays nothing. The terminal stays reachable through copies of
the old descriptors, which ``sys.__stdout__`` and ``sys.__stderr__`` point at while installed:
Textual draws on ``sys.__stderr__`` and takes its size from ``sys.__stdout__``
(``shutil.get_terminal_size``), so it is installed before the app starts.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import sys
import tempfile
from typing import Any

from engine.userprints import set_descriptor_source

# Bytes read past which the file is emptied at the next ``take`` (what a phase keeps is cut to
# its last 20,000 characters anyway). Bytes another thread appends between that read and the
# truncation are lost: the price of a file that does not grow for ever.
MAX_KEPT = 1 << 20
_READ = 1 << 16


def _libc() -> Any:
    try:
        return ctypes.CDLL(None)
    except OSError:  # no C library to look symbols up in: nothing of C's to flush
        return None


_LIBC = _libc()


def _flush_c_stdio() -> None:
    """C's ``stdout`` buffers up to 4 KiB when it is not a terminal: flush every C stream."""
    if _LIBC is not None:
        _LIBC.fflush(None)


class FdCapture:
    """Points file descriptors 1 and 2 at a temporary file while installed (a context
    manager around the app's run)."""

    def __init__(self) -> None:
        self._file: Any = None
        self._offset = 0
        self._saved: dict[int, int] = {}
        self._streams: dict[str, Any] = {}

    def __enter__(self) -> FdCapture:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        _flush_c_stdio()
        self._file = tempfile.TemporaryFile(buffering=0)
        fd = self._file.fileno()
        # Appending: descriptors 1 and 2 share this file, and each write lands at its end
        # whatever the offset, so the two streams keep the order they were written in.
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        self._saved = {n: os.dup(n) for n in (1, 2)}
        for n in (1, 2):
            os.dup2(fd, n)
        # Copies of the terminal for what must reach it; closefd=False: the saved descriptors
        # are closed on exit, after 1 and 2 are back.
        self._streams = {"__stdout__": sys.__stdout__, "__stderr__": sys.__stderr__}
        sys.__stdout__ = os.fdopen(self._saved[1], "w", closefd=False)  # type: ignore[misc]
        sys.__stderr__ = os.fdopen(self._saved[2], "w", closefd=False)  # type: ignore[misc]
        set_descriptor_source(self.take)
        return self

    def __exit__(self, *_: object) -> None:
        set_descriptor_source(None)
        _flush_c_stdio()
        for name, stream in self._streams.items():
            getattr(sys, name).flush()
            setattr(sys, name, stream)
        for n, saved in self._saved.items():
            os.dup2(saved, n)
        rest = self._read_new()
        if rest:
            # Not taken by a phase (written after the last one, or a crash's last words):
            # to the terminal's stderr, now that the app has left the screen.
            os.write(self._saved[2], rest)
        for saved in self._saved.values():
            os.close(saved)
        self._file.close()

    def _read_new(self) -> bytes:
        chunks = []
        while chunk := os.pread(self._file.fileno(), _READ, self._offset):
            chunks.append(chunk)
            self._offset += len(chunk)
        return b"".join(chunks)

    def take(self) -> str:
        """What reached descriptors 1 and 2 since the last call, as text; C's buffered output
        included (call it from the thread that wrote, once it is done)."""
        _flush_c_stdio()
        data = self._read_new()
        if self._offset > MAX_KEPT:
            os.ftruncate(self._file.fileno(), 0)
            self._offset = 0
        return data.decode("utf-8", "replace")
