"""Your own model: ``path/to/file.py:NAME`` or ``package.module:NAME``.

NAME is an ``nn.Module`` subclass or a function returning a module; either is called with no
arguments. Every way this can go wrong becomes a ``RecipeError`` whose message is one line that
names the problem, so the CLI can print it and exit 2 instead of showing a traceback.

Loading happens in ``build`` (the define phase), fresh each time: editing the file and resetting
picks up the change. The CLI also calls ``check_model`` before anything runs.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import importlib.util
import inspect
import stat
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn as nn

from .blame import USER_ERRORS, ModuleFailure, blame_modules, one_line
from .recipe import RecipeError
from .summary import shape_text

SPEC_FORMS = "path/to/file.py:NAME or package.module:NAME"

Factory = Callable[[], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``--model`` value that names user code."""

    text: str  # as the user wrote it
    file: Path | None  # set for ``path/to/file.py:NAME``
    module: str | None  # set for ``package.module:NAME``
    name: str  # attribute path inside the file or module, e.g. ``Net`` or ``zoo.make``

    @property
    def where(self) -> str:
        return str(self.file) if self.file is not None else str(self.module)


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"


def parse_spec(text: str, shipped: Collection[str] = ()) -> ModelSpec:
    """Split ``--model`` into where and what; a malformed value raises ``RecipeError``."""
    target, sep, name = text.rpartition(":")
    if not sep:
        choices = ", ".join(shipped)
        raise RecipeError(
            f"unknown model {text!r} (choose from {choices}, or give {SPEC_FORMS})"
            if choices
            else f"model {text!r} is not {SPEC_FORMS}"
        )
    if not target or not name or not all(part.isidentifier() for part in name.split(".")):
        raise RecipeError(f"model {text!r} is not {SPEC_FORMS} (NAME is a Python name)")
    # A file that exists is a file whatever its name (``m.txt`` is not the module ``m``).
    if target.endswith(".py") or "/" in target or "\\" in target or _is_file(Path(target)):
        return ModelSpec(text, Path(target), None, name)
    if not all(part.isidentifier() for part in target.split(".")):
        raise RecipeError(f"model {text!r} is not {SPEC_FORMS}")
    return ModelSpec(text, None, target, name)


def _import_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    # A private, stable module name per file: never shadows the user's own packages, and
    # importing the same file again replaces the previous copy instead of piling up.
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = f"_nntui_model_{digest}"
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise RecipeError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    # As ``python file.py`` does: the file's folder is importable, so sibling modules resolve.
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # Registered before running it: dataclasses and pickling look the module up by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    # Importing user code can raise anything (SystemExit included, for a stray sys.exit());
    # it is reported as one line rather than ending the program.
    except USER_ERRORS as exc:
        del sys.modules[name]
        raise RecipeError(f"cannot import {path}: {_one_line(exc)}") from exc
    return module


def _is_file(path: Path) -> bool:
    # Path.is_file raises for some errors instead of answering False (a name longer than
    # the file system allows: ENAMETOOLONG); a --model value is never a reason to crash.
    try:
        return path.is_file()
    except OSError:
        return False


def _not_on_path_hint(spec: ModelSpec, exc: BaseException) -> str:
    """Why a module in the current folder is not found: the ``nntui`` command, unlike
    ``python -m``, does not put the current folder on ``sys.path``."""
    assert spec.module is not None
    top = spec.module.split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or exc.name != top:
        return ""
    here = Path.cwd()
    if any(Path(entry or ".").resolve() == here.resolve() for entry in sys.path):
        return ""  # on the path after all: not found for another reason
    if not ((here / f"{top}.py").is_file() or (here / top).is_dir()):
        return ""
    # A plain module also loads as a file; a package's module may import its siblings.
    single = spec.module == top and (here / f"{top}.py").is_file()
    hint = f" or give --model {top}.py:{spec.name}" if single else ""
    return (
        f" ({top} is in the current folder, which is not on the import path: "
        f"run with PYTHONPATH=.{hint})"
    )


