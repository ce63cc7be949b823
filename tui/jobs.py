"""Slow work that is not a phase, queued on the same one-at-a-time worker as the phases.

Checking a user model (the model modal) and resolving a recipe for export both import and
build the user's model under ``fork_rng``: too slow for the event loop, and never safe beside a
running phase. A ``Job`` waits in the app's queue with the key presses; ``run`` happens on the
worker thread, ``done`` back on the event loop with what ``run`` returned or raised.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine import Recipe
from engine.export import export_script


@dataclass(frozen=True, eq=False)
class Job:
    label: str  # what the phase bar says while it runs, e.g. "checking model"
    run: Callable[[], Any]  # on the worker thread
    # On the event loop: ``run``'s result and None, or None and the exception it raised.
    done: Callable[[Any, Exception | None], None]


def write_export(recipe: Recipe, accumulate: bool, iterations: int, path: str) -> None:
    """Write ``recipe`` as a plain PyTorch script to ``path`` (``resolve`` may build a model)."""
    write_whole(path, export_script(recipe, accumulate, iterations))


def write_whole(path: str, text: str) -> None:
    """Write ``text`` to ``path`` completely or not at all.

    ``open(path, "w")`` empties the file before writing: a full disk then leaves the user's
    previous script cut in half. The text goes to a new file in the same folder first and
    replaces ``path`` in one rename; a failure removes that file and ``path`` is untouched.
    Raises ``OSError`` naming ``path``.
    """
    target = os.path.realpath(path)  # through a symlink, as open() writes
    if os.path.exists(target) and not os.path.isfile(target):
        # A device or a pipe (/dev/stdout) is written to, never replaced by a file.
        _write(target, text)
        return
    folder, name = os.path.split(target)
    temp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # 0o666 through the umask, as open() would create it; O_EXCL: never someone else's.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except PermissionError:
        # A folder we may not create files in, holding a file we may write: in place, then.
        _write(target, text)
        return
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, path) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if os.path.exists(target):
            os.chmod(temp, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
