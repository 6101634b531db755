"""Blow-ups that stand apart from everything the loss did around them, however noisy it is.

A numerical blow-up (an overflow, a corrupt batch) throws the loss x1000 up for one or two
logged points, and it is back at once. On a quiet loss the spike statistic finds it; on a
floor whose per-point noise spans a decade or more it does not: the blow-up is 5-8 of the
floor's log-space noise scales, and a storm of them feeds the statistic's own defences
against heavy-tailed noise (each blow-up counts as a large excursion and raises the
threshold for the next; each is one more lone outlier the next must outdo, spike_stats.
outdone; the blow-ups are the highest values that the floor has "fallen" from, LogCheck).
A forecasting run with thirteen one-point x1000-x10000 blow-ups of a 1e-3 floor had one
found.

What tells a blow-up from heavy-tailed noise is a gap, not a z-score. A heavy-tailed loss
(outlier batches of x20-x200 over a 1e-6 floor) fills the range above its floor: sorted,
its values climb in steps of a few x at most. A blow-up sits x100 or more (GAP) above
every ordinary value of the `window` points before it, with nothing in between, and so do
the other blow-ups of a storm: the points above that gap (at most MAX_APART of the window)
are set apart, the rest are the floor. A run of one or two points is a blow-up where:

- each of its points lies GAP over the highest value of the floor before it, and the points
  on both sides of the run lie GAP under its lowest point (back at once);
- that gap is at least K of the floor's noise scales (1.4826 x the MAD of the log changes
  between consecutive floor points, / sqrt 2; small-sample-raised by 1 + SMALL / n for n
  floor points): a floor whose noise alone spans decades is no floor to stand apart from;
- the floor has at least MIN_FLOOR points (the first points of a series: spike_early).

The statistic is robust by construction: blow-ups are left out of the floor whose top and
noise judge the next ones, so a storm cannot raise the bar for its own members. Log space,
positive values only. The spike detector reports each blow-up as a fast spike over the
floor's median (so the storm of them is one row in a report, each still its own event)
where its own statistic did not find it, or found it inside a spike that started on the
floor before it (`merge`). A verdict uses the points up to the one after the run (as the
lone-point rule, spike_lone); `flags` is the rule's screen for the streaming form.

Known false positives: a lone ~20-sd outlier of very heavy-tailed log noise (Student t with
2.5-3 degrees of freedom) on a quiet floor is x100 over everything before it as well (one in
60 runs of 1500 points of the independent family's near-0 stratum, seed 65).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .spike_stats import MAD_TO_SIGMA

#: The gap, as a ratio: a blow-up is this many times over the highest floor value before it,
#: and the points beside it this many times under it. Heavy-tailed outlier batches of a
#: clean run reached x230 over their level but only ~x10 over the next-highest points.
GAP = 100.0
#: ... and the gap is at least K floor noise scales (raised by 1 + SMALL / n for n floor
#: points).
K, SMALL = 3.0, 4.0
#: At most this share of the window's points may be set apart above the gap (a storm is a
#: minority of the points; more are a second level, not blow-ups).
MAX_APART = 0.25
#: The floor needs this many points before a blow-up.
MIN_FLOOR = 5
#: A blow-up is a run of at most this many points.
MAX_RUN = 2

_LOG_GAP = float(np.log(GAP))


def _candidates(v: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the runs of 1..MAX_RUN points of the positive values `v` whose
    lowest point is GAP x over both of the points beside the run (a screen, on the values:
    a log of every point costs more than the rule)."""
    n = v.shape[0]
    out: list[tuple[int, int]] = []
    taken = np.zeros(n, bool)
    with np.errstate(invalid="ignore"):
        for length in range(1, MAX_RUN + 1):
            if n < length + 2:
                break
            low = v[1:n - length]
            for j in range(1, length):
                low = np.minimum(low, v[1 + j:n - length + j])
            side = np.maximum(v[:n - length - 1], v[length + 1:])
            for c in (1 + np.flatnonzero((low >= GAP * side) & (side > 0))).tolist():
                if not taken[c:c + length].any():
                    out.append((c, length))
                    taken[c:c + length] = True
    out.sort()
    return out