# What a path that is not a regular file is, for the error line.
_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _check_file(path: Path, spec: ModelSpec) -> None:
    """A regular file (through symlinks), or a one-line ``RecipeError`` saying what it is.

    Only the file's metadata is read: opening a named pipe would wait for a writer for ever,
    and a device would be read as a model's source (``/dev/null`` as an empty module)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as exc:  # a dangling symlink too
        raise RecipeError(f"model file not found: {spec.file}") from exc
    except OSError as exc:  # a name too long, a folder we may not search
        raise RecipeError(f"model file {spec.file}: {exc.strerror or exc}") from exc
    if stat.S_ISDIR(mode):
        raise RecipeError(f"model file {spec.file} is a directory, not a .py file")
    if not stat.S_ISREG(mode):
        kind = next(
            (name for test, name in _FILE_KINDS if test(mode)), "neither a file nor a folder"
        )
        raise RecipeError(f"model file {spec.file} is {kind}, not a regular .py file")


def _read_source(path: Path) -> str:
    """The file's text decoded as Python decodes it (a ``# -*- coding: -*-`` line, a UTF-8
    BOM). The script is written as UTF-8; a coding line it copies is ignored there, as Python
    reads one only on the first two lines and the script opens with its docstring."""
    try:
        return importlib.util.decode_source(path.read_bytes())
    except OSError as exc:
        raise RecipeError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        raise RecipeError(
            f"cannot export {path}: cannot decode its text ({_one_line(exc)}); save it as UTF-8"
        ) from exc


def _candidates(module: ModuleType) -> list[str]:
    """Names a user probably meant: module classes and functions defined in that module."""
    out = []
    for key, value in vars(module).items():
        if key.startswith("_") or getattr(value, "__module__", None) != module.__name__:
            continue
        if (isinstance(value, type) and issubclass(value, nn.Module)) or inspect.isfunction(value):
            out.append(key)
    return out


def load_factory(spec: ModelSpec) -> Factory:
    """Import the file or module and return NAME, checked to be a class or a function."""
    if spec.file is not None:
        path = spec.file.expanduser()
        _check_file(path, spec)
        module = _import_file(path)
    else:
        assert spec.module is not None
        try:
            module = importlib.import_module(spec.module)
        # Same as for files: whatever the import raises is the user's, reported in one line.
        except USER_ERRORS as exc:
            raise RecipeError(
                f"cannot import {spec.module}: {_one_line(exc)}{_not_on_path_hint(spec, exc)}"
            ) from exc
    obj: Any = module
    for part in spec.name.split("."):
        if not hasattr(obj, part):
            # A file is the user's own: list what it defines. A package may define hundreds.
            found = _candidates(module) if spec.file is not None else []
            hint = f" (it defines: {', '.join(found)})" if found else ""
            raise RecipeError(f"{spec.where} has no {spec.name!r}{hint}")
        obj = getattr(obj, part)
    if isinstance(obj, type):
        if not issubclass(obj, nn.Module):
            raise RecipeError(
                f"{spec.name} in {spec.where} is a class but not an nn.Module subclass"
            )
        return obj
    if isinstance(obj, nn.Module):
        # A ready-made instance would be shared by every reset and rewind; it must be built anew.
        raise RecipeError(
            f"{spec.name} in {spec.where} is an nn.Module instance; "
            "give its class or a function that returns a new one"
        )
    if not callable(obj):
        raise RecipeError(
            f"{spec.name} in {spec.where} is not an nn.Module class or a function returning "
            f"one (it is {type(obj).__name__})"
        )
    return obj


def instantiate(factory: Factory, spec: ModelSpec) -> nn.Module:
    """Call the factory with no arguments and check what it returned."""
    try:
        net = factory()
    # The factory is user code: anything it raises becomes one line naming the call.
    except USER_ERRORS as exc:
        raise RecipeError(f"{spec.name}() from {spec.where} raised {_one_line(exc)}") from exc
    if not isinstance(net, nn.Module):
        raise RecipeError(
            f"{spec.name}() from {spec.where} returned {type(net).__name__}, not an nn.Module"
        )
    params = list(net.parameters())
    if not params:
        raise RecipeError(f"{spec.name}() from {spec.where} has no parameters to train")
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in params):
        raise RecipeError(
            f"{spec.name}() from {spec.where} has lazy (uninitialized) parameters; "
            "the optimizer needs their shapes at define"
        )
    _check_trainable(net, f"{spec.name}() from {spec.where}")
    return net


def _check_trainable(net: nn.Module, what: str) -> None:
    """Refuse, with one line, parameters nntui cannot train or show.

    Meta tensors have no values to train; the input is a CPU tensor, so a parameter elsewhere
    fails in the first forward. Complex parameters and sparse gradients train in plain
    PyTorch, but the statistics every pane and ``trace`` read (sum, norm, min/max) are those
    of real, dense tensors: without this check they fail later, while a record is shown.
    """
    for name, p in net.named_parameters():
        if p.is_meta:
            raise RecipeError(
                f"{what}: parameter {name} is on the meta device (it has no values); "
                "build it on the CPU"
            )
        if p.device.type != "cpu":
            raise RecipeError(f"{what}: parameter {name} is on {p.device}; nntui trains on the CPU")
        if p.is_complex():
            raise RecipeError(
                f"{what}: parameter {name} is complex ({p.dtype}); nntui shows real parameters only"
            )
    for name, module in net.named_modules():
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.sparse:
            raise RecipeError(
                f"{what}: {name or 'net'} ({type(module).__name__}) has sparse=True; "
                "nntui shows dense gradients only (use sparse=False)"
            )


def load(text: str) -> nn.Module:
    """Parse, import and build the user's model (the define phase's ``net = NAME()``)."""
    spec = parse_spec(text)
    return instantiate(load_factory(spec), spec)


def check_model(text: str) -> None:
    """Fail early, before any phase runs, if ``text`` cannot give a module.

    Builds the model once and throws it away; the global RNG is put back, so the seeded
    construction order of the real ``define`` is not affected.
    """
    with torch.random.fork_rng(devices=[]):
        load(text)


def infer_output_shape(net: nn.Module, input: torch.Tensor, text: str) -> tuple[int, ...]:
    """The output shape for ``input``, by a forward that leaves no trace.

    It runs on a deep copy under ``no_grad`` and ``fork_rng``: BatchNorm running statistics,
    any attribute the forward mutates and the global RNG stream are exactly as before, so the
    target drawn next is the one the documented construction order draws. A forward that
    fails without autograd (one that calls ``backward`` itself) is tried once more with it,
    so that the forward phase can say what is wrong in its own words.
    """
    try:
        out = _dry_forward(net, input, grad=False)
    except ModuleFailure as first:
        try:
            out = _dry_forward(net, input, grad=True)
        except ModuleFailure:
            raise RecipeError(
                f"cannot infer the target of {text} from a forward on input "
                f"{shape_text(tuple(input.shape))}: {first}"
            ) from first
    if not isinstance(out, torch.Tensor):
        raise RecipeError(f"{text} returns {type(out).__name__}, not a tensor")
    return tuple(out.shape)


def _dry_forward(net: nn.Module, input: torch.Tensor, grad: bool) -> Any:
    try:
        probe = copy.deepcopy(net)
        saved: list[torch.Tensor] = []
        grads: list[torch.Tensor | None] = []
    # A module holding something deepcopy refuses (an open file, a lock), or whose own
    # ``__deepcopy__``/``__getstate__`` raises whatever it likes: run the real one and put its
    # buffers (and gradients) back by value; only attributes its forward mutates cannot be
    # undone.
    except Exception:
        probe = net
        saved = [b.detach().clone() for b in net.buffers()]
        grads = [p.grad for p in net.parameters()]
    try:
        with (
            torch.random.fork_rng(devices=[]),
            torch.set_grad_enabled(grad),
            blame_modules(probe),
        ):
            out = probe(input)
    finally:
        with torch.no_grad():
            for b, value in zip(net.buffers(), saved):
                b.copy_(value)
        for p, g in zip(net.parameters(), grads):
            p.grad = g
    return out.detach() if isinstance(out, torch.Tensor) else out


# ---------------------------------------------------------------------------- export
@dataclass(frozen=True)
class ModelCode:
    """What a standalone script needs to build the model: ``net = {call}``.

    ``future`` lines must open the script (Python requires ``from __future__`` first);
    ``source`` defines the names (after ``import torch``, ``torch.nn as nn``,
    ``torch.nn.functional as F``); ``call`` is the expression that builds the model.
    """

    future: tuple[str, ...]
    source: str
    call: str


def _script_body(text: str, filename: str) -> tuple[tuple[str, ...], str]:
    """A file's source without ``from __future__`` imports and ``if __name__ == "__main__"``."""
    tree = ast.parse(text, filename=filename)
    lines = text.splitlines()
    future: list[str] = []
    drop: list[tuple[int, int]] = []
    for node in tree.body:
        end = node.end_lineno or node.lineno
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.append(ast.get_source_segment(text, node) or "")
            drop.append((node.lineno, end))
        elif _is_main_guard(node):
            drop.append((node.lineno, end))
    keep = [
        line
        for number, line in enumerate(lines, start=1)
        if not any(a <= number <= b for a, b in drop)
    ]
    return tuple(future), "\n".join(keep).strip() + "\n"


