"""Delayed generalisation (grokking) and the "grokking moment" of pre-training (sudden drop).

`grokking` (run scope): the training metric saturates (memorised) long before validation
suddenly improves. It pairs each validation series (`val_loss` / `val_acc`) with a training
series of the same run (`train_loss` / `train_acc`, same kind preferred) and works on
"badness" (the loss, or 1 - accuracy), smoothed by a rolling median. Grokking needs all of:
train saturated (`saturation` of its improvement to the best level it held for a 20th of the
series, and near that for HOLD of the 20th after: slingshots, collapse storms and a break
late in the run do not undo memorisation); at that step validation is still far behind
(`min_gap`, when both are losses or both accuracies) and has made little of its eventual
progress (`max_val_progress`), nor made more of it by the time its fall begins (a run that
generalised long ago and dips after a collapse); later validation falls by at least
`min_improvement` of its worst post-memorisation level and stays down for a 20th of the
series from where the fall is 75 % done (not to the run's end: a grokked run that later
collapses to chance grokked); the fall starts at least `min_delay_ratio` times the
memorisation time after memorisation and takes at most `max_duration_ratio` times that delay.
Event: start_step = where validation starts its sudden improvement (10% of the fall),
end_step = end of it (90%); details.memorized_step, details.delay_steps.

Memorisation with validation getting worse and staying worse is *not* grokking (docs/playbook.md).
The event kinds have no "overfitting", so it is reported as a `changepoint` event on the
validation series with `details.pattern = "overfitting"` and severity `warning`, starting
where validation was best (diagnosis turns it into "Overfitting (not grokking)"). Known false
positive: a run cut short mid-memorisation of a task that would grok later reads as overfitting.

`sudden_drop` (run scope, so it can read the run's LR): a sharp train-loss improvement after a
slow stretch, on log(loss) block means. A drop of at least `min_drop` (and `z` noise sigmas)
within `max_duration` of the run, at least `rate_ratio` times faster than the descent over
the `plateau` before it, that stays down at a new low (half the drop below anything in the
three slow-stretch lengths before: a long spike's recovery only returns to an old level),
after the loss had already made `min_prior_progress` (so the normal early descent, which
starts from the initial level, is not reported). When an LR
series of the run drops at the same place the event says `details.lr_drop = True`: an LR-decay
step explains the drop (diagnosis should not call it grokking). When the run logs its epoch
(a series named `epoch`, HF Trainer's) and a new epoch begins within `max_duration` of the run
(and a tenth of an epoch) of the drop, epochs being at least twice that long,
`details.epoch_boundary` is that step (else None): the staircase of a multi-epoch fine-tune
meeting its data again, not grokking. Known false positives: a
downward level shift (data mixture change) after a slow stretch reads as a sudden drop.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameterError
from ..events import Event
from ..frame import Frame, RunInfo, Series
from .changepoint import block_means, declip, finite_xy, line_fit, longrun_sigma
from .params import validate_once


def _check(cls: str, ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InvalidParameterError(f"{cls}.{name} = {value!r} is out of range; allowed: {allowed}")


def _rolling_median(y: np.ndarray, size: int) -> np.ndarray:
    if size <= 1 or y.shape[0] < size:
        return y
    from .filters import median_filter

    return median_filter(y, size=size)


def badness(series: Series, smooth: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(steps, smoothed badness, is_accuracy): the loss, or 1 - accuracy (percent allowed)."""
    x, y, _ = finite_xy(series, log=False)
    is_acc = series.role in ("train_acc", "val_acc")
    if is_acc:
        y = 1.0 - (y / 100.0 if y.shape[0] and np.nanmax(y) > 1.5 else y)
    return x, _rolling_median(y, smooth), is_acc


