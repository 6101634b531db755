"""A lone point judged against both of its neighbours (the spike statistic's two-sided test).

The trailing statistic (spike_stats.baseline) predicts a point from the points before it: the
previous point, or a lag-corrected median. Where a loss is logged every few hundred steps, it
falls a lot between two points and the fall bends: the median lags by a varying amount, and
the previous point errs by the noise of two points plus the fall since. A one-point spike of
8 noise scales then reads as 4-6 of the statistic's scales, under its threshold.

A lone large excursion (over TAIL_Z trailing scales, the next point back within them) is a
spike that the spike statistic already judges only once the next point has come (spike.py:
the lone-point rules). With that point at hand, the
mean of the two neighbours predicts the point with no lag (a straight fall cancels out) and
errs by sqrt(1.5) point noises instead of sqrt(2). Its bias (where the fall bends) and scale
come from the same statistic, the point minus the mean of its neighbours, over the `window`
points before (each with both of its neighbours before the point judged): the median and
1.4826 x the median absolute deviation, floored as the trailing scale is (the print
resolution, and the additive noise over the level: spike_stats.ADDITIVE_FLOOR). The point is
flagged when it rises above that by the threshold in units of that scale (small-sample-raised
by its own count), and by `min_ratio` over the trailing level as before. Where this scale is
no smaller than the trailing one, or once it rests on a full `window` of residuals (a long
run: SHORT_ONLY), the trailing verdict stands alone (the better predictor judges, as in
`baseline`). Log space only (positive losses: spike.py).
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .spike_stats import ADDITIVE_FLOOR, MAD_TO_SIGMA

#: At least this many earlier two-sided residuals before the test judges anything.
MIN_COUNT = 8
#: The two-sided test judges only while it rests on fewer than the trailing statistic's
#: `window` residuals: the remedy of a short run (a sparse log of 40-160 points, whose trailing
#: threshold is still small-sample-raised and whose heavy-tail evidence is thin). In a long run
#: the trailing verdict stands alone: the two-sided one is the looser on heavy-tailed noise (a
#: t(5) excursion of x1.21 at point 210 of a 2154-point run read 7.1 two-sided scales, 5.5
#: trailing ones: a false spike).
SHORT_ONLY = True


def _windows(x: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """Rows x[e - width:e] for each e of `ends` (NaN before x[0])."""
    pad = np.r_[np.full(width, np.nan), x]
    return np.lib.stride_tricks.sliding_window_view(pad, width)[ends]


def _median(rows: np.ndarray) -> np.ndarray:
    """The median of each row, NaN left out (NaN where a row has none)."""
    full = np.isfinite(rows).all(axis=1)
    out = np.empty(rows.shape[0])
    if full.any():
        out[full] = np.median(rows[full], axis=1)
    if not full.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # (all-NaN rows: masked spikes)
            out[~full] = np.nanmedian(rows[~full], axis=1)
    return out


def two_sided(y: np.ndarray, idx: np.ndarray, window: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the points `idx` of the log values `y` (NaN: left out), each with a point after
    it: the expected value from both neighbours (their mean plus the median residual of the
    `window` points before), the scale (1.4826 x their MAD, not yet floored: `floor`) and
    how many residuals it rests on (NaN / 0 where fewer than MIN_COUNT)."""
    r = np.full(y.shape[0], np.nan)
    r[1:-1] = y[1:-1] - (y[:-2] + y[2:]) / 2
    past = _windows(r, idx - 1, window)  # residuals whose neighbours all lie before the point
    cnt = np.isfinite(past).sum(axis=1)
    ok = cnt >= MIN_COUNT
    lv, sc = np.full(idx.shape[0], np.nan), np.full(idx.shape[0], np.nan)
    if ok.any():
        past = past[ok]
        med = _median(past)
        at = idx[ok]
        lv[ok] = (y[at - 1] + y[at + 1]) / 2 + med
        sc[ok] = MAD_TO_SIGMA * _median(np.abs(past - med[:, None]))
    return lv, sc, np.where(ok, cnt, 0)


