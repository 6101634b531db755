"""Regime changes of a loss curve: LR step drops, plateaus, level shifts (ruptures).

What it means in training terms: the loss leaves the trend it had — it drops at once when the
learning rate is cut, stops falling (a plateau or a stall) and later falls again, or moves to
a new level (a data mixture change, a spike that never came back). Each change is reported
with the level and slope fitted on either side (`details.before` / `details.after`, slope per
1k steps in loss units), `details.pattern` (level_drop, level_jump, plateau_start,
plateau_end, slope_change) and `magnitude` = the relative level change at the step.

The normal curve is not a regime change. Its log is smooth and convex (the log of a power law
slows down and never speeds up), so a candidate stays only with evidence a smooth convex curve
cannot give: a level step on top of a smooth local trend, a descent that speeds up, or a
descent that stops into a flat stretch. A clean power-law decay is never chopped into pieces.

How (multi-resolution: 1M points in ~0.3 s after the import, still using ruptures):

1. log(loss) when every value is positive (regimes are multiplicative); NaN/inf dropped;
   outliers of 1-2 points clipped to 5 robust sigmas of a rolling median, so spikes (the
   spike detector's) do not become regimes;
2. block means down to `coarse_points`; noise sigma = MAD of second differences (trend-free)
   of block means up to the minimum regime length (the long-run sd: real losses wander with
   the data order), floored at `noise_floor`;
3. candidates: ruptures `Pelt` with a piecewise-linear cost (level and slope per segment, O(1)
   per call from prefix sums), penalty `penalty * sigma^2 * log(n)`, every ~n/400 points;
4. each candidate is judged on its neighbourhood (`judge`): the level step (a quadratic trend
   plus a step, fitted together), the change of slope (lines either side) and abruptness (two
   quadratics against one smooth quartic, on the time axis — step or log(step + c) — where the
   quartic fits best). z = sqrt(penalty * log n). The weakest failing candidate is dropped and
   its neighbours judged again until all pass; the change must also matter: max(|level step|,
   |slope change| x span) >= `min_change` (log units ~ relative change);
5. jumps are refined at full resolution with ruptures `Binseg` (one breakpoint) on the blocks
   around them; kinks move to the best corner of a continuous two-line fit.

Roles: training and validation losses. LR series are not analysed: a schedule is noise-free,
so every bend of a cosine would be "significant", and the schedule is known anyway (the
sudden_drop detector reads it to flag drops that an LR step explains).

Changes in the first `skip_start` (5%) of the run are not reported: the end of LR warm-up and
of the first rapid descent is a sharp bend in nearly every run. Known false positives: long
slow-recovering spikes (a jump up, then a drop back) and a loss that is not a loss (a metric
that legitimately speeds up). Corners between two slopes (plateaus) localise to a few % of
the run at 2-5% noise. ruptures is imported inside `detect` (it takes ~1.6 s to import).
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
from .params import validate_once


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

    sqrt(k) * noise of k-point block means, for k = 1, 2, 4, ... <= max_block: the long-run
    sd that changepoint tests with dependent noise need. For white noise every k gives the
    same value; real loss curves wander, so coarser scales give more. An estimate from m
    block means is uncertain by ~1.3 / sqrt(m) (MAD of second differences), so each coarse
    scale is discounted by twice that before taking the largest: white noise is not
    inflated by the luck of its noisiest scale.
    """
    best, k = noise_sigma(y), 2
    while k <= max_block and y.shape[0] // k >= 32:
        m = y.shape[0] // k
        est = noise_sigma(y[: m * k].reshape(-1, k).mean(axis=1)) * math.sqrt(k)
        best = max(best, est / (1.0 + 2.6 / math.sqrt(m)))
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
    from .filters import median_filter

    med = median_filter(y, size=5)
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
    which is what lets Pelt and Binseg run over thousands of points in milliseconds.
    """
    class LinearTrendCost:
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

    #: BIC-like: a candidate must reduce the squared error by penalty * sigma^2 * log(n), and
    #: the evidence for a change must reach z = sqrt(penalty * log(n)) sigmas (4.8 at n=2000).
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
    #: share of the step span at the start where changes are not reported: LR warm-up and
    #: the first rapid descent end in a sharp bend in nearly every run (not a regime change).
    skip_start: float = 0.05

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
        _check(0 <= self.skip_start < 1, "skip_start", self.skip_start, "[0, 1)")

    def detect(self, series: Series) -> list[Event]:
        """Changepoints of one series, sorted by step."""
        validate_once(self)
        x, y, use_log = finite_xy(series)
        if x.shape[0] < self.min_points or np.ptp(y) == 0 or np.ptp(x) == 0:
            return []
        y = declip(y)
        with np.errstate(over="ignore"):
            overflow = not np.isfinite(np.dot(y, y))
        if overflow:
            # |y| near float64's limit (1e154 and up, signs mixed so not in log units): the
            # least-squares costs overflow to inf - inf = NaN and no segmentation is defined.
            # Such a series gets no changepoint; the other detectors still read it.
            return []
        xc, yc, block = block_means(x, y, self.coarse_points)
        min_steps = self.min_size or 0.02 * float(np.ptp(x))
        dx = float(np.median(np.diff(xc)))
        ms = max(5, int(math.ceil(min_steps / dx)) if dx > 0 else 5)
        sigma = max(longrun_sigma(yc, ms), self.noise_floor)
        if xc.shape[0] < 2 * ms + 1:
            return []
        bkps = _candidates(xc, yc, ms, self.penalty * sigma**2 * math.log(xc.shape[0]))
        found = _prune(xc, yc, bkps, ms, sigma, self.penalty, self.min_change)
        found = sorted(sorted(found, key=lambda b: -b[1])[: self.max_changepoints])
        found = _relocate(xc, yc, found, ms)
        idx = [b for b, _, _ in found]
        events = [self._event(series, x, y, xc, yc, block, ms, i, found[i], idx, use_log)
                  for i in range(len(found))]
        first = float(x[0]) + self.skip_start * float(np.ptp(x))
        return [e for e in events if e.start_step >= first]

    def _event(self, series: Series, x: np.ndarray, y: np.ndarray, xc: np.ndarray,
               yc: np.ndarray, block: int, ms: int, i: int, bkp: tuple[int, float, bool],
               idx: list[int], use_log: bool) -> Event:
        b, strength, is_jump = bkp
        lo = max(idx[i - 1] if i else 0, b - 4 * ms)
        hi = min(idx[i + 1] if i + 1 < len(idx) else xc.shape[0], b + 4 * ms)
        # jumps are sharp: refine them at full resolution, within the blocks around them
        center = min(b * block, len(x) - 1)
        fine = _refine(x, y, center, center - 2 * block, center + 2 * block) \
            if is_jump and block > 1 else center
        at = float(x[fine])
        before = line_fit(xc[lo:b], yc[lo:b], at)
        after = line_fit(xc[b:hi], yc[b:hi], at)
        span = min(at - xc[lo], xc[hi - 1] - at)
        details = _describe(before, after, span, use_log)
        details["strength"] = round(strength, 2)  # evidence / its threshold (>= 1)
        return Event(kind="changepoint", run=series.run, tag=series.tag, start_step=int(at),
                     severity="info", magnitude=details["jump"], details=details)


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InvalidParameterError(
            f"ChangepointDetector.{name} = {value!r} is out of range; allowed: {allowed}")


def pelt_jump(xc: np.ndarray) -> int:
    """Pelt considers a breakpoint every this many coarse points (~400 positions)."""
    return max(1, xc.shape[0] // 400)


def _candidates(xc: np.ndarray, yc: np.ndarray, ms: int, pen: float) -> list[int]:
    from .filters import BadSegmentationParameters, pelt

    # exact (Pelt) rather than greedy: greedy splits misplace gentle corners. Pelt's
    # admissible set grows with the segment length, so candidates are taken every `jump`
    # points (~400 positions, ~0.1 s); `judge`, `_relocate` and `_refine` sharpen them.
    jump = pelt_jump(xc)
    cost = linear_cost_class()().fit(np.column_stack([xc, yc]))
    try:
        return pelt(cost, xc.shape[0], pen, min_size=max(ms, jump), jump=jump)[:-1]
    except BadSegmentationParameters:  # too short for two regimes
        return []


def smooth_axes(xc: np.ndarray) -> list[np.ndarray]:
    """Time axes on which a smooth training curve is close to a low-order polynomial.

    The step itself, and log(step + c) for a few offsets c: a power law (1 + t/t0)^-k is a
    straight line in log(t + t0), and t0 is unknown (from a few steps to ~10% of the run).
    """
    xa = xc - min(float(xc.min()), 0.0)
    top = float(xa.max()) or 1.0
    first = float(np.median(np.diff(xa))) if xa.shape[0] > 1 else 1.0
    offsets = (max(first, 1.0), 0.002 * top, 0.01 * top, 0.03 * top, 0.1 * top)
    return [xc] + [np.log(xa + c) for c in offsets if c > 0]


def slope_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and its standard error / sigma."""
    sxx = float(((x - x.mean()) ** 2).sum())
    if sxx <= 0:
        return 0.0, float("inf")
    return float(((x - x.mean()) * (y - y.mean())).sum() / sxx), 1.0 / math.sqrt(sxx)


