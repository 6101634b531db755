"""Regime changes of a loss curve: LR step drops, plateaus, level shifts (ruptures).

What it means in training terms: the loss stops following the trend it had — it drops at once
when the learning rate is cut, flattens into a plateau or leaves one, or moves to a new level
(data mixture change, a spike that never came back). Each change is reported with the fitted
level and slope on either side (`details.before` / `details.after`).

How (multi-resolution, so 1M points take well under 2 s while still using ruptures):

1. work on log(loss) when every value is positive (regimes are multiplicative), drop NaN/inf,
   and clip short outliers (a rolling median of 5 points, residuals beyond 5 robust sigmas)
   so that spikes, which the spike detector owns, do not become regimes;
2. block means down to `coarse_points` points; noise sigma = MAD of second differences
   (a trend-free estimate), taken at block scales up to the minimum regime length (the
   long-run sd: real losses wander with the data order), floored at `noise_floor`;
3. candidates: ruptures `Binseg` with a piecewise-*linear* cost (level and slope per segment,
   O(1) per segment from cumulative sums), penalty `penalty * sigma^2 * log(n)`;
4. each candidate must beat a *smooth* explanation of its neighbourhood: two quadratics that
   meet at the breakpoint (level jump and slope change allowed) against one cubic in step or
   in log(step). A clean power-law decay is smooth in log(step), so it is never chopped into
   pieces; a jump or a kink is not smooth, so it survives. The weakest failing candidate is
   dropped and its neighbours re-tested until all pass. The change must also matter:
   max(|level jump|, |slope change| * span) >= `min_change` (log units ~ relative change);
5. each surviving breakpoint is refined at full resolution with ruptures `Binseg`
   (one breakpoint) on the window of a few blocks around it.

Known false positives: the end of LR warm-up (a real kink, usually early), long slow-recovering
spikes (reported as a jump up then a drop back), and cosine-schedule tails on very clean curves.
ruptures is imported inside `detect` (it takes ~1.6 s to import).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameterError
from ..events import Event
from ..frame import Series


def robust_sigma(values: np.ndarray) -> float:
    """1.4826 * median absolute deviation (a normal sd that ignores outliers)."""
    if values.shape[0] == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def noise_sigma(y: np.ndarray) -> float:
    """Point noise of a trending curve: MAD of second differences / sqrt(6)."""
    if y.shape[0] < 4:
        return 0.0
    return robust_sigma(np.diff(y, 2)) / math.sqrt(6.0)


def longrun_sigma(y: np.ndarray, max_block: int) -> float:
    """Noise sigma that accounts for slow wander (data-order effects, correlated noise).

    sqrt(k) * noise of k-point block means, maximised over k = 1, 2, 4, ... <= max_block:
    the long-run sd that changepoint tests with dependent noise need. For white noise every
    k gives the same value; real loss curves wander, so coarser scales give more.
    """
    best, k = noise_sigma(y), 2
    while k <= max_block and y.shape[0] // k >= 32:
        n = y.shape[0] // k * k
        best = max(best, noise_sigma(y[:n].reshape(-1, k).mean(axis=1)) * math.sqrt(k))
        k *= 2
    return best


def finite_xy(series: Series, log: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """Steps and values with NaN/inf dropped; values in log when all are positive."""
    v = np.asarray(series.value, dtype=np.float64)
    ok = np.isfinite(v)
    x = np.asarray(series.step, dtype=np.float64)[ok]
    y = v[ok]
    use_log = bool(log and y.shape[0] and np.all(y > 0))
    return x, (np.log(y) if use_log else y.copy()), use_log


def declip(y: np.ndarray, z: float = 5.0) -> np.ndarray:
    """Pull short outliers (spikes of 1-2 points) back to `z` robust sigmas of a rolling median."""
    if y.shape[0] < 5:
        return y
    from scipy.ndimage import median_filter

    med = median_filter(y, size=5, mode="nearest")
    r = y - med
    s = robust_sigma(r)
    if s <= 0:
        return med
    return med + np.clip(r, -z * s, z * s)


def block_means(x: np.ndarray, y: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Means over consecutive blocks so that at most ~`target` points remain."""
    n = x.shape[0]
    block = max(1, int(math.ceil(n / max(1, target))))
    if block == 1:
        return x, y, 1
    starts = np.arange(0, n, block)
    counts = np.diff(np.r_[starts, n]).astype(np.float64)
    return (np.add.reduceat(x, starts) / counts, np.add.reduceat(y, starts) / counts, block)


