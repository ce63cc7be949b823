"""Which submodule's forward created each node of the autograd graph.

During the forward, a pre-hook on every submodule notes the ``grad_fn`` of each tensor it is
given and a hook the ``grad_fn`` of each tensor it returns (``record_calls``). The nodes a call
created are those reachable from its outputs without passing through its inputs: autograd
edges point from a result to what it was computed from, so walking down from the output and
stopping at the inputs' nodes covers exactly the module's own work (``AccumulateGrad`` of the
parameters it used included; it has no edges to follow). Nested modules overlap, and the
deepest one (most dotted name parts) wins: a node is tagged with the innermost module that ran
it. Nodes made by functional ops in the root module's own ``forward`` (``torch.flatten`` in
the tutorial's Net) belong to no submodule and stay untagged, as does the loss node.

The walk runs on the integer graph ``engine.graph.walk_grad_fn`` already built, so tagging a
10,000-node graph costs a few milliseconds (see ``tests/test_modulemap.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn as nn
from torch.nn.modules.module import (
    register_module_forward_hook,
    register_module_forward_pre_hook,
)


class ModuleCall(NamedTuple):
    """One call of a submodule's forward: the graph nodes at its borders.

    A named tuple, not a frozen dataclass: one is made per module call of every forward, and
    it costs a third as much to build."""

    name: str  # dotted path from the root, e.g. ``layer1.0.conv1`` (never the root's "")
    kind: str  # ``type(module).__name__``
    inputs: tuple[Any, ...]  # grad_fns of the tensors it was given (args and kwargs)
    outputs: tuple[Any, ...]  # grad_fns of the tensors it returned


def _grad_fns(obj: Any, out: list[Any]) -> None:
    """Append the ``grad_fn`` of every tensor in ``obj`` (nested tuples, lists and dicts)."""
    if type(obj) is tuple and len(obj) == 1 and isinstance(obj[0], torch.Tensor):
        obj = obj[0]  # the common ``forward(x)``: skip a recursion per call
    if isinstance(obj, torch.Tensor):
        if obj.grad_fn is not None:
            out.append(obj.grad_fn)
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            _grad_fns(item, out)
    elif isinstance(obj, dict):
        for item in obj.values():
            _grad_fns(item, out)


def _grad_fns_of(obj: Any) -> tuple[Any, ...]:
    """``_grad_fns`` as a tuple, without a list or a recursion for the common single tensor
    (``forward(x)``, or a module returning one tensor): a hook runs it on every module call."""
    if type(obj) is tuple and len(obj) == 1:
        obj = obj[0]
    if isinstance(obj, torch.Tensor):
        fn = obj.grad_fn
        return () if fn is None else (fn,)
    out: list[Any] = []
    _grad_fns(obj, out)
    return tuple(out)


def module_paths(net: nn.Module) -> dict[int, str]:
    """id(module) -> its dotted path in ``net`` (``""`` for ``net`` itself)."""
    return {id(m): path for path, m in net.named_modules()}


class CallRecorder:
    """The two halves of ``record_calls``, for whoever registers the hooks."""

    def __init__(
        self, net: nn.Module, calls: list[ModuleCall], paths: dict[int, str] | None = None
    ) -> None:
        paths = paths if paths is not None else module_paths(net)
        self.names = {k: name for k, name in paths.items() if name}  # root: untagged
        self.calls = calls
        # A module may be re-entered before it returns (recursion, a module calling itself
        # through a parent): its pending inputs are a stack.
        self.pending: dict[int, list[tuple[Any, ...]]] = {}

    def pre(self, mod: nn.Module, args: tuple[Any, ...]) -> None:
        key = id(mod)
        if key in self.names:
            # before the forward: an in-place op may rebind grad_fn
            found = _grad_fns_of(args)
            stack = self.pending.get(key)
            if stack is None:
                self.pending[key] = [found]
            else:
                stack.append(found)

    def post(self, mod: nn.Module, kwargs: dict[str, Any], result: Any) -> None:
        key = id(mod)
        name = self.names.get(key)
        if name is None:
            return
        stack = self.pending.get(key)
        found = stack.pop() if stack else ()
        if kwargs:  # the global pre-hook does not see kwargs; their tensors are the same now
            more = list(found)
            _grad_fns(kwargs, more)
            found = tuple(more)
        self.calls.append(ModuleCall(name, type(mod).__name__, found, _grad_fns_of(result)))


@contextmanager
def module_hooks(
    pre: Callable[[nn.Module, tuple[Any, ...]], None],
    post: Callable[[nn.Module, tuple[Any, ...], dict[str, Any], Any], None],
) -> Iterator[None]:
    """One global forward pre-hook and one global forward hook (given the kwargs too) for the
    block. Global rather than per module: registering and removing thousands of per-module
    hooks costs far more than the calls themselves (250 ms for 8,000 modules). They fire for
    every module; the callers filter by identity."""
    handles = [
        register_module_forward_pre_hook(pre),
        register_module_forward_hook(post, with_kwargs=True),
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def record_calls(net: nn.Module, calls: list[ModuleCall]) -> Iterator[None]:
    """Inside this block every submodule call of ``net`` is appended to ``calls`` on return.

    Other modules (another model in another thread) are ignored by identity.
    """
    recorder = CallRecorder(net, calls)
    with module_hooks(
        recorder.pre, lambda mod, args, kwargs, result: recorder.post(mod, kwargs, result)
    ):
        yield


def assign_modules(
    calls: Sequence[ModuleCall],
    index: dict[int, int],
    children: Sequence[tuple[int | None, ...]],
    leaf: Sequence[bool],
) -> list[str | None]:
    """The innermost module of each node of an integer graph (``None``: no submodule).

    ``index`` maps ``id(grad_fn)`` to a node number, ``children`` are each node's
    ``next_functions`` as node numbers, ``leaf`` marks ``AccumulateGrad`` nodes. The grad_fn
    objects in ``calls`` must still be alive (they are: the graph holds them).
    """
    n = len(children)
    module: list[str | None] = [None] * n
    depth = [0] * n
    get = index.get
    for call in calls:
        # Never entered: the inputs' nodes, nodes already queued, and ``None`` (a grad_fn
        # outside this graph, or an empty ``next_functions`` slot).
        seen: set[int | None] = set(map(get, map(id, call.inputs)))
        seen.add(None)
        stack = [j for j in map(get, map(id, call.outputs)) if j not in seen]
        if not stack:
            continue  # returned its input unchanged (Identity), or not part of this graph
        seen.update(stack)
        name = call.name
        d = name.count(".") + 1
        while stack:
            i = stack.pop()
            if d > depth[i]:
                module[i] = name
                depth[i] = d
            if leaf[i]:
                continue
            for c in children[i]:
                if c not in seen:
                    seen.add(c)
                    stack.append(c)
    return module


def module_kinds(calls: Sequence[ModuleCall]) -> tuple[tuple[str, str], ...]:
    """``(name, type name)`` of every module called, each once, in the order they returned."""
    kinds: dict[str, str] = {}
    for call in calls:
        kinds.setdefault(call.name, call.kind)
    return tuple(kinds.items())