@dataclass(frozen=True)
class Judgement:
    """The evidence that a candidate breakpoint is a regime change (all in sigma units)."""

    abrupt: float  # (rss of one smooth quartic - rss of two quadratics) / sigma^2
    jump: float  # level step on top of a local quadratic trend, log units
    jump_z: float
    slope_before: float  # line slopes per step either side
    slope_after: float
    steepen_z: float  # (slope before - slope after) / se: > 0 when the descent speeds up
    span: float  # steps: the shorter side of the window
    window: tuple[int, int]
    jump_at: int  # where the level step fits best (within ms points of the candidate)

    @property
    def effect(self) -> float:
        return max(abs(self.jump), abs(self.slope_after - self.slope_before) * self.span)


def step_scan(u: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, ...]:
    """A polynomial trend plus a step at index k, fitted together, for every k at once.

    Returns (step, standard error / sigma, rss) per k (k = 0 gives no step: se = inf). The
    trend is shared by both sides, so the step is tight. With Q an orthonormal basis of the
    trend, the step's column is 1[i >= k] minus its projection, whose products with the
    residual y_r and with itself are tail sums: O(n) for all k.
    """
    span = float(np.ptp(u)) or 1.0
    q, _ = np.linalg.qr(np.vander((u - u.mean()) / span, degree + 1))
    yr = y - q @ (q.T @ y)
    tail_q = np.cumsum(q[::-1], axis=0)[::-1]  # row k: Q^T 1[i >= k]
    tail_y = np.cumsum(yr[::-1])[::-1]
    n = u.shape[0]
    ss = (n - np.arange(n)) - np.einsum("ij,ij->i", tail_q, tail_q)
    ok = ss > 1e-9
    safe = np.where(ok, ss, 1.0)
    step = np.where(ok, tail_y / safe, 0.0)
    se = np.where(ok, 1.0 / np.sqrt(safe), np.inf)
    rss = float(yr @ yr) - step**2 * np.where(ok, ss, 0.0)
    return step, se, rss


