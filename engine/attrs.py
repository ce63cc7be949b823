"""The plain Python attributes of a model's modules, so that a rewind restores them too.

A ``forward`` may keep state in attributes (``self.calls += 1``, ``self.last = x.detach()``,
a schedule's step), and so may other code of the user's (a backward hook's ``self.gnorm``). The
checkpoints held tensors only, so a rewind that recomputed the forward ran it again on the state
it had left, and the numbers differed from the first run. Each checkpoint now also holds a
shallow copy of every module's ``__dict__`` as its phase left it, shared with the checkpoint
before when the phase rebound nothing (the usual case), and a forward's also the copy it
started from: a rewind puts the attributes back, and a recomputed forward runs on what the
original found.

Only modules of classes not from torch itself are followed (the model's own classes, and
yours subclassing torch's): torch's modules keep their state in parameters and buffers, which
the checkpoints hold, and skipping them keeps a ResNet's 54 modules to 7.

Shallow: what is restored is which object each attribute names. A container changed in place
(``self.seen.append(x)``) is the same object before and after, so it is neither seen nor
restored; keep such state in a buffer, or rebind it (``self.seen = self.seen + [x]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import is_

import torch.nn as nn

Attrs = tuple[dict[str, object], ...]


def own_modules(net: nn.Module) -> tuple[nn.Module, ...]:
    """The modules whose attributes a checkpoint follows (see the module docstring)."""
    return tuple(m for m in net.modules() if not type(m).__module__.startswith("torch."))


def snapshot(modules: Sequence[nn.Module]) -> Attrs:
    """Every module's attributes as they are now (a shallow copy of each ``__dict__``)."""
    return tuple(dict(m.__dict__) for m in modules)


def same(a: Attrs, b: Attrs) -> bool:
    """Whether every attribute names the very same object in both (no value is compared:
    a tensor's ``==`` is elementwise, and an equal value newly bound is a change to keep)."""
    if a is b:
        return True
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        # Values in insertion order, by identity (``operator.is_`` in C: a forward's share
        # stays a fraction of a percent); an attribute deleted and set again reorders them,
        # which reads as a change, and keeping a copy for nothing is harmless.
        if len(x) != len(y) or not all(map(is_, x.values(), y.values())) or x.keys() != y.keys():
            return False
    return True


def restore(modules: Sequence[nn.Module], saved: Attrs) -> None:
    """Make each module's attributes name what ``saved`` holds: rebound ones back, ones
    added since removed. Written to ``__dict__`` directly, as ``snapshot`` read them
    (``nn.Module.__setattr__`` would route a module or parameter value elsewhere)."""
    for module, attrs in zip(modules, saved, strict=True):
        now = module.__dict__
        if len(now) == len(attrs) and all(now.get(k, now) is v for k, v in attrs.items()):
            continue
        for key in [k for k in now if k not in attrs]:
            del now[key]
        now.update(attrs)
