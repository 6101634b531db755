"""A collapse off a floor: a loss that fell decades climbing back to where it started.

Near 0 (a positive loss judged additively, spike_stats.LogCheck) a spike must also stand out
in log space, in units of the log-space noise: a memorised set's per-batch loss on a floor of
1e-7 flickers by x10-x100 (heavy-tailed, 6-12 log scales), which is no event. But some floors
flicker over decades (a Muon grokking run: 3e-8 .. 5e-3 from point to point, a log-space
scale of 1.6-3 nats), and there a collapse from the floor back to the loss's starting level
(1e-4 -> 7.2, x7e4) is 4-6 log scales: under the threshold, though nothing
the floor did before came near it. What was learnt was lost for a step: that is a collapse
whatever the floor's flicker, and the labeller saw each of some sixty of them.

The rule (`off_floor`): the spike's base (LogCheck's level before it) lies at least FALLEN x
under the series' start level (`on_floor`) (`spike_stats.start_level`, the median of its first five
values: that of the whole series, also where a streaming window of it is judged), the spike's highest value rises more than FALLEN x over that base, and comes back to
within COLLAPSE x of the start level. Flicker (x10-x100) cannot pass the second condition,
and the third asks that the loss lose most of what it had learnt (in log terms: more than
half of the decades it fell). A loss that never fell FALLEN x under its start is judged as
before.

FALLEN and COLLAPSE are defined here once; spike_stats (its lone-point rules near 0) and
spike_floor (the share-of-height return) import them.
"""
from __future__ import annotations

import math

#: A loss on a floor lies FALLEN x under its start level (`on_floor`); a collapse off it rises
#: more than FALLEN x over the floor ...
FALLEN = 100.0
#: ... to within COLLAPSE x of the start level (also spike_stats.LogCheck.collapsed's bound).
COLLAPSE = 10.0


def on_floor(start: float | None, pre: float) -> bool:
    """Whether a log-space pre-spike level `pre` lies FALLEN x under `start`, the log of where
    the series started (`spike_stats.start_level`: the median of its first five values, of
    the whole series also when a window of it is judged; None: unknown): the loss sits on a
    floor, practically 0 next to what it was, and its spikes' returns are judged in its own
    units too (`spike_floor.share_back`)."""
    return start is not None and not math.isnan(pre) and pre <= start - math.log(FALLEN)


def off_floor(peak_log: float, base: float, start: float | None) -> bool:
    """Whether a spike whose highest value's log is `peak_log`, over the log-space `base`
    before it, on a series whose log start level is `start` (`spike_stats.start_level`;
    None: unknown), is a collapse off a floor (see the module docstring)."""
    if start is None or not (math.isfinite(peak_log) and math.isfinite(base)):
        return False
    return on_floor(start, base) and peak_log - base > math.log(FALLEN) \
        and peak_log >= start - math.log(COLLAPSE)
