"""When a spike off a near-zero floor is back: the share-of-height convention (spike.py uses it).

A loss that fell decades to a floor (grokking runs: 1e-5 .. 1e-7 on modular arithmetic) is
judged additively near 0 (spike_stats.near_zero_points). Its plain return rule, back within
`back_z` additive noise scales of the pre-spike level, asks a x1e5 collapse (3e-5 -> 3.6) to
come back to within a few 1e-6 of 3e-5: it takes tens of thousands of steps, and the next
slingshot usually comes first, so every slingshot of a storm read as never recovered, the
storm as one spike, and a run that is training normally as critical.

The convention (one for every spike, in the space the spike is judged in): a spike is back
once its excess over the pre-spike level has shrunk to a small share of its height so far
(the highest point since it began, over the pre-spike level), confirmed as the plain return
is (`spike_stats.find_back`). In log space that share is `spike.BACK_SHARE` (5 % of the
log height: the rest is a ratio that a log plot shows); near 0, where the values are judged
additively, it is FLOOR_SHARE of the height in the loss's own units. A loss is a negative
log-likelihood (nats): an excess of 0.05 nats after a collapse of 3.6 nats is 98.6 % of the
damage undone (accuracy is back at 1.0), while the log-space ratio (0.05 / 3e-5) would still
call it x1700 up. What a person sees on the linear plot of the run (the slingshot falling back
to the floor at the next point) agrees; a log plot exaggerates the last 1e-3 nats.

The height is the highest point so far, up to a level window after the spike's start
(spike.py's `restart`): a loss not back by then has settled at a new level (the statistics
start afresh there) and a later, higher excursion is a spike of its own, not this one's
height; it may still come back later, to that share of the height it had reached, within
the statistic's `window` of its start (a base-late grokking run's x8600 slingshot decays
over 51 points; after a window the loss has settled where it is, and a return to 10 % of the
height hundreds of points later, after a level it sat on, is no recovery of this spike).

The convention is one of the loss's own units, so it holds only for a spike with a height in
them (`visible`): one whose top is over the float32 spacing of the loss's start level. Adam's
state blowing a full-batch regression up off 1e-13 to 8e-8 (a loss that started at 10) is
x1e4 in log space and nothing in nats; it is judged in log space alone, and its ringing at
1e-8 stays its own. A share return later than a level window keeps its decaying tail too
(`after`, from spike.py's late branch): the flicker after it is no spike of its own.

The share does not change what is a spike, only where it ends (the statistics are re-judged
from there as after any return, so a storm's next collapse is a spike of its own) and so its
recovery class. A spike that settles at a level well above the floor (a loss that does not
come back: 1e-4 -> 4.4 -> 1.0 .. 1.3 for good) is still not back: 1.0 is 23 % of its height.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .spike_collapse import COLLAPSE, FALLEN, off_floor, on_floor
from .spike_stats import LogCheck, find_back
from .spike_trend import Trend
from .spike_trend import trend_back as log_trend_back

#: Near 0 (additive space), a spike is back once its excess is down to this share of its height:
#: 90 % of the excursion undone, the last 10 % of it left (see the module docstring).
FLOOR_SHARE = 0.1
#: The relative spacing of float32 numbers (2^-23): a spike whose top is under this share of
#: the loss's start level is no height in the loss's own units (`visible`).
RESOLVED = float(np.finfo(np.float32).eps)


def within(det: Any) -> tuple[int, int]:
    """The spike detector `det`'s level window + 1 (its `restart`) and window, in points."""
    return (det.level_window | 1) + 1, det.window | 1


def back(det: Any, y: np.ndarray, start: int, band: float, pre: float,
         near_zero: object) -> int | None:
    """`find_back` from index `start` (`band`: the plain return bound; `det`: the spike
    detector, its `back_points`) with the share rule near 0 on a loss on a floor
    (`floored`; `near_zero`: the LogCheck where the values are judged additively near 0, or
    None: `share_back`); elsewhere the plain return alone."""
    points = det.back_points
    top = float(np.nanmax(y[start - 1:start - 1 + within(det)[0]])) if start >= 1 else pre
    if floored(det, near_zero, pre, top):
        r = share_back(y, start, band, points, pre, within(det))
        if r is not None:
            return r
    return find_back(y, start, band, points)


