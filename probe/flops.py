"""Measured floating-point work, so records can state what a result cost (none of the anchors do).

:func:`counted` runs a function under torch's FLOP counter (it counts the matmuls and convolutions
that dominate; elementwise work is left out, as in the papers' FLOP figures) and returns its result
with the count. Work done outside torch (scikit-learn's TF-IDF) counts as unknown, not zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def counted(fn: Callable[[], T]) -> tuple[T, float | None]:
    """``(fn(), FLOPs)``; None when nothing torch could count ran."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = fn()
    total = float(counter.get_total_flops())
    return out, (total if total > 0 else None)


def scaled(per_unit: float | None, units: int | float) -> float | None:
    return None if per_unit is None else float(per_unit * units)


def describe(flops: Any) -> str:
    """``3.2 GFLOP`` style text for terminals and pages."""
    if flops is None:
        return "-"
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= size:
            return f"{flops / size:.1f} {unit}"
    return f"{flops:.0f} FLOP"
