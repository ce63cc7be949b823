"""Things worth a look after a phase: ``diagnose(session, record) -> tuple[Diagnostic, ...]``.

The kinds are a public contract (``nntui trace --json`` writes them):

- ``unused``: a parameter that requires grad got no gradient from this backward (its ``.grad``
  is still ``None``, or unchanged when grads are zeros or accumulate): the loss does not use it.
- ``frozen``: ``requires_grad=False``; backward leaves it alone, step cannot move it.
- ``tied``: one tensor under two names (``named_parameters(remove_duplicate=False)``); a single
  ``AccumulateGrad`` sums the gradient of every use.
- ``nonfinite``: NaN/Inf in an activation (naming the first module, in the order modules
  returned, whose output held one), in the loss, in a gradient, or in a parameter.
- ``vanishing`` / ``exploding``: ``‖grad‖ / ‖param‖`` per parameter below ``VANISHING`` or above
  ``EXPLODING``. The parameter norm is floored at ``NORM_FLOOR·√numel`` so a zero-initialised
  bias (norm 0) gets a ratio rather than infinity. Healthy shipped models at init sit between
  about 1e-3 and 4 (measured on lenet, mlp and resnet over several seeds).
- ``accumulated``: gradients hold the sum of k > 1 backwards because ``zero_grad`` was skipped.
  It concerns every parameter, so it carries neither ``param`` nor ``module``.
- ``dead_relu``: the share of an ``nn.ReLU`` module's units that output 0 for every sample of
  the batch (a unit is one position of the output without the batch dimension). Flagged from
  ``DEAD_RELU_SHARE``; with a batch of one sample a ReLU zeroes about half its units anyway, so
  only a layer that is entirely zero is flagged then. ``F.relu`` inside a ``forward`` is not a
  module and cannot be hooked: use ``nn.ReLU`` modules to get this diagnostic.

What is reported where: define (frozen, tied), forward (nonfinite, dead_relu), loss
(nonfinite), backward (unused, frozen, tied, nonfinite, vanishing, exploding, accumulated),
step (nonfinite, accumulated). Everything is read from the record's summaries or from tensors
the session already keeps, so a diagnosis costs a few reductions.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from .phases import Phase
from .records import Diagnostic, PhaseRecord
from .summary import fmt

if TYPE_CHECKING:
    from .session import DiagnosisView

KINDS = (
    "unused",
    "frozen",
    "tied",
    "nonfinite",
    "vanishing",
    "exploding",
    "accumulated",
    "dead_relu",
)
VANISHING = 1e-5
EXPLODING = 1e2
NORM_FLOOR = 1e-2
DEAD_RELU_SHARE = 0.25
LISTED = 3  # names spelled out in a message before "…"


def diagnose(session: DiagnosisView, record: PhaseRecord) -> tuple[Diagnostic, ...]:
    """The diagnostics of the state ``record`` left the session in."""
    if session.setup is None:
        return ()
    net = session.setup.net
    phase = record.phase
    out: list[Diagnostic] = []
    if phase is Phase.FORWARD:
        out += forward_nonfinite(session, record)
        out += dead_relus(net, session.activations)
    elif phase is Phase.LOSS:
        out += loss_nonfinite(session, record)
    elif phase is Phase.BACKWARD:
        out += unused(record)
        out += frozen(net)
        out += tied(net)
        out += param_nonfinite(record, "grad")
        out += grad_ratios(record)
        out += accumulated(record)
    elif phase is Phase.STEP:
        out += param_nonfinite(record, "data")
        out += accumulated(record)
    elif phase is Phase.DEFINE:
        out += frozen(net)
        out += tied(net)
    return tuple(out)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f", … ({len(names)} in all)" if len(names) > LISTED else "")


def frozen(net: nn.Module) -> list[Diagnostic]:
    return [
        Diagnostic(
            "frozen",
            f"{name} has requires_grad=False: backward gives it no grad, step cannot move it",
            param=name,
        )
        for name, p in net.named_parameters()
        if not p.requires_grad
    ]


def tied(net: nn.Module) -> list[Diagnostic]:
    first: dict[int, str] = {}
    out = []
    for name, p in net.named_parameters(remove_duplicate=False):
        owner = first.setdefault(id(p), name)
        if owner != name:
            out.append(
                Diagnostic(
                    "tied",
                    f"{name} is the same tensor as {owner}: one AccumulateGrad sums the "
                    "gradients of both uses",
                    param=name,
                )
            )
    return out


def unused(record: PhaseRecord) -> list[Diagnostic]:
    trainable = {p.name for p in record.params if p.requires_grad}
    out = []
    for c in record.grad_changes:
        if c.fresh is not None or c.name not in trainable:
            continue
        state = "is still None" if c.after is None else "did not change"
        out.append(
            Diagnostic(
                "unused",
                f"{c.name} got no gradient from backward (.grad {state}): "
                "the loss does not depend on it",
                param=c.name,
            )
        )
    return out


def grad_ratios(record: PhaseRecord) -> list[Diagnostic]:
    fresh = {c.name for c in record.grad_changes if c.fresh is not None}
    out = []
    for p in record.params:
        if p.grad is None or p.name not in fresh or not (p.grad.finite and p.data.finite):
            continue
        ratio = p.grad.norm / max(p.data.norm, NORM_FLOOR * math.sqrt(max(p.numel, 1)))
        if ratio < VANISHING:
            out.append(
                Diagnostic(
                    "vanishing",
                    f"{p.name}: ‖grad‖/‖param‖ = {fmt(ratio)} (below {VANISHING:g})",
                    param=p.name,
                )
            )
        elif ratio > EXPLODING:
            out.append(
                Diagnostic(
                    "exploding",
                    f"{p.name}: ‖grad‖/‖param‖ = {fmt(ratio)} (above {EXPLODING:g})",
                    param=p.name,
                )
            )
    return out


def accumulated(record: PhaseRecord) -> list[Diagnostic]:
    k = record.backwards
    if k < 2:
        return []
    if record.phase is Phase.STEP:
        text = f"step used gradients summed over {k} backwards (zero_grad was skipped)"
    else:
        text = (
            f"gradients hold the sum of {k} backwards: zero_grad was skipped "
            f"{k - 1} time{'s' if k > 2 else ''}"
        )
    return [Diagnostic("accumulated", text)]


def _bad(nans: int, infs: int, numel: int) -> str:
    parts = [f"{nans} NaN" if nans else "", f"{infs} Inf" if infs else ""]
    return " and ".join(p for p in parts if p) + f" of {numel}"


def forward_nonfinite(session: DiagnosisView, record: PhaseRecord) -> list[Diagnostic]:
    if not session.nonfinite_modules:
        return []
    first = session.nonfinite_modules[0]
    act = next((a for a in record.activations if a.name == first), None)
    detail = f" ({_bad(act.summary.nans, act.summary.infs, act.summary.numel)})" if act else ""
    kind = f" ({act.kind})" if act else ""
    later = len(session.nonfinite_modules) - 1
    then = f"; {later} module(s) after it too" if later else ""
    return [
        Diagnostic(
            "nonfinite",
            f"{first}{kind} is the first module whose output holds NaN/Inf{detail}{then}",
            module=first,
        )
    ]


def loss_nonfinite(session: DiagnosisView, record: PhaseRecord) -> list[Diagnostic]:
    if record.loss is None or math.isfinite(record.loss):
        return []
    if session.nonfinite_modules:
        first = session.nonfinite_modules[0]
        return [
            Diagnostic(
                "nonfinite",
                f"loss is {record.loss}: the forward already went non-finite at {first}",
                module=first,
            )
        ]
    return [
        Diagnostic(
            "nonfinite",
            f"loss is {record.loss}: the criterion made it from a finite output",
            module="criterion",
        )
    ]


def param_nonfinite(record: PhaseRecord, which: str) -> list[Diagnostic]:
    """NaN/Inf in gradients (``grad``) or parameters (``data``), nearest the loss named first."""
    bad = []
    # Backward starts at the output: the last registered parameter is (roughly) reached first.
    for p in reversed(record.params):
        s = p.grad if which == "grad" else p.data
        if s is not None and not s.finite:
            bad.append((p.name, s))
    if not bad:
        return []
    name, s = bad[0]
    what = "gradient" if which == "grad" else "value"
    others = (
        f"; {len(bad)} parameters in all: {_names([n for n, _ in bad])}" if len(bad) > 1 else ""
    )
    return [
        Diagnostic(
            "nonfinite",
            f"{name} {what} holds {_bad(s.nans, s.infs, s.numel)}{others}",
            param=name,
        )
    ]


def dead_relus(net: nn.Module, activations: dict[str, torch.Tensor]) -> list[Diagnostic]:
    out = []
    for name, module in net.named_modules():
        if not isinstance(module, nn.ReLU):
            continue
        t = activations.get(name or "output")
        if t is None or t.numel() == 0:
            continue
        batch = t.shape[0] if t.dim() >= 2 else 1
        # A unit is one position of the output without the batch dimension.
        units = (t == 0).reshape(batch, -1).all(dim=0)
        dead, total = int(units.sum().item()), units.numel()
        share = dead / total
        threshold = DEAD_RELU_SHARE if batch > 1 else 1.0
        if dead and share >= threshold:
            out.append(
                Diagnostic(
                    "dead_relu",
                    f"{name}: {dead}/{total} units ({share:.0%}) output 0 for every sample "
                    f"of the batch ({batch})",
                    module=name,
                )
            )
    return out
