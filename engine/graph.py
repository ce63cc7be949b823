"""The autograd graph behind a tensor, captured as plain data.

Nodes are named by ``type(fn).__name__`` (a ``repr`` carries a memory address), shared nodes
appear once (the graph is a DAG), and ``None`` slots of ``next_functions`` are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch

from .modulemap import ModuleCall, assign_modules, module_kinds

_SAVED_PREFIX = "_saved_"
# Per node type: its name and its ``_saved_*`` attribute names (dir() is the slow part of a
# walk, and ``type(fn).__name__`` per node adds up on a 10,000-node graph).
_type_info: dict[type, tuple[str, tuple[str, ...]]] = {}
# Saved values already built, by ``(attribute, shape)`` for a tensor and ``(attribute, type,
# value)`` for a plain value: a model saves the same few again on every forward, and finding
# one costs less than building it (a tuple's repr and a SavedValue: 0.7 µs). Only types whose
# equal values print alike: the type is in the key because 1 == True, tuples only of ints
# (``(1,) == (True,)``), and no floats (0.0 == -0.0).
_saved_cache: dict[tuple[Any, ...], SavedValue] = {}
_SAVED_CACHE_MAX = 4096
_PLAIN = frozenset((int, bool, str, type(None)))
_INTS = frozenset((int,))


class SavedValue(NamedTuple):
    """One ``_saved_*`` attribute of a node: a tensor's shape, or a short value text.

    Named tuples, not dataclasses, here and for ``GradNode``: a loss phase makes one per node
    and per saved value, and a frozen dataclass costs three times as much to build."""

    name: str
    shape: tuple[int, ...] | None
    value: str = ""  # the text of a non-tensor (or why it could not be read)

    @property
    def text(self) -> str:
        # Built when shown: a loss phase walks every node, and few are ever expanded.
        return f"tensor{list(self.shape)}" if self.shape is not None else self.value


class GradNode(NamedTuple):
    id: int
    name: str
    param: str | None
    parent: int | None  # the node it was first reached from (breadth first: a shortest path)
    slot: int  # which ``next_functions`` slot of the parent leads here
    children: tuple[int | None, ...]
    saved: tuple[SavedValue, ...]
    # The innermost submodule whose forward created the node (``engine.modulemap``); None for
    # the loss, the root module's own functional ops, or a graph walked without module calls.
    module: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.param})" if self.param else self.name


@dataclass(frozen=True)
class GradGraph:
    """Nodes in breadth-first order from the root; ``nodes[0]`` is ``loss.grad_fn``."""

    nodes: tuple[GradNode, ...]
    # ``(module name, type name)`` of every submodule the forward called, for labels.
    modules: tuple[tuple[str, str], ...] = ()

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def root(self) -> GradNode | None:
        return self.nodes[0] if self.nodes else None

    def slots(self, node_id: int) -> tuple[int, ...]:
        """The ``next_functions`` slot indices leading from the root to ``node_id``."""
        out: list[int] = []
        node = self.nodes[node_id]
        while node.parent is not None:
            out.append(node.slot)
            node = self.nodes[node.parent]
        return tuple(reversed(out))

    def path(self, node_id: int, root: str = "loss.grad_fn") -> str:
        """``loss.grad_fn.next_functions[0][0].next_functions[1][0]`` — how to reach it."""
        return root + "".join(f".next_functions[{s}][0]" for s in self.slots(node_id))

    def module_type(self, name: str) -> str | None:
        """``BasicBlock`` for ``layer1.0``; None for a module the forward did not call."""
        return dict(self.modules).get(name)

    def module_sizes(self) -> dict[str, int]:
        """Nodes per module, counting those of its submodules too (``layer1`` ⊇ ``layer1.0``)."""
        sizes: dict[str, int] = {}
        for node in self.nodes:
            if node.module is None:
                continue
            parts = node.module.split(".")
            for k in range(1, len(parts) + 1):
                prefix = ".".join(parts[:k])
                sizes[prefix] = sizes.get(prefix, 0) + 1
        return sizes

    def accumulate_nodes(self) -> tuple[GradNode, ...]:
        return tuple(n for n in self.nodes if n.name == "AccumulateGrad")

    def to_tree(self) -> dict[str, Any] | None:
        """Nested ``{"name", "param", "children"}`` from the root; ``None`` slots as ``None``.

        A node reached a second time is written once more as ``{"name", "param", "ref": id,
        "children": []}`` so residual graphs stay linear in size instead of exponential.
        """
        if not self.nodes:
            return None
        seen: set[int] = set()

        def build(node_id: int) -> dict[str, Any]:
            node = self.nodes[node_id]
            out: dict[str, Any] = {"name": node.name, "param": node.param, "id": node.id}
            if node_id in seen:
                out["ref"] = node.id
                out["children"] = []
                return out
            seen.add(node_id)
            out["children"] = []
            return out

        # Iterative to survive graphs deeper than Python's recursion limit.
        root = build(0)
        stack: list[tuple[int, dict[str, Any]]] = [(0, root)]
        while stack:
            node_id, out = stack.pop()
            if "ref" in out:
                continue
            kids: list[Any] = []
            pending: list[tuple[int, dict[str, Any]]] = []
            for child in self.nodes[node_id].children:
                if child is None:
                    kids.append(None)
                else:
                    sub = build(child)
                    kids.append(sub)
                    pending.append((child, sub))
            out["children"] = kids
            stack.extend(reversed(pending))
        return root


def _type_entry(fn: Any) -> tuple[str, tuple[str, ...]]:
    kind = type(fn)
    entry = _type_info.get(kind)
    if entry is None:
        names = tuple(
            a
            for a in dir(fn)
            if a.startswith(_SAVED_PREFIX) and not a.endswith(("_sym_sizes", "_sym_strides"))
        )
        entry = _type_info[kind] = (kind.__name__, names)
    return entry


def _saved_names(fn: Any) -> tuple[str, ...]:
    return _type_entry(fn)[1]


def _new_saved(attr: str, value: Any) -> SavedValue:
    if isinstance(value, torch.Tensor):
        return SavedValue(attr, tuple(value.shape))
    text = repr(value)
    return SavedValue(attr, None, text if len(text) <= 60 else text[:57] + "...")


def _saved_values(fn: Any, attrs: tuple[str, ...] | None = None) -> tuple[SavedValue, ...]:
    out = []
    cache = _saved_cache
    for attr in _saved_names(fn) if attrs is None else attrs:
        try:
            value = getattr(fn, attr)
        except RuntimeError as exc:  # freed after backward: say so rather than guess
            out.append(SavedValue(attr, None, f"<freed: {str(exc).splitlines()[0][:60]}>"))
            continue
        except AttributeError:
            # Names are listed once per node type; a custom Function's ctx may set a
            # ``_saved_*`` attribute on some calls only: this node has none of it.
            continue
        kind = type(value)
        if kind in _PLAIN or (kind is tuple and set(map(type, value)) <= _INTS):
            key: tuple[Any, ...] = (attr, kind, value)
        elif isinstance(value, torch.Tensor):
            key = (attr, value.shape)
        else:
            out.append(_new_saved(attr, value))
            continue
        try:
            saved = cache.get(key)
        except TypeError:  # a tensor subclass's ``shape`` that cannot be hashed
            out.append(_new_saved(attr, value))
            continue
        if saved is None:
            if len(cache) >= _SAVED_CACHE_MAX:
                cache.clear()
            saved = cache[key] = _new_saved(attr, value)
        out.append(saved)
    return tuple(out)


def walk_grad_fn(
    root: Any,
    param_names: Mapping[int, str] | None = None,
    *,
    with_saved: bool = True,
    calls: Sequence[ModuleCall] = (),
) -> GradGraph:
    """Capture the graph reachable from ``root`` (a ``grad_fn``), breadth first.

    ``param_names`` maps ``id(parameter)`` to its name, for ``AccumulateGrad.variable``;
    ``calls`` (from ``engine.modulemap.record_calls`` during the forward) tag each node with
    the module that created it.
    """
    if root is None:
        return GradGraph(())
    names = param_names or {}
    index: dict[int, int] = {id(root): 0}
    fns: list[Any] = [root]
    parents: list[int | None] = [None]
    slots: list[int] = [0]
    children: list[tuple[int | None, ...]] = []
    kinds: list[str] = []
    params: list[str | None] = []
    saved: list[tuple[SavedValue, ...]] = []
    info = _type_info
    # ``fns`` grows while it is iterated: nodes are found in breadth-first order, so it is
    # its own queue.
    for i, fn in enumerate(fns):
        entry = info.get(type(fn)) or _type_entry(fn)
        name = entry[0]
        kinds.append(name)
        if name == "AccumulateGrad":
            params.append(names.get(id(fn.variable), "<leaf>"))
            children.append(())  # a leaf: no ``next_functions`` to read
            saved.append(_saved_values(fn, entry[1]) if with_saved and entry[1] else ())
            continue
        params.append(None)
        kids: list[int | None] = []
        for slot, (nxt, _) in enumerate(fn.next_functions):
            if nxt is None:
                kids.append(None)
                continue
            j = index.get(id(nxt))
            if j is None:
                j = index[id(nxt)] = len(fns)
                fns.append(nxt)
                parents.append(i)
                slots.append(slot)
            kids.append(j)
        children.append(tuple(kids))
        saved.append(_saved_values(fn, entry[1]) if with_saved and entry[1] else ())
    owners: list[str | None] = (
        assign_modules(calls, index, children, [k == "AccumulateGrad" for k in kinds])
        if calls
        else [None] * len(fns)
    )
    # Built by ``tuple.__new__`` from zipped columns: no Python-level ``__new__`` per node.
    nodes = tuple(
        map(
            partial(tuple.__new__, GradNode),
            zip(range(len(fns)), kinds, params, parents, slots, children, saved, owners),
        )
    )
    return GradGraph(nodes, module_kinds(calls))