@dataclass(frozen=True)
class GrokkingDetector:
    """Train saturates long before validation suddenly improves; see the module docstring."""

    #: train counts as memorised once it has made this share of its total improvement
    #: (and never falls back below it by more than 0.1).
    saturation: float = 0.95
    #: at memorisation train badness must be at most (1 - min_gap) x validation badness:
    #: a real generalisation gap, not two curves that fall together.
    min_gap: float = 0.5
    #: validation must fall by at least this share of its worst post-memorisation badness.
    min_improvement: float = 0.5
    #: at memorisation validation may have made at most this share of its eventual progress.
    max_val_progress: float = 0.5
    #: the improvement starts at least this many memorisation-times after memorisation.
    min_delay_ratio: float = 1.0
    #: the improvement (10% -> 90%) lasts at most this many delays ("sudden").
    max_duration_ratio: float = 10.0
    #: unused (overfitting is the overfitting detector's); kept so configurations still load.
    overfit_rise: float = 0.1
    #: rolling-median width (points) against evaluation noise.
    smooth_points: int = 5
    #: fewer points in either series → no events.
    min_points: int = 10

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "train_acc", "val_loss", "val_acc")
    causal: ClassVar[bool] = False

    def validate(self) -> None:
        c = "GrokkingDetector"
        _check(c, 0.5 <= self.saturation < 1, "saturation", self.saturation, "[0.5, 1)")
        _check(c, 0 < self.min_gap < 1, "min_gap", self.min_gap, "(0, 1)")
        _check(c, 0 < self.min_improvement <= 1, "min_improvement", self.min_improvement,
               "(0, 1]")
        _check(c, 0 <= self.max_val_progress < 1, "max_val_progress", self.max_val_progress,
               "[0, 1)")
        _check(c, self.min_delay_ratio >= 0, "min_delay_ratio", self.min_delay_ratio, ">= 0")
        _check(c, self.max_duration_ratio > 0, "max_duration_ratio", self.max_duration_ratio,
               "> 0")
        _check(c, self.overfit_rise > 0, "overfit_rise", self.overfit_rise, "> 0")
        _check(c, self.smooth_points >= 1, "smooth_points", self.smooth_points, ">= 1")
        _check(c, self.min_points >= 4, "min_points", self.min_points, ">= 4")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """Grokking (or overfitting) events, one at most per validation series."""
        self.validate()
        events = []
        for val_tag, train_tag in _pairs(run):
            ev = self._pair(frame.series(run.run, train_tag), frame.series(run.run, val_tag))
            if ev is not None:
                events.append(ev)
        return sorted(events, key=lambda e: (e.start_step, e.tag))

    def _pair(self, train: Series, val: Series) -> Event | None:
        tx, tb, train_acc = badness(train, self.smooth_points)
        vx, vb, is_acc = badness(val, self.smooth_points)
        if min(tx.shape[0], vx.shape[0]) < self.min_points:
            return None
        mem = _memorised(tx, tb, self.saturation)
        if mem is None:
            return None
        jm = int(np.searchsorted(vx, tx[mem]))
        if jm >= vx.shape[0] - 3:
            return None
        # validation far behind train at memorisation; only comparable in the same units
        # (a loss against 1 - accuracy says nothing)
        gap = train_acc != is_acc or tb[mem] <= (1 - self.min_gap) * float(vb[jm])
        grok = self._grokking(tx, vx, vb, mem, jm) if gap else None
        if grok is not None:
            start, end, top, best = grok
            return Event(
                kind="grokking", run=val.run, tag=val.tag, start_step=int(vx[start]),
                end_step=int(vx[end]), severity="info",
                magnitude=round((top - best) / top, 6) if top else None,
                details=_grok_details(train.tag, tx[mem], vx[start], vx[end], top, best,
                                      is_acc))
        return None

    def _grokking(self, tx: np.ndarray, vx: np.ndarray, vb: np.ndarray, mem: int,
                  jm: int) -> tuple[int, int, float, float] | None:
        """(start index, end index, level before, level after) of a delayed improvement."""
        seg, sx = vb[jm:], vx[jm:]
        j_best = int(np.argmin(seg))
        top, best = float(np.max(seg[: j_best + 1])), float(seg[j_best])
        if top <= 0 or top - best < self.min_improvement * top:
            return None
        # the level before the improvement: the median up to its half-way point (the max
        # of a noisy flat stretch overstates it)
        half = _last_above(seg, j_best, (top + best) / 2)
        before = float(np.median(seg[: half + 1]))
        drop = before - best
        v0, vm = float(vb[0]), float(vb[jm])
        # validation far behind at memorisation, and still so when its fall begins (a run
        # that generalised long ago and dips again after a collapse is no grokking)
        if drop < self.min_improvement * before or \
                v0 - vm > self.max_val_progress * max(v0 - best, 1e-12) or \
                vm - before > self.max_val_progress * max(vm - best, 1e-12):
            return None
        # the improvement lasted: over the window (a 20th of the series) from where it was
        # 75 % done, not to the run's end (a grokked run that later collapses to chance
        # still grokked)
        w = max(3, vb.shape[0] // 20)
        k3 = _last_above(seg, j_best, before - 0.75 * drop) + 1
        if float(np.median(seg[k3:k3 + w])) > before - 0.5 * drop:
            return None
        # 10% and 90% of the fall, extrapolated from the 25% and 75% crossings (robust to
        # evaluation noise, where the 10% crossing of a noisy flat stretch is not)
        q1 = sx[_last_above(seg, j_best, before - 0.25 * drop) + 1]
        q3 = sx[_last_above(seg, j_best, before - 0.75 * drop) + 1]
        pad = 0.3 * (q3 - q1)
        start = jm + int(np.argmin(np.abs(sx - (q1 - pad))))
        end = jm + int(np.argmin(np.abs(sx - (q3 + pad))))
        delay = vx[start] - tx[mem]
        if delay < self.min_delay_ratio * (tx[mem] - tx[0]) or delay <= 0:
            return None
        if vx[end] - vx[start] > self.max_duration_ratio * delay:
            return None
        return start, max(end, start), before, best


def _last_above(y: np.ndarray, upto: int, level: float) -> int:
    """The last index before `upto` where y is above `level` (0 when none is)."""
    above = np.flatnonzero(y[:upto] > level)
    return int(above[-1]) if above.size else 0


def _pairs(run: RunInfo) -> list[tuple[str, str]]:
    """(validation tag, training tag) pairs: loss with loss and accuracy with accuracy first."""
    train = {role: run.tags_with_role(role) for role in ("train_loss", "train_acc")}
    out = []
    for vrole, prefer, other in (("val_loss", "train_loss", "train_acc"),
                                 ("val_acc", "train_acc", "train_loss")):
        for tag in run.tags_with_role(vrole):
            pick = train[prefer] or train[other]
            if pick:
                out.append((tag, pick[0]))
    return out


def _memorised(tx: np.ndarray, tb: np.ndarray, saturation: float) -> int | None:
    """First index where train made `saturation` of its improvement and stays near it."""
    b0 = float(tb[0])
    w = max(3, tb.shape[0] // 20)
    final = float(np.min(_window_medians(tb, w)))  # the best level held for a window
    if b0 - final <= 0 or final > 0.5 * b0:  # never saturated: under half its start
        return None
    progress = (b0 - tb) / (b0 - final)
    # ... and held: HOLD of the window from it near saturation (slingshots and collapses of
    # a few points, or a break long after, do not undo memorisation)
    near = (progress >= saturation - 0.1).astype(float)
    held = np.convolve(near, np.ones(w), "full")[w - 1:] / np.minimum(
        w, np.arange(tb.shape[0], 0, -1))
    ok = (progress >= saturation) & (held >= HOLD)
    return int(np.argmax(ok)) if ok.any() else None


#: Memorised: the train metric stays near saturation at this share of the window after it.
HOLD = 0.8


def _window_medians(y: np.ndarray, w: int) -> np.ndarray:
    """The medians of every `w` consecutive values of `y` (of all of them when fewer)."""
    if y.shape[0] <= w:
        return np.array([float(np.median(y))])
    return np.median(np.lib.stride_tricks.sliding_window_view(y, w), axis=1)


def _grok_details(train_tag: str, mem_step: float, start: float, end: float, top: float,
                  best: float, is_acc: bool) -> dict[str, Any]:
    to_units = (lambda b: 1.0 - b) if is_acc else (lambda b: b)
    return {"memorized_step": int(mem_step), "delay_steps": int(start - mem_step),
            "duration_steps": int(end - start), "train_tag": train_tag,
            "val_before": round(to_units(top), 6), "val_after": round(to_units(best), 6),
            "metric": "accuracy" if is_acc else "loss"}


@dataclass(frozen=True)
class SuddenDropDetector:
    """A sharp train-loss drop after a slow stretch; see the module docstring."""

    #: smallest drop worth reporting, in log units (0.05 ~ the loss falls by 5%).
    min_drop: float = 0.05
    #: the drop completes within this share of the series' step span.
    max_duration: float = 0.03
    #: the slow stretch before it spans this share of the step span.
    plateau: float = 0.1
    #: the drop is at least this many times faster than the descent over the slow stretch.
    rate_ratio: float = 5.0
    #: the loss must already be this much (log units) below its start before the slow
    #: stretch, so the first descent of training is not reported.
    min_prior_progress: float = 0.1
    #: the drop must also exceed z long-run noise sigmas of the block means.
    z: float = 5.0
    #: an LR series counts as dropping when it falls below this share of its level before.
    lr_drop_ratio: float = 0.7
    #: resolution of the search (block means).
    coarse_points: int = 1000
    #: fewer finite points → no events.
    min_points: int = 50

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("train_loss",)
    causal: ClassVar[bool] = False

    def validate(self) -> None:
        c = "SuddenDropDetector"
        _check(c, self.min_drop > 0, "min_drop", self.min_drop, "> 0")
        _check(c, 0 < self.max_duration < 0.5, "max_duration", self.max_duration, "(0, 0.5)")
        _check(c, 0 < self.plateau < 0.9, "plateau", self.plateau, "(0, 0.9)")
        _check(c, self.rate_ratio >= 1, "rate_ratio", self.rate_ratio, ">= 1")
        _check(c, self.min_prior_progress >= 0, "min_prior_progress", self.min_prior_progress,
               ">= 0")
        _check(c, self.z >= 0, "z", self.z, ">= 0")
        _check(c, 0 < self.lr_drop_ratio < 1, "lr_drop_ratio", self.lr_drop_ratio, "(0, 1)")
        _check(c, self.coarse_points >= 50, "coarse_points", self.coarse_points, ">= 50")
        _check(c, self.min_points >= 10, "min_points", self.min_points, ">= 10")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """Sudden drops of every training loss of the run, with the LR check."""
        self.validate()
        lrs = [frame.series(run.run, t) for t in run.tags_with_role("lr")]
        epochs = [frame.series(run.run, t) for t in run.tags_with_role("other")
                  if EPOCH_TAG.search(t)]
        events = []
        for tag in run.tags_with_role("train_loss"):
            events.extend(self.detect(frame.series(run.run, tag), lrs, epochs))
        return sorted(events, key=lambda e: (e.start_step, e.tag))

    def detect(self, series: Series, lrs: list[Series] | None = None,
               epochs: list[Series] | None = None) -> list[Event]:
        """Sudden drops of one training-loss series (`lrs`: the run's LR series, `epochs` its
        epoch series, if any)."""
        validate_once(self)
        x, y, use_log = finite_xy(series)
        if x.shape[0] < self.min_points or np.ptp(y) == 0 or np.ptp(x) == 0 or not use_log:
            return []
        xc, raw, _ = block_means(x, declip(y), self.coarse_points)
        yc = _rolling_median(raw, 5)
        span = float(xc[-1] - xc[0])
        w_drop, w_plat = self.max_duration * span, self.plateau * span
        sigma = longrun_sigma(raw, 8)
        groups = _drop_groups(xc, yc, w_drop, w_plat, self.min_drop, self.rate_ratio,
                              self.min_prior_progress)
        out: list[Event] = []
        for g0, g1 in groups:
            ev = self._event(series, xc, raw, g0, g1, w_drop, w_plat, sigma, lrs or [])
            if ev is not None:
                at = epoch_boundary(epochs or [], ev.start_step, ev.end_step or ev.start_step,
                                    w_drop)
                ev = replace(ev, details={**ev.details, "epoch_boundary": at})
            if ev is not None and (not out or ev.start_step > (out[-1].end_step or 0)):
                out.append(ev)
        return out

    def _event(self, series: Series, xc: np.ndarray, raw: np.ndarray, g0: int, g1: int,
               w_drop: float, w_plat: float, sigma: float, lrs: list[Series]) -> Event | None:
        n = xc.shape[0]
        lo = int(np.searchsorted(xc, xc[g0] - w_plat / 2))
        hi = min(n, int(np.searchsorted(xc, xc[min(g1, n - 1)] + 2 * w_drop)) + 1)
        half = max(1, int(math.ceil(0.5 * w_drop / max(float(np.median(np.diff(xc))), 1e-12))))
        start, end = _ramp(xc, raw, lo, hi, half)
        if start - lo < 3 or hi - end - 1 < 3 or xc[end] - xc[start] > 1.5 * w_drop:
            return None
        drop = self._drop(xc, raw, lo, start, end, hi, w_plat, sigma)
        if drop is None:
            return None
        before, after = raw[lo:start], raw[end + 1: hi]
        s_step, e_step = _snap(series, xc[start]), _snap(series, xc[end])
        higher = np.flatnonzero(_rolling_median(raw, 5)[:start]
                                >= np.median(before) + 0.5 * drop)
        slow_since = float(xc[int(higher[-1]) + 1 if higher.size else 0])
        details = {"drop": round(-math.expm1(-drop), 6), "duration_steps": e_step - s_step,
                   "slow_since": _snap(series, slow_since),
                   "level_before": round(math.exp(float(np.median(before))), 6),
                   "level_after": round(math.exp(float(np.median(after))), 6),
                   "lr_drop": _lr_dropped(lrs, s_step, e_step, w_drop, self.lr_drop_ratio)}
        return Event(kind="sudden_drop", run=series.run, tag=series.tag, start_step=s_step,
                     end_step=max(e_step, s_step), severity="info",
                     magnitude=details["drop"], details=details)

    def _drop(self, xc: np.ndarray, raw: np.ndarray, lo: int, start: int, end: int, hi: int,
              w_plat: float, sigma: float) -> float | None:
        """The drop (log units) over [start, end] if it is a grokking moment, else None."""
        level_b, slope_b = line_fit(xc[lo:start], raw[lo:start], float(xc[start]))
        level_a, _ = line_fit(xc[end + 1: hi], raw[end + 1: hi], float(xc[end]))
        # what the slow stretch would have lost over the ramp anyway is not part of the drop
        ramp = float(xc[end] - xc[start])
        drop = level_b - level_a - max(-slope_b, 0.0) * ramp
        # a fitted line's end value has variance ~4 sigma^2 / m
        se = sigma * math.sqrt(4.0 / (start - lo) + 4.0 / (hi - end - 1))
        if drop < max(self.min_drop, self.z * se):
            return None
        if drop / max(ramp, float(xc[1] - xc[0])) < self.rate_ratio * max(-slope_b, 0.0):
            return None
        # a new low: a long spike's recovery only comes back to where the loss had been
        # before it, within a few slow-stretch lengths (a slow stretch is reached from above)
        back = int(np.searchsorted(xc, xc[start] - 3 * w_plat))
        if start - back >= 3 and level_a > float(
                np.min(_rolling_median(raw[back:start], 9))) - 0.5 * drop:
            return None
        # the normal first descent starts from the initial level: not a grokking moment
        head = float(np.median(raw[: max(3, raw.shape[0] // 100)]))
        return None if head - level_b < self.min_prior_progress else drop


def _ramp(xc: np.ndarray, yc: np.ndarray, lo: int, hi: int, half: int) -> tuple[int, int]:
    """First and last index of the drop in [lo, hi).

    ruptures (one break, line + line with a jump) puts the drop's centre; the drop's extent
    comes from where the smoothed curve crosses 25% and 75% of the way from the level before
    to the level after, widened by half that span each way (a 25-75% rise time is robust to
    noise where 0% and 100% crossings are not). `half` = half the longest allowed drop.
    """
    from .changepoint import linear_cost_class
    from .filters import BadSegmentationParameters, binseg_one

    signal = np.column_stack([xc[lo:hi], yc[lo:hi]])
    try:
        c = lo + binseg_one(linear_cost_class()().fit(signal), hi - lo, min_size=3)
    except BadSegmentationParameters:  # window too short for two pieces
        return lo, hi - 1
    ys = np.convolve(yc, np.ones(5) / 5.0, mode="same")
    ys[:2], ys[-2:] = yc[:2], yc[-2:]
    p = float(np.median(yc[lo: max(lo + 3, c - half)]))
    q = float(np.median(yc[min(hi - 3, c + half): hi]))
    a0, a1 = max(lo, c - 2 * half), min(hi, c + 2 * half)
    below25 = np.flatnonzero(ys[a0:a1] <= p - 0.25 * (p - q))
    if below25.size == 0:
        return max(lo, c - 1), c
    i25 = a0 + int(below25[0])
    below75 = np.flatnonzero(ys[i25:a1] <= p - 0.75 * (p - q))
    i75 = i25 + int(below75[0]) if below75.size else c
    w = max(1, int(round((i75 - i25) / 2)))
    return max(lo, i25 - w), min(hi - 1, i75 + w)


def _drop_groups(xc: np.ndarray, yc: np.ndarray, w_drop: float, w_plat: float, thr: float,
                 rate_ratio: float, prior: float) -> list[tuple[int, int]]:
    """Runs of coarse indices where a sharp drop starts after a slow stretch."""
    n = xc.shape[0]
    idx = np.arange(n)
    e = np.minimum(np.searchsorted(xc, xc + w_drop, side="right") - 1, n - 1)
    p = np.searchsorted(xc, xc - w_plat)
    # the lowest point reached within the drop window (a running min over [i, e_i])
    low = np.array([yc[i: e[i] + 1].min() for i in range(n)])
    drop = yc - low
    plat_rate = (yc[p] - yc) / np.maximum(xc - xc[p], 1e-12)
    drop_rate = drop / np.maximum(xc[e] - xc, 1e-12)
    head = float(np.median(yc[: max(3, n // 100)]))
    ok = ((drop >= thr) & (e > idx) & (p < idx) & (xc - xc[0] >= w_plat)
          & (drop_rate >= rate_ratio * np.maximum(plat_rate, 0.0))
          & (head - yc >= prior))
    # the drop must stay: the level one window later is still well below the start
    e2 = np.minimum(np.searchsorted(xc, xc[e] + w_drop), n - 1)
    later = np.array([np.median(yc[e[i]: e2[i] + 1]) for i in range(n)])
    ok &= later <= yc - 0.5 * drop
    hits = np.flatnonzero(ok)
    if hits.size == 0:
        return []
    cuts = np.flatnonzero(np.diff(hits) > 1)
    starts = np.r_[hits[0], hits[cuts + 1]]
    ends = np.r_[hits[cuts], hits[-1]]
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def _snap(series: Series, step: float) -> int:
    """The logged step nearest to `step` (events carry steps present in the input)."""
    s = series.step
    i = int(np.clip(np.searchsorted(s, step), 1, s.shape[0] - 1)) if s.shape[0] > 1 else 0
    if s.shape[0] > 1 and abs(s[i - 1] - step) <= abs(s[i] - step):
        i -= 1
    return int(s[i])


#: Run series that count epochs (HF Trainer's `epoch`, `train/epoch`).
EPOCH_TAG = re.compile(r"(^|[/_. ])epoch$", re.IGNORECASE)


def epoch_boundary(epochs: list[Series], start: int, end: int, w: float) -> int | None:
    """The first step where a new epoch begins within `w` steps (and a tenth of an epoch) of
    [start, end], or None: the epoch count's whole part goes up there. Epochs shorter than
    twice `w` or three drop lengths explain nothing (every drop would meet one)."""
    for ep in epochs:
        ok = np.isfinite(ep.value)
        x, v = ep.step[ok], ep.value[ok]
        if x.shape[0] < 2:
            continue
        up = np.flatnonzero(np.diff(np.floor(v + 1e-9)) > 0) + 1
        if up.shape[0] == 0:
            continue
        b = x[up]
        per = float(x[-1] - x[0]) / max(float(v[-1] - v[0]), 1e-12)  # steps per epoch
        if per < 2 * w or per < 3 * (end - start):
            continue  # epochs as short as a drop (full-batch training): they explain nothing
        tol = min(w, 0.1 * per)
        near = b[(b >= start - tol) & (b <= end + tol)]
        if near.shape[0]:
            return int(near[0])
    return None


def _lr_dropped(lrs: list[Series], start: int, end: int, w: float, ratio: float) -> bool:
    for lr in lrs:
        ok = np.isfinite(lr.value)
        x, v = lr.step[ok], lr.value[ok]
        pre = v[(x >= start - 1.5 * w) & (x <= start - 0.5 * w)]
        post = v[(x >= end) & (x <= end + w)]
        if pre.size and post.size and np.median(post) < ratio * np.median(pre):
            return True
    return False
