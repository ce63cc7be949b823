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
holding the descriptors at quit delays nothing. Read bytes are freed by punching a hole in the
file (offsets stay valid, nothing another writer appends meanwhile is lost). The terminal stays
reachable through copies of the old descriptors, which ``sys.__stdout__`` and ``sys.__stderr__``
point at while installed: Textual draws on ``sys.__stderr__`` and takes its size from
``sys.__stdout__`` (``shutil.get_terminal_size``), so it is installed before the app starts.
"""

from __future__ import annotations

import codecs
import ctypes
import faulthandler
import fcntl
import os
import sys
import tempfile
import threading
from typing import Any

from engine.userprints import set_descriptor_source

# Bytes read past which the read part of the file is freed.
MAX_KEPT = 1 << 20
# At most this many of the newest bytes are read per ``take`` (a phase keeps its last 20,000
# characters anyway): a phase writing 200 MB cost 400 MB of memory to decode it all.
MAX_TAKEN = 1 << 18
_READ = 1 << 16
_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (Linux)


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # no C library to look symbols up in: nothing of C's to flush
        return None
    fallocate = getattr(libc, "fallocate", None)
    if fallocate is not None:
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return libc


_LIBC = _libc()


def _flush_c_stdio() -> None:
    """C's ``stdout`` buffers up to 4 KiB when it is not a terminal: flush every C stream."""
    if _LIBC is not None:
        _LIBC.fflush(None)


def _terminal_copy(fd: int, like: Any) -> Any:
    """A text stream on ``fd`` encoding as ``like`` (the stream it stands in for) did."""
    return os.fdopen(
        fd,
        "w",
        encoding=getattr(like, "encoding", None),
        errors=getattr(like, "errors", None),
        closefd=False,  # closed on exit, after descriptors 1 and 2 are back
    )


class ThreadWrites:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` inside the app, while descriptors are
    captured: a thread of the user's (one the model starts, a logging thread) printing while
    no phase of its own runs wrote into Textual's print capture, which drops what no widget
    asked for. Such writes go to the descriptor instead, so the next phase shows them in the
    order they came; the event loop's own writes go where they went."""

    def __init__(self, inner: Any, fd: int) -> None:
        self._inner = inner
        self._fd = fd
        self._loop_thread = threading.get_ident()

    def write(self, text: str) -> int:
        if threading.get_ident() == self._loop_thread:
            self._inner.write(text)  # Textual's print capture returns None, not a count
            return len(text)
        data = str(text).encode("utf-8", "replace")
        while data:
            data = data[os.write(self._fd, data) :]
        return len(text)

    def flush(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FdCapture:
    """Points file descriptors 1 and 2 at a temporary file while installed (a context
    manager around the app's run)."""

    def __init__(self) -> None:
        self._file: Any = None
        self._offset = 0
        self._lock = threading.Lock()  # ``take`` on the worker, the exit on the event loop
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._saved: dict[int, int] = {}
        self._streams: dict[str, Any] = {}
        self._faulthandler = False

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
        self._streams = {"__stdout__": sys.__stdout__, "__stderr__": sys.__stderr__}
        sys.__stdout__ = _terminal_copy(self._saved[1], sys.__stdout__)  # type: ignore[misc]
        sys.__stderr__ = _terminal_copy(self._saved[2], sys.__stderr__)  # type: ignore[misc]
        # A crash's traceback (segfault, abort) to the terminal, not into a file that dies
        # with the process.
        if not faulthandler.is_enabled():
            faulthandler.enable(file=sys.__stderr__)
            self._faulthandler = True
        set_descriptor_source(self.take)
        return self

    def __exit__(self, *_: object) -> None:
        set_descriptor_source(None)
        try:
            _flush_c_stdio()
            for name in self._streams:
                getattr(sys, name).flush()
        finally:
            if self._faulthandler:
                faulthandler.disable()
            for name, stream in self._streams.items():
                setattr(sys, name, stream)
            for n, saved in self._saved.items():
                os.dup2(saved, n)
            with self._lock:
                rest = (self._read_new() + self._decoder.decode(b"", final=True)).encode()
                self._file.close()
                self._file = None
            # Not taken by a phase (written after the last one, or a crash's last words):
            # to the terminal's stderr, now that the app has left the screen.
            while rest:
                rest = rest[os.write(self._saved[2], rest) :]
            for saved in self._saved.values():
                os.close(saved)

    def _read_new(self) -> str:
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size < self._offset:
            # Emptied behind our back: a child wrote ``> /dev/stdout``, which opens this
            # very file again with O_TRUNC. (Seen only while the file is shorter than what
            # was read before; past that, the start of what came after is lost.)
            self._offset = 0
            self._decoder.reset()
        skipped = max(0, size - self._offset - MAX_TAKEN)
        self._offset += skipped
        chunks = []
        while chunk := os.pread(fd, _READ, self._offset):
            chunks.append(chunk)
            self._offset += len(chunk)
        if skipped:
            self._decoder.reset()  # mid-character, perhaps: the next bytes start afresh
        text = self._decoder.decode(b"".join(chunks))
        return f"[{skipped} earlier bytes not kept]\n{text}" if skipped else text

    def _free_read_part(self) -> None:
        fd = self._file.fileno()
        fallocate = getattr(_LIBC, "fallocate", None)
        if fallocate is not None and fallocate(fd, _PUNCH_HOLE, 0, self._offset) == 0:
            return  # the blocks are gone; offsets, and what is being appended, stay as they are
        # No hole punching on this file system (EOPNOTSUPP) or C library: empty the file,
        # losing what another writer appends between the last read and this.
        os.ftruncate(fd, 0)
        self._offset = 0

    def take(self) -> str:
        """What reached descriptors 1 and 2 since the last call, as text; C's buffered output
        included (call it from the thread that wrote, once it is done)."""
        _flush_c_stdio()
        with self._lock:
            if self._file is None:  # the app is quitting while a phase still runs
                return ""
            text = self._read_new()
            if self._offset > MAX_KEPT:
                self._free_read_part()
            return text
