"""Side-by-side facts the notes state, verified on the live tensors of a phase.

- ``nn.CrossEntropyLoss(weight=w)`` and ``F.cross_entropy(..., weight=w)`` give the same loss:
  the module keeps the weight, the function needs it on every call.
- ``optim.SGD`` and the notes' loop ``f.data.sub_(f.grad.data * learning_rate)`` give the same
  parameters, up to one float rounding: ``p.add_(g, alpha=-lr)`` may compute ``p − lr·g`` with
  a single rounding (a fused multiply-add on CPUs that have one), the loop rounds ``g·lr``
  first. The check says how many elements are bit-equal rather than pretending all are.

Each helper returns ``(printed lines, checks)`` for a record; none changes a tensor it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .bitwise import bit_equal
from .recipe import ManualSGD

Check = tuple[str, bool]


def cross_entropy_nn_vs_f(
    criterion: nn.Module, output: torch.Tensor, target: torch.Tensor, loss: torch.Tensor
) -> tuple[list[str], tuple[Check, ...]]:
    """Recompute the loss with ``F.cross_entropy`` and the criterion's own weight."""
    if not isinstance(criterion, nn.CrossEntropyLoss):
        return [], ()
    weight = criterion.weight
    # no_grad: a second graph hanging off ``output`` would only be garbage to collect.
    with torch.no_grad():
        functional = F.cross_entropy(output, target, weight=weight)
    same = torch.equal(functional, loss.detach())
    arg = ", weight=weight" if weight is not None else ""
    lines = [
        f"print(F.cross_entropy(output, target{arg}))"
        + ("  # the function: weight on every call" if arg else "  # the function form"),
        repr(functional),
        f"# nn.CrossEntropyLoss({arg[2:]}) == F.cross_entropy(output, target{arg}): {same}",
    ]
    label = "nn.CrossEntropyLoss == F.cross_entropy" + (" (same weight)" if arg else "")
    checks: list[Check] = [(label, same)]
    if weight is not None:
        with torch.no_grad():
            plain = F.cross_entropy(output, target)
        lines += ["print(F.cross_entropy(output, target))  # weight forgotten", repr(plain)]
        one_class = target.dim() == 1 and target.unique().numel() == 1
        if one_class and torch.equal(plain, functional):
            # Weighted mean: sum(w[y_i]·l_i) / sum(w[y_i]); a single class divides w out.
            lines.append("# same value: the batch holds one class, its weight cancels in the mean")
    return lines, tuple(checks)


@dataclass(frozen=True)
class SgdFacts:
    """Both update rules applied to the same ``before`` and ``grad`` of every parameter."""

    matches: tuple[bool | None, ...]  # after is bit-equal to the recipe's rule (None: no grad)
    lines: tuple[str, ...]  # what the step prints about optim.SGD vs the manual loop
    checks: tuple[Check, ...]


def sgd_facts(
    rule: str,
    before: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    after: Sequence[torch.Tensor],
    lr: float,
) -> SgdFacts:
    """Per parameter: is ``after`` bit-equal to ``rule`` ("sgd": ``before.add(grad,
    alpha=-lr)``, "manual": ``before.sub(grad * lr)``)? And over all of them: in how many
    elements do the two rules give the same value, and do they always agree to float rounding
    (``|sgd − manual| <= eps·(|lr·g| + |sgd| + |manual|)``)?

    Five passes per parameter (add, mul, sub, compare, subtract) plus one that finds where
    the rules differ; the rounding bound is evaluated only there (a few elements in 10,000).
    Temporaries are scratch buffers shared by all parameters: a fresh multi-megabyte tensor per
    operation costs more in page faults than the arithmetic.
    """
    total = equal = 0
    worst = 0.0
    close = True
    matches: list[bool | None] = []
    # A sparse gradient (F.embedding(..., sparse=True)) cannot be written into the strided
    # scratch buffers below; as dense values it is the same update.
    grads = [_dense(g) for g in grads]
    largest = max((g.numel() for g in grads if g is not None), default=0)
    pools: dict[torch.dtype, list[torch.Tensor]] = {}

    def buf(k: int, like: torch.Tensor) -> torch.Tensor:
        pool = pools.setdefault(
            like.dtype, [torch.empty(largest, dtype=like.dtype) for _ in range(4)]
        )
        return pool[k][: like.numel()].view(like.shape)

    for b, g, a in zip(before, grads, after):
        if g is None:
            matches.append(None)
            continue
        sgd = torch.add(b, g, alpha=-lr, out=buf(0, b))  # what optim.SGD does
        step = torch.mul(g, lr, out=buf(1, g))
        manual = torch.sub(b, step, out=buf(2, b))  # the notes' f.data.sub_(f.grad.data * lr)
        matches.append(bit_equal(a, sgd if rule == "sgd" else manual))
        total += b.numel()
        if not b.numel():
            continue
        diff = torch.sub(sgd, manual, out=buf(3, b)).reshape(-1)
        where = diff.nonzero().squeeze(1)  # where the rules differ (or the difference is NaN)
        if not where.numel():
            equal += b.numel()
            continue
        s_at, m_at = sgd.reshape(-1)[where], manual.reshape(-1)[where]
        # Values compared as ``==`` does: inf == inf (their difference is NaN) counts as equal.
        equal += b.numel() - where.numel() + int((s_at == m_at).sum().item())
        gap = (s_at - m_at).abs()
        finite = gap[torch.isfinite(gap)]
        if finite.numel():
            worst = max(worst, float(finite.max().item()))
        eps = torch.finfo(b.dtype).eps
        bound = eps * (step.reshape(-1)[where].abs() + s_at.abs() + m_at.abs())
        close = close and bool(((gap <= bound) | (s_at == m_at)).all().item())
    lines = (
        "# optim.SGD (p.add_(g, alpha=-lr)) vs the manual loop (p.sub_(g * lr)), same p and g:",
        f"# bit-equal in {equal} of {total} elements, max |difference| = {worst:.3g}"
        + (
            "" if equal == total else " (one float rounding: fused p − lr·g vs rounding g·lr first)"
        ),
    )
    return SgdFacts(
        tuple(matches), lines, (("optim.SGD and the manual loop agree to float rounding", close),)
    )


def _dense(grad: torch.Tensor | None) -> torch.Tensor | None:
    if grad is None or grad.layout == torch.strided:
        return grad
    return grad.to_dense()


def sgd_error(after: torch.Tensor, before: torch.Tensor, grad: torch.Tensor, lr: float) -> float:
    """The largest ``|Δ + lr·g|``: what the step's subtraction rounded away."""
    if not grad.numel():
        return 0.0
    # lr·g + Δ equals Δ + lr·g bit for bit (float addition commutes): one temporary.
    gap = torch.mul(_dense(grad), lr)
    gap.add_(after - before)
    return float(gap.abs_().max().item())


def optimizer_state_lines(optimizer: object, state: dict[str, Any], label: str) -> list[str]:
    """``print(optimizer.state[net.<label>])`` as Python prints it (``{}`` for plain SGD), from
    ``state``: that entry of ``optimizer.state`` or a copy taken when the step ran.

    The manual loop has no optimizer and so no state to print.
    """
    if isinstance(optimizer, ManualSGD) or not isinstance(optimizer, torch.optim.Optimizer):
        return []
    return [f"print(optimizer.state[net.{label}])", repr(dict(state))]
