"""The spike statistic's baselines of one growing series, extended point by point.

`spike.baseline` gives each point an expected value and a noise scale from the points before
it only, and from a bounded stretch of them (trailing medians over `level_window`, the lag
correction over 2 x level_window + 1 residuals, the scales over `window` errors, the print
resolution over `window` steps). So the baseline of a series that grows is the baseline of
what it was, plus that of the new points computed on them and `lookback` points before: a
streaming form (`stream_spike`) pays for the new points, not for its whole trailing window.

`BaselineCache` keeps, for one tag's stitched series (a `SeriesBuffer`), the finite values,
their raw positions, the log-space baseline over the positive prefix (before the first value
<= 0) and, once asked for, the additive baseline of all of them; a rewrite of the series
(points going back in step) drops what follows the first changed point. The arrays equal
`spike.baseline` on the whole prefix (tests/test_detectors_stream.py checks it bit for bit),
except that a prefix of fewer than 4 points is never kept (its baseline is all NaN while
that of a longer one is not).
"""
from __future__ import annotations

import numpy as np

from .spike import ADDITIVE_FLOOR, DIFF_TO_SIGMA, MAD_TO_SIGMA, Baseline, Known, baseline
from .stream_base import SeriesBuffer


class _Grow:
    """A float64 (or int64) array grown by appending, cut back by truncating."""

    def __init__(self, dtype: type = np.float64) -> None:
        self.a = np.empty(256, dtype)
        self.n = 0

    def put(self, at: int, x: np.ndarray) -> None:
        """Write `x` from index `at` (<= n) on; the array ends after it."""
        end = at + x.shape[0]
        if end > self.a.shape[0]:
            new = np.empty(max(end, 2 * self.a.shape[0]), self.a.dtype)
            new[:at] = self.a[:at]
            self.a = new
        self.a[at:end] = x
        self.n = end

    def cut(self, n: int) -> None:
        self.n = min(self.n, n)

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


def _rows(x: np.ndarray, window: int) -> np.ndarray:
    """Row j = x[j:j + window], a read-only view (numpy's sliding_window_view, without its
    checks: ~15 us a call)."""
    x = np.ascontiguousarray(x)
    n = x.shape[0] - window + 1
    return np.lib.stride_tricks.as_strided(x, (max(n, 0), window), x.strides * 2,
                                           writeable=False)


