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

The share is of the height reached within a level window of the spike's start (spike.py's
`restart`): a loss not back by then has settled at a new level (the statistics start afresh
there) and a later, higher excursion is a spike of its own, not this one's height.

The share does not change what is a spike, only where it ends (the statistics are re-judged
from there as after any return, so a storm's next collapse is a spike of its own) and so its
recovery class. A spike that settles at a level well above the floor (a loss that does not
come back: 1e-4 -> 4.4 -> 1.0 .. 1.3 for good) is still not back: 1.0 is 23 % of its height.
"""
from __future__ import annotations

import numpy as np

from .spike_stats import find_back

#: Near 0 (additive space), a spike is back once its excess is down to this share of its height:
#: 90 % of the excursion undone, the last 10 % of it left (see the module docstring).
FLOOR_SHARE = 0.1


def back(y: np.ndarray, start: int, band: float, points: int, pre: float,
         near_zero: object, within: int) -> int | None:
    """`find_back` from index `start` (`band`: the plain return bound) with the share rule
    near 0 (`near_zero` not None: the values are a positive loss judged additively, as where
    spike.py has a LogCheck; FLOOR_SHARE of the height over `pre`) for a return within
    `within` points of the spike's start (a level window: a loss not back by then has
    settled at a new level, which the detector judges afresh, and a later spike's height is
    not this one's); elsewhere, and later, the plain return alone."""
    if near_zero is not None and np.isfinite(pre):
        lim = min(y.shape[0], start - 1 + within)
        r = find_back(y[:min(y.shape[0], lim + points - 1)], start, band, points, pre,
                      FLOOR_SHARE)
        if r is not None and r < lim:
            return r
    return find_back(y, start, band, points)
