"""A late spike's return judged against where the loss was heading, not where it was.

A loss that keeps falling after a spike (a power law in the step; faster again as a cosine,
linear or WSD schedule cools the learning rate) drifts under its pre-spike level in time even
when the spike left it higher for good: an engineer looking at the plot sees a level that
stepped up and stayed up relative to the curve it was on. So a spike that is not back within
`fast_within` steps is `slow` only once the gap to the pre-spike trend has closed (the same
band and share of its height as the plain return; its height: its own top, not a later
spike's), and the return lasts (the median of the CONFIRM points from it is back too). Never
back so: `none`. A fast return (where a steep early descent takes the loss under its
pre-spike level within steps) is not re-judged, unless the loss decays exponentially (below).

The trend: a straight line in log loss over log step (a power law), fitted robustly on the
last FIT_POINTS finite points before the spike that lie from half its log step on (the
medians of the log values and log steps of their older and newer halves) and anchored at
the pre-spike level. The log step counts from one log interval before the series' first
point (`origin`: shifting the steps shifts the verdicts). Bounded: its slope is at most 0 (a
loss that was flat or rising is projected flat) and at least MAX_FALL, and only TRUST (half)
of the fall it projects is taken: a loss nearing its floor falls ever slower, and a power
law fitted on its recent past would take a slow spike's return for a loss that stayed up
(on the tuning seeds, full trust turned 5 slow spikes into `none`). A loss falling faster
than MAX_FALL there whose fall per step held steady over the fit window is an exponential
decay (a fine-tune memorising its data, a loss decaying to a low floor: a straight line in log
loss over the step, steepening in log step): projected as such (EXP_TRUST of its rate), as a
power law it would be projected far too shallow and a step up for good would read `slow`;
there a return within `fast_within` is judged against the trend too (a loss falling x3 in 250
steps is under its pre-spike level within steps whatever the spike did). A streaming window
that starts later gets the points before it (`Prior`), so it fits the same trend.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .spike_stats import find_back, trailing_median

#: The last points before a spike on which its trend is fitted (those from half its step on).
FIT_POINTS = 4096
#: Fewer points before a spike than this: no trend (the plain return stands).
MIN_FIT = 16
#: The steepest trend projected, in log loss per log step (a power law's exponent).
MAX_FALL = -1.0
#: The share of the trend's projected fall that is trusted (a power law fitted on the recent
#: past falls further than a loss nearing its floor will).
TRUST = 0.5
#: A late return must last: the median of the CONFIRM points from it (odd) is back too (a
#: pair of low points of heavy-tailed noise under a level that stays up is no return).
CONFIRM = 15
#: A loss falling faster than MAX_FALL whose fall per step over the newer third of the fit
#: window is at least EXP_STEADY x that over the older third (steady, not flattening) is an
#: exponential decay; EXP_TRUST of its rate is projected (a loss nearing its floor slows).
EXP_STEADY, EXP_TRUST = 0.85, 0.9


@dataclass(frozen=True)
class Prior:
    """What a window of a longer series needs to fit a spike's trend as the whole series
    would: the last FIT_POINTS finite positive points before it (steps, log values) and the
    series' step origin (`origin`)."""

    steps: np.ndarray
    y: np.ndarray
    origin: float
    #: The steps [start, end) of the spikes found before the window (end: inf when not
    #: back): left out of the exponential-decay test, as the whole series leaves them out.
    spans: tuple[tuple[float, float], ...] = ()


def origin(steps: np.ndarray) -> float:
    """The step from which a trend's log step is counted: one log interval before the first
    finite point (`steps`: the finite points' steps); the steps a log prints are then the
    step counter when it starts at 0 or 1, and shifting them shifts every verdict."""
    if steps.shape[0] == 0:
        return 0.0
    gap = float(steps[1] - steps[0]) if steps.shape[0] > 1 else 1.0
    return float(steps[0]) - max(1.0, gap)


