"""Heavy-tail evidence for the spike statistic, and the threshold it raises (split from spike.py).

With heavy-tailed noise (mixed-length batches, Student-t-like per-batch loss) a 6-sigma point
is not rare. SpikeDetector counts large excursions (over TAIL_Z of its scales, upward) over
the last `tail_window` points, and where there are more than Gaussian noise gives, it raises
its threshold to keep false alarms near TAIL_RATE per point under an assumed power-law tail:

- `tail_big`: the large excursions of a baseline;
- `tail_threshold`: per point, the threshold raised by the count before it (index TAIL_INDEX
  for any rise; SINGLE_INDEX, the heavier tail, for a spike of a single point, with the
  early-run evidence of TAIL_EARLY).
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: Heavy tails: |z| beyond TAIL_Z counts as a large excursion; the raised threshold assumes
#: a power-law tail of index TAIL_INDEX and aims at TAIL_RATE false alarms per point.
TAIL_Z, TAIL_INDEX, TAIL_RATE = 3.5, 5.0, 1e-5
#: Heavy-tail evidence: 3 large excursions among the last `tail_window` points; to doubt a
#: lone outlier point (not a rise that lasts) also 2 while fewer than TAIL_EARLY points have
#: been seen (Gaussian noise gives either about 1 time in 600), and their rate is then taken
#: over the points seen (at least TAIL_MIN_SEEN), so early in a run the tail is not judged as
#: if a whole window had been quiet.
TAIL_EARLY, TAIL_MIN_SEEN = 250, 100
#: ... and a spike of one point (the next one back under TAIL_Z scales) assumes a heavier tail
#: (index SINGLE_INDEX, as Student t with 2.5 degrees of freedom): an isolated outlier of
#: heavy-tailed noise looks like that, while two tail points in a row are rare unless
#: something happened. Without heavy-tail evidence both thresholds are `threshold`.
SINGLE_INDEX = 2.5


def tail_big(base: Any, threshold: float) -> np.ndarray:
    """Large excursions of the baseline `base` (TAIL_Z < z <= `threshold`, upward only: a
    spike's recovery pulls z far below 0 for a long time)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        u = (base.y - base.level) / base.scale
        return (u > TAIL_Z) & (u <= threshold)


def tail_threshold(base: Any, threshold: float, tail_window: int, big: np.ndarray | None = None,
                   a: int = 0, b: int | None = None, index: float = TAIL_INDEX) -> np.ndarray:
    """Per point of a..b of `base`: `threshold`, raised where the `tail_window` points before
    it held more large excursions (`big`, default `tail_big`) than Gaussian noise gives. The
    raise assumes a power-law tail (index TAIL_INDEX) and keeps false alarms near TAIL_RATE
    per point (`index`: another tail index; SINGLE_INDEX also takes early evidence)."""
    n = base.y.shape[0]
    b = n if b is None else b
    thr = np.full(b - a, float(threshold))
    if tail_window == 0 or b <= a:
        return thr
    big = tail_big(base, threshold) if big is None else big
    lo = max(0, a - tail_window)
    cs = np.concatenate(([0], np.cumsum(big[lo:b])))
    i = np.arange(a, b)
    cnt = cs[i - lo] - cs[np.maximum(0, i - tail_window) - lo]
    heavy = cnt >= 3
    if index == SINGLE_INDEX:  # a lone point: see TAIL_EARLY
        seen = np.minimum(i, tail_window)  # the points the count covers
        heavy |= (cnt >= 2) & (seen < TAIL_EARLY)
        rate = (cnt[heavy] - 1.5) / np.maximum(seen[heavy], TAIL_MIN_SEEN)
    else:
        rate = (cnt[heavy] - 2) / tail_window
    thr[heavy] = np.maximum(thr[heavy], TAIL_Z * (rate / TAIL_RATE) ** (1 / index))
    return thr
