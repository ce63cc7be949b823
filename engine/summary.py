"""One honest line per tensor, in the spirit of lovely-tensors (without depending on it).

A ``TensorSummary`` knows its shape at once and computes its statistics when first read
(``engine.lazy``): three groups, each in as few passes as PyTorch allows, so the parameters
table (norms) never pays for a standard deviation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .lazy import COND

HEAD = 8  # how many leading values a summary keeps, enough for conv1.bias (6)
NAN = float("nan")
NOT_KEPT = "not kept: it left the rewind history before it was shown"

Source = torch.Tensor | Callable[[], torch.Tensor]


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype_name(dtype: torch.dtype) -> str:
    """``float32`` for ``torch.float32``; cached, a summary is made for every tensor a phase
    touches (a ResNet step makes ~150)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


class TensorSummary:
    """Plain-number statistics of one tensor; safe to keep after the tensor is gone.

    Every number is the one the named PyTorch call returns (``t.min()``, ``t.mean()``,
    ``t.std()``, ``t.norm()``, ``t.sum()``, ``(t == 0).sum()``…). ``source`` is the tensor
    (which nothing may write to while the summary can still read it) or a function making it
    (a difference of two such tensors: computed once, when the first statistic is read).
    """

    __slots__ = (
        "shape",
        "dtype",
        "numel",
        "_source",
        "_sums",
        "_norm",
        "_detail",
        "_lost",
        "_computing",
    )

    def __init__(
        self, source: Source, shape: tuple[int, ...], dtype: torch.dtype | str, numel: int
    ) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype if isinstance(dtype, str) else _dtype_name(dtype)
        self.numel = numel
        self._source: Source | None = source
        self._sums: tuple[float, int, int] | None = None  # sum, NaNs, Infs
        self._norm: float | None = None
        # min, max, mean, std, zeros, head
        self._detail: tuple[float, float, float, float, int, tuple[float, ...]] | None = None
        self._lost = False
        self._computing = False  # see engine.lazy.COND
        if numel == 0:
            self._sums, self._norm = (0.0, 0, 0), 0.0
            self._detail = (NAN, NAN, NAN, NAN, 0, ())
            self._source = None

    # ------------------------------------------------------------------ computing
    def _tensor(self, src: Source) -> torch.Tensor:
        t = src if isinstance(src, torch.Tensor) else src()
        t = t.detach()
        if not (t.is_floating_point() or t.is_complex()):
            t = t.to(torch.float32)
        return t

    def _need(self, group: str) -> None:
        if getattr(self, group) is not None or self._lost:
            return
        with COND:  # state changes only; the passes over the tensor run outside it
            while self._computing:
                COND.wait()
            if getattr(self, group) is not None or self._lost:
                return
            src = self._source
            if src is None:
                self._lost = True
                return
            self._computing = True
            sums = self._sums
        try:
            t = self._tensor(src)
            norm = detail = None
            if group == "_norm":
                norm = float(t.norm().item())
            else:
                if sums is None:
                    sums = _sums(t)
                if group == "_detail":
                    detail = _detail(t, *sums[1:])
        except BaseException:
            with COND:
                self._computing = False
                COND.notify_all()
            raise
        with COND:
            self._computing = False
            COND.notify_all()
            if self._source is not None and not isinstance(src, torch.Tensor):
                self._source = t  # made once: the other groups read the same tensor
            self._sums = self._sums or sums
            self._norm = self._norm if norm is None else norm
            self._detail = self._detail or detail
            if None not in (self._sums, self._norm, self._detail):
                self._source = None  # everything known: let the tensor go

    def release(self) -> None:
        """The tensor may change from now on: keep what is known, lose the rest."""
        with COND:
            self.release_held()

    def release_held(self) -> None:
        """``release`` for a caller holding ``COND`` (engine.lazy.release_many)."""
        while self._computing:
            COND.wait()
        self._source = None
        if None in (self._sums, self._norm, self._detail):
            self._lost = True

    def compute(self) -> TensorSummary:
        """Every statistic now (``nntui trace`` and tests); returns self."""
        for group in ("_sums", "_norm", "_detail"):
            self._need(group)
        return self

    @property
    def source(self) -> torch.Tensor | None:
        """The tensor still to be read (None once everything is known, or made on demand)."""
        src = self._source
        return src if isinstance(src, torch.Tensor) else None

    @property
    def known_norm(self) -> float | None:
        """The norm if it was computed already (reading it then costs nothing), else None."""
        return self._norm

    @property
    def available(self) -> bool:
        """False when some statistic was released before it was computed (see ``NOT_KEPT``)."""
        return not self._lost

    # ------------------------------------------------------------------ statistics
    @property
    def sum(self) -> float:
        self._need("_sums")
        return self._sums[0] if self._sums else NAN

    def _counts(self) -> tuple[int, int]:
        # A finite norm proves there is no NaN and no Inf: the table, which shows norms and
        # these flags, then needs no sum pass.
        if self._sums is None and self._norm is not None and math.isfinite(self._norm):
            return 0, 0
        self._need("_sums")
        return (self._sums[1], self._sums[2]) if self._sums else (0, 0)

    @property
    def nans(self) -> int:
        return self._counts()[0]

    @property
    def infs(self) -> int:
        return self._counts()[1]

    @property
    def norm(self) -> float:
        self._need("_norm")
        return NAN if self._norm is None else self._norm

    def _d(self, i: int) -> object:
        self._need("_detail")
        d = self._detail
        return (NAN, NAN, NAN, NAN, 0, ())[i] if d is None else d[i]

    @property
    def min(self) -> float:
        return self._d(0)  # type: ignore[return-value]

    @property
    def max(self) -> float:
        return self._d(1)  # type: ignore[return-value]

    @property
    def mean(self) -> float:
        return self._d(2)  # type: ignore[return-value]

    @property
    def std(self) -> float:
        return self._d(3)  # type: ignore[return-value]

    @property
    def zeros(self) -> int:
        return self._d(4)  # type: ignore[return-value]

    @property
    def head(self) -> tuple[float, ...]:
        return self._d(5)  # type: ignore[return-value]

    @property
    def finite(self) -> bool:
        return self.nans == 0 and self.infs == 0

    @property
    def all_zeros(self) -> bool:
        return self.numel > 0 and self.zeros == self.numel

    def line(self) -> str:
        return summary_line(self)

    def values(self) -> tuple[object, ...]:
        """Every statistic, computed now: what two summaries are compared by."""
        self.compute()
        return (self.shape, self.dtype, self.numel, self._sums, self._norm, self._detail)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorSummary):
            return NotImplemented
        return self is other or self.values() == other.values()

    def __hash__(self) -> int:
        return hash((self.shape, self.dtype, self.numel))

    def __repr__(self) -> str:
        return f"TensorSummary({summary_line(self)})"