def floored(det: Any, check: LogCheck | None, pre: float, top: float) -> bool:
    """Whether the share rule applies to a spike over the additive level `pre` near 0 that
    reached `top` within a level window (`check`: the LogCheck where the values are judged
    additively near 0, else None): a loss (`det.lone_rules`) on a floor: `pre` under where
    the series started (`check.start`) and FALLEN x under it (`on_floor`), or FALLEN x under
    `top`, which climbed back to within COLLAPSE x of the start (a collapse off the floor:
    the start is the median of the first five values, on a run that memorises in a few
    points already near its floor). A series that starts on its floor (1e-30 from its first
    point) is on none: a blow-up to 1e-7 that settles at 1e-9 is no collapse undone."""
    if check is None or not det.lone_rules or check.start is None or np.isnan(pre) \
            or check.signed:  # (a loss that changes sign has no floor)
        return False
    # (a level at or under 0: the lag-corrected median of a loss on its floor, the floor)
    p, s = float(np.log(pre)) if pre > 0 else -np.inf, float(check.start)
    if not visible(s, top):
        return False
    if on_floor(s, p):
        return True
    return p < s and top > 0 and float(np.log(top)) >= max(p + np.log(FALLEN), s - np.log(COLLAPSE))


def visible(start: float | None, top: float) -> bool:
    """Whether a spike that reached `top` (the loss's own units) is visible in those units on
    a series whose log start level is `start` (`spike_stats.start_level`; None: unknown): its
    top is more than RESOLVED x the start level, the spacing of float32 numbers there. The
    share rule judges a return in the loss's units (the damage undone, in nats); a spike of
    8e-8 nats on a loss that started at 10 (Adam's state off a 1e-13 floor, x1e4 in log
    space) is under what a loss computed at that scale can tell from 0, and its return is
    judged in log space alone, as any spike's is. A slingshot off a grokking floor (1e-7 ->
    1e-3 on a loss that started at 4.7) is well over it."""
    return start is not None and top > 0 and float(np.log(top)) > start + float(np.log(RESOLVED))


def top_within(det: Any, v: np.ndarray, first: int) -> float:
    """The highest of the values `v` (loss units) from index `first` - 1 over a level window
    (`within`), as `back` measures a spike's height (nan: none)."""
    seg = v[max(0, first - 1):first - 1 + within(det)[0]]
    return float(np.nanmax(seg)) if seg.shape[0] and not np.isnan(seg).all() else float("nan")


def share_back(v: np.ndarray, start: int, band: float, points: int, pre: float,
               span: tuple[int, int]) -> int | None:
    """Where the values `v` (the loss in its own units) of a spike from index `start` - 1
    over the level `pre` are back by the share rule (None: not so): within `span[0]` points
    of its start (a level window), once the excess is down to FLOOR_SHARE of the height so
    far; later, within `span[1]` points (the statistic's window), once it is
    down to FLOOR_SHARE of the height reached in that level window (a loss not back by then
    has settled at a new level, which the detector judges afresh, and a later spike's height
    is not this one's; after a window the loss has settled where it is). Each return is
    confirmed as the plain one (`find_back`; `band`: the plain return bound)."""
    n = v.shape[0]
    lim = min(n, start - 1 + span[0])
    r = find_back(v[:min(n, lim + points - 1)], start, band, points, pre, FLOOR_SHARE)
    if r is not None and r < lim:
        return r
    top = float(np.nanmax(v[start - 1:lim])) if lim > start - 1 else pre
    late = min(n, start - 1 + max(span))
    r = find_back(v[:min(n, late + points - 1)], lim, max(  # (from the window's end: before
        band, pre + FLOOR_SHARE * (top - pre)), points) if np.isfinite(top) else None  # it, a
    return r if r is not None and r < late else None  # point under the later top is no return)