def _is_main_guard(node: ast.stmt) -> bool:
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    sides = [node.test.left, *node.test.comparators]
    names = {s.id for s in sides if isinstance(s, ast.Name)}
    consts = {s.value for s in sides if isinstance(s, ast.Constant)}
    return "__name__" in names and "__main__" in consts


def model_code(text: str, shipped: dict[str, Factory]) -> ModelCode:
    """The code that defines ``text``'s model, for ``nntui export``.

    A shipped model is its classes from ``engine/models.py``; a file is the whole file (its
    helpers and imports come along, its ``__main__`` block does not); a module spec is an
    import, since the module is importable by definition.
    """
    if text in shipped:
        from .models import DEPENDENCIES

        factory = shipped[text]
        classes = [*DEPENDENCIES.get(factory, ()), factory]
        source = "\n\n".join(inspect.getsource(c) for c in classes)
        return ModelCode((), source, f"{factory.__name__}()")
    spec = parse_spec(text, shipped)
    if spec.file is not None:
        path = spec.file.expanduser()
        _check_file(path, spec)
        future, source = _script_body(_read_source(path), str(path))
        return ModelCode(future, source, f"{spec.name}()")
    top = spec.name.split(".")[0]
    return ModelCode((), f"from {spec.module} import {top}\n", f"{spec.name}()")
