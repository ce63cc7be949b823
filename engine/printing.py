"""``repr`` of a tensor that had a ``grad_fn``, from a detached copy and the node's name.

A record prints ``output`` and ``loss`` as the tutorial does (``tensor(0.77,
grad_fn=<MseLossBackward0>)``) when first read, maybe phases later. Keeping the tensors
themselves would keep their whole autograd graph alive (saved tensors included, until a
backward frees them, and a rewind builds a new graph beside it), so the record keeps a detached
alias and the name, and this adds the suffix exactly as ``torch._tensor_str._add_suffixes``
does: on the same line when it fits ``linewidth``, else on its own line, indented.
"""

from __future__ import annotations

import torch

INDENT = len("tensor(")


def grad_fn_name(tensor: torch.Tensor) -> str | None:
    """What ``repr`` writes as ``grad_fn=<…>`` (``CppFunction``s by their op name)."""
    fn = tensor.grad_fn
    if fn is None:
        return None
    name = type(fn).__name__
    if name == "CppFunction":
        name = fn.name().rsplit("::", 1)[-1]
    return name


def tensor_repr(detached: torch.Tensor, grad_fn: str | None) -> str:
    """``repr`` of the tensor ``detached`` was detached from, whose ``grad_fn`` was named so."""
    text = repr(detached)
    if grad_fn is None:
        return text
    suffix = f"grad_fn=<{grad_fn}>"
    body = text[:-1]  # without the closing parenthesis
    last = body[body.rfind("\n") + 1 :]
    # torch counts a line of values with a +2 quirk and a suffix it wrapped (``dtype=…`` on
    # its own line, indented by exactly INDENT; value lines have one more space) exactly.
    wrapped = "\n" in body and last.startswith(" " * INDENT) and last[INDENT : INDENT + 1].isalpha()
    last_len = len(last) if wrapped else len(body) - body.rfind("\n") + 1
    linewidth = torch._tensor_str.PRINT_OPTS.linewidth
    if last_len + len(suffix) + 2 > linewidth:
        return f"{body},\n{' ' * INDENT}{suffix})"
    return f"{body}, {suffix})"