def judge(axes: list[np.ndarray], yc: np.ndarray, lo: int, b: int, hi: int,
          sigma: float, near: int, ms: int) -> Judgement:
    """Evidence for a break at b over [lo, hi), on the axis where a smooth curve fits best.

    The level step is judged within `near` points of b only (a quadratic trend is a fair
    local model of any training curve, not of a whole run's first descent).
    """
    xc = axes[0]
    fits = [(polyfit_rss(u[lo:hi], yc[lo:hi], SMOOTH_DEG), u) for u in axes]
    smooth, u = min(fits, key=lambda f: f[0])
    pieces = polyfit_rss(u[lo:b], yc[lo:b], 2) + polyfit_rss(u[b:hi], yc[b:hi], 2)
    a0, a1 = max(lo, b - near), min(hi, b + near)
    steps, se, rss = step_scan(u[a0:a1], yc[a0:a1], STEP_DEG)
    # the step may sit anywhere within ms points of the candidate (Pelt quantises, and cuts
    # a fast drop into a short segment of its own whose ends are the candidates)
    k0, k1 = max(3, b - ms - a0), min(a1 - a0 - 3, b + ms + 1 - a0)
    if k1 <= k0:
        k0, k1 = b - a0, b - a0 + 1
    k = k0 + int(np.argmax(np.abs(steps[k0:k1]) / se[k0:k1]))
    jump, jse = float(steps[k]), float(se[k])
    if rss[k] >= polyfit_rss(u[a0:a1], yc[a0:a1], SMOOTH_DEG):
        jump = 0.0  # a smooth curve fits as well: the "step" was the trend's bend
    ls, lsse = slope_fit(xc[lo:b], yc[lo:b])
    rs, rsse = slope_fit(xc[b:hi], yc[b:hi])
    return Judgement(
        abrupt=(smooth - pieces) / sigma**2, jump=jump, jump_z=abs(jump) / (sigma * jse),
        slope_before=ls, slope_after=rs,
        steepen_z=(ls - rs) / (sigma * math.hypot(lsse, rsse)),
        span=float(min(xc[b] - xc[lo], xc[hi - 1] - xc[b])), window=(lo, hi), jump_at=a0 + k)


