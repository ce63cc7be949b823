"""Records as JSON objects: the public ``nntui trace --json`` contract (one object per line)."""

from __future__ import annotations

import json
import math
from typing import Any

from .records import PhaseRecord


def _num(x: float | None) -> float | None:
    # JSON has no NaN/Inf; null keeps each line parseable by strict readers.
    if x is None or not math.isfinite(x):
        return None
    return x


def record_to_json(record: PhaseRecord) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in record.params:
        params[p.name] = {
            "shape": list(p.shape),
            "norm": _num(p.data.norm),
            "sum": _num(p.data.sum),
            "grad_norm": None if p.grad is None else _num(p.grad.norm),
            "grad_sum": None if p.grad is None else _num(p.grad.sum),
        }
    out: dict[str, Any] = {
        "iteration": record.iteration,
        "phase": record.phase.value,
        "skipped": record.skipped,
        "loss": _num(record.loss),
        "params": params,
    }
    if record.graph is not None:
        out["grad_fn"] = record.graph.to_tree()
    out["diagnostics"] = [
        {
            "kind": d.kind,
            **({"param": d.param} if d.param is not None else {}),
            **({"module": d.module} if d.module is not None else {}),
            "message": d.message,
        }
        for d in record.diagnostics
    ]
    return out


def record_to_line(record: PhaseRecord) -> str:
    """The record as one line of JSON, exactly ``json.dumps(..., separators=(",", ":"))``.

    The ``grad_fn`` tree nests two levels per node along the graph's longest path: a model
    that chains 500 operations nests past Python's recursion limit, and ``json.dumps`` raised
    RecursionError. That value is encoded without recursion; the rest by ``json``.
    """
    data = record_to_json(record)
    if "grad_fn" not in data:
        return _dumps(data)
    head = _dumps({k: v for k, v in data.items() if k not in ("grad_fn", "diagnostics")})
    tail = (
        f',"grad_fn":{_dumps_deep(data["grad_fn"])},"diagnostics":{_dumps(data["diagnostics"])}}}'
    )
    return head[:-1] + tail


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Text(str):
    """Output to copy as it is (punctuation and keys), not a value to encode."""


def _dumps_deep(value: Any) -> str:
    """``_dumps(value)`` for dicts and lists nested to any depth, with an explicit stack."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            parts.append(item)
            continue
        if isinstance(item, dict):
            seq: list[Any] = [_Text("{")]
            for i, (key, sub) in enumerate(item.items()):
                seq += [_Text(("," if i else "") + _dumps(str(key)) + ":"), sub]
            seq.append(_Text("}"))
        elif isinstance(item, list):
            seq = [_Text("[")]
            for i, sub in enumerate(item):
                seq += [_Text(",")] if i else []
                seq.append(sub)
            seq.append(_Text("]"))
        else:
            parts.append(_dumps(item))
            continue
        stack.extend(reversed(seq))
    return "".join(parts)