def _item(t: torch.Tensor) -> float:
    return float(t.item())


def _sums(t: torch.Tensor) -> tuple[float, int, int]:
    total = _item(t.sum())
    if math.isfinite(total):
        # A NaN makes the sum NaN and an Inf makes it ±Inf or NaN, so a finite sum proves
        # there are none: two full passes (isnan, isinf) saved in the common case.
        return total, 0, 0
    return total, int(torch.isnan(t).sum().item()), int(torch.isinf(t).sum().item())


def all_finite(t: torch.Tensor) -> bool:
    """No NaN and no Inf in ``t``, usually in one pass: a finite sum proves it (a sum can
    overflow on finite values, so a non-finite one is checked element by element)."""
    if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
        return True
    if t.is_floating_point() and math.isfinite(_item(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def first_nonfinite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    """The first name whose floating-point tensor holds NaN or Inf, checking all of them with
    one multi-tensor norm (a NaN or Inf makes a norm non-finite; a finite norm proves none)."""
    by_dtype: dict[torch.dtype, list[tuple[str, torch.Tensor]]] = {}
    for name, t in named:
        if t.numel():
            by_dtype.setdefault(t.dtype, []).append((name, t))
    suspects: set[str] = set()
    for group in by_dtype.values():
        norms = torch._foreach_norm([t for _, t in group])
        if not math.isfinite(_item(torch.stack(norms).sum())):
            # Some norm overflowed or is NaN/Inf: look at those one by one.
            suspects.update(n for (n, t), nrm in zip(group, norms) if not math.isfinite(_item(nrm)))
    return next((n for n, t in named if n in suspects and not all_finite(t)), None)


def _detail(
    t: torch.Tensor, nans: int, infs: int
) -> tuple[float, float, float, float, int, tuple[float, ...]]:
    finite = t if nans == 0 and infs == 0 else t[torch.isfinite(t)]
    if finite.numel():
        lo_t, hi_t = torch.aminmax(finite)  # one pass; min and max are exact in any order
        lo, hi = _item(lo_t), _item(hi_t)
        mean = _item(finite.mean())
        std = _item(finite.std()) if finite.numel() > 1 else 0.0
    else:
        lo = hi = mean = std = NAN
    if nans == 0 and infs == 0 and (lo > 0 or hi < 0):
        zeros = 0  # every value is on one side of zero: nothing to count
    else:
        zeros = t.numel() - int(torch.count_nonzero(t).item())  # == (t == 0).sum()
    head = tuple(float(v) for v in t.reshape(-1)[:HEAD].tolist())
    return lo, hi, mean, std, zeros, head


def summarize(tensor: torch.Tensor) -> TensorSummary:
    """A summary of ``tensor``, computed when first read: nothing may write to ``tensor``
    until then (pass a copy of anything that changes)."""
    # The very object, not a detached alias: the history recognises tensors by identity.
    return TensorSummary(tensor, tuple(tensor.shape), tensor.dtype, tensor.numel())


def summarize_made(
    make: Callable[[], torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype
) -> TensorSummary:
    """A summary of the tensor ``make()`` returns, made only if a statistic is read."""
    return TensorSummary(make, shape, dtype, math.prod(shape))


def fmt(x: float) -> str:
    """A short, stable number: 3 significant digits, scientific when tiny or huge."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 1e4 or ax < 1e-3:
        return f"{x:.2e}"
    return f"{x:.3g}"


def shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]" if shape else "[]"


def summary_line(s: TensorSummary) -> str:
    """``tensor[6] x∈[-0.179, 0.184] μ=0.0123 σ=0.13 ‖x‖=0.331`` plus flags."""
    parts = [f"tensor{shape_text(s.shape)}"]
    if s.dtype != "float32":
        parts.append(s.dtype)
    if s.numel == 0:
        parts.append("empty")
        return " ".join(parts)
    if not s.compute().available:
        parts.append(f"({NOT_KEPT})")
        return " ".join(parts)
    if s.all_zeros:
        parts.append("all_zeros")
    else:
        parts.append(f"x∈[{fmt(s.min)}, {fmt(s.max)}]")
        parts.append(f"μ={fmt(s.mean)}")
        if s.numel > 1:
            parts.append(f"σ={fmt(s.std)}")
        parts.append(f"‖x‖={fmt(s.norm)}")
        if s.zeros:
            parts.append(f"zeros={s.zeros}")
    if s.nans:
        parts.append(f"NaN!×{s.nans}")
    if s.infs:
        parts.append(f"Inf!×{s.infs}")
    return " ".join(parts)


def grad_line(s: TensorSummary | None) -> str:
    """The grad column: ``grad=None`` is a fact worth showing, not an empty cell."""
    return "grad=None" if s is None else summary_line(s)