#: each side of a candidate is judged over at most n / WINDOW_DIV points (and 4 * ms).
WINDOW_DIV = 4
#: the smooth alternative: a quartic on the best time axis (a cubic misses the knee of a
#: power law seen over a quarter of the run; a quintic starts to follow noise).
SMOOTH_DEG = 4
#: the trend under a level step: a quadratic, over `_near` points each side.
STEP_DEG = 2


def _near(ms: int, n: int) -> int:
    """Points each side over which a level step is judged: local, but never too few."""
    return max(4 * ms, n // 8, 100)


def _prune(xc: np.ndarray, yc: np.ndarray, cands: list[int], ms: int, sigma: float,
           penalty: float, min_change: float) -> list[tuple[int, float, bool]]:
    """Drop candidates a normal training curve explains, weakest first.

    A normal loss curve (the log of a power law) is smooth, convex and only ever slows down.
    A candidate stays when its change matters (`Judgement.effect` >= min_change) and it is
    (b) a level jump of z sigmas on top of a smooth trend, or (c) the descent speeds up by
    z sigmas, or (d) the descent stops (slows to under a third, z sigmas) into a flat stretch
    that ends in (c) (a plateau) or, abruptly (two quadratics beat one smooth quartic by
    z^2 sigma^2), stays flat to the next change or the end (a stall).
    z = sqrt(penalty * log(n)). A bend that only slows the descent, however sharp, is how
    every run leaves its first descent and is not reported. Of two changes closer than
    2 * ms points the weaker goes (the end of an LR drop's transient is not a regime).
    Returns (index, strength, is_jump): strength = the best evidence in units of its
    threshold; is_jump when the level step is significant (else it is a kink); a jump's
    index is where its step fits best.
    """
    axes = smooth_axes(xc)
    z = math.sqrt(penalty * math.log(xc.shape[0]))
    window = max(4 * ms, xc.shape[0] // WINDOW_DIV)
    bkps = sorted(cands)
    while bkps:
        js = []
        for i, b in enumerate(bkps):
            lo = max(bkps[i - 1] if i else 0, b - window)
            hi = min(bkps[i + 1] if i + 1 < len(bkps) else xc.shape[0], b + window)
            js.append(judge(axes, yc, lo, b, hi, sigma, _near(ms, xc.shape[0]), ms))
        strength = [max(j.jump_z / z if abs(j.jump) >= min_change else 0.0, j.steepen_z / z)
                    for j in js]
        ok = [st >= 1 and j.effect >= min_change for st, j in zip(strength, js)]
        for i, (b, j) in enumerate(zip(bkps, js)):  # (d) plateau starts and stalls
            nxt = bkps[i + 1] if i + 1 < len(bkps) else xc.shape[0]
            ends = i + 1 < len(bkps) and ok[i + 1] and js[i + 1].steepen_z >= z
            # a stall (flat to the next change or the end) must also be abrupt: every run
            # flattens gradually towards its end
            flat = (abs(j.slope_after) * float(xc[nxt - 1] - xc[b]) < min_change
                    and j.abrupt >= z * z)
            if not ok[i] and j.effect >= min_change and (ends or flat) and _stops(j, z):
                ok[i], strength[i] = True, max(-j.steepen_z / z, 1.0)
        for i in range(len(bkps) - 1):  # transients: keep the stronger of two close changes
            if ok[i] and ok[i + 1] and bkps[i + 1] - bkps[i] < 2 * ms:
                ok[i if strength[i] < strength[i + 1] else i + 1] = False
        failing = [(strength[i], b) for i, b in enumerate(bkps) if not ok[i]]
        if not failing:
            jumps = [j.jump_z >= z and abs(j.jump) >= min_change for j in js]
            return [(j.jump_at if is_jump else b, st, is_jump)
                    for b, st, j, is_jump in zip(bkps, strength, js, jumps)]
        bkps.remove(min(failing)[1])
    return []


def _stops(j: Judgement, z: float) -> bool:
    """The descent stops: steep before, under a third of that after, significantly so."""
    return j.slope_before < 0 and abs(j.slope_after) < abs(j.slope_before) / 3 \
        and -j.steepen_z >= z


def _relocate(xc: np.ndarray, yc: np.ndarray, found: list[tuple[int, float, bool]],
              ms: int) -> list[tuple[int, float, bool]]:
    """Move each kink (a change of slope without a jump) to the corner of the best
    continuous two-line fit within ms points: Pelt's segments may jump, which blurs a
    corner, and its positions are quantised. (Jumps were placed by `judge`.)"""
    out = []
    idx = [b for b, _, _ in found]
    for i, (b, strength, is_jump) in enumerate(found):
        if not is_jump:
            lo = max(idx[i - 1] if i else 0, b - 4 * ms)
            hi = min(idx[i + 1] if i + 1 < len(idx) else xc.shape[0], b + 4 * ms)
            b = _best_corner(xc[lo:hi], yc[lo:hi], b - lo, ms) + lo
        out.append((b, strength, is_jump))
    return out


def _best_corner(x: np.ndarray, y: np.ndarray, b: int, ms: int) -> int:
    """Index of the corner of the best continuous two-line (hinge) fit near b."""
    t = (x - x.mean()) / (float(np.ptp(x)) or 1.0)
    best, where = math.inf, b
    for k in range(max(3, b - ms), min(x.shape[0] - 3, b + ms + 1)):
        X = np.column_stack([np.ones_like(t), t, np.maximum(t - t[k], 0.0)])
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        r = y - X @ coef
        rss = float(r @ r)
        if rss < best:
            best, where = rss, k
    return where


def _refine(x: np.ndarray, y: np.ndarray, center: int, lo: int, hi: int) -> int:
    """Index of the jump in [lo, hi) (ruptures Binseg, one break); `center` if too short."""
    from .filters import BadSegmentationParameters, binseg_one

    lo, hi = max(0, lo), min(x.shape[0], hi)
    if hi - lo < 8:
        return min(center, x.shape[0] - 1)
    cost = linear_cost_class()().fit(np.column_stack([x[lo:hi], y[lo:hi]]))
    try:
        found = binseg_one(cost, hi - lo, min_size=3)
    except BadSegmentationParameters:  # too short for min_size
        return min(center, x.shape[0] - 1)
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