@lru_cache(maxsize=1)
def linear_cost_class() -> type:
    """ruptures cost: residual sum of squares of a straight line per segment, O(1) per call.

    The signal is two columns, (x, y); prefix sums make `error(start, end)` constant time,
    which is what lets Binseg run over thousands of points in milliseconds.
    """
    from ruptures.base import BaseCost

    class LinearTrendCost(BaseCost):
        model = "linear_trend"
        min_size = 3

        def fit(self, signal: np.ndarray) -> "LinearTrendCost":
            x = signal[:, 0] - signal[:, 0].mean()
            span = float(np.ptp(x)) or 1.0
            x = x / span
            y = signal[:, 1] - signal[:, 1].mean()
            self.signal = signal
            z = np.zeros(1)
            self._sx = np.r_[z, np.cumsum(x)].tolist()
            self._sy = np.r_[z, np.cumsum(y)].tolist()
            self._sxx = np.r_[z, np.cumsum(x * x)].tolist()
            self._sxy = np.r_[z, np.cumsum(x * y)].tolist()
            self._syy = np.r_[z, np.cumsum(y * y)].tolist()
            return self

        def error(self, start: int, end: int) -> float:
            n = end - start
            if n <= 0:
                return 0.0
            sx = self._sx[end] - self._sx[start]
            sy = self._sy[end] - self._sy[start]
            cyy = self._syy[end] - self._syy[start] - sy * sy / n
            cxx = self._sxx[end] - self._sxx[start] - sx * sx / n
            if cxx <= 1e-15:
                return max(cyy, 0.0)
            cxy = self._sxy[end] - self._sxy[start] - sx * sy / n
            return max(cyy - cxy * cxy / cxx, 0.0)

    return LinearTrendCost


def polyfit_rss(x: np.ndarray, y: np.ndarray, degree: int) -> float:
    """Residual sum of squares of a least-squares polynomial (x normalised for conditioning)."""
    if x.shape[0] <= degree + 1:
        return 0.0
    span = float(np.ptp(x)) or 1.0
    t = (x - x.mean()) / span
    coef = np.polynomial.polynomial.polyfit(t, y, degree)
    r = y - np.polynomial.polynomial.polyval(t, coef)
    return float(r @ r)


def line_fit(x: np.ndarray, y: np.ndarray, at: float) -> tuple[float, float]:
    """(value at `at`, slope per step) of a least-squares line."""
    if x.shape[0] < 2 or np.ptp(x) == 0:
        return float(np.mean(y)), 0.0
    slope, icept = np.polyfit(x - at, y, 1)
    return float(icept), float(slope)


