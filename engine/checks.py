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

import math
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


def sgd_vs_manual(
    before: list[torch.Tensor] | tuple[torch.Tensor, ...],
    grads: list[torch.Tensor | None],
    lr: float,
) -> tuple[list[str], tuple[Check, ...]]:
    """Apply both update rules to the same ``before`` and ``grad``; compare the results."""
    total = equal = 0
    worst = 0.0
    close = True
    # float32 epsilon: each rule rounds at most twice, so they differ by at most that much.
    # Scratch buffers shared by all parameters: a fresh multi-megabyte tensor per operation
    # costs more in page faults than the arithmetic itself. ``out=`` runs the same kernels.
    largest = max((g.numel() for g in grads if g is not None), default=0)
    scratch_dtype = next((g.dtype for g in grads if g is not None), torch.float32)
    pool = [torch.empty(largest, dtype=scratch_dtype) for _ in range(5)]

    def buf(k: int, like: torch.Tensor) -> torch.Tensor:
        if like.dtype != pool[k].dtype:
            return torch.empty_like(like)
        return pool[k][: like.numel()].view(like.shape)

    for p, g in zip(before, grads):
        if g is None:
            continue
        # what optim.SGD does: p.add_(grad, alpha=-lr)
        sgd = torch.add(p, g, alpha=-lr, out=buf(0, p))
        step = torch.mul(g, lr, out=buf(1, g))
        # the notes' f.data.sub_(f.grad.data * learning_rate)
        manual = torch.sub(p, step, out=buf(2, p))
        total += p.numel()
        if not p.numel():
            continue
        diff = torch.sub(sgd, manual, out=buf(3, p))
        diff.abs_()
        worst_here = float(diff.max().item())
        eps = torch.finfo(p.dtype).eps if p.is_floating_point() else 0.0
        if math.isfinite(worst_here):
            # Every |sgd − manual| is finite, so both are finite everywhere, and then (IEEE
            # subtraction with gradual underflow) sgd == manual exactly where sgd − manual == 0,
            # and diff <= bound exactly where bound − diff >= 0. Same answers as the
            # comparisons, without their boolean tensors (the slowest passes on a large model:
            # ``(a == b).sum()`` alone cost more than the rest of this loop).
            equal += p.numel() - int(torch.count_nonzero(diff).item())
            worst = max(worst, worst_here)
            if close:
                bound = torch.abs(step, out=buf(4, step))
                scratch = sgd.abs_()  # sgd is not needed any more
                bound.add_(scratch)
                bound.add_(manual.abs_())
                bound.mul_(eps)  # eps * (|step| + |sgd| + |manual|), summed in that order
                close = float(bound.sub_(diff).min().item()) >= 0
            continue
        # An Inf or NaN somewhere: the plain comparisons, which treat inf == inf as equal.
        equal += int((sgd == manual).sum().item())
        worst = max(worst, worst_here)
        bound = eps * (step.abs() + sgd.abs() + manual.abs())
        close = close and bool((diff <= bound).all().item())
    lines = [
        "# optim.SGD (p.add_(g, alpha=-lr)) vs the manual loop (p.sub_(g * lr)), same p and g:",
        f"# bit-equal in {equal} of {total} elements, max |difference| = {worst:.3g}"
        + (
            "" if equal == total else " (one float rounding: fused p − lr·g vs rounding g·lr first)"
        ),
    ]
    return lines, (("optim.SGD and the manual loop agree to float rounding", close),)


def sgd_match(
    rule: str, after: torch.Tensor, before: torch.Tensor, grad: torch.Tensor, lr: float
) -> tuple[bool, float]:
    """Is ``after`` bit-equal to ``rule`` applied to ``before`` and ``grad`` ("sgd":
    ``before.add(grad, alpha=-lr)``, "manual": ``before.sub(grad * lr)``)? And the largest
    ``|Δ + lr·grad|``: what the subtraction rounded away."""
    expected = before.add(grad, alpha=-lr) if rule == "sgd" else before.sub(grad * lr)
    matches = bit_equal(after, expected)
    if not grad.numel():
        return matches, 0.0
    # lr·g + Δ equals Δ + lr·g bit for bit (float addition commutes): one temporary.
    gap = torch.mul(grad, lr)
    gap.add_(after - before)
    return matches, float(gap.abs_().max().item())


def optimizer_state_lines(optimizer: object, state: dict[str, Any], label: str) -> list[str]:
    """``print(optimizer.state[net.<label>])`` as Python prints it (``{}`` for plain SGD), from
    ``state``: that entry of ``optimizer.state`` or a copy taken when the step ran.

    The manual loop has no optimizer and so no state to print.
    """
    if isinstance(optimizer, ManualSGD) or not isinstance(optimizer, torch.optim.Optimizer):
        return []
    return [f"print(optimizer.state[net.{label}])", repr(dict(state))]
