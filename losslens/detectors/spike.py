"""Loss spikes: points far above the loss's own recent level, and whether the loss came back.

Training meaning (DESIGN §1): a spike is a sudden jump of the loss. Fast-recovering spikes
(back where the loss left off within a few hundred steps) are usually harmless; slow ones cost
compute; spikes that never come back (the loss settles higher, or diverges) are the ones PaLM
restarted from a checkpoint for.

Statistic (causal: a point's verdict uses only the points before it):

- Space: log of the values while every value so far is positive (a loss spanning decades keeps
  one noise scale, and "2x the loss" reads the same at 8.0 and at 0.08); additive from the first
  non-positive value on (RL and policy losses change sign).
- Level: median of the `window` finite points before the point, plus the median of their own
  residuals against their trailing medians (the lag of a median on a trending curve). Scale:
  1.4826 x the median absolute deviation of those residuals, floored by the print resolution
  (the smallest non-zero change between consecutive values in the window: a 4-decimal loss
  near 0 has a MAD of 0).
- A point is elevated when it exceeds the level by `threshold` scales (inflated by
  1 + 4/n while the window holds only n points, so a sparse eval series is judged cautiously)
  and, in log space, by the ratio `min_ratio`. The steep early descent never flags: it lies
  below its trailing level.
- Consecutive elevated points are one spike. It ends at the first point back within `back_z`
  pre-spike scales of the pre-spike level, confirmed by the median of `back_points` points.
  Recovery: `fast` (back within `fast_within` steps, or at the very next logged point),
  `slow` (back later), `none` (never back).

Known false positives: a level shift upwards at an LR or data-mixture switch reads as a spike
that never recovers; heavy-tailed per-batch noise (mixed-length batches) gives isolated
1-point spikes of modest magnitude (raise `threshold` or `min_ratio`).
Known misses: a second spike during the recovery of a first one is merged into the first.
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
    from scipy import ndimage

    n = x.shape[0]
    if n == 0:
        return x.astype(float)
    out = ndimage.median_filter(x, size=window, mode="nearest", origin=(window - 1) // 2)
    head = min(window - 1, n)
    if head:  # the filter pads with x[0]; the first points get exact expanding medians
        import pandas as pd

        out[:head] = pd.Series(x[:head]).expanding().median().to_numpy()
    return out


def trailing_min(x: np.ndarray, window: int) -> np.ndarray:
    from scipy import ndimage

    if x.shape[0] == 0:
        return x.astype(float)
    return ndimage.minimum_filter1d(x, size=window, mode="nearest", origin=(window - 1) // 2)


@dataclass(frozen=True)
class Baseline:
    """Per point i: the expected value and the noise scale from the points before i."""

    y: np.ndarray  # the transformed values (log or raw)
    level: np.ndarray  # expected y: trailing median + its typical lag (NaN while unknown)
    scale: np.ndarray  # robust scale of the residuals, floored (NaN while unknown)
    count: np.ndarray  # how many residuals the scale rests on
    log: bool


def baseline(values: np.ndarray, window: int, log: bool) -> Baseline:
    """Trailing robust expectation and scale; `values` finite (and positive when `log`).

    The trailing median lags a trending curve by about slope x window / 2; the median of the
    recent residuals measures that lag and is added back, and the scale is the MAD of the
    residuals around it. A steady descent (warm-up) or drift thus leaves z near 0, and a
    sparse eval series whose window holds its whole history keeps its true noise scale.
    """
    n = values.shape[0]
    y = np.log(values) if log else values.astype(float)
    med = np.full(n, np.nan)
    lag = np.full(n, np.nan)
    scale = np.full(n, np.nan)
    if n >= 2:
        med[1:] = trailing_median(y, window)[:-1]
    if n >= 3:
        resid = y[1:] - med[1:]  # resid[k] belongs to point k + 1
        lag[2:] = trailing_median(resid, window)[:-1]
    if n >= 4:
        spread = np.abs(y[2:] - med[2:] - lag[2:])  # spread[k] belongs to point k + 2
        scale[3:] = MAD_TO_SIGMA * trailing_median(spread, window)[:-1]
        scale[3:] = np.maximum(scale[3:], _floor(values, med[3:], window, log))
    count = np.clip(np.arange(n) - 2, 0, window)
    return Baseline(y, med + lag, scale, count, log)


def _floor(values: np.ndarray, med: np.ndarray, window: int, log: bool) -> np.ndarray:
    """The print resolution (smallest non-zero change between consecutive earlier points)
    as a scale floor for points 3.. (`med` is their trailing median)."""
    step = np.abs(np.diff(values))
    step[step == 0] = np.inf
    quantum = trailing_min(step, window)[1:-1]  # quantum[k] judges point k + 3
    quantum[~np.isfinite(quantum)] = 0.0
    if log:
        return np.maximum(np.log1p(quantum / np.exp(med)), 1e-9)
    return np.maximum(quantum, 1e-12 * np.maximum(1.0, np.abs(med)))


def find_back(y: np.ndarray, start: int, band: float, points: int) -> int | None:
    """First index t >= start with y[t] <= band and at least half of y[t:t+points] <= band."""
    n = y.shape[0]
    chunk = 256
    while start < n:
        stop = min(n, start + chunk)
        seg = y[start:min(n, stop + points - 1)]
        below = seg <= band
        cs = np.concatenate(([0], np.cumsum(below)))
        t = np.arange(stop - start)
        m = np.minimum(points, seg.shape[0] - t)
        ok = below[:stop - start] & (cs[t + m] - cs[t] >= (m + 1) // 2)
        if ok.any():
            return start + int(np.argmax(ok))
        start, chunk = stop, chunk * 4
    return None


@dataclass(frozen=True)
class SpikeDetector:
    """Loss spikes with their recovery class (fast / slow / none); see the module docstring."""

    #: Trailing points for the level and the scale (made odd). ~Two hundred points is long
    #: enough for a stable MAD (+-12 %) and short enough to follow the loss curve.
    window: int = 129
    #: Robust z-score (in scales) above the trailing level that makes a point elevated. At 6 a
    #: Gaussian-noise series of a million points gives about no false alarm.
    threshold: float = 6.0
    #: In log space, a point must also be this many times the level: smaller blips on a
    #: very quiet series are real but not what anyone calls a spike.
    min_ratio: float = 1.05
    #: No verdict before this many finite points (the scale needs a few points).
    min_points: int = 8
    #: "Back at the pre-spike level" = within this many pre-spike scales of it.
    back_z: float = 3.0
    #: The return is confirmed when at least half of this many points from it are back.
    back_points: int = 5
    #: Back within this many steps = a fast recovery (DESIGN §1: usually harmless).
    fast_within: int = 250

    scope: ClassVar[str] = "series"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "spike"

    def validate(self) -> None:
        require(self, "window", is_int(self.window) and self.window >= 5, "an int >= 5")
        require(self, "threshold", is_num(self.threshold) and self.threshold > 0, "a number > 0")
        require(self, "min_ratio", is_num(self.min_ratio) and self.min_ratio >= 1, "a number >= 1")
        require(self, "min_points", is_int(self.min_points) and self.min_points >= 3,
                "an int >= 3")
        require(self, "back_z", is_num(self.back_z) and 0 < self.back_z, "a number > 0")
        require(self, "back_points", is_int(self.back_points) and self.back_points >= 1,
                "an int >= 1")
        require(self, "fast_within", is_int(self.fast_within) and self.fast_within >= 0,
                "an int >= 0")

    def detect(self, series: Series) -> list[Event]:
        self.validate()
        return [self._event(series, s) for s in self.find(series.step, series.value)]

    # -- the work, on plain arrays (gradspike and divergence reuse it) --------------------

    def find(self, steps: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
        """Spikes as dicts of steps and statistics; non-finite points are ignored."""
        finite = np.isfinite(values)
        st = np.asarray(steps)[finite].astype(np.int64)
        v = np.asarray(values, dtype=float)[finite]
        n = v.shape[0]
        if n <= self.min_points:
            return []
        w = self.window | 1
        nonpos = np.flatnonzero(v <= 0)
        k = int(nonpos[0]) if nonpos.shape[0] else n  # log space before k, additive from k
        spaces = []
        if k > self.min_points:
            spaces.append((0, k, baseline(v[:k], w, log=True)))
        if k < n:
            spaces.append((k, n, baseline(v, w, log=False)))
        out: list[dict[str, Any]] = []
        for lo, hi, base in spaces:
            out.extend(self._extract(st, v, base, lo, hi, w))
        return out

    def _elevated(self, base: Baseline, lo: int, hi: int) -> np.ndarray:
        idx = np.arange(lo, hi)
        rise = base.y[lo:hi] - base.level[lo:hi]
        n_win = np.maximum(base.count[lo:hi], 1)
        thr = self.threshold * (1 + SMALL_SAMPLE / n_win)
        with np.errstate(invalid="ignore"):
            ok = (idx >= self.min_points) & (rise > thr * base.scale[lo:hi])
            if base.log:
                ok &= rise >= np.log(self.min_ratio)
        return lo + np.flatnonzero(ok)

    def _extract(self, st: np.ndarray, v: np.ndarray, base: Baseline, lo: int, hi: int,
                 w: int) -> list[dict[str, Any]]:
        cands = self._elevated(base, lo, hi)
        y = base.y[:hi]
        out: list[dict[str, Any]] = []
        allowed = lo
        while True:
            j = int(np.searchsorted(cands, allowed))
            if j >= cands.shape[0]:
                return out
            c = int(cands[j])
            level, scale = float(base.level[c]), float(base.scale[c])
            end = find_back(y, c + 1, level + self.back_z * scale, self.back_points)
            if end is None and hi < v.shape[0]:
                end = hi  # a log-space spike is back when the values turn non-positive
            stop = min(end if end is not None else hi, c + w)
            p = c + int(np.argmax(y[c:stop]))
            out.append(self._record(st, v, base, c, p, end, level, scale))
            # causal: later spikes may start once this one is back, or a window later
            allowed = min(end, c + w) if end is not None else c + w

    def _record(self, st: np.ndarray, v: np.ndarray, base: Baseline, c: int, p: int,
                end: int | None, level: float, scale: float) -> dict[str, Any]:
        n_win = max(int(base.count[c]), 1)
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
                "threshold": self.threshold * (1 + SMALL_SAMPLE / n_win),
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