def _judge(y: np.ndarray, c: int, length: int, window: int
           ) -> tuple[float, float, float] | None:
    """For the run c..c+length-1 of the log values `y`: (the floor's top, its median over
    the last points, its noise scale) where the run is a blow-up, else None."""
    before = y[max(0, c - window):c]
    if before.shape[0] < MIN_FLOOR or not np.isfinite(before).all():
        return None
    low = float(np.min(y[c:c + length]))
    top_sorted = np.sort(before)[::-1]
    most = int(MAX_APART * before.shape[0])
    # the floor's top: the highest value that the run (and any points set apart above it)
    # stand GAP over; at most `most` of the points before may be set apart
    top = None
    for j in range(0, min(most, top_sorted.shape[0] - 1) + 1):
        over = low if j == 0 else min(low, float(top_sorted[j - 1]))
        if over - float(top_sorted[j]) >= _LOG_GAP:
            top = float(top_sorted[j])
            break
    if top is None:
        return None
    floor = before <= top
    fl = before[floor]
    d = np.diff(before)[floor[1:] & floor[:-1]]
    if d.shape[0] < MIN_FLOOR - 1:
        return None
    scale = MAD_TO_SIGMA * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2.0)
    if not low - top >= K * (1 + SMALL / fl.shape[0]) * scale:
        return None
    return top, float(np.median(fl[-15:])), scale


def blowups(values: np.ndarray, window: int) -> list[tuple[int, int, float, float]]:
    """The blow-ups of the finite `values` (positive ones only, in log space): (start index,
    points, the floor's log median before it, its noise scale), in order."""
    v = np.asarray(values, dtype=float)
    out: list[tuple[int, int, float, float]] = []
    if v.shape[0] < MIN_FLOOR + 2:  # a run needs MIN_FLOOR points before it and one after
        return out
    for c, length in _candidates(v):
        a = max(0, c - window)
        with np.errstate(invalid="ignore", divide="ignore"):  # (<= 0: NaN, never judged)
            y = np.log(np.where(v[a:c + length] > 0, v[a:c + length], np.nan))
        got = _judge(y, c - a, length, window)
        if got is not None:
            out.append((c, length, got[1], got[2]))
    return out


def flags(y: np.ndarray, a: int, b: int, log: bool, window: int) -> np.ndarray:
    """Per point a..b-1 of a baseline's values `y` (log values when `log`, else the values):
    whether a blow-up starts there (judged with the `window` points before it)."""
    out = np.zeros(b - a, bool)
    v = np.exp(y) if log else y
    lo = max(0, a - window)
    for c, length, _, _ in blowups(v[lo:min(b + MAX_RUN, v.shape[0])], window):
        if a <= lo + c < b:
            out[lo + c - a] = True
    return out


def _record(st: np.ndarray, v: np.ndarray, c: int, length: int, level: float,
            scale: float) -> dict[str, Any]:
    """One blow-up as `SpikeDetector.find` reports a spike (back at the next point: fast)."""
    p = c + int(np.argmax(v[c:c + length]))
    pre, peak = float(np.exp(level)), float(v[p])
    end = c + length
    z = (float(np.log(peak)) - level) / scale if scale > 0 else float("inf")
    return {
        "start": int(st[c]), "peak": int(st[p]), "end": int(st[end]), "start_index": c,
        "recovery": "fast", "recovery_steps": int(st[end] - st[c]),
        "magnitude": peak / pre, "details": {
            "z": z, "z_start": (float(np.log(v[c])) - level) / scale if scale > 0 else z,
            "threshold": K, "pre_level": pre, "peak_value": peak, "scale": scale,
            "space": "log", "magnitude_units": "ratio", "abrupt": True, "blowup": True,
        },
    }


def merge(series: Any, found: list[dict[str, Any]], det: Any) -> list[dict[str, Any]]:
    """The spikes `found` by the spike detector `det` on the finite points of `series`, with
    its `look_ahead` the
    blow-ups added: a found spike that starts at a blow-up stands (its recovery judged by
    the whole statistic); one that swallowed a blow-up but started before it (on the floor:
    a storm read as one long spike) gives way to the blow-ups in it; a blow-up inside no
    spike that stands is added (non-finite points left out, as `find` leaves them out)."""
    if not det.look_ahead:
        return found
    finite = np.isfinite(series.value)
    st = np.asarray(series.step)[finite].astype(np.int64)
    v = np.asarray(series.value, dtype=float)[finite]
    ups = blowups(v, det.window | 1)
    if not ups:
        return found
    starts = {int(st[c]) for c, _, _, _ in ups}

    def span(s: dict[str, Any]) -> tuple[int, float]:
        return s["start"], np.inf if s["end"] is None else s["end"]

    def swallowed(s: dict[str, Any]) -> bool:
        a, e = span(s)
        return s["start"] not in starts and any(a < x < e for x in starts)

    keep = [s for s in found if not swallowed(s)]
    spans = [span(s) for s in keep]
    for c, length, level, scale in ups:
        x = int(st[c])
        if c + length < v.shape[0] and not any(a <= x < e for a, e in spans):
            keep.append(_record(st, v, c, length, level, scale))
    keep.sort(key=lambda s: s["start"])
    return keep
