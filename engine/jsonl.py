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
    return json.dumps(record_to_json(record), separators=(",", ":"))