def prior_points(steps: np.ndarray, values: np.ndarray, a: int,
                 spans: tuple[tuple[float, float], ...] = ()) -> Prior:
    """The `Prior` of the window from index `a` of a series (`steps`, `values`; `spans`: the
    spikes found before it, see `Prior.spans`)."""
    first = np.flatnonzero(np.isfinite(values[:min(a, 64)]))[:2]
    if first.shape[0] < 2:
        first = np.flatnonzero(np.isfinite(values))[:2]
    size = FIT_POINTS
    while True:  # (not the whole prefix: a few more than FIT_POINTS, unless NaN thin them)
        lo = max(0, a - size)
        seg = values[lo:a]
        ok = lo + np.flatnonzero(np.isfinite(seg) & (seg > 0))
        if ok.shape[0] >= FIT_POINTS or lo == 0:
            ok = ok[-FIT_POINTS:]
            return Prior(steps[ok].astype(np.int64), np.log(values[ok]), origin(steps[first]),
                         tuple(spans))
        size *= 2


def trend_slope(steps: np.ndarray, y: np.ndarray, c: int, prior: Prior | None = None
                ) -> tuple[float, float]:
    """(the pre-spike trend of log values `y` before index `c`, in log loss per log step
    counted from its origin; the origin): 0 when there is none (too few points, or a loss
    that was not falling). From the last FIT_POINTS points before `c` (`prior`: the points
    before `steps[0]`, when `steps` is a window of a longer series) that lie at or after
    half of `steps[c]`'s log step."""
    st, yy, o = _fit_points(steps, y, c, prior)
    return float(np.clip(_power(st, yy), MAX_FALL, 0.0)), o


def trend_rate(steps: np.ndarray, y: np.ndarray, c: int, prior: Prior | None = None,
               spans: Sequence[tuple[float, float]] = ()) -> float:
    """The exponential decay rate (log loss per step, < 0) of the log values `y` before index
    `c` (arguments as `trend_slope`), 0 when the loss is no such decay: it falls faster than
    MAX_FALL in log step and its fall per step held steady (EXP_STEADY) over the window.
    The points of earlier spikes (`spans`, steps [start, end), and `prior.spans`) are left
    out: a slow spike's own decay is a straight line in log loss over the step too."""
    st, yy, _ = _fit_points(steps, y, c, prior, spans)
    if not _power(st, yy) < MAX_FALL:
        return 0.0
    q = st.shape[0] // 3
    x = [float(np.median(st[a:b])) for a, b in ((0, q), (q, 2 * q), (2 * q, None))]
    m = [float(np.median(yy[a:b])) for a, b in ((0, q), (q, 2 * q), (2 * q, None))]
    if not (x[0] < x[1] < x[2]):
        return 0.0
    older, newer = (m[1] - m[0]) / (x[1] - x[0]), (m[2] - m[1]) / (x[2] - x[1])
    if older < 0 and newer <= EXP_STEADY * older:
        return 0.5 * (older + newer)
    return 0.0