def floor(y: np.ndarray, idx: np.ndarray, level: np.ndarray, window: int,
          level_window: int) -> np.ndarray:
    """The trailing scale's floors for the points `idx` of the log values `y` at log level
    `level`: the print resolution (the smallest change of the `window` values before) and
    ADDITIVE_FLOOR x the additive noise over the level, here from the values less the mean
    of their neighbours (2 x `level_window` + 1 of them before the point: a fall between
    sparse points is no noise)."""
    with np.errstate(invalid="ignore", over="ignore"):
        v = np.exp(y)
        dv = np.abs(np.diff(v))  # dv[j]: v[j + 1] - v[j]
        steps = _windows(dv, idx - 1, window)  # the changes up to the point before
        quantum = np.min(np.where(steps > 0, steps, np.inf), axis=1)
        quantum[~np.isfinite(quantum)] = 0.0
        rv = np.full(v.shape[0], np.nan)
        rv[1:-1] = v[1:-1] - (v[:-2] + v[2:]) / 2
        near = _windows(rv, idx - 1, 2 * level_window + 1)
        noise = MAD_TO_SIGMA / np.sqrt(1.5) * _median(np.abs(near - _median(near)[:, None]))
        return np.fmax(quantum, ADDITIVE_FLOOR * noise) / np.exp(level)


def lone_flags(y: np.ndarray, start: int, level: np.ndarray, scale: np.ndarray,
               thr: np.ndarray, window: int, level_window: int, big_z: float,
               small: float) -> np.ndarray:
    """Per point start.. of the log values `y` (`level`, `scale`: their trailing statistic;
    `thr`: their threshold before the small-sample raise): whether it is a lone large
    excursion (over `big_z` trailing scales, the next point not) that the two-sided test
    flags, where its scale is under the trailing one (threshold x (1 + `small` / count))."""
    m = level.shape[0]
    out = np.zeros(m, bool)
    a, b = max(start, 1), min(start + m, y.shape[0] - 1)  # points with both neighbours
    if b <= a:
        return out
    with np.errstate(invalid="ignore", divide="ignore"):
        lv, sc = level[a - start:b - start], scale[a - start:b - start]
        keep = (y[a:b] - lv > big_z * sc) & (y[a + 1:b + 1] - lv <= big_z * sc)
    cand = a - start + np.flatnonzero(keep)
    idx = start + cand
    if not cand.shape[0]:
        return out
    lv, sc, cnt = two_sided(y, idx, window)
    short = cnt < window if SHORT_ONLY else np.ones(cnt.shape[0], bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = thr[cand] * (1 + small / np.maximum(cnt, 1))
        hit = (sc < scale[cand]) & short & (y[idx] - lv > t * sc)
        if hit.any():  # (floored only where it matters: the floors' windows cost)
            h = np.flatnonzero(hit)
            sc[h] = np.fmax(sc[h], floor(y, idx[h], lv[h], window, level_window))
            hit[h] = (sc[h] < scale[cand[h]]) & short[h] & (y[idx[h]] - lv[h] > t[h] * sc[h])
    out[cand] = hit
    return out


def lone_dips(base: Any, v: np.ndarray, hi: int, tail_z: float) -> np.ndarray:
    """Lone dips of the first `hi` points of an additive baseline `base` (`tail_z` scales
    under the level, neighbours not, at a value <= 0): a loss changing sign (RL, policy
    losses) is as heavy-tailed below its level as above, so they are tail evidence for a
    lone point too (a positive loss never dips so; log space: none)."""
    if base.log:
        return np.zeros(hi, bool)
    with np.errstate(invalid="ignore"):
        dn = (base.y[:hi] - base.level[:hi]) / base.scale[:hi] < -tail_z
    lone = dn & (v[:hi] <= 0)
    lone[1:] &= ~dn[:-1]
    lone[:-1] &= ~dn[1:]
    return lone
