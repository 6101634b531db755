"""Loss spikes: points far above the loss's own recent level, and whether the loss came back.

Training meaning (docs/playbook.md): a spike is a sudden jump of the loss. Fast-recovering spikes
(back where the loss left off within a few hundred steps) are usually harmless; slow ones cost
compute; spikes that never come back (the loss settles higher, or diverges) are the ones PaLM
restarted from a checkpoint for.

Statistic (causal: a point's verdict uses only the points before it):

- Space: log of the values while every value so far is positive (a loss spanning decades keeps
  one noise scale, and "2x the loss" reads the same at 8.0 and at 0.08); additive from the first
  non-positive value on (RL and policy losses change sign), or from where the level comes
  within 5 additive noise scales of 0 (values hovering near 0). While in log space the scale
  is floored by the additive noise of the last few points over the level, so a loss reaching
  0 with additive noise is not judged by a log-space scale that lags behind.
- Expected value, from the finite points before the point, by whichever of two predictors
  made the smaller errors over the last `window` points: the median of the last
  `level_window` points plus its measured lag (the median of its recent residuals: a median
  lags a trending curve), or the previous point (better where a sparse eval series curves
  faster than a median can follow). Scale: 1.4826 x the median absolute error of that
  predictor over `window` points, floored by the print resolution (the smallest non-zero
  change between consecutive values in the window: a 4-decimal loss near 0 has a MAD of 0).
- A point is elevated when it exceeds the expected value by `threshold` scales (x 1 + 4/n
  while the window holds only n points; raised where the last `tail_window` points show
  heavy-tailed noise) and by the ratio `min_ratio` (when the level is above 0). The steep
  early descent never flags: it lies below what the trailing points expect.
- Consecutive elevated points are one spike. It ends at the first point back within `back_z`
  pre-spike scales of the pre-spike level, confirmed by at least half of the `back_points`
  points from it. Recovery: `fast` (back within `fast_within` steps, or at the very next
  logged point), `slow` (back later), `none` (never back). What follows a spike is judged
  without it: its points leave the trailing statistics once it is back, and a spike that is
  not back a level window after it began starts the statistics afresh from there.

Known false positives: a level shift upwards at an LR or data-mixture switch reads as a spike
that never recovers; heavy-tailed per-batch noise (mixed-length batches) gives isolated
1-point spikes of modest magnitude (raise `threshold` or `min_ratio`).
Known misses: a second spike less than a level window after one that has not recovered yet
is part of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameterError
from ..events import Event
from ..frame import Series

#: 1.4826 x MAD estimates the standard deviation of Gaussian noise.
MAD_TO_SIGMA = 1.4826
#: The threshold is multiplied by (1 + SMALL_SAMPLE / n) while the window holds n points.
SMALL_SAMPLE = 4.0
#: Heavy tails: |z| beyond TAIL_Z counts as a large excursion; the raised threshold assumes
#: a power-law tail of index TAIL_INDEX and aims at TAIL_RATE false alarms per point.
TAIL_Z, TAIL_INDEX, TAIL_RATE = 3.5, 5.0, 1e-5
#: Log space is left (for good) where the level is within this many additive noise scales
#: of 0 (values hovering near 0); DIFF_TO_SIGMA turns a median |step| into a noise scale.
NEAR_ZERO = 5.0
#: Log space: a spike is also back once its excess over the pre-spike level has shrunk to this
#: share of its height (a x450 spike that settles 7 % above a very quiet level is back).
BACK_SHARE = 0.05
#: A rise spread over up to HUMP points is also judged against the level before it; 0 turns
#: this off (the default: on AR(1)-correlated noise it costs more false alarms than the humps
#: it finds; see benchmarks/indep_family.py).
HUMP = 0
#: Before min_points: a point EARLY_RATIO x above every point before it is a spike (judged
#: back within back_z x EARLY_SCALE, in log units, of the highest of them).
EARLY_RATIO, EARLY_SCALE = 2.5, 0.15
#: In log space the scale is at least this share of the additive noise of the last
#: 2 x level_window + 1 differences divided by the level: as a loss with additive noise falls
#: toward 0 its log-space noise grows faster than a trailing window can follow.
ADDITIVE_FLOOR = 0.8
DIFF_TO_SIGMA = MAD_TO_SIGMA / np.sqrt(2)


def require(obj: Any, name: str, ok: bool, allowed: str) -> None:
    """Raise InvalidParameterError naming the detector field, its value and the allowed range."""
    if not ok:
        value = getattr(obj, name)
        raise InvalidParameterError(
            f"{type(obj).__name__}.{name} must be {allowed}, got {value!r}")


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and bool(np.isfinite(value)))


def trailing_median(x: np.ndarray, window: int) -> np.ndarray:
    """out[i] = median of x[max(0, i - window + 1) .. i]; `window` odd; x without NaN."""
    from .filters import expanding_median, median_filter

    n = x.shape[0]
    if n == 0:
        return x.astype(float)
    out = median_filter(x, size=window, origin=(window - 1) // 2)
    head = min(window - 1, n)
    if head:  # the filter pads with x[0]; the first points get exact expanding medians
        out[:head] = expanding_median(x[:head])
    return out


def trailing_min(x: np.ndarray, window: int) -> np.ndarray:
    from .filters import minimum_filter1d

    if x.shape[0] == 0:
        return x.astype(float)
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
             level_window: int = 15) -> Baseline:
    """Trailing robust expectation and scale; `values` finite (and positive when `log`), or
    NaN where points are to be left out of the statistics (`masked=True`: slower, pandas).

    Two predictors of point i from the points before it: (1) the median of the last
    `level_window` points plus the median of the last 2 x level_window + 1 residuals (a
    median lags a trending curve by about slope x level_window / 2; this measures and adds
    the lag back), (2) the previous point. Each is judged by the median of its absolute
    errors over the last `window` points; the smaller one gives the level and the scale.
    A steady descent (warm-up) or drift thus leaves z near 0, and a sparse eval series that
    curves faster than a median follows keeps its true noise scale.
    """
    median = _masked_median if masked else trailing_median
    n = values.shape[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(values) if log else values.astype(float)
    if n < 4:
        nan = np.full(n, np.nan)
        return Baseline(y, nan, nan.copy(), np.zeros(n, dtype=np.int64), log)
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
    err_d = np.abs(np.diff(y))[1:]
    scale = np.empty(n)
    scale[:3] = np.nan
    scale[3:] = median(err_m, window)[:-1]
    scale_d = median(err_d, window)[:-1]
    with np.errstate(invalid="ignore"):
        use_d = np.flatnonzero(~(scale[3:] <= scale_d)) + 3
    level = pred_m
    level[use_d] = y[use_d - 1]
    scale[use_d] = scale_d[use_d - 3]
    scale *= MAD_TO_SIGMA
    np.maximum(scale[3:], _floor(values, med[3:], window, log, masked), out=scale[3:])
    if log:  # additive noise seen near this level, in log units (see ADDITIVE_FLOOR)
        dv = np.abs(np.diff(values))
        addn = median(dv, 2 * level_window + 1)[:-1]  # addn[k]: diffs up to point k + 1
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            floor = ADDITIVE_FLOOR * DIFF_TO_SIGMA * addn[1:] / np.exp(level[3:])
        np.fmax(scale[3:], floor, out=scale[3:])
    if masked:
        cs = np.concatenate(([0], np.cumsum(np.isfinite(err_m))))
        i = np.arange(3, n)
        count = np.zeros(n, dtype=np.int64)
        count[3:] = cs[i - 2] - cs[np.maximum(0, i - 2 - window)]
    else:
        count = np.clip(np.arange(n) - 2, 0, window)
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


def _masked_median(x: np.ndarray, window: int) -> np.ndarray:
    import pandas as pd

    return pd.Series(x).rolling(window, min_periods=1).median().to_numpy()


def _floor(values: np.ndarray, med: np.ndarray, window: int, log: bool,
           masked: bool) -> np.ndarray:
    """The print resolution (smallest non-zero change between consecutive earlier points)
    as a scale floor for points 3.. (`med` is their trailing median)."""
    step = np.abs(np.diff(values))
    step[step == 0] = np.inf
    if masked:
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


def near_zero_points(v: np.ndarray, logb: Baseline, w: int) -> np.ndarray:
    """Per point of the positive values `v`: True where they hover near 0 with additive noise
    (ratios stop meaning anything there): the log-space level is within NEAR_ZERO additive
    noise scales of 0 (noise from the consecutive differences of the `w` points before)."""
    n = v.shape[0]
    noise = np.full(n, np.nan)
    noise[2:] = DIFF_TO_SIGMA * trailing_median(np.abs(np.diff(v)), w)[:-1]
    with np.errstate(invalid="ignore", over="ignore"):
        return np.exp(logb.level) < NEAR_ZERO * noise


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


@dataclass(frozen=True)
class SpikeDetector:
    """Loss spikes with their recovery class (fast / slow / none); see the module docstring."""

    #: Trailing points for the scale (the predictors' errors), made odd: long enough for a
    #: stable MAD (+-12 %), short enough to follow a changing noise level.
    window: int = 129
    #: Trailing points of the median level, made odd: short, so that the level follows the
    #: curve (its remaining lag is measured and corrected) and a sparse eval series is not
    #: judged against its whole past; a spike shorter than half of it does not move it.
    level_window: int = 15
    #: Robust z-score (in scales) above the trailing level that makes a point elevated. At 6 a
    #: Gaussian-noise series of a million points gives about no false alarm.
    threshold: float = 6.0
    #: A point must also be this many times the level (when the level is above 0): smaller
    #: blips on a very quiet series are real but not what anyone calls a spike.
    min_ratio: float = 1.05
    #: No verdict before this many finite points (the scale needs a few points).
    min_points: int = 8
    #: "Back at the pre-spike level" = within this many pre-spike scales of it.
    back_z: float = 3.0
    #: The return is confirmed when at least half of this many points from it are back.
    back_points: int = 5
    #: Back within this many steps = a fast recovery (docs/playbook.md: usually harmless).
    fast_within: int = 250
    #: Trailing points in which large excursions are counted to detect heavy-tailed noise
    #: (and raise the threshold there); 0 turns this off.
    tail_window: int = 1000

    scope: ClassVar[str] = "series"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "spike"

    def validate(self) -> None:
        require(self, "window", is_int(self.window) and self.window >= 5, "an int >= 5")
        require(self, "level_window", is_int(self.level_window) and self.level_window >= 3,
                "an int >= 3")
        require(self, "threshold", is_num(self.threshold) and self.threshold > 0, "a number > 0")
        require(self, "min_ratio", is_num(self.min_ratio) and self.min_ratio >= 1, "a number >= 1")
        require(self, "min_points", is_int(self.min_points) and self.min_points >= 3,
                "an int >= 3")
        require(self, "back_z", is_num(self.back_z) and 0 < self.back_z, "a number > 0")
        require(self, "back_points", is_int(self.back_points) and self.back_points >= 1,
                "an int >= 1")
        require(self, "fast_within", is_int(self.fast_within) and self.fast_within >= 0,
                "an int >= 0")
        require(self, "tail_window", is_int(self.tail_window) and self.tail_window >= 0,
                "an int >= 0")

    def detect(self, series: Series, known: Known | None = None) -> list[Event]:
        """The spikes of `series` (`known`: as `find` takes it)."""
        self.validate()
        return [self._event(series, s) for s in self.find(series.step, series.value, known)]

    # -- the work, on plain arrays (gradspike and divergence reuse it) --------------------

    def find(self, steps: np.ndarray, values: np.ndarray,
             known: Known | None = None) -> list[dict[str, Any]]:
        """Spikes as dicts of steps and statistics; non-finite points are ignored.

        `known`: where the finite values turn additive and their baselines, as a streaming
        form keeps them up to date (`Known`); else found here from the values."""
        finite = np.isfinite(values)
        st = np.asarray(steps)[finite].astype(np.int64)
        v = np.asarray(values, dtype=float)[finite]
        n = v.shape[0]
        if n < 2:
            return []
        w = self.window | 1
        lw = self.level_window | 1
        if known is None:
            known = self.spaces(v)
        k = known.split  # log space before k, additive from k
        spaces = []
        if known.log is not None and (k > self.min_points or k == n):
            spaces.append((0, k, known.log))
        if k < n:
            spaces.append((k, n, known.additive(v) if callable(known.additive)
                           else known.additive))
        out: list[dict[str, Any]] = []
        for lo, hi, base in spaces:
            out.extend(self._extract(st, v, base, lo, hi, w))
        return out

    def spaces(self, v: np.ndarray) -> Known:
        """Where the finite values `v` turn additive (the first value <= 0, or where the
        level comes near 0) and their baselines (the additive one made when asked)."""
        n = v.shape[0]
        w = self.window | 1
        lw = self.level_window | 1
        nonpos = np.flatnonzero(v <= 0)
        k = int(nonpos[0]) if nonpos.shape[0] else n
        logb = None
        if k > self.min_points or (k == n and n > 1):
            logb = baseline(v[:k], w, True, level_window=lw)
            k = min(k, self.near_zero(v[:k], logb, w))
        return Known(k, logb, lambda vals: baseline(vals, w, False, level_window=lw))

    def near_zero(self, v: np.ndarray, logb: Baseline, w: int) -> int:
        """Index from which `find` judges the positive values `v` additively (`logb`: their
        log-space baseline, `w`: the odd window), len(v) when never: the first point (from
        `near_zero_from`) where `near_zero_points` holds."""
        n = v.shape[0]
        first = self.near_zero_from(w)
        near = np.flatnonzero(near_zero_points(v, logb, w)[first:])
        return first + int(near[0]) if near.shape[0] else n

    def near_zero_from(self, w: int) -> int:
        """The first finite index that may turn additive."""
        return self.min_points

    def _tail_big(self, base: Baseline) -> np.ndarray:
        """Large excursions (TAIL_Z < z <= threshold, upward only: a spike's recovery pulls z
        far below 0 for a long time)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            u = (base.y - base.level) / base.scale
            return (u > TAIL_Z) & (u <= self.threshold)

    def _tail_threshold(self, base: Baseline, big: np.ndarray | None = None, a: int = 0,
                        b: int | None = None) -> np.ndarray:
        """Per point of a..b: `threshold`, raised where the `tail_window` points before it held
        more large excursions (`big`) than Gaussian noise gives: with heavy-tailed noise a
        6-sigma point is not rare. The raise assumes a power-law tail (index TAIL_INDEX) and
        keeps false alarms near TAIL_RATE per point."""
        n = base.y.shape[0]
        b = n if b is None else b
        thr = np.full(b - a, float(self.threshold))
        if self.tail_window == 0 or b <= a:
            return thr
        big = self._tail_big(base) if big is None else big
        lo = max(0, a - self.tail_window)
        cs = np.concatenate(([0], np.cumsum(big[lo:b])))
        i = np.arange(a, b)
        cnt = cs[i - lo] - cs[np.maximum(0, i - self.tail_window) - lo]
        heavy = cnt >= 3  # Gaussian noise gives 3 in a window about never
        rate = (cnt[heavy] - 2) / self.tail_window
        thr[heavy] = np.maximum(thr[heavy], TAIL_Z * (rate / TAIL_RATE) ** (1 / TAIL_INDEX))
        return thr
        with np.errstate(invalid="ignore", divide="ignore"):
            u = (base.y - base.level) / base.scale
            # upward only: a spike's recovery pulls z far below 0 for a long time
            big = (u > TAIL_Z) & (u <= self.threshold)
        cs = np.concatenate(([0], np.cumsum(big)))
        i = np.arange(n)
        cnt = cs[i] - cs[np.maximum(0, i - self.tail_window)]
        heavy = cnt >= 3  # Gaussian noise gives 3 in a window about never
        rate = (cnt[heavy] - 2) / self.tail_window
        thr[heavy] = np.maximum(thr[heavy], TAIL_Z * (rate / TAIL_RATE) ** (1 / TAIL_INDEX))
        return thr

    def _elevated(self, y: np.ndarray, level: np.ndarray, scale: np.ndarray,
                  count: np.ndarray, thr: np.ndarray, log: bool, offset: int,
                  back: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Elevated-point mask for points offset.. (`y`, `level`... are their slices; `back`:
        the level and scale HUMP points earlier and the previous value, for rises spread over
        a few points: the point and the one before it well above that earlier level)."""
        thr = thr * (1 + SMALL_SAMPLE / np.maximum(count, 1))
        with np.errstate(invalid="ignore"):
            ok = self._above(y, level, scale, thr, log)
            if back is not None and HUMP:  # a multi-point hump: the level follows its rise
                lb, sb, prev = back
                ok |= (self._above(y, lb, sb, thr, log)
                       & self._above(prev, lb, sb, thr / 2, log))
        ok[:max(0, self.min_points - offset)] = False
        return ok

    def _above(self, y: np.ndarray, level: np.ndarray, scale: np.ndarray, thr: np.ndarray,
               log: bool) -> np.ndarray:
        rise = y - level
        ok = rise > thr * scale
        if log:
            ok &= rise >= np.log(self.min_ratio)
        else:  # additive, but above 0: the ratio still applies
            ok &= (level <= 0) | (y >= level * self.min_ratio)
        return ok

    @staticmethod
    def _back(y: np.ndarray, level: np.ndarray, scale: np.ndarray, a: int, b: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the points a..b-1: the level and scale HUMP points before each (NaN before 0),
        and the value of the point before each."""
        idx = np.arange(a, b) - max(HUMP, 1)
        ok = idx >= 0
        out_l, out_s, prev = (np.full(b - a, np.nan) for _ in range(3))
        out_l[ok], out_s[ok] = level[idx[ok]], scale[idx[ok]]
        p = np.arange(a, b) - 1
        prev[p >= 0] = y[p[p >= 0]]
        return out_l, out_s, prev

    def _early(self, y: np.ndarray, log: bool, lo: int) -> np.ndarray:
        """The points before min_points that jumped EARLY_RATIO x above every point before them
        (a blow-up in the first iterations: 12.4, 12.4, 41), by at least 3 x the spread of
        those points (a noisy per-batch loss jumps x2 at will); the second point only when
        the third comes half of the way back down (with one point before it, which of the two
        is odd is not known until then). Log space only."""
        early = np.zeros(y.shape[0], bool)
        stop = min(self.min_points, y.shape[0])
        if not log or stop <= max(lo, 1):
            return early
        top = np.maximum.accumulate(y[:stop])
        low = np.minimum.accumulate(y[:stop])
        jump = np.log(EARLY_RATIO)
        for i in range(max(lo, 1), stop):
            rise = y[i] - top[i - 1]
            if rise < jump or rise < 3 * (top[i - 1] - low[i - 1]):
                continue
            if i == 1 and not (y.shape[0] > 2 and y[2] <= y[1] - jump / 2):
                continue
            early[i] = True
        return early

    def _extract(self, st: np.ndarray, v: np.ndarray, base: Baseline, lo: int, hi: int,
                 w: int) -> list[dict[str, Any]]:
        y = base.y[:hi]
        level, scale, count = base.level[:hi].copy(), base.scale[:hi].copy(), base.count[:hi].copy()
        big = self._tail_big(base)[:hi].copy()
        thr = self._tail_threshold(base, big, 0, hi)
        elev = np.zeros(hi, bool)
        elev[lo:] = self._elevated(y[lo:], level[lo:], scale[lo:], count[lo:], thr[lo:],
                                   base.log, lo, self._back(y, level, scale, lo, hi))
        early = self._early(y, base.log, lo)
        if early.any():  # no statistics yet: the level is the highest point before
            elev |= early
            for c in np.flatnonzero(early):
                level[c], scale[c] = float(y[:c].max()), EARLY_SCALE
        masked = None  # the values with recovered spikes blanked out, made when first needed
        out: list[dict[str, Any]] = []
        allowed = lo
        restart = (self.level_window | 1) + 1  # points after which the loss starts over
        while (c := next_true(elev, allowed)) is not None:
            pre, sc = float(level[c]), float(scale[c])
            end = find_back(y, c + 1, pre + self.back_z * sc, self.back_points)
            if end is None and hi < v.shape[0]:
                end = hi  # a log-space spike is back when the values turn non-positive
            # its recovery: back within the noise, or its excess down to BACK_SHARE of its
            # height (log space); the statistics leave out all of it (to `end`)
            seen = end
            if base.log and (end is None or end > c + 1):
                early_back = find_back(y, c + 1, pre + self.back_z * sc, self.back_points,
                                       pre, BACK_SHARE)
                if early_back is not None and (end is None or early_back < end):
                    seen = early_back
            stop = seen if seen is not None else min(hi, c + restart)
            p = c + int(np.argmax(y[c:stop]))
            out.append(self._record(st, v, base, c, p, seen, pre, sc,
                                    float(thr[c]) * (1 + SMALL_SAMPLE / max(int(count[c]), 1))))
            if self.tail_window and big[max(0, c - 3):stop].any():
                # a spike's own shoulders are no evidence of heavy-tailed noise
                big[max(0, c - 3):stop] = False
                z1 = min(hi, stop + self.tail_window)
                thr[c:z1] = self._tail_threshold(base, big, c, z1)
                elev[stop:z1] |= self._elevated(y[stop:z1], level[stop:z1], scale[stop:z1],
                                                count[stop:z1], thr[stop:z1], base.log, stop)
            if end is not None and end <= c + restart:
                # back soon: judge what follows without the spike's points
                allowed = end
                masked = v[:hi].copy() if masked is None else masked
                masked[c:end] = np.nan
                self._rebase(masked, base.log, max(0, end - 3 * w), end, level, scale, count,
                             thr, elev, lo)
                continue
            # not back within a level window: the loss starts over from there (causal: later
            # spikes may start then, judged on what followed this one); if it comes back
            # later, what follows its return is judged without its points
            allowed = min(c + restart, hi)
            masked = v[:hi].copy() if masked is None else masked
            self._rebase(masked, base.log, allowed, allowed, level, scale, count, thr, elev, lo)
            if end is not None:
                masked[c:end] = np.nan
                self._rebase(masked, base.log, max(0, end - 3 * w), end, level, scale, count,
                             thr, elev, lo)
        return out

    def _rebase(self, masked: np.ndarray, log: bool, a: int, z0: int, level: np.ndarray,
                scale: np.ndarray, count: np.ndarray, thr: np.ndarray, elev: np.ndarray,
                lo: int) -> None:
        """Re-judge the points z0 .. z0 + 3 windows from the values a.. with spikes blanked out
        (`masked`): a spike's points would otherwise pull the trailing statistics (level, lag,
        scale) off for three windows after it."""
        w = self.window | 1
        hi = masked.shape[0]
        z1 = min(hi, z0 + 3 * w)
        if z0 >= z1:
            return
        local = baseline(masked[a:z1], w, log, masked=True, level_window=self.level_window | 1)
        local_y_full = np.full(z1, np.nan)
        local_y_full[a:z1] = local.y
        k = slice(z0 - a, z1 - a)
        level[z0:z1], scale[z0:z1], count[z0:z1] = local.level[k], local.scale[k], local.count[k]
        start = max(z0, lo)
        elev[start:z1] = self._elevated(local.y[start - a:z1 - a], level[start:z1],
                                        scale[start:z1], count[start:z1], thr[start:z1], log,
                                        start, self._back(local_y_full, level, scale, start, z1))

    def _record(self, st: np.ndarray, v: np.ndarray, base: Baseline, c: int, p: int,
                end: int | None, level: float, scale: float, thr: float) -> dict[str, Any]:
        pre = float(np.exp(level)) if base.log else level
        peak = float(v[p])
        if pre > 0 and peak > 0:
            magnitude, units = peak / pre, "ratio"
        else:
            magnitude, units = peak - pre, "difference"
        rec_steps = None if end is None else int(st[end] - st[c])
        interval = int(st[c] - st[c - 1]) if c > 0 else 0
        if rec_steps is None:
            recovery = "none"
        elif rec_steps <= max(self.fast_within, interval):
            recovery = "fast"
        else:
            recovery = "slow"
        return {
            "start": int(st[c]), "peak": int(st[p]), "end": None if end is None else int(st[end]),
            "start_index": c, "recovery": recovery, "recovery_steps": rec_steps,
            "magnitude": magnitude, "details": {
                "z": (float(base.y[p]) - level) / scale,
                "z_start": (float(base.y[c]) - level) / scale,
                "threshold": thr,
                "pre_level": pre, "peak_value": peak,
                "scale": scale, "space": "log" if base.log else "linear",
                "magnitude_units": units,
                "abrupt": bool(c > 0 and base.y[c - 1] <= level + self.back_z * scale),
            },
        }

    def _event(self, series: Series, s: dict[str, Any]) -> Event:
        severity = {"fast": "info", "slow": "warning", "none": "critical"}[s["recovery"]]
        return Event(kind=self.kind, run=series.run, tag=series.tag, start_step=s["start"],
                     peak_step=s["peak"], end_step=s["end"], severity=severity,
                     recovery=s["recovery"], recovery_steps=s["recovery_steps"],
                     magnitude=float(s["magnitude"]), details=s["details"])
