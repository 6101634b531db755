"""The spike statistic's trailing baselines and helpers (split from spike.py, which uses them).

- `baseline`: per point, the expected value and robust noise scale from the points before it,
  in log or additive space (see SpikeDetector's module docstring for the predictors);
- `near_zero_points`: where a positive loss hovers near 0 with additive noise;
- `LogCheck`: where the statistic judges a positive loss additively because it came near 0,
  a spike must also stand out in log space (log-normal flicker on a floor of 1e-7 is large
  additively and ordinary as a ratio; a collapse from 1e-30 to 1e-8 is large either way);
- `find_back`, `next_true`: where a spike returns; the next flagged point;
- `hump_back`: the predictor for a rise over a few points; `spike_record`: one spike's record.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import spike_collapse
from .spike_collapse import COLLAPSE, FALLEN

#: 1.4826 x MAD estimates the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
#: Log space is left (for good) where the level is within this many additive noise scales
#: of 0 (values hovering near 0); DIFF_TO_SIGMA turns a median |step| into a noise scale.
NEAR_ZERO = 5.0
#: In log space the scale is at least this share of the additive noise of the last
#: 2 x level_window + 1 differences divided by the level: as a loss with additive noise falls
#: toward 0 its log-space noise grows faster than a trailing window can follow.
ADDITIVE_FLOOR = 0.8
DIFF_TO_SIGMA = MAD_TO_SIGMA / np.sqrt(2)
#: LogCheck judges a spike only with at least this many log values before it (with fewer, the
#: log-space threshold of a short run is too high to confirm anything: the additive verdict
#: stands).
CHECK_POINTS = 30
#: Where the previous point predicts the next, a previous point more than DIP_Z of its own
#: scales under its expected value (a lone dip: a batch far easier than the rest, or a
#: sign-changing loss dipping far below 0) is skipped: the point before it predicts. The
#: return from a dip to where the loss was is not a rise of the loss (a GRPO loss at 5e-5
#: back from a -0.03 blip was read as a spike that never recovered); a drop that lasts
#: leaves the next point low, and a real spike still clears the level before the dip.
DIP_Z = 6.0
#: A lone point (back at the next one) is no spike where lone outliers are common (at least
#: LONE_COMMON and LONE_SHARE of the spike detector's `tail_window` points before it: Gaussian
#: noise gives 0.02 %) and LONE_SEEN of them rose over their level at least 1 / LONE_MARGIN
#: as far (in the units of its space): one more of the outliers this noise keeps making (a
#: per-batch loss falling 6.5 -> 0.2 threw x1.4-x5 lone points every few steps, 52 of them
#: read as spikes); a lone spike must outdo them by LONE_MARGIN (`outdone`). Rare lone
#: spikes of the same height (3 x3 spikes 150 steps apart on a quiet loss) all count.
LONE_SEEN, LONE_MARGIN, LONE_COMMON, LONE_SHARE = 2, 1.5, 3, 0.02
#: A positive loss at least twice its level (log units; the spike detector's DOUBLED).
DOUBLED_LOG = float(np.log(2.0))


def trailing_median(x: np.ndarray, window: int, head: bool = True) -> np.ndarray:
    """out[i] = median of x[max(0, i - window + 1) .. i]; `window` odd; x without NaN.
    `head` False: the first window - 1 may be left as SciPy's filter pads them (x[0]
    repeated), for a caller that drops them (a streaming form's stretch of history: ~0.1 ms
    a call saved); by bottleneck (`filters.trailing`) they are the exact ones either way."""
    from .filters import kept_medians

    kept = kept_medians()
    if kept is not None and head and x.shape[0]:  # (kept by a streaming form: `keeping`)
        return kept.get(x, window, lambda z: _with_head(z, window))
    return _with_head(x, window, head)


def _with_head(x: np.ndarray, window: int, head: bool = True) -> np.ndarray:
    from .filters import expanding_median, median_filter, trailing

    n = x.shape[0]
    if n == 0:
        return x.astype(float)
    fast = trailing("median", x, window)  # (its head is the expanding one either way)
    if fast is not None:
        return fast
    out = median_filter(x, size=window, origin=(window - 1) // 2)
    h = min(window - 1, n)
    if h and head:  # the filter pads with x[0]; the first points get exact expanding medians
        out[:h] = expanding_median(x[:h])
    return out


def _headless(x: np.ndarray, window: int) -> np.ndarray:
    return trailing_median(x, window, head=False)


def finite_trailing_median(x: np.ndarray, window: int, head: bool = True) -> np.ndarray:
    """`masked_trailing_median` (NaN: left out), by the faster `trailing_median` where the
    NaN are only leading ones (the same medians: `window` is odd)."""
    ok = np.isfinite(x)
    if ok.all():  # (the usual case: the same numbers, fewer calls)
        return trailing_median(x, window, head)
    first = int(np.argmax(ok)) if ok.any() else x.shape[0]
    if not ok[first:].all():
        return masked_trailing_median(x, window)
    out = np.full(x.shape[0], np.nan)
    out[first:] = trailing_median(x[first:], window, head)
    return out


def trailing_min(x: np.ndarray, window: int) -> np.ndarray:
    from .filters import minimum_filter1d, trailing

    if x.shape[0] == 0:
        return x.astype(float)
    fast = trailing("min", x, window)
    if fast is not None:
        return fast
    return minimum_filter1d(x, size=window, origin=(window - 1) // 2)


@dataclass(frozen=True)
class Baseline:
    """Per point i: the expected value and the noise scale from the points before i."""

    y: np.ndarray  # the transformed values (log or raw)
    level: np.ndarray  # expected y: trailing median + its typical lag (NaN while unknown)
    scale: np.ndarray  # robust scale of the residuals, floored (NaN while unknown)
    count: np.ndarray  # how many residuals the scale rests on
    log: bool


def baseline(values: np.ndarray, window: int, log: bool, masked: bool = False,
             level_window: int = 15, head: bool = True) -> Baseline:
    """Trailing robust expectation and scale; `values` finite (and positive when `log`), or
    NaN where points are to be left out of the statistics (`masked=True`: slower, pandas).

    Two predictors of point i from the points before it: (1) the median of the last
    `level_window` points plus the median of the last 2 x level_window + 1 residuals (a
    median lags a trending curve by about slope x level_window / 2; this measures and adds
    the lag back), (2) the previous point (after a lone dip: the one before it, DIP_Z).
    Each is judged by the median of its absolute errors over the last `window` points; the
    smaller one gives the level and the scale.
    A steady descent (warm-up) or drift thus leaves z near 0, and a sparse eval series that
    curves faster than a median follows keeps its true noise scale.
    """
    # head False: the trailing medians' first windows are not made exact (`trailing_median`):
    # the first window + 4 x level_window + 16 points are then not the whole series' either
    median = _masked_median if masked else trailing_median if head else _headless
    n = values.shape[0]
    if n < 4:
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.log(values) if log else values.astype(float)
        nan = np.full(n, np.nan)
        return Baseline(y, nan, nan.copy(), np.zeros(n, dtype=np.int64), log)
    # (one errstate for all of it: entering one costs ~2-5 us, a streaming update makes
    # this call for every tag; np.diff's numbers by a plain subtraction, for floats)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _baseline(values, window, log, masked, level_window, median)


def _baseline(values: np.ndarray, window: int, log: bool, masked: bool, level_window: int,
              median: Any) -> Baseline:
    n = values.shape[0]
    y = np.log(values) if log else values.astype(float)
    # 1. the lag-corrected trailing median (pred_m[i] from points < i)
    med = np.empty(n)
    med[0] = np.nan
    med[1:] = median(y, level_window)[:-1]
    pred_m = np.empty(n)
    pred_m[:2] = np.nan
    pred_m[2:] = median(y[1:] - med[1:], 2 * level_window + 1)[:-1]
    pred_m += med
    # 2. the previous point (no trend: where a descent stops, a slope would overshoot)
    # each predictor is judged by its own recent absolute errors; the more accurate is used
    err_m = np.abs(y[2:] - pred_m[2:])
    err_d = np.abs(y[2:] - y[1:-1])  # (np.diff(y)[1:])
    scale = np.empty(n)
    scale[:3] = np.nan
    scale[3:] = median(err_m, window)[:-1]
    scale_d = median(err_d, window)[:-1]
    use_d = np.flatnonzero(~(scale[3:] <= scale_d)) + 3
    level = pred_m
    level[use_d] = y[use_d - 1]
    scale[use_d] = scale_d[use_d - 3]
    scale *= MAD_TO_SIGMA
    if use_d.shape[0]:  # a previous point that dipped is no level to predict from (DIP_Z)
        dipped = y[2:-1] - level[2:-1] < -DIP_Z * scale[2:-1]  # dipped[k]: point k + 2
        sel = use_d[dipped[use_d - 3] & np.isfinite(y[use_d - 2])]
        level[sel] = y[sel - 2]
    np.maximum(scale[3:], _floor(values, med[3:], window, log, masked), out=scale[3:])
    if log:  # additive noise seen near this level, in log units (see ADDITIVE_FLOOR)
        dv = np.abs(_diff(values))
        addn = median(dv, 2 * level_window + 1)[:-1]  # addn[k]: diffs up to point k + 1
        floor = ADDITIVE_FLOOR * DIFF_TO_SIGMA * addn[1:] / np.exp(level[3:])
        np.fmax(scale[3:], floor, out=scale[3:])
    if masked:
        cs = np.concatenate(([0], np.cumsum(np.isfinite(err_m))))
        i = np.arange(3, n)
        count = np.zeros(n, dtype=np.int64)
        count[3:] = cs[i - 2] - cs[np.maximum(0, i - 2 - window)]
    else:
        count = np.minimum(np.maximum(np.arange(-2, n - 2), 0), window)  # (np.clip's)
    return Baseline(y, level, scale, count, log)


@dataclass(frozen=True)
class Known:
    """What `SpikeDetector.find` needs beside the finite values: the index from which they are
    judged additively (len: never), their log-space baseline (None: no log space; it may be
    longer than `split`) and their additive baseline (None when `split` is their length; or
    a callable making it from the values)."""

    split: int
    log: Baseline | None
    additive: Any
    start: float | None = None  # the series' start level (`start_level`), for LogCheck


def start_level(v: np.ndarray) -> float | None:
    """The log of the median of a series' first 5 finite values (None: not all positive):
    where the loss started, to tell a floor decades under it (LogCheck.doubled)."""
    head = np.asarray(v[:5], dtype=float)
    return float(np.median(np.log(head))) if head.size and bool((head > 0).all()) else None


def outdone(y: np.ndarray, level: np.ndarray, big: np.ndarray, c: int, a: int) -> bool:
    """Whether lone points of a..c-1 (over their `level` by `big`, the next point not) are
    common and LONE_SEEN of them rose at least 1 / LONE_MARGIN as far as point c does (see
    LONE_SEEN)."""
    rise = y[a:c] - level[a:c]
    with np.errstate(invalid="ignore"):
        lone = (rise > big[a:c]) & (y[a + 1:c + 1] - level[a:c] <= big[a:c])
        common = int(lone.sum()) >= max(LONE_COMMON, LONE_SHARE * (c - a))
        return common and int((lone & (LONE_MARGIN * rise >= y[c] - level[c])).sum()) >= LONE_SEEN


def _diff(x: np.ndarray) -> np.ndarray:
    """`np.diff(x)` of a 1-D array (for floats by the same subtraction, without its
    Python-level overhead)."""
    if x.dtype == np.float64 and x.ndim == 1:
        return x[1:] - x[:-1]
    return np.diff(x)


def _masked_median(x: np.ndarray, window: int) -> np.ndarray:
    from .filters import trailing

    fast = trailing("median", np.asarray(x, dtype=float), window, masked=True)
    if fast is not None:
        return fast
    import pandas as pd

    return pd.Series(x).rolling(window, min_periods=1).median().to_numpy()


def _floor(values: np.ndarray, med: np.ndarray, window: int, log: bool,
           masked: bool) -> np.ndarray:
    """The print resolution (smallest non-zero change between consecutive earlier points)
    as a scale floor for points 3.. (`med` is their trailing median)."""
    step = np.abs(_diff(values))
    step[step == 0] = np.inf
    if masked:
        from .filters import trailing

        low = trailing("min", step, window, masked=True)
        if low is None:
            import pandas as pd

            low = pd.Series(step).rolling(window, min_periods=1).min().to_numpy()
    else:
        low = trailing_min(step, window)
    quantum = low[1:-1].copy()  # quantum[k] judges point k + 3
    quantum[~np.isfinite(quantum)] = 0.0
    if log:  # a step of one quantum at the level, in log units (log1p(q / L) ~ q / L)
        quantum *= np.exp(-med)
        return np.maximum(quantum, 1e-9, out=quantum)
    return np.maximum(quantum, 1e-12 * np.maximum(1.0, np.abs(med)))


#: The noise as a ratio (near_zero_points) from the last REL_WINDOW differences: shorter
#: than `window`, as additive noise grows fast as a ratio where the loss falls toward 0 (a
#: policy loss crossing 0 stayed in log space at 0.03 with 129: quality.py's sign stratum).
REL_WINDOW = 63


def near_zero_points(v: np.ndarray, logb: Baseline, w: int, head: bool = True,
                     fallen: float = 0.0, top: float = -np.inf) -> np.ndarray:
    """Per point of the positive values `v`: True where they hover near 0 with additive noise
    (ratios stop meaning anything there): the log-space level is within NEAR_ZERO additive
    noise scales of 0 (noise from the consecutive differences of the `w` points before).
    With `fallen` > 0 also either `fallen` x below the highest value so far (`top`: the
    highest before v[0]) or with noise that large relative to each value (log-normal noise
    over ~20 %): on a steep fall the differences of a window are mostly the fall (lagging
    behind the level), and a loss at 0.3 with 10 % noise read as near 0. `LogCheck` keeps
    the flicker of a noisy loss judged additively from reading as spikes."""
    n = v.shape[0]
    noise = np.full(n, np.nan)
    noise[2:] = DIFF_TO_SIGMA * trailing_median(np.abs(np.diff(v)), w, head)[:-1]
    with np.errstate(invalid="ignore", over="ignore"):
        near = np.exp(logb.level) < NEAR_ZERO * noise
        if fallen > 0 and near.any():  # ... having fallen, or with noise that large as a ratio
            rel = np.full(n, np.inf)
            rel[2:] = DIFF_TO_SIGMA * trailing_median(np.abs(np.diff(v)) / v[:-1],
                                                      min(w, REL_WINDOW), head)[:-1]
            near &= (np.exp(logb.level) * fallen <= np.maximum(np.maximum.accumulate(v), top)) \
                | (NEAR_ZERO * rel > 1)
        return near


def next_true(mask: np.ndarray, start: int) -> int | None:
    """Index of the first True at or after `start` (searching in growing chunks)."""
    n, chunk = mask.shape[0], 4096
    while start < n:
        hit = np.flatnonzero(mask[start:start + chunk])
        if hit.shape[0]:
            return start + int(hit[0])
        start, chunk = start + chunk, chunk * 4
    return None


def find_back(y: np.ndarray, start: int, band: float, points: int, pre: float | None = None,
              share: float = 0.0) -> int | None:
    """First index t >= start with y[t] <= band_t and at least half of y[t:t+points] (or
    y[t + 1]) <= band_t,
    where band_t = max(band, pre + share x (the highest y from start - 1 to t - pre)): a spike
    is also back once its excess has shrunk to `share` of its height so far."""
    n = y.shape[0]
    chunk = 256
    top = float(y[start - 1]) if start >= 1 else -np.inf
    while start < n:
        stop = min(n, start + chunk)
        seg = y[start:min(n, stop + points - 1)]
        bands = np.full(stop - start, band)
        if share > 0 and pre is not None:
            run = np.maximum.accumulate(np.r_[top, y[start:stop]])[1:]
            bands = np.maximum(bands, pre + share * (run - pre))
            top = float(run[-1])
        if not bool((seg[:stop - start] <= bands).any()):  # (no point of the chunk is back:
            start, chunk = stop, chunk * 4  # none can be confirmed; the usual case while a
            continue  # spike is still out)
        t = np.arange(stop - start)
        m = np.minimum(points, seg.shape[0] - t)
        # points after t judged against t's band
        win = np.lib.stride_tricks.sliding_window_view(
            np.r_[seg, np.full(points, np.inf)], points)[:stop - start]
        below_win = win <= bands[:, None]
        cnt = below_win.sum(axis=1)
        # confirmed by half of the next `points`, or by the next point too (a second spike
        # right after the return is a spike of its own, not a failure to return)
        nxt = below_win[:, 1] if points > 1 else below_win[:, 0]
        ok = (seg[:stop - start] <= bands) & ((cnt >= (m + 1) // 2) | nxt)
        if ok.any():
            return start + int(np.argmax(ok))
        start, chunk = stop, chunk * 4
    return None


#: Near 0 (a positive loss judged additively, each spike confirmed in log space: LogCheck),
#: on a floor (a level FALLEN x below the highest level of the last `tail_window` points) a
#: lone point (back at the next point) must rise LONE_FLOOR x the plain threshold in
#: log-space scales: a loss that fell decades to a floor flickers with the heavy-tailed
#: per-batch noise of a memorised set (x10-x100 outliers of Student t noise at 6-12 scales,
#: often before any tail evidence has shown), and a collapse from the floor (x1e3 and more,
#: or a rise that lasts) stands out far more. A noisy loss near its start level (judged
#: additively too when its noise exceeds ~20 %) keeps the plain threshold.
#: (FALLEN: spike_collapse's.)
LONE_FLOOR = 2.0
#: A lone point near 0 that climbs back to within COLLAPSE x (spike_collapse's) of the
#: series' start level is a collapse, judged by the plain threshold (LogCheck.collapsed).


def lone_threshold(level: np.ndarray, thr: np.ndarray, plain: np.ndarray, span: int
                   ) -> np.ndarray:
    """`LogCheck.lone` for points with log-space `level` and threshold `thr`: at least
    LONE_FLOOR x `plain` (the small-sample-raised plain threshold) where the level lies
    FALLEN x below the highest level of the `span` points before (0: never)."""
    lone = thr.copy()
    if span:
        lv = np.where(np.isfinite(level), level, -np.inf)
        top = np.r_[-np.inf, -trailing_min(-lv, span)[:-1]]
        floor = lv <= top - np.log(FALLEN)
        lone[floor] = np.maximum(thr[floor], LONE_FLOOR * plain[floor])
    return lone


@dataclass(frozen=True)
class LogCheck:
    """Log-space evidence for spikes found additively on a positive loss near 0.

    Near 0 the statistic judges a loss additively (ratios of values hovering near 0 mean
    little), but a loss on a floor of 1e-7 with log-normal flicker (per-batch losses of a
    memorised set) also has large additive excursions that are ordinary as ratios. A spike
    found there must also rise, in log space, above the lower of the medians of the last
    `level_window` and `window` log values before it, by the log-space threshold (`thr`:
    tail-aware, small-sample-raised) times the log-space scale: with its highest value, or
    with the median of its m >= 2 values until it is back (at most a level window) by
    thr / sqrt(m); a lone point (back at the next one: m = 1) by `lone`. A collapse from a
    floor (1e-7 to 1e-2), a blow-up from 1e-30 or a sustained x3 of a noisy grad norm
    passes; flicker does not. Points from `stop` on (after a value <= 0) need no check."""

    y: np.ndarray  # log values (NaN where unknown)
    scale: np.ndarray  # the log-space baseline's scale
    thr: np.ndarray  # the log-space threshold per point
    stop: int
    window: int
    level_window: int
    min_rise: float  # log(min_ratio)
    lone: np.ndarray | None = None  # the log-space threshold for a lone point (None: `thr`)
    plain: np.ndarray | None = None  # the plain log-space threshold (LONE_FLOOR x on a floor)
    start: float | None = None  # the series' start level (`start_level`; None: unknown)
    flicker: bool = True  # False: an evaluation loss (no per-batch flicker on a floor)
    collapse: np.ndarray | None = None  # the plain threshold for a collapse (None: no such rule)
    signed: bool = False  # the series has negative values: it changes sign, and has no floor

    def doubled(self, c: int, run: np.ndarray, masked: np.ndarray | None = None,
                far: bool = False) -> bool:
        """Whether the spike at index `c` (values `run`) at least doubled from its log-space
        level and clears the plain threshold there (`plain`; on a floor the loss fell to
        LONE_FLOOR x it, as for any lone point: floor flicker has x10-x100 outliers): the
        log space's DOUBLED rule for a positive loss judged additively near 0, less than
        FALLEN x under its start (`start_level`), where the
        additive rise is also `far`
        (2 x the tail-raised additive threshold, unmistakable against the noise seen): a x7.6
        one-step spike off a 0.12 per-step loss (additive z 38) is no heavy-tail flicker,
        the x2.5-x4 points of its noisy steep descent (additive z 10-20) may be."""
        got = self._rise(c, run, masked) if far else None
        if got is None or self.plain is None:
            return False
        rise, scale, base = got
        # not on a floor decades under the start (`start`: the whole series', a streaming
        # window's too): the per-batch flicker of a memorised set has x10-x100 outliers
        # (an evaluation loss, `flicker` False, averages a whole set: no such flicker)
        return (self.start is not None and rise >= DOUBLED_LOG
                and rise > float(self.plain[c]) * scale
                and (base > self.start - float(np.log(FALLEN)) or not self.flicker))

    def collapsed(self, c: int, peak: float, rise: float, scale: float) -> bool:
        """Whether a lone point `peak` (its log-space `rise` in units of `scale`) climbed back
        to within COLLAPSE x of the series' start level by the plain threshold (`collapse`):
        what was learnt lost for a step, not the flicker of a floor (x10-x100 off 1e-7 never
        nears where the loss started), so neither LONE_FLOOR nor the tail raise applies (a
        memorised grokking run's 0.0044 -> 1.92 -> 0.0054, its start 3.3: the floor's
        heavy-tailed band raised the threshold to 12.5 scales, the point rose 11.3)."""
        return (self.collapse is not None and self.start is not None
                and float(np.log(peak)) >= self.start - float(np.log(COLLAPSE))
                and rise > float(self.collapse[c]) * scale)

    def _before(self, c: int, masked: np.ndarray | None) -> np.ndarray:
        """The finite log values of the `window` points before index `c` (from `masked`, the
        values with found spikes blanked out, when given)."""
        a = max(0, c - self.window)
        if masked is None:
            before = self.y[a:c]
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                before = np.log(masked[a:c])
        return before[np.isfinite(before)]

    def _rise(self, c: int, run: np.ndarray, masked: np.ndarray | None
              ) -> tuple[float, float, float] | None:
        """The peak's rise over the log-space base before `c`, the scale and the base (None:
        not judged in log space)."""
        peak = float(run.max())
        if c >= self.stop or not peak > 0 or not bool((run > 0).all()):
            return None
        before = self._before(c, masked)
        scale = float(self.scale[c])
        if before.shape[0] < CHECK_POINTS or not np.isfinite(scale):
            return None
        near = before[-self.level_window:]
        base = min(float(np.median(before)), float(np.median(near)))
        return float(np.log(peak)) - base, scale, base

    def confirms(self, c: int, run: np.ndarray, masked: np.ndarray | None = None,
                 far: bool = False) -> bool:
        """Whether the spike starting at index `c`, whose values until it is back (at most a
        level window of them) are `run`, stands out in log space (`masked`: the values with
        found spikes blanked out): its highest value by the threshold, or the median of its
        m >= 2 values by the threshold / sqrt(m) (an excursion that lasts is evidence
        however noisy the single points are); a lone point also when `doubled` (`far`: its
        additive rise is 2 x the additive threshold)."""
        peak = float(run.max())
        if c >= self.stop or not peak > 0 or not bool((run > 0).all()):
            return True
        before = self._before(c, masked)
        scale, thr = float(self.scale[c]), float(self.thr[c])
        if before.shape[0] < CHECK_POINTS or not (np.isfinite(scale) and np.isfinite(thr)):
            return True  # no log-space history to judge by: the additive verdict stands
        # the lower of the medians of the last level_window and window points: on a descent
        # the first is lower, on a ramp up (a blow-up over many points) the second
        near = before[-self.level_window:]
        base = min(float(np.median(before)), float(np.median(near)))
        rise = float(np.log(peak)) - base
        if rise < self.min_rise:
            return False
        if self.collapse is not None and not self.signed and spike_collapse.off_floor(  # (a loss's rule)
                float(np.log(peak)), base, self.start):
            return True  # back near where the loss started, off a floor (spike_collapse)
        m = run.shape[0]
        if self.lone is not None and m == 1:  # a lone point (see `lone`; and `doubled`)
            return rise > float(self.lone[c]) * scale or self.doubled(c, run, masked, far) \
                or self.collapsed(c, peak, rise, scale)
        if rise > thr * scale:
            return True
        return m >= 2 and float(np.median(np.log(run))) - base > thr * scale / np.sqrt(m)


def masked_trailing_median(x: np.ndarray, window: int) -> np.ndarray:
    """out[i] = median of the finite x[max(0, i - window + 1) .. i] (NaN where none)."""
    return _masked_median(x, window)


#: A spike whose highest value is within REPEAT_TOL (relative) of the highest values of
#: REPEAT_COUNT spikes that began in the `window` points before it is the loss switching
#: between two states it keeps returning to (a PINN term flipping between 4.6e-5 and 1.05e-4
#: every ten steps), not a new event: the first REPEAT_COUNT are reported, the rest not.
REPEAT_TOL, REPEAT_COUNT = 0.01, 2


def repeats(tops: list[tuple[int, float]], c: int, window: int, run: np.ndarray) -> bool:
    """Whether the spike starting at index `c` (`run`: its values until it is back) tops
    out where REPEAT_COUNT spikes of the last `window` points did (see REPEAT_TOL); its
    top joins `tops` (the spikes so far, reported or not) either way."""
    top = float(run.max())
    since = c - window
    same = sum(1 for a, t in tops if a >= since and abs(t - top) <= REPEAT_TOL * abs(top))
    tops.append((c, top))
    return same >= REPEAT_COUNT


def hump_back(y: np.ndarray, level: np.ndarray, scale: np.ndarray, a: int, b: int, h: int,
              w: int, head: bool = True) -> tuple[np.ndarray, ...]:
    """For the points a..b-1 of log (or additive) values `y` with their one-step `level` and
    `scale`: the level `h` points before each plus the typical h-step drift (the median of the
    last `w` h-step changes: on a steep descent the old level alone is biased high and its
    errors are mostly the trend), the scale of that predictor (the median of its absolute
    errors over the `w` points before: on AR(1)-correlated noise far larger than the one-step
    scale), the value of the point before each, that point's own rise over its level in its
    scales, and its rise over the two points before it in the same scales (NaN where unknown).
    SpikeDetector's HUMP and PAIR rules read them."""
    out_l, out_s, prev, pu, pr = (np.full(b - a, np.nan) for _ in range(5))
    s = max(a, h)  # slices, not index arrays: this runs over every point of a long series
    if b > s:
        out_l[s - a:] = level[s - h:b - h]
    lo = max(h, a - w - 1)
    if b > lo:
        change = y[lo:b] - level[lo - h:b - h]  # H-step changes lo..b-1
        drift = finite_trailing_median(change, w, head)  # drift[j]: changes lo..lo+j
        err = np.full(b - lo, np.nan)
        err[1:] = np.abs(change[1:] - drift[:-1])  # each against the drift before it
        med = finite_trailing_median(err, w, head)
        s = max(a, lo + 1)  # (the changes up to the point before)
        out_l[s - a:] += drift[s - 1 - lo:b - 1 - lo]
        out_s[s - a:] = MAD_TO_SIGMA * med[s - 1 - lo:b - 1 - lo]
    s = max(a, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if b > s:
            prev[s - a:] = y[s - 1:b - 1]
            pu[s - a:] = (y[s - 1:b - 1] - level[s - 1:b - 1]) / scale[s - 1:b - 1]
        s = max(a, 3)
        if b > s:
            pr[s - a:] = (y[s - 1:b - 1] - np.maximum(y[s - 2:b - 2], y[s - 3:b - 3])) \
                / scale[s - 1:b - 1]
    return out_l, out_s, prev, pu, pr


def _per(x: float, scale: float) -> float:
    """x in units of `scale`; on a scale of 0 (a few equal values: no noise seen yet) +-inf,
    or 0 for no excess."""
    if scale > 0:
        return x / scale
    return math.copysign(math.inf, x) if x else 0.0


def spike_record(st: np.ndarray, v: np.ndarray, base: Baseline, c: int, p: int,
                 end: int | None, level: float, scale: float, thr: float, back_z: float,
                 fast_within: int) -> dict[str, Any]:
    """One spike as `SpikeDetector.find` reports it: from index `c` (peak `p`, back at `end`,
    None: not back) over the pre-spike `level` and `scale` of `base`'s space; its recovery
    class by `fast_within` steps or the next point (None at the series' last point: not
    known yet)."""
    pre = float(np.exp(level)) if base.log else level
    peak = float(v[p])
    if pre > 0 and peak > 0:
        magnitude, units = peak / pre, "ratio"
    else:
        magnitude, units = peak - pre, "difference"
    rec_steps = None if end is None else int(st[end] - st[c])
    interval = int(st[c] - st[c - 1]) if c > 0 else 0
    if rec_steps is None:  # None: the series' last point, not known yet (`_event`)
        recovery = None if c == v.shape[0] - 1 else "none"
    elif rec_steps <= max(fast_within, interval) or end == c + 1:
        recovery = "fast"  # (or back at the very next point, on a log whose interval grows)
    else:
        recovery = "slow"
    return {
        "start": int(st[c]), "peak": int(st[p]), "end": None if end is None else int(st[end]),
        "start_index": c, "recovery": recovery, "recovery_steps": rec_steps,
        "magnitude": magnitude, "details": {
            "z": _per(float(base.y[p]) - level, scale),
            "z_start": _per(float(base.y[c]) - level, scale),
            "threshold": thr, "pre_level": pre, "peak_value": peak, "scale": scale,
            "space": "log" if base.log else "linear", "magnitude_units": units,
            "abrupt": bool(c > 0 and base.y[c - 1] <= level + back_z * scale),
        },
    }
