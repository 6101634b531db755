"""Robust statistics for replay measurements (numpy only, no torch).

Robust z-score: (x - median) / (1.4826 * MAD) of a reference set, with the scale floored so
that a reference of identical values (a tiny deterministic model, a print resolution) does
not turn a hair's difference into z = inf.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

MAD_TO_SIGMA = 1.4826


def finite(values: Iterable[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values], dtype=float)
    return a[np.isfinite(a)]


def level_and_scale(reference: Sequence[float], rel_floor: float = 0.02,
                    abs_floor: float = 1e-12) -> tuple[float, float]:
    """Median and robust scale of `reference` (NaN, NaN when it has no finite value)."""
    ref = finite(reference)
    if ref.size == 0:
        return math.nan, math.nan
    level = float(np.median(ref))
    mad = float(np.median(np.abs(ref - level))) * MAD_TO_SIGMA
    return level, max(mad, rel_floor * abs(level), abs_floor)


def robust_z(values: Sequence[float], reference: Sequence[float],
             rel_floor: float = 0.02) -> np.ndarray:
    """z of each value against the reference; NaN where the value is NaN, ±inf kept."""
    level, scale = level_and_scale(reference, rel_floor)
    v = np.asarray([float(x) for x in values], dtype=float)
    if not math.isfinite(level):
        return np.full(v.shape, math.nan)
    with np.errstate(invalid="ignore"):
        return (v - level) / scale


def median_or_nan(values: Iterable[float]) -> float:
    a = finite(values)
    return float(np.median(a)) if a.size else math.nan


def max_or_nan(values: Iterable[float]) -> float:
    a = finite(values)
    return float(a.max()) if a.size else math.nan
