"""Resume and rollback artefacts, read from the Frame's segments and its raw view.

A segment starts where a tag's step counter goes back or repeats, or at a run header /
"loaded checkpoint" line (frame.py). Three run-scope detectors read them:

- `rollback` (causal): a segment that starts at or before the last step written before it
  re-trains steps. start_step = the first step of the new segment (where training resumed),
  details.from_step = the last step written before the jump back, details.replayed_steps =
  from_step - start_step + 1 (step numbers written twice or more). Severity info; warning when
  some steps were trained three times or more (repeated rollbacks over the same stretch). A
  resume that continues after the last step (a header, no overlap) is not a rollback.
- `resume_spike`: the first `window` points after a resume stand above what the loss was at
  the same steps before the interruption (the previous pass over those steps when there was
  one, else a line through the last points before the resume) by `z` robust noise sigmas and
  `min_rise` (log units). Severity warning. details.every_resume = True when the run resumed
  at least twice and spiked every time: the data sampler / RNG state was not restored.
- `repeat_data`: after a rollback, a framework that restarts its data stream replays data the
  model has already seen, so the loss over the replayed steps runs systematically *below* the
  first pass at the same steps, then jumps back up when unseen data arrives (after the old
  last step). start_step = the resumed step, end_step = the first step after the old last
  step (where the jump happens; the last replayed step when the run ends before),
  details.mean_gap (relative, negative), details.jump (relative rise at end_step, or None).

All compare log(loss) when the loss is positive; NaN/inf points are ignored. Known false
positives: a deliberate LR change made together with a rollback reads as a gap (repeat_data)
or a spike (resume_spike), and a rollback to a much earlier checkpoint with the same data
order legitimately repeats the first pass's values (no gap, so no event).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidParameterError
from ..events import Event
from ..frame import Frame, RunInfo, Segment, Series
from .changepoint import noise_sigma, robust_sigma


def _check(cls: str, ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise InvalidParameterError(f"{cls}.{name} = {value!r} is out of range; allowed: {allowed}")


def primary_tag(run: RunInfo) -> str:
    """The tag run-level events are filed under: the first training loss, else the first tag."""
    tags = run.tags_with_role("train_loss") or [s.tag for s in run.series]
    return tags[0] if tags else ""


def _log_if_positive(v: np.ndarray) -> np.ndarray:
    finite = v[np.isfinite(v)]
    if finite.size and np.all(finite > 0):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(v)
    return v.astype(np.float64)



#: Log ratios past this are reported as inf (math.exp overflows at ~709.78).
_MAX_LOG = 709.0


def _exp(x: float) -> float:
    """exp of a log ratio; inf past float range (a damaged log can hold 1e300 losses)."""
    return math.inf if x > _MAX_LOG else math.exp(x)


def _expm1(x: float) -> float:
    return math.inf if x > _MAX_LOG else math.expm1(x)

@dataclass(frozen=True)
class Resume:
    """One resume of one tag, in the raw view: the points before it and the new segment."""

    segment: int
    prior_step: np.ndarray  # stitched (last write per step) over everything written before
    prior_value: np.ndarray  # log values, finite only
    prior_last: int  # last step written before the resume (write order)
    new_step: np.ndarray  # the new segment, write order, finite only
    new_value: np.ndarray


def resumes(series: Series) -> list[Resume]:
    """Every segment after the first that holds points of this raw series."""
    seg, step = series.segment, series.step
    out: list[Resume] = []
    if not seg.shape[0] or bool((seg == seg[0]).all()):  # one segment: it starts at point 0
        return out
    value = _log_if_positive(np.asarray(series.value, dtype=np.float64))
    for k in np.unique(seg):
        first = int(np.argmax(seg == k))
        if first == 0:
            continue
        ps, pv = step[:first], value[:first]
        prior_last = int(ps[-1])
        # stitched prior: stable sort by step, keep the last write of each step
        order = np.argsort(ps, kind="stable")
        s_sorted, v_sorted = ps[order], pv[order]
        last = np.r_[s_sorted[1:] != s_sorted[:-1], True]
        s_sorted, v_sorted = s_sorted[last], v_sorted[last]
        ok = np.isfinite(v_sorted)
        mask = (seg == k) & np.isfinite(value)
        out.append(Resume(int(k), s_sorted[ok], v_sorted[ok], prior_last,
                          step[mask], value[mask]))
    return out


@dataclass(frozen=True)
class RollbackDetector:
    """Steps trained again after a resume or rollback; see the module docstring."""

    #: a step trained this many times or more (rollback over a rollback) makes it a warning.
    warn_times: int = 3

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ()
    causal: ClassVar[bool] = True

    def validate(self) -> None:
        _check("RollbackDetector", self.warn_times >= 2, "warn_times", self.warn_times, ">= 2")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """One event per segment that goes back to (or repeats) a step already written."""
        self.validate()
        segs = run.segments
        tag = primary_tag(run)
        out = []
        coverage = _Coverage(sorted({s.first_step for s in segs}))
        for k, seg in enumerate(segs):
            prev = seg.previous_last_step
            rollback = k > 0 and prev is not None and seg.first_step <= prev
            times = 1 + coverage.most(seg.first_step, prev) if rollback else 0
            coverage.add(seg.first_step, seg.last_step)
            if not rollback:
                continue
            out.append(Event(
                kind="rollback", run=run.run, tag=tag, start_step=seg.first_step,
                severity="warning" if times >= self.warn_times else "info",
                magnitude=float(prev - seg.first_step + 1),
                details={"from_step": prev, "replayed_steps": prev - seg.first_step + 1,
                         "segment": seg.index, "reason": seg.reason, "times_trained": times,
                         "from_scratch": seg.first_step <= segs[0].first_step}))
        return sorted(out, key=lambda e: e.start_step)


class _Coverage:
    """How many segments cover each step, segment by segment: `add(first, last)` counts one
    more over [first, last], `most(first, last)` is the most over any step of it. A segment
    tree with lazy range adds over the segments' first steps (where coverage can rise), so
    a run with thousands of segments costs S log S, not S^2 x points."""

    def __init__(self, coords: list[int]) -> None:
        self.coords = np.asarray(coords, dtype=np.int64)
        size = 1
        while size < max(len(coords), 1):
            size *= 2
        self.size = size
        self.top = [0] * (2 * size)  # max over the node's range, its own adds included
        self.lazy = [0] * (2 * size)

    def _range(self, first: int, last: int) -> tuple[int, int]:
        return (int(np.searchsorted(self.coords, first, "left")),
                int(np.searchsorted(self.coords, last, "right")) - 1)

    def add(self, first: int, last: int) -> None:
        lo, hi = self._range(first, last)
        if lo <= hi:
            self._add(1, 0, self.size - 1, lo, hi)

    def most(self, first: int, last: int) -> int:
        lo, hi = self._range(first, last)
        return self._most(1, 0, self.size - 1, lo, hi) if lo <= hi else 0

    def _add(self, node: int, a: int, b: int, lo: int, hi: int) -> None:
        if hi < a or b < lo:
            return
        if lo <= a and b <= hi:
            self.top[node] += 1
            self.lazy[node] += 1
            return
        mid = (a + b) // 2
        self._add(2 * node, a, mid, lo, hi)
        self._add(2 * node + 1, mid + 1, b, lo, hi)
        self.top[node] = self.lazy[node] + max(self.top[2 * node], self.top[2 * node + 1])

    def _most(self, node: int, a: int, b: int, lo: int, hi: int) -> int:
        if hi < a or b < lo:
            return 0
        if lo <= a and b <= hi:
            return self.top[node]
        mid = (a + b) // 2
        return self.lazy[node] + max(self._most(2 * node, a, mid, lo, hi),
                                     self._most(2 * node + 1, mid + 1, b, lo, hi))


@dataclass(frozen=True)
class ResumeSpikeDetector:
    """A loss spike caused by the resume itself; see the module docstring."""

    #: points after the resume in which the spike must show.
    window: int = 5
    #: robust noise sigmas above the reference (the loss before the interruption) for one
    #: point; the mean of the first three points needs z / sqrt(3).
    z: float = 5.0
    #: and at least this much above it, in log units (0.05 ~ 5%).
    min_rise: float = 0.05
    #: points before the resume used for the reference line and the noise.
    ref_points: int = 30

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("train_loss",)
    causal: ClassVar[bool] = False

    def validate(self) -> None:
        c = "ResumeSpikeDetector"
        _check(c, self.window >= 1, "window", self.window, ">= 1")
        _check(c, self.z > 0, "z", self.z, "> 0")
        _check(c, self.min_rise >= 0, "min_rise", self.min_rise, ">= 0")
        _check(c, self.ref_points >= 5, "ref_points", self.ref_points, ">= 5")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """Resume spikes of every training loss of the run."""
        self.validate()
        out = []
        for tag in run.tags_with_role("train_loss"):
            series = frame.series(run.run, tag, raw=True)
            found = [self._one(series, r) for r in resumes(series)]
            spikes = [e for e in found if e is not None]
            every = len(found) >= 2 and len(spikes) == len(found)
            if every:
                spikes = [replace(e, details={**e.details, "every_resume": True})
                          for e in spikes]
            out.extend(spikes)
        return sorted(out, key=lambda e: (e.start_step, e.tag))

    def _one(self, series: Series, r: Resume) -> Event | None:
        if r.new_step.shape[0] == 0 or r.prior_step.shape[0] < 5:
            return None
        head_s, head_v = r.new_step[: self.window], r.new_value[: self.window]
        expect, sigma = self._reference(r, head_s)
        if expect is None:
            return None
        resid = head_v - expect
        i = int(np.argmax(resid))
        thr = max(self.z * sigma, self.min_rise)
        # a single point z sigmas up, or the first three points z / sqrt(3) sigmas up on
        # average (a spike that decays over a few points is clearer in their mean)
        m = min(3, resid.shape[0])
        head_mean = float(np.mean(resid[:m]))
        if resid[i] < thr and head_mean < max(self.z * sigma / math.sqrt(m), self.min_rise):
            return None
        # end: the first later point of the new segment back within half the threshold
        rest_s, rest_v = r.new_step[i:], r.new_value[i:]
        rest_e, _ = self._reference(r, rest_s)
        back = np.flatnonzero(rest_v - rest_e < thr / 2) if rest_e is not None else []
        end = int(rest_s[back[0]]) if len(back) else int(rest_s[-1])
        return Event(
            kind="resume_spike", run=series.run, tag=series.tag, start_step=int(head_s[0]),
            peak_step=int(head_s[i]), end_step=max(end, int(head_s[i])), severity="warning",
            magnitude=round(_exp(float(resid[i])), 6),
            details={"segment": r.segment, "resume_step": int(head_s[0]),
                     "previous_last_step": r.prior_last, "rise": round(float(resid[i]), 6),
                     "every_resume": False})

    def _reference(self, r: Resume, steps: np.ndarray) -> tuple[np.ndarray | None, float]:
        """Expected log loss at `steps` from before the interruption, and the noise sigma.

        A straight line through the `ref_points` written before the interruption on each side
        of the resumed steps (the previous pass over the same steps when there was one, else
        the last points before the resume, extrapolated): its error is ~sigma / sqrt(points).
        """
        ps, pv = r.prior_step, r.prior_value
        near = int(np.searchsorted(ps, steps[0]))
        far = int(np.searchsorted(ps, steps[-1], side="right"))
        lo, hi = max(0, near - self.ref_points), min(ps.shape[0], far + self.ref_points)
        xs, ys = ps[lo:hi], pv[lo:hi]
        if xs.shape[0] < 5:
            return None, 0.0
        wide = pv[max(0, near - 4 * self.ref_points): far + 4 * self.ref_points]
        sigma = max(noise_sigma(wide), robust_sigma(np.diff(wide)) / math.sqrt(2), 1e-3)
        slope, icept = np.polyfit(xs - xs[-1], ys, 1)
        return icept + slope * (steps - xs[-1]), sigma


@dataclass(frozen=True)
class RepeatDataDetector:
    """Under-reported loss on replayed data after a rollback; see the module docstring."""

    #: replayed points needed to judge.
    min_points: int = 8
    #: the median gap to the first pass must be at least this far below it (log units).
    min_gap: float = 0.02
    #: and significant: mean gap / standard error <= -t.
    t: float = 4.0
    #: share of replayed points below the first pass.
    min_below: float = 0.7
    #: points each side of the old last step used to measure the jump.
    jump_points: int = 10

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("train_loss",)
    causal: ClassVar[bool] = False

    def validate(self) -> None:
        c = "RepeatDataDetector"
        _check(c, self.min_points >= 3, "min_points", self.min_points, ">= 3")
        _check(c, self.min_gap > 0, "min_gap", self.min_gap, "> 0")
        _check(c, self.t > 0, "t", self.t, "> 0")
        _check(c, 0.5 <= self.min_below <= 1, "min_below", self.min_below, "[0.5, 1]")
        _check(c, self.jump_points >= 1, "jump_points", self.jump_points, ">= 1")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """Replayed-data gaps of every training loss of the run."""
        self.validate()
        out = []
        for tag in run.tags_with_role("train_loss"):
            series = frame.series(run.run, tag, raw=True)
            out.extend(e for e in (self._one(series, r) for r in resumes(series)) if e)
        return sorted(out, key=lambda e: (e.start_step, e.tag))

    def _one(self, series: Series, r: Resume) -> Event | None:
        ns, nv = r.new_step, r.new_value
        replay = (ns <= r.prior_last) & (ns >= r.prior_step[0]) if r.prior_step.size else ns < 0
        if int(replay.sum()) < self.min_points:
            return None
        rs, rv = ns[replay], nv[replay]
        gap = rv - np.interp(rs, r.prior_step, r.prior_value)
        sd = float(np.std(gap, ddof=1)) or 1e-12
        mean = float(np.mean(gap))
        if (float(np.median(gap)) > -self.min_gap or mean / (sd / math.sqrt(gap.size)) > -self.t
                or float(np.mean(gap < 0)) < self.min_below):
            return None
        after = ns > r.prior_last
        jump = None
        end = int(rs[-1])
        if after.any():
            end = int(ns[after][0])
            k = self.jump_points
            jump = round(_expm1(float(np.median(nv[after][:k]) - np.median(rv[-k:]))), 6)
        return Event(
            kind="repeat_data", run=series.run, tag=series.tag, start_step=int(ns[0]),
            end_step=max(end, int(ns[0])), severity="warning",
            magnitude=round(_expm1(mean), 6),
            details={"mean_gap": round(_expm1(mean), 6),
                     "median_gap": round(_expm1(float(np.median(gap))), 6),
                     "replayed_points": int(gap.size), "from_step": r.prior_last,
                     "segment": r.segment, "jump": jump})
