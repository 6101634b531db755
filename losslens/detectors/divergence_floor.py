"""Divergence near a floor: a loss that fell decades and rose off its floor, then settled.

Ratios over a best level mean something on a loss that sits where it started's order of
magnitude; on one that fell `NEAR_FLOOR` x or more below its start (a memorised training set,
a grokking run's train loss at 1e-4 from 4.6) a x10 rise to 5e-3 is still ~0 against where
it started. Such a rise is a divergence while it keeps rising (log space: a loss diverging from
a floor of 1e-7 climbs x3-x20 to the end); once its level has stopped rising (over the
second half of an episode of 4 sustain spans or more its median sits under `STILL_RISING` x
the first half's height over the best level, in log units: a steady climb gives x1.6 and more)
and never came back within `NEAR_FLOOR` x of its start, it is a level that settled near 0, not a divergence
(a slingshot-like train loss that steps from 3e-4 to a 1e-3..1e-2 band and stays there for
90 % of the run). A loss back within two decades of its start, or still rising, is judged as
ever; so is any loss that never fell two decades (where the ratio is what an engineer reads).

An episode off such a floor that came back under the threshold and decayed over it (its second
half's median height over the best level, log, under `DECAYING` x its first half's: a grokking
run's loss collapsing from 1e-6 to 0.7 and falling log-linearly back to 1e-6 over thousands of
steps) is a collapse it recovered from, slowly: the spike detector's slow spike, not a
divergence (`recovered_on_floor`).

Slingshots (`floor_episode`): collapses off such a floor that each decay back to a band still
decades under the start (1e-3 against a 1e-5 best) keep the level over the threshold for the
rest of the run; the episode stands only once the level is back within two decades of the
start at the end, from that last climb (a jump that stayed, or the first point off the
trough before it), and a rise off the floor that came back is dropped at any length.
"""
from __future__ import annotations

import numpy as np

#: "On the floor": this many times (two decades) below the loss's start level.
NEAR_FLOOR = 100.0
#: The episode must last this many sustain spans before a plateau is judged (a shorter one
#: is still rising as far as anyone can tell).
PLATEAU_SPANS = 4
#: Still rising: the second half's median height over the best level (log) is at least this
#: many times the first half's (a linear climb from the crossing gives 1.6-2.2; a quick rise
#: and a flat band that creeps up 20 %, 1.08).
STILL_RISING = 1.25


def settled_on_floor(level: np.ndarray, best: float, a: int, b: int, span: int,
                     start: float) -> bool:
    """Whether the divergence episode over points a..b-1 of the log-space trailing `level`
    rose off a floor and settled there: at least PLATEAU_SPANS sustain spans (`span` points
    each) long, its level never within NEAR_FLOOR x of the `start` level (log), and the median
    height of its second half over the `best` level under STILL_RISING x its first half's."""
    if b - a < PLATEAU_SPANS * span:
        return False
    seg = level[a:b]
    if float(seg.max()) > start - float(np.log(NEAR_FLOOR)):
        return False  # back within two decades of where it started: the ratio counts
    first, second = half_heights(seg, best)
    return second < STILL_RISING * first


def half_heights(seg: np.ndarray, best: float) -> tuple[float, float]:
    """The median heights of an episode's first and second halves over the `best` level."""
    h = seg.shape[0] // 2
    return float(np.median(seg[:h])) - best, float(np.median(seg[h:])) - best


#: Decayed: the second half's median height over the best (log) under this share of the
#: first half's (a log-linear fall from the crossing back to it gives ~1/3).
DECAYING = 0.5


def recovered_on_floor(level: np.ndarray, best: float, a: int, b: int, span: int,
                       start: float) -> bool:
    """Whether the divergence episode over points a..b-1 of the log-space trailing `level`
    is a collapse off a floor that it recovered from: the series went on past it (b < the
    series' length: the level came back under the threshold), the `best` level before it
    at least NEAR_FLOOR x under the `start` level, the episode at least PLATEAU_SPANS
    sustain spans long, and the median height of its second half over the best under
    DECAYING x its first half's."""
    if b >= level.shape[0] or b - a < PLATEAU_SPANS * span:
        return False
    if start - best < float(np.log(NEAR_FLOOR)):
        return False  # not on a floor: the ratio counts
    first, second = half_heights(level[a:b], best)
    return second < DECAYING * first