def _fit_points(steps: np.ndarray, y: np.ndarray, c: int, prior: Prior | None,
                spans: Sequence[tuple[float, float]] | None = None
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """The points a spike's trend is fitted on: (their steps counted from the origin, their
    log values, the origin); empty when fewer than MIN_FIT (see `trend_slope`). `spans`
    (None: none): steps [start, end) of earlier spikes, sorted, whose points are left out,
    with those of `prior.spans`."""
    o = prior.origin if prior is not None else origin(steps)
    a = max(0, c - FIT_POINTS)
    st = steps[a:c].astype(float) - o
    yy = y[a:c]
    if prior is not None and c < FIT_POINTS and prior.steps.shape[0]:
        st = np.r_[prior.steps[-(FIT_POINTS - c):].astype(float) - o, st]
        yy = np.r_[prior.y[-(FIT_POINTS - c):], yy]
    ok = np.isfinite(yy) & (st > 0) & (st >= 0.5 * (float(steps[c]) - o))
    if spans is not None:
        for group in (prior.spans if prior is not None else (), spans):
            ok &= ~_within(st + o, group)
    if int(ok.sum()) < MIN_FIT:
        return np.zeros(0), np.zeros(0), o
    return st[ok], yy[ok], o


def _within(st: np.ndarray, spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """Which of the sorted steps `st` lie in one of `spans` ([start, end), sorted by start, not
    overlapping); only the spans from the last one starting before st[0] are looked at."""
    out = np.zeros(st.shape[0], bool)
    if not spans or not st.shape[0]:
        return out
    i = max(0, bisect.bisect_right(spans, (float(st[0]), math.inf)) - 1)
    for a0, b0 in spans[i:]:
        if a0 > st[-1]:
            break
        out |= (st >= a0) & (st < b0)
    return out


def _power(st: np.ndarray, yy: np.ndarray) -> float:
    """The unbounded power-law slope of the fit points (`_fit_points`): the medians of the log
    values over the medians of the log steps of their older and newer halves; 0 when none."""
    if st.shape[0] < MIN_FIT:
        return 0.0
    ls = np.log(st)
    h = ls.shape[0] // 2
    dx = float(np.median(ls[h:]) - np.median(ls[:h]))
    if not dx > 0:
        return 0.0
    return float(np.median(yy[h:]) - np.median(yy[:h])) / dx


@dataclass(frozen=True)
class Trend:
    """The trend a spike's late return was judged against: `slope`, the power-law fall taken
    (log loss per log step counted from `origin`; TRUST x the fitted one), or `rate`, the
    exponential one (log loss per step; EXP_TRUST x the fitted one); the other is 0."""

    slope: float
    origin: float
    rate: float = 0.0

    def fall(self, steps: np.ndarray, start: float) -> np.ndarray:
        """The change of the log loss it projects from the spike's start step `start` to
        `steps` (<= 0)."""
        t = np.asarray(steps, dtype=float)
        return self.slope * np.log((t - self.origin) / (start - self.origin)) + self.rate * (
            t - start)

    def details(self) -> dict[str, float]:
        """As the event's details: `trend`, `trend_origin` and (an exponential decay)
        `trend_rate`."""
        out = {"trend": self.slope, "trend_origin": self.origin}
        return out | {"trend_rate": self.rate} if self.rate else out


def trend_back(steps: np.ndarray, y: np.ndarray, c: int, back: int | None, pre: float,
               band: float, points: int, share: float, fast: int,
               prior: Prior | None = None, spans: Sequence[tuple[float, float]] = ()
               ) -> tuple[int | None, Trend | None]:
    """The index from which the spike starting at index `c` of the log values `y` (steps
    `steps`) is back, given its plain return `back` (None: never), and the `Trend` used
    (None: not re-judged). `back` itself when it came within `fast` steps (unless the loss
    decays exponentially: `trend_rate`) or has no point to judge, else the first lasting
    return to the pre-spike trend: the values less the
    trend's projected fall, each the higher of itself and the median of the CONFIRM values
    from it, back within `band` or `share` of the spike's own height over `pre` (its top
    until `back`: a later spike is not its height) by `find_back`'s rule (`points`)."""
    n = y.shape[0]
    if back is None or back >= n:
        return back, None
    rate = trend_rate(steps, y, c, prior, spans)  # (an exponential decay: a fast return too)
    if int(steps[back] - steps[c]) <= fast and not rate:
        return back, None
    slope, o = trend_slope(steps, y, c, prior)
    trend = Trend(0.0, o, EXP_TRUST * rate) if rate else Trend(TRUST * slope, o)
    top = float(np.nanmax(y[c:max(back, c + 1)]))  # (the event's peak)
    band = max(band, pre + share * (top - pre))
    yd = y.copy()
    yd[c + 1:] = y[c + 1:] - trend.fall(steps[c + 1:n], float(steps[c]))
    # a return that lasts: the point and the median of the CONFIRM points from it
    after = yd[c + 1:]
    ok = np.isfinite(after)
    if ok.any():
        ahead = np.full(after.shape[0], np.nan)
        ahead[ok] = trailing_median(after[ok][::-1], CONFIRM)[::-1]
        yd[c + 1:] = np.where(ok, np.maximum(after, ahead), after)
    return find_back(yd, c + 1, band, points), trend


def trend_band(details: dict, back_z: float, share: float
               ) -> tuple[float, Trend] | None:
    """For a log-space spike re-judged against its trend (`details` as `SpikeDetector`
    writes them: `trend` slope, `trend_origin` and `trend_rate` if any, `pre_level`,
    `scale`, `peak_value`; `share` as `trend_back` takes it): (the band its detrended log
    values must come within, the `Trend`); None when it was not re-judged so."""
    keys = ("trend", "trend_origin", "pre_level", "scale", "peak_value")
    vals = [details.get(k) for k in keys]
    if not all(isinstance(x, float) and np.isfinite(x) for x in vals):
        return None
    slope, o, pre, scale, peak = vals
    if pre <= 0 or peak <= 0:
        return None
    rate = details.get("trend_rate", 0.0)
    trend = Trend(slope, o, rate if isinstance(rate, float) and np.isfinite(rate) else 0.0)
    lp = float(np.log(pre))
    return max(lp + back_z * scale, lp + share * (float(np.log(peak)) - lp)), trend


def dip_level(y: np.ndarray, c: int, pre: float, scale: float, window: int, level_window: int,
              threshold: float, back_z: float) -> float | None:
    """The level of a flat loss that the spike at index c, not back at `pre` (its pre-spike
    level, `scale` its scale; `y`: the values in the spike's space, up to where it is judged),
    rose from a dip under: the median of the `window` points before c, when `pre` lies
    `threshold` scales under it (the spike started from a dip, or a burst's trough), the
    loss was flat before (the medians of the older and newer halves of those points, less
    the last `level_window`, within `back_z` scales: a falling loss is not judged so) and
    settled back at it (the median of the `level_window` points from `level_window` after c
    within `back_z` scales over it, or under it, or at least half of the way back from the
    spike's top). None otherwise. A GAN's discriminator
    loss sat at 0.498, fell to 0.24 as the GAN started to train, overshot to 0.61 and settled
    at 0.47: measured from the trough it "never recovered"; from the flat level before it,
    it is back at once."""
    a = max(0, c - window)
    before, after = y[a:c], y[c + level_window:c + 2 * level_window]
    old, new = before[:max(0, before.shape[0] - level_window)], after
    if old.shape[0] < 2 * level_window or new.shape[0] < level_window // 2 + 1:
        return None
    ref = float(np.median(before))
    half = old.shape[0] // 2
    band = back_z * scale
    if not (pre < ref - threshold * scale
            and abs(float(np.median(old[:half])) - float(np.median(old[half:]))) <= band
            and float(np.median(new)) <= ref + max(band, (float(y[c:c + level_window].max())
                                                           - ref) / 2)):
        return None
    return ref


def dip_return(det: Any, steps: np.ndarray, y: np.ndarray, c: int, pre: float, scale: float,
               end: int | None, window: int, level_window: int, c0: int | None = None
               ) -> tuple[bool, float, int | None]:
    """A spike at index c of `y` (pre-spike level `pre`, `scale`; `end`: its return to
    `pre`, None: none) that is not back within `det.fast_within` steps, judged against the
    flat level it rose from a dip under (`dip_level`): (True, ...) when its first point is
    not `det.threshold` scales over that level (the way back from the dip, no spike), else
    (False, that level, the return to it, after `c0`); (False, pre, end) where no dip applies.
    `c0`: the elevated point when the spike was moved to start at the point before it (HUMP)."""
    c0 = c if c0 is None else c0
    if end is not None and steps[end] - steps[c] <= det.fast_within:
        return False, pre, end
    if not (np.isfinite(pre) and np.isfinite(scale) and scale > 0):
        return False, pre, end  # (values at the edge of float64: no level to speak of)
    ref = dip_level(y, c, pre, scale, window, level_window, det.threshold, det.back_z)
    if ref is None or not np.isfinite(ref):
        return False, pre, end
    if float(y[c0]) - ref < det.threshold * scale:
        return True, pre, end
    return False, ref, find_back(y, c0 + 1, ref + det.back_z * scale, det.back_points)