def _medians(x: np.ndarray, window: int) -> np.ndarray:
    """out[j] = median of x[j:j + window] (`window` odd: the middle value, exactly)."""
    return np.partition(_rows(x, window), window // 2, axis=1)[:, window // 2]


def grow(v: np.ndarray, done: int, upto: int, w: int, lw: int, log: bool
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`spike.baseline(v[:upto], w, log, level_window=lw)`'s y, level and scale of points
    done..upto-1, the same numbers (done >= w + 3 x lw + 2: every window they read is full),
    worked out on their windows only: the median of the lw values before each point, of
    the 2 lw + 1 residuals before, of the w errors of each predictor before, the smallest
    change of the w before (print resolution), the median change of the 2 lw + 1 before (log
    space). A few small sorts: ~0.1 ms for 50 new points, against ~0.5 ms for the baseline
    of their whole stretch of history (its filters run on w + 4 lw + 16 more points)."""
    L = 2 * lw + 1
    m0 = done - w - L  # the first point whose trailing median is needed
    lo = m0 - lw
    vv = v[lo:upto]
    with np.errstate(invalid="ignore", divide="ignore"):
        yy = np.log(vv) if log else vv.astype(float)
    med = _medians(yy[:upto - 1 - lo], lw)  # med[k]: of y[m0 + k - lw .. m0 + k - 1]
    r = yy[m0 - lo:] - med  # residuals of points m0..upto-1
    p0 = done - w
    pred = _medians(r[:upto - 1 - m0], L) + med[p0 - m0:]  # points p0..upto-1
    err_m = np.abs(yy[p0 - lo:] - pred)
    scale = _medians(err_m[:upto - 1 - p0], w)
    scale_d = _medians(np.abs(np.diff(yy[done - w - 1 - lo:upto - 1 - lo])), w)
    y = yy[done - lo:]
    with np.errstate(invalid="ignore"):
        use_d = ~(scale <= scale_d)
    level = np.where(use_d, yy[done - 1 - lo:upto - 1 - lo], pred[done - p0:])
    scale = np.where(use_d, scale_d, scale)
    scale *= MAD_TO_SIGMA
    step = np.abs(np.diff(vv[done - w - 1 - lo:upto - 1 - lo]))
    step[step == 0] = np.inf
    quantum = _rows(step, w).min(axis=1)
    quantum[~np.isfinite(quantum)] = 0.0
    med_i = med[done - m0:]
    if log:
        quantum *= np.exp(-med_i)
        np.maximum(quantum, 1e-9, out=quantum)
    else:
        quantum = np.maximum(quantum, 1e-12 * np.maximum(1.0, np.abs(med_i)))
    np.maximum(scale, quantum, out=scale)
    if log:
        addn = _medians(np.abs(np.diff(vv[done - L - 1 - lo:upto - 1 - lo])), L)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            floor = ADDITIVE_FLOOR * DIFF_TO_SIGMA * addn / np.exp(level)
        np.fmax(scale, floor, out=scale)
    return y, level, scale


class _Side:
    """One space's baseline arrays (y, level, scale) over the first `n` finite values."""

    def __init__(self) -> None:
        self.y, self.level, self.scale = _Grow(), _Grow(), _Grow()

    @property
    def n(self) -> int:
        return self.y.n

    def cut(self, n: int) -> None:
        for g in (self.y, self.level, self.scale):
            g.cut(n)

    def extend(self, v: np.ndarray, upto: int, w: int, lw: int, log: bool,
               lookback: int) -> None:
        """Bring the arrays to the first `upto` values of `v`."""
        done = self.n
        if upto <= done:
            self.cut(upto)
            return
        if done >= lookback + 4:  # the new points alone, on their windows of history
            y, level, scale = grow(v, done, upto, w, lw, log)
            for g, x in ((self.y, y), (self.level, level), (self.scale, scale)):
                g.put(done, x)
            return
        a = 0 if upto < 4 or done < lookback + 4 else done - lookback
        keep = done if a else 0
        # (a stretch of history: its first `lookback` points are dropped, heads and all)
        b = baseline(v[a:upto], w, log, level_window=lw, head=a == 0)
        if upto < 4:  # (never kept: see the module doc)
            self.cut(0)
            return
        for g, x in ((self.y, b.y), (self.level, b.level), (self.scale, b.scale)):
            g.put(keep, x[keep - a:])

    def get(self, lo: int, hi: int, w: int, log: bool) -> Baseline:
        count = np.clip(np.arange(lo, hi) - 2, 0, w)
        return Baseline(self.y.view[lo:hi], self.level.view[lo:hi], self.scale.view[lo:hi],
                        count, log)


class BaselineCache:
    """The spike statistic's baselines of one tag's finite values (see the module doc)."""

    def __init__(self, window: int, level_window: int) -> None:
        self.w, self.lw = int(window) | 1, int(level_window) | 1
        #: finite points a point's baseline leans on (with a margin).
        self.lookback = self.w + 4 * self.lw + 16
        self.pos = _Grow(np.int64)  # raw index of each finite value
        self.val = _Grow()
        self.upto = 0  # raw points scanned
        self.log, self.add = _Side(), _Side()
        self.add_wanted = False
        self.tick: int | None = None
        self.rewrites = 0  # of the series' rewrites, those taken in

    def update(self, s: SeriesBuffer, tick: int) -> None:
        """Take in the points of `s` changed or added since the last call (once per tick)."""
        if self.tick == tick:
            return
        self.tick = tick
        d = s.n if s.dirty is None else int(s.dirty)
        if len(s.rewrites) > self.rewrites:  # (also those of updates this cache missed)
            d = min([d] + s.rewrites[self.rewrites:])
            self.rewrites = len(s.rewrites)
        if d < self.upto:  # rewritten from raw index d on
            f = int(np.searchsorted(self.pos.view, d))
            self.pos.cut(f)
            self.val.cut(f)
            self.log.cut(f)
            self.add.cut(f)
            self.upto = d
        seg = s.value[self.upto:s.n]
        ok = np.flatnonzero(np.isfinite(seg))
        f = self.val.n
        self.pos.put(f, ok + self.upto)
        self.val.put(f, seg[ok])
        self.upto = s.n
        nf = self.val.n
        v = self.val.view
        # log space over the positive prefix
        pos_end = nf if s.first_nonpos is None else int(np.searchsorted(self.pos.view,
                                                                       s.first_nonpos))
        self.log.extend(v, pos_end, self.w, self.lw, True, self.lookback)
        if self.add_wanted:
            self.add.extend(v, nf, self.w, self.lw, False, self.lookback)

    @property
    def n(self) -> int:
        """Finite values taken in."""
        return self.val.n

    def finite_index(self, raw: int) -> int:
        """How many finite values lie before raw index `raw`."""
        return int(np.searchsorted(self.pos.view, raw))

    def log_baseline(self, lo: int, hi: int) -> Baseline:
        """The log-space baseline of finite values lo..hi-1 (hi at most the positive prefix)."""
        return self.log.get(lo, min(hi, self.log.n), self.w, True)

    def known(self, fa: int, split: int) -> Known | None:
        """What `SpikeDetector.find` needs for the finite values from `fa` on, judged
        additively from the `split`-th of them on (in the window's own indices); None
        when the log-space prefix is too short to be kept (`find` works it out itself)."""
        nf = self.val.n
        m = nf - fa
        logb = None
        if split > 0:
            if self.log.n < fa + min(split, 4):
                return None
            logb = self.log_baseline(fa, nf)
        elif self.log.n > fa:  # additive from before the window, but positive (near 0):
            logb = self.log_baseline(fa, nf)  # its spikes are checked in log space (LogCheck)
        addb = None
        if split < m:
            if self.add.n < nf:
                self.add_wanted = True
                self.add.extend(self.val.view, nf, self.w, self.lw, False, self.lookback)
                if self.add.n < nf:
                    return None
            addb = self.add.get(fa, nf, self.w, False)
        return Known(split, logb, addb)


def prefer_scipy() -> None:
    """Import SciPy's filters now: a streaming run lives long, and once they are imported
    `filters` uses them at every size (the same numbers; ~15x faster than numpy's sliding
    window at a window of 129). A streaming form's construction calls this, so that its
    first update does not pay the import (~0.2-0.5 s)."""
    import scipy.ndimage  # noqa: F401
