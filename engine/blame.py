"""Which module was running when a forward raised, and a one-line message that names it.

PyTorch's own errors say what went wrong (``mat1 and mat2 shapes cannot be multiplied``) but not
where. Forward pre-hooks push the module that starts running and forward hooks pop it when it
returns, so when an exception escapes, the top of the stack is the innermost module that was
still running: ``fc1 (Linear): input [1, 256] vs weight [120, 400]: mat1 and mat2 …``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from .modulemap import module_hooks, module_paths
from .summary import shape_text

# What user model code can raise, all of it: ``except Exception`` misses a stray ``sys.exit()``
# and a ``raise KeyboardInterrupt``, which would end trace silently with the user's exit code or
# escape a Textual worker and take the app down. A real ctrl-c reaches no phase in the app (the
# terminal is in raw mode), and in ``trace`` it becomes a phase error that exits 130.
USER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt)


class ModuleFailure(RuntimeError):
    """An exception raised inside ``module``'s forward; ``original`` is what was raised."""

    def __init__(self, message: str, original: BaseException, module: str) -> None:
        super().__init__(message)
        self.original = original
        self.module = module


# Terminal escape sequences a user's exception message may carry (colour codes): they would
# reach stderr and the app's error bar raw.
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|.)")
# A message longer than this is cut: torch's "not implemented for this backend" errors list
# every backend and kernel over thousands of characters.
MAX_MESSAGE = 400


def one_line(exc: BaseException) -> str:
    """The exception's message on one line, without the C++ stack some torch errors carry
    (``Exception raised from … (most recent call first): frame #0: …``), escape codes, or
    more than ``MAX_MESSAGE`` characters."""
    try:
        text = str(exc).strip()
    except USER_ERRORS as inner:  # a user's exception class whose __str__ itself raises
        text = f"(its message could not be read: {type(inner).__name__})"
    text = text.split("Exception raised from ", 1)[0].strip() or text
    text = " ".join(ESCAPES.sub("", text).split()) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def module_label(path: str, module: nn.Module) -> str:
    """``layer1.0.conv1 (Conv2d)``; the root module has no path and is called ``net``."""
    return f"{path or 'net'} ({type(module).__name__})"


def _shapes(args: tuple[Any, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor))


def describe(
    path: str, module: nn.Module, shapes: tuple[tuple[int, ...], ...], exc: BaseException
) -> str:
    """One line: the module, the shapes it was given, its weight's shape, and the error."""
    text = one_line(exc)
    parts = [module_label(path, module)]
    if shapes:
        given = "input " + ", ".join(shape_text(s) for s in shapes)
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor):
            given += f" vs weight {shape_text(tuple(weight.shape))}"
        parts.append(given)
    # torch reports shape and dtype problems as RuntimeError; the type name adds nothing there.
    parts.append(text if type(exc) is RuntimeError else f"{type(exc).__name__}: {text}")
    return ": ".join(parts)


class Blame:
    """The stack of modules running, for ``blame_modules`` and whoever registers its hooks."""

    def __init__(self, net: nn.Module, paths: dict[int, str] | None = None) -> None:
        # ``paths``: id(module) -> dotted path, when the caller has walked the modules already.
        self.paths = paths if paths is not None else module_paths(net)
        # (path, module, its args): shapes are read only if it fails, while still running.
        self.stack: list[tuple[str, nn.Module, tuple[Any, ...]]] = []

    def pre(self, mod: nn.Module, args: tuple[Any, ...]) -> None:
        path = self.paths.get(id(mod))
        if path is not None:
            self.stack.append((path, mod, args))

    def post(self, mod: nn.Module) -> None:
        if id(mod) not in self.paths:
            return
        # Pop up to and including this module: a child that raised inside a try/except of
        # its parent never reached its own post hook and must not be blamed later.
        stack = self.stack
        while stack:
            if stack.pop()[1] is mod:
                break

    @contextmanager
    def catching(self) -> Iterator[None]:
        """An exception escaping the block becomes a ``ModuleFailure`` naming the innermost
        module still running."""
        try:
            yield
        except ModuleFailure:
            raise  # already located by an inner block
        except USER_ERRORS as exc:
            if not self.stack:
                raise
            path, module, args = self.stack[-1]
            raise ModuleFailure(describe(path, module, _shapes(args), exc), exc, path) from exc


@contextmanager
def blame_modules(net: nn.Module) -> Iterator[None]:
    """Inside this block, an exception escaping a module's forward becomes a ``ModuleFailure``.

    Global hooks, filtered by identity: one registration per forward instead of two per
    module (which cost more than a small model's forward itself).
    """
    blame = Blame(net)

    def post(mod: nn.Module, args: Any, kwargs: dict[str, Any], result: Any) -> None:
        blame.post(mod)

    with module_hooks(blame.pre, post), blame.catching():
        yield