def floor_start(y: np.ndarray, init: float) -> float:
    """Where a loss started, for `floor_episode` (log): its first point or the median of its
    first points (`init`), whichever is higher (a grokking run's train loss falls x100 over
    its first five logged points, 4.6 -> 0.02: their median is mid-descent)."""
    return max(init, float(y[0])) if y.shape[0] else init


def floor_episode(level: np.ndarray, y: np.ndarray, init: float, best: float, a: int, b: int,
                  span: int) -> tuple[int, tuple[int, int, int | None] | None] | None:
    """The floor rules on a divergence episode over points a..b-1 of the log-space trailing
    `level` (`best` the best level before it, `init` the median of the first points):
    None to drop it; else (the first point a declaration may be at, and (that point, the
    trough the rise starts from, the jump it starts at or None) or None for the episode's
    own onset).

    - `settled_on_floor` / `recovered_on_floor` (from `init`): dropped.
    - On a loss NEAR_FLOOR x under where it started (`floor_start`) whose level went back
      within NEAR_FLOOR x of that start somewhere in the episode (dips under that line
      shorter than a span do not count): it stands only when the level is still there at
      the series' end, from the first point c of that last stretch
      (the climb that diverged; its rise starts at the lowest level since the stretch near
      the start before it, or since the episode began), unless its level
      never came a decade down on its way up to c (one climb: the episode as ever). A level
      that came back two decades under the start after each stretch near it had
      slingshot-like collapses it recovered from (spikes), however long the band they left
      above the best; one a decade down and back up climbed again (a new rise).
    - On such a loss, an episode that never went near the start and came back under the
      threshold (b before the series' end) is a rise off the floor recovered from, however
      short: a slow spike off a floor (`recovered_on_floor` judges the long ones by decay).
    """
    if settled_on_floor(level, best, a, b, span, init) or recovered_on_floor(
            level, best, a, b, span, init):
        return None
    start = floor_start(y, init)
    line = start - float(np.log(NEAR_FLOOR))
    if start - best < float(np.log(NEAR_FLOOR)):
        return a, None  # not on a floor: the ratio counts
    near = level[a:b] > line
    for lo, hi in _gaps(near):  # a dip under the line shorter than a span is no way back
        near[lo:hi] |= lo > 0 and hi < near.shape[0] and hi - lo < span
    if not near.any():
        return None if b < level.shape[0] else (a, None)
    if not (near[-1] and b == level.shape[0]):
        return None
    c = a + int(np.flatnonzero(~near)[-1]) + 1 if (~near).any() else a
    seg = level[a:c + 1]
    if not seg.shape[0] or float((np.maximum.accumulate(seg) - seg).max()) < float(np.log(10)):
        return a, None  # one climb: it never came a decade down on its way up
    g = a + int(np.flatnonzero(near[:c - a])[-1]) + 1 if near[:c - a].any() else a
    j = g + int(np.argmin(level[g:c]))  # the trough the climb before c rose from
    # the loss's last crossing of the line from under it, when that one point made half the
    # climb from the trough or more, is where it went (a jump that stayed: a slingshot that
    # never came back); else the climb was gradual and starts at the trough
    up = np.flatnonzero((y[j + 1:c + 1] > line) & (y[j:c] <= line))
    k = j + 1 + int(up[-1]) if up.shape[0] else None
    if k is not None and y[k] - y[k - 1] < (y[k] - level[j]) / 2:
        k = None
    return c, (c, j, k)


def _gaps(near: np.ndarray) -> list[tuple[int, int]]:
    """[lo, hi) of each run of False in `near`."""
    edges = np.diff(np.concatenate(([1], near.astype(np.int8), [1])))
    return list(zip(np.flatnonzero(edges == -1).tolist(), np.flatnonzero(edges == 1).tolist()))
