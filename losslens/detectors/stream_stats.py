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

from .spike import Baseline, Known, baseline, start_level
from .stream_base import Regrow, SeriesBuffer


class _Grow:
    """A float64 (or int64) array grown by appending, cut back by truncating."""

    def __init__(self, dtype: type = np.float64) -> None:
        self.a = np.empty(256, dtype)
        self.n = 0
        self.grow = Regrow()  # (no call copies the whole array)

    def put(self, at: int, x: np.ndarray) -> None:
        """Write `x` from index `at` (<= n) on; the array ends after it."""
        self.a = self.grow.put(self.a, at, x)
        self.n = at + x.shape[0]

    def cut(self, n: int) -> None:
        self.n = min(self.n, n)

    @property
    def view(self) -> np.ndarray:
        return self.a[:self.n]


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
        if lo >= w + 2 and hi >= lo:  # (a full window throughout: one call)
            count = np.full(hi - lo, w, np.int64)
        else:  # (np.clip's numbers)
            count = np.minimum(np.maximum(np.arange(lo - 2, hi - 2), 0), w)
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
        return Known(split, logb, addb, start_level(self.val.view))


def prefer_scipy() -> None:
    """Import SciPy's filters now: a streaming run lives long, and once they are imported
    `filters` uses them at every size (the same numbers; ~15x faster than numpy's sliding
    window at a window of 129). A streaming form's construction calls this, so that its
    first update does not pay the import (~0.2-0.5 s)."""
    import scipy.ndimage  # noqa: F401