@dataclass(frozen=True)
class ChangepointDetector:
    """Regime changes (level and slope) of a loss curve; see the module docstring."""

    #: BIC-like: a breakpoint must reduce the squared error by penalty * sigma^2 * log(n).
    #: 3 keeps pure noise from splitting (the expected gain of a spurious split is ~2 log n).
    penalty: float = 3.0
    #: shortest regime, in steps; 0 = 2% of the series' step span (a regime shorter than that
    #: is a spike or a blip, which other detectors report).
    min_size: int = 0
    #: smallest change worth reporting: |level jump| or |slope change| x span, in log units
    #: (~ relative change; 0.02 = 2% of the loss), so statistically clear but tiny bends of
    #: a very clean, very long curve are not reported.
    min_change: float = 0.02
    #: lower bound on the noise sigma (log units): logged losses are rounded to ~4 digits.
    noise_floor: float = 0.002
    #: resolution of the coarse search; ~2000 keeps ruptures in milliseconds.
    coarse_points: int = 2000
    #: fewer finite points than this → no events (no regime can be told apart from noise).
    min_points: int = 20
    #: most changepoints reported per series (the strongest kept).
    max_changepoints: int = 20

    scope: ClassVar[str] = "series"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss")
    causal: ClassVar[bool] = False

    def validate(self) -> None:
        _check(self.penalty > 0, "penalty", self.penalty, "> 0")
        _check(self.min_size >= 0, "min_size", self.min_size, ">= 0 (0 = automatic)")
        _check(self.min_change >= 0, "min_change", self.min_change, ">= 0")
        _check(self.noise_floor > 0, "noise_floor", self.noise_floor, "> 0")
        _check(self.coarse_points >= 50, "coarse_points", self.coarse_points, ">= 50")
        _check(self.min_points >= 10, "min_points", self.min_points, ">= 10")
        _check(self.max_changepoints >= 1, "max_changepoints", self.max_changepoints, ">= 1")

    def detect(self, series: Series) -> list[Event]:
        """Changepoints of one series, sorted by step."""
        self.validate()
        x, y, use_log = finite_xy(series)
        if x.shape[0] < self.min_points or np.ptp(y) == 0 or np.ptp(x) == 0:
            return []
        y = declip(y)
        xc, yc, block = block_means(x, y, self.coarse_points)
        min_steps = self.min_size or 0.02 * float(np.ptp(x))
        dx = float(np.median(np.diff(xc)))
        ms = max(5, int(math.ceil(min_steps / dx)) if dx > 0 else 5)
        sigma = max(longrun_sigma(yc, ms), self.noise_floor)
        if xc.shape[0] < 2 * ms + 1:
            return []
        bkps = _candidates(xc, yc, ms, self.penalty * sigma**2 * math.log(xc.shape[0]))
        bkps = _prune(xc, yc, bkps, ms, sigma, self.penalty, self.min_change)
        bkps = sorted(sorted(bkps, key=lambda b: -b[1])[: self.max_changepoints])
        return [self._event(series, x, y, xc, yc, block, ms, b, bkps, use_log)
                for b in bkps]

    def _event(self, series: Series, x: np.ndarray, y: np.ndarray, xc: np.ndarray,
               yc: np.ndarray, block: int, ms: int, bkp: tuple[int, float],
               all_bkps: list[tuple[int, float]], use_log: bool) -> Event:
        b = bkp[0]
        idx = [k for k, _ in all_bkps]
        i = idx.index(b)
        lo = max(idx[i - 1] if i else 0, b - 4 * ms)
        hi = min(idx[i + 1] if i + 1 < len(idx) else xc.shape[0], b + 4 * ms)
        fine = _refine(x, y, b, block) if block > 1 else b
        at = float(x[fine])
        before = line_fit(xc[lo:b], yc[lo:b], at)
        after = line_fit(xc[b:hi], yc[b:hi], at)
        span = min(at - xc[lo], xc[hi - 1] - at)
        details = _describe(before, after, span, use_log)
        details["gain_sigma2"] = round(bkp[1], 1)
        return Event(kind="changepoint", run=series.run, tag=series.tag, start_step=int(at),
                     severity="info", magnitude=details["jump"], details=details)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InvalidParameterError(
            f"ChangepointDetector.{name} = {value!r} is out of range; allowed: {allowed}")


def _candidates(xc: np.ndarray, yc: np.ndarray, ms: int, pen: float) -> list[int]:
    import ruptures as rpt

    algo = rpt.Binseg(custom_cost=linear_cost_class()(), min_size=ms, jump=1)
    return algo.fit(np.column_stack([xc, yc])).predict(pen=pen)[:-1]


def smooth_axes(xc: np.ndarray) -> list[np.ndarray]:
    """Time axes on which a smooth training curve is close to a low-order polynomial.

    The step itself, and log(step + c) for a few offsets c: a power law (1 + t/t0)^-k is a
    straight line in log(t + t0), and t0 is unknown (from a few steps to ~10% of the run).
    """
    xa = xc - min(float(xc.min()), 0.0)
    top = float(xa.max()) or 1.0
    first = float(np.median(np.diff(xa))) if xa.shape[0] > 1 else 1.0
    offsets = (max(first, 1.0), 0.01 * top, 0.1 * top)
    return [xc] + [np.log(xa + c) for c in offsets if c > 0]