def log_back(det: Any, y: np.ndarray, v: np.ndarray, first: int, band: float, pre: float,
             share: float, start: float | None) -> int | None:
    """A log-space spike's return from index `first` (`y`: log values, `v`: the values;
    `band`, `pre`: log) by the share rules: its log excess down to `share` of its log height
    (spike.BACK_SHARE), or, on a floor (`on_floor`) of a loss (`det.lone_rules`), its excess in the loss's own units down
    to FLOOR_SHARE of its height (`share_back`), whichever comes first (None: neither)."""
    points = det.back_points
    got = [find_back(y, first, band, points, pre, share)]
    if det.lone_rules and np.isfinite(band) and on_floor(start, pre) \
            and visible(start, top_within(det, v, first)):
        got.append(share_back(v[:y.shape[0]], first, float(np.exp(band)), points,
                              float(np.exp(pre)), within(det)))
    known = [r for r in got if r is not None]
    return min(known) if known else None


def after(det: Any, y: np.ndarray, spike: tuple[int, int, float], near_zero: object) -> int:
    """Where a spike (`spike`: its start index, the index it is back at, its pre-spike level)
    lets the next one start (a spike from the point before the flagged one may be back at
    it): near 0 on a loss on a floor (`floored`), where the
    share rule ends it while the loss is still coming down from it (8.8 -> 3.7 -> 0.55 ->
    0.023 off a 1e-5 floor; a x3e5 collapse decaying over 20 points in log space, back at
    10 % of its height at the next point), not before the first point that rises and rises
    over the share band it was judged back by (FLOOR_SHARE of its height), within a level
    window of its return (the rest of its tail, flicker and all, is this spike's); after
    that window, or elsewhere, at its return."""
    c, end, pre = spike
    n = y.shape[0]
    if end < 1 or end >= n or not floored(det, near_zero, pre, float(
            np.nanmax(y[c:min(n, c + within(det)[0])]))):
        return end
    band = pre + FLOOR_SHARE * (float(np.nanmax(y[c:end])) - pre)
    stop = min(n, end + within(det)[0])
    with np.errstate(invalid="ignore"):
        new = ~(y[end:stop] < y[end - 1:stop - 1]) & (y[end:stop] > band)
    return end + int(np.argmax(new)) if new.any() else stop


def off(check: LogCheck | None, c: int, v: np.ndarray, start: float | None,
        window: int = 129, level_window: int = 15) -> bool:
    """Whether the point at index `c` of the positive values `v` is a collapse off a floor
    (`spike_collapse.off_floor`) against its log-space base (as LogCheck takes it: the lower
    of the medians of the last `window` and `level_window` log values before it; `check`,
    where the values are judged additively near 0, gives those): then no lone point of
    heavy-tailed noise, whatever the lone outliers before it (a storm of sixty collapses:
    each later one need not outdo the ones before)."""
    if not float(v[c]) > 0 or (check is not None and c >= check.stop):
        return False
    if check is not None:
        window, level_window = check.window, check.level_window
    if c < 5 or not bool((v[max(0, c - window):c] > 0).all()):
        return False
    before = np.log(v[max(0, c - window):c])
    base = min(float(np.median(before)), float(np.median(before[-level_window:])))
    return off_floor(float(np.log(v[c])), base, start)


def trend_back(det: Any, values: tuple[np.ndarray, float | None], steps: np.ndarray, y: np.ndarray,
               c: int, back: int | None, pre: float, band: float, *args: Any
               ) -> tuple[int | None, Trend | None]:
    """`spike_trend.trend_back` (a log-space spike not back fast: back at the pre-spike trend;
    `args`: its other arguments), unless the values `v` sit on a floor (`on_floor`) and are
    back by the share rule in the loss's own units first (`share_back`): 90 % of the
    excursion undone is back, whatever the log-space trend says (a collapse to chance off a
    0.008 floor that relearns to 6 % of its height)."""
    got, trend = log_trend_back(steps, y, c, back, pre, band, *args)
    v, start = values
    if not (det.lone_rules and np.isfinite(band) and on_floor(start, pre)
            and visible(start, top_within(det, v, c + 1))):
        return got, trend
    lin = share_back(v[:y.shape[0]], c + 1, float(np.exp(band)), int(args[0]),
                     float(np.exp(pre)), within(det))
    if lin is not None and (got is None or lin < got):
        return lin, None
    return got, trend
