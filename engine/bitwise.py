"""Bit-for-bit tensor equality: what "exact" means everywhere nntui says it.

``torch.equal`` compares values, so ``-0.0 == +0.0`` passes and ``NaN != NaN`` fails: wrong in
both directions for "the same bits". Comparing the raw integer view is exact.
"""

from __future__ import annotations

import torch

_INT_OF_SIZE = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def bit_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when ``a`` and ``b`` have the same shape, dtype and bits."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        if a.is_complex():
            a, b = torch.view_as_real(a), torch.view_as_real(b)
        as_int = _INT_OF_SIZE[a.element_size()]
        return torch.equal(
            a.detach().contiguous().view(as_int), b.detach().contiguous().view(as_int)
        )
    return torch.equal(a, b)