def _smooth_gain(axes: list[np.ndarray], yc: np.ndarray, lo: int, b: int, hi: int) -> float:
    """How much better two quadratics meeting at b fit [lo, hi) than one smooth cubic."""
    xc = axes[0]
    pieces = polyfit_rss(xc[lo:b], yc[lo:b], 2) + polyfit_rss(xc[b:hi], yc[b:hi], 2)
    smooth = min(polyfit_rss(u[lo:hi], yc[lo:hi], 3) for u in axes)
    return smooth - pieces


def _effect(xc: np.ndarray, yc: np.ndarray, lo: int, b: int, hi: int) -> float:
    at = float(xc[b])
    lv, ls = line_fit(xc[lo:b], yc[lo:b], at)
    rv, rs = line_fit(xc[b:hi], yc[b:hi], at)
    span = min(at - xc[lo], xc[hi - 1] - at)
    return max(abs(rv - lv), abs(rs - ls) * span)


def _prune(xc: np.ndarray, yc: np.ndarray, cands: list[int], ms: int, sigma: float,
           penalty: float, min_change: float) -> list[tuple[int, float]]:
    """Drop candidates a smooth curve explains (weakest first); (index, gain / sigma^2)."""
    axes = smooth_axes(xc)
    need = penalty * math.log(xc.shape[0])
    window = max(4 * ms, xc.shape[0] // 8)
    bkps = sorted(cands)
    while bkps:
        scores = []
        for i, b in enumerate(bkps):
            lo = max(bkps[i - 1] if i else 0, b - window)
            hi = min(bkps[i + 1] if i + 1 < len(bkps) else xc.shape[0], b + window)
            gain = _smooth_gain(axes, yc, lo, b, hi) / sigma**2
            ok = gain >= need and _effect(xc, yc, lo, b, hi) >= min_change
            scores.append((ok, gain, b))
        failing = [s for s in scores if not s[0]]
        if not failing:
            return [(b, g) for _, g, b in scores]
        bkps.remove(min(failing, key=lambda s: s[1])[2])
    return []


def _refine(x: np.ndarray, y: np.ndarray, b: int, block: int) -> int:
    """Full-resolution index of the breakpoint near coarse index b (ruptures, one break)."""
    import ruptures as rpt

    lo = max(0, (b - 2) * block)
    hi = min(x.shape[0], (b + 2) * block)
    if hi - lo < 8:
        return min(b * block, x.shape[0] - 1)
    algo = rpt.Binseg(custom_cost=linear_cost_class()(), min_size=max(3, block // 4), jump=1)
    try:
        found = algo.fit(np.column_stack([x[lo:hi], y[lo:hi]])).predict(n_bkps=1)[0]
    except Exception:  # ruptures refuses windows too short for min_size: keep the coarse one
        return min(b * block, x.shape[0] - 1)
    return lo + int(found)


def _describe(before: tuple[float, float], after: tuple[float, float], span: float,
              use_log: bool) -> dict[str, Any]:
    """Level and slope (per 1k steps, in the series' units) on each side, and the pattern."""
    def side(level: float, slope: float) -> dict[str, float]:
        value = math.exp(level) if use_log else level
        per_k = slope * 1000.0 * (value if use_log else 1.0)
        return {"level": round(value, 6), "slope": round(per_k, 6)}

    jump = after[0] - before[0]
    rel = math.expm1(jump) if use_log else jump / (abs(before[0]) or 1.0)
    dslope = (after[1] - before[1]) * span
    if abs(jump) >= abs(dslope):
        pattern = "level_drop" if jump < 0 else "level_jump"
    elif abs(after[1]) * span < 0.25 * abs(dslope):
        pattern = "plateau_start"
    elif abs(before[1]) * span < 0.25 * abs(dslope):
        pattern = "plateau_end"
    else:
        pattern = "slope_change"
    return {"before": side(*before), "after": side(*after), "pattern": pattern,
            "jump": round(rel, 6), "log_scale": use_log}
