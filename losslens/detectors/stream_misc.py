"""Streaming forms of divergence, non-finite values, overflow and the run-scope detectors.

Each is fed through a `losslens.detectors.stream.LiveRun` and keeps its events in it; see
that module for the interface and the guarantee (over any prefix and any chunking, the events
equal the batch detector's on that prefix).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from . import overflow
from .divergence import DivergenceDetector
from .divergence_pair import covered
from .filters import KeptMedians, keeping
from .nonfinite import NonFiniteDetector
from .overflow import OverflowDetector
from .spike import trailing_median
from .stream_base import FrameView, SeriesBuffer, index_of, splice

if TYPE_CHECKING:
    from .stream import LiveRun


def detector_kind(det: Any) -> str:
    """The event kind a detector emits: its `kind`, else its registry name."""
    from . import DETECTORS

    kind = getattr(det, "kind", None)
    if kind:
        return str(kind)
    cls = type(det)
    for name, spec in DETECTORS.items():
        if spec == f"{cls.__module__}:{cls.__qualname__}":
            return name
    return cls.__name__


class _SeriesStream:
    """A series detector's stream: `update_series` on each changed series of its roles."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.kind = detector_kind(det)
        self.roles = tuple(det.roles)

    def update(self, st: LiveRun) -> None:
        for tag, s in st.series.items():
            if s.dirty is not None and s.n and st.roles[tag] in self.roles:
                self.update_series(st, tag, s)

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer) -> None:
        raise NotImplementedError


class DivergenceStream(_SeriesStream):
    """`DivergenceDetector` fed new points: the whole series, run only when a new point could
    change its events (one rising above the threshold over the best level so far, or a
    non-finite one); on every update while the series is signed (its noise scale is the
    whole series') or short (the detector then sizes its span, and at first its window,
    from the length) once a level has risen there (before that it finds nothing)."""

    #: the level and noise medians are kept between reruns (`filters.KeptMedians`: ~4
    #: arrays of input and output) up to this many points; a longer series computes them
    #: whole at each rerun (~16 MB a tag at most)
    KEEP_UPTO = 262_144
    #: a long series is run again only where a new point can change its events (`_track`);
    #: False: at every update where a level is over the threshold or a value non-finite
    #: (the same events; benchmarks/guard_update.py compares the two)
    deferred: bool = True

    def __init__(self, det: DivergenceDetector) -> None:
        super().__init__(det)
        self.k = int(det.window) | 1
        self.thr = math.log(float(det.rise_ratio))

    def update(self, st: LiveRun) -> None:
        for tag, s in st.series.items():
            if s.dirty is not None and s.n and st.roles[tag] == "train_loss":
                self.update_series(st, tag, s)
        self.update_pair(st)

    def update_pair(self, st: LiveRun) -> None:
        """The run stage (train + validation, `DivergenceDetector.detect_pair`): judged again
        when a validation point came, or a train point at or before the last evaluation (it
        reads none after that); whether a train loss's own divergence covers it, each time."""
        vals = [t for t, s in st.series.items() if st.roles[t] == "val_loss" and s.n]
        if not vals:  # (the in-training guard: no validation loss)
            st.events[(self.kind, None)] = []
            return
        memo = st.memo.setdefault((self.kind, ""), {"found": None})
        last = max(int(st.series[t].step[st.series[t].n - 1]) for t in vals)
        if any(s.dirty is not None and (st.roles[t] == "val_loss" or (
                st.roles[t] == "train_loss" and int(s.step[s.dirty]) <= last))
               for t, s in st.series.items()):
            frame = FrameView({t: s.view(st.run, t, st.roles[t]) for t, s in st.series.items()})
            memo["found"] = self.det.pair_candidate(frame, st.info())
        found = memo["found"]
        own = [e for (kind, tag), lst in st.events.items() if kind == self.kind and tag
               for e in lst]
        st.events[(self.kind, None)] = [] if found is None or covered(found, own) else [found]

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer) -> None:
        memo = st.memo.setdefault((self.kind, tag), {"best": math.inf, "upto": 0})
        d = int(s.dirty)
        if s.first_nonpos is not None:
            # additive space (the detector's noise scale is the whole series'): all of it
            rerun, memo["upto"] = True, 0
            memo.pop("track", None)
        elif not self._long(s, memo):
            # a short series (its window and span are a share of its length): all of it,
            # each time, unless nothing can be found (`_quiet_short`)
            memo.pop("track", None)
            rerun = not self._quiet_short(s, d, memo)
            if not rerun:
                st.events[(self.kind, tag)] = []
        elif self.deferred:
            # a long series: run again only where a new point can change its events
            fresh = d != memo["upto"] or not memo["upto"] or memo.get("track") is None
            rerun = self._track(s, 0 if fresh else d, memo) or fresh \
                or self._open(st.events.get((self.kind, tag), []), s, d)
            memo["upto"] = s.n
        else:
            if d < memo["upto"] or memo["upto"] == 0:
                memo["best"] = float(self._levels(s, 0).min(initial=math.inf))
                rerun = True
            else:
                rerun = self._rises(s, max(0, d - 1), memo)
            memo["upto"] = s.n
        if rerun:  # (the level and noise medians of what the series was are kept)
            view = s.view(st.run, tag, st.roles[tag])
            if s.n > self.KEEP_UPTO:  # (their memory: ~64 bytes a point)
                memo.pop("medians", None)
                st.events[(self.kind, tag)] = self.det.detect(view)
                return
            kept = memo.get("medians")
            if kept is None or len(s.rewrites) != memo.get("rewrites"):
                kept = memo["medians"] = KeptMedians(size=4)
                memo["rewrites"] = len(s.rewrites)
            with keeping(kept):
                st.events[(self.kind, tag)] = self.det.detect(view)

    def _track(self, s: SeriesBuffer, lo: int, memo: dict[str, Any]) -> bool:
        """Fold the points from raw index `lo` on (0: the whole series, afresh) into the long
        series' record; whether the detector can find other events than before from them.

        The detector's per-point quantities are causal (trailing medians, the best level so
        far, thresholds from trailing noise) but for the median window and sustain span
        (fixed once the series is long), the space (a value <= 0: additive, run whole) and
        a crossing's ramp test, which looks half a window ahead. So its events change only
        (1) where a raw crossing run (level >= `rise_ratio` x the best so far: the
        detector's threshold is at least that) has lasted a sustain span (no point is
        declared before: `DivergenceDetector._finite` asks `idx - span >= run_start`), at
        a new point or within half a window before them; (2) where a run of `nan_points`
        non-finite values ends the series now or did before (a NaN run that training goes
        on after is the nonfinite detector's alone); (3) where an event is still open or
        reaches the new points (`_open`). Cost: the new points' levels, O(new points)."""
        if lo == 0:
            memo.update(track=True, best=math.inf, run=-1, long=-1, fin=0, tail=0,
                        diffs={}, last_step=None)
        level = self._levels(s, lo)
        f0, m = memo["fin"], level.shape[0]
        v = s.value[lo:s.n]
        fin = np.isfinite(v)
        steps = s.step[lo:s.n][fin]
        span = self._span(memo, steps, f0 + m)
        due = False
        if m:
            best = np.minimum(memo["best"], np.minimum.accumulate(level))
            memo["best"] = float(best[-1])
            with np.errstate(invalid="ignore"):  # inf - inf before the first full window
                raw = level - best >= self.thr
            idx = f0 + np.arange(m)
            prev = np.concatenate(([memo["run"] >= 0 and memo["run"] == f0 - 1], raw[:-1]))
            starts = np.where(raw & ~prev, idx, -1)
            r = np.maximum.accumulate(starts)
            if memo["run"] >= 0 and memo["run"] == f0 - 1:
                r = np.where(r < 0, memo["start"], r)  # the run went on from before
            hit = np.flatnonzero(raw & (idx - r >= span - 2))
            if hit.shape[0]:
                memo["long"] = int(idx[hit[-1]])
            memo["run"] = int(idx[-1]) if raw[-1] else -1
            if raw[-1]:
                memo["start"] = int(r[-1])
            due = memo["long"] >= f0 - self.k // 2 - 3
        tail_before = memo["tail"]
        bad = np.flatnonzero(fin)
        memo["tail"] = (tail_before + v.shape[0]) if not bad.shape[0] \
            else v.shape[0] - 1 - int(bad[-1])
        memo["fin"] = f0 + m
        nan = self.det.nan_points
        return due or memo["tail"] >= nan or tail_before >= nan

    def _span(self, memo: dict[str, Any], steps: np.ndarray, nfin: int) -> int:
        """`DivergenceDetector.sustain_span` of the finite steps so far, from a count of
        their intervals kept up to date (a log's intervals take a handful of values); with
        more than 256 distinct intervals its lower bound, `sustain_points` (then more
        updates run the detector, never fewer than need to)."""
        diffs = memo["diffs"]
        if diffs is None or not steps.shape[0]:
            return self._span_of(memo, nfin)
        chain = steps if memo["last_step"] is None else np.concatenate(([memo["last_step"]],
                                                                          steps))
        memo["last_step"] = int(steps[-1])
        if chain.shape[0] > 1:
            gaps = np.diff(chain)
            first = int(gaps[0])
            if bool((gaps == first).all()):  # (a log's usual case: one interval)
                diffs[first] = diffs.get(first, 0) + gaps.shape[0]
            else:
                keys, counts = np.unique(gaps, return_counts=True)
                for k, c in zip(keys.tolist(), counts.tolist()):
                    diffs[k] = diffs.get(k, 0) + c
            if len(diffs) > 256:
                memo["diffs"] = None
            memo.pop("span", None)
        return self._span_of(memo, nfin)

    def _span_of(self, memo: dict[str, Any], nfin: int) -> int:
        det, diffs = self.det, memo["diffs"]
        if diffs is None:
            return int(det.sustain_points)
        span = memo.get("span")
        if span is None:
            total = sum(diffs.values())
            if total == 0:
                typical = 1.0
            else:  # np.median's number: the middle one, or the mean of the middle two
                order = sorted(diffs)

                def at(pos: int) -> float:
                    seen = 0
                    for key in order:
                        seen += diffs[key]
                        if seen > pos:
                            break
                    return float(key)
                k = total // 2
                typical = at(k) if total % 2 else (at(k - 1) + at(k)) / 2.0
            span = memo["span"] = max(det.sustain_points,
                                      int(np.ceil(det.sustain_steps / max(typical, 1.0))))
        return min(span, max(4, nfin // 8))

    @staticmethod
    def _open(old: list[Any], s: SeriesBuffer, d: int) -> bool:
        """Whether an event of the tag is still open (its end moves with the series) or
        reaches the point before the new ones (a NaN there may join it)."""
        if not d:
            return bool(old)
        before = int(s.step[d - 1])
        return any(not e.details.get("recovered") or (e.end_step is not None
                                                      and e.end_step >= before) for e in old)

    def _quiet_short(self, s: SeriesBuffer, d: int, memo: dict[str, Any]) -> bool:
        """Whether the detector finds nothing in a short series without running it: its
        median window has its full size (only the sustain span still grows with the series),
        every value is finite, and no level has risen `rise_ratio` x over the best before it
        (the detector's threshold is at least that: `DivergenceDetector.thresholds`), kept
        up to date from the new points as in the long series (`_rises`). Once a level has
        risen, the whole series each time until it is long."""
        fin = int(np.count_nonzero(np.isfinite(s.value[:s.n])))
        if memo.get("rose") or self.det.median_window(fin) != self.k:
            memo["upto"] = 0
            return False
        if d < memo["upto"] or memo["upto"] == 0:  # the whole series once
            level = self._levels(s, 0)
            best = np.minimum.accumulate(level) if level.shape[0] else level
            memo["best"] = float(best[-1]) if best.shape[0] else math.inf
            with np.errstate(invalid="ignore"):  # inf - inf before the first full window
                rose = fin < s.n or bool(np.any(level - best >= self.thr))
        else:
            rose = self._rises(s, max(0, d - 1), memo)
        memo["upto"], memo["rose"] = s.n, rose
        if rose:
            memo["upto"] = 0
        return not rose

    def _long(self, s: SeriesBuffer, memo: dict[str, Any]) -> bool:
        """Whether the series is long enough that the detector's window and sustain span no
        longer depend on its length (twice what `DivergenceDetector.is_short` asks), for good
        (looked at again each time the series has grown by a sixteenth: ~0.3 ms on 8,000
        points; the short series' path is exact too, only slower where a level rose)."""
        if memo.get("long"):
            return True
        if s.n < memo.get("long_next", 0):
            return False
        memo["long_next"] = s.n + s.n // 16
        st = s.step[:s.n][np.isfinite(s.value[:s.n])]
        memo["long"] = (not self.det.is_short(st)
                        and st.shape[0] // 8 >= 2 * self.det.sustain_span(st))
        return memo["long"]

    def _levels(self, s: SeriesBuffer, lo: int) -> np.ndarray:
        """The detector's level (trailing median of log values) at the finite points >= lo,
        +inf at the first `window - 1` finite points (the best level starts after them)."""
        a = lo
        while True:  # k - 1 finite points before lo, or the start
            a = max(0, a - 2 * self.k)
            v = s.value[a:lo]
            if a == 0 or np.count_nonzero(np.isfinite(v)) >= self.k - 1:
                break
        v = s.value[a:s.n]
        fin = np.isfinite(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = trailing_median(np.log(v[fin]), self.k)
        if a == 0:
            level[:self.k - 1] = np.inf
        return level[np.count_nonzero(fin[:lo - a]):]

    def _rises(self, s: SeriesBuffer, lo: int, memo: dict[str, Any]) -> bool:
        """Whether a point from `lo` on is non-finite or above the threshold (best updated)."""
        nonfinite = not np.all(np.isfinite(s.value[lo:s.n]))
        level = self._levels(s, lo)
        if not level.shape[0]:
            return nonfinite
        best = np.minimum(memo["best"], np.minimum.accumulate(level))
        memo["best"] = float(best[-1])
        with np.errstate(invalid="ignore"):  # inf - inf before the first full window
            return nonfinite or bool(np.any(level - best >= self.thr))


class NonFiniteStream(_SeriesStream):
    """`NonFiniteDetector` fed new points: NaN/inf bursts on a trailing window of
    `merge_within` points plus the burst still open (or the last one, when the new points
    follow it directly)."""

    def __init__(self, det: NonFiniteDetector) -> None:
        super().__init__(det)
        self.gap = int(det.merge_within)

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer) -> None:
        n, d = s.n, int(s.dirty)
        steps = s.step[:n]
        key = (self.kind, tag)
        old = st.events.get(key, [])
        a0 = d
        if old:
            last = old[-1]
            end = last.end_step if last.end_step is not None else last.start_step
            # reopened when the new points are near in steps, or follow it with no point
            # between (consecutive hits are one event whatever the gap)
            if (steps[d] - end <= self.gap or not last.details.get("finite_after", True)
                    or index_of(steps, end) + 1 >= d):
                a0 = min(a0, index_of(steps, last.start_step))
        a = max(0, a0 - self.gap - 2)
        cut = 0 if a == 0 else a0
        if st.roles[tag] != "skipped" and bool(np.isfinite(s.value[a:n]).all()):
            found: list[Any] = []  # (what the detector finds where every value is finite)
        else:
            found = self.det.detect(s.view(st.run, tag, st.roles[tag], a))
        st.events[key] = splice(old, found, steps[cut] if cut < n else math.inf)


class OverflowStream:
    """`OverflowDetector` fed new points: bursts on the steps from `burst_gap` before the new
    points (or from the burst still open); on the whole run where a skipped counter would be
    read as cumulative in the window and not on the whole (or the other way round)."""

    def __init__(self, det: OverflowDetector) -> None:
        self.det = det
        self.kind = det.kind
        self.roles = tuple(det.roles)
        self.gap = int(det.burst_gap)

    def update(self, st: LiveRun) -> None:
        tags = [t for t, s in st.series.items() if st.roles[t] in self.det.roles]
        dirty = [int(st.series[t].step[st.series[t].dirty]) for t in tags
                 if st.series[t].dirty is not None]
        if not dirty:
            return
        key = (self.kind, None)
        old = st.events.get(key, [])
        s0 = min(dirty)
        if old and (old[-1].end_step or old[-1].start_step) >= s0 - self.gap - 1:
            s0 = min(s0, old[-1].start_step)
        view, whole = {}, False
        for t in tags:
            s = st.series[t]
            a = self._start(s, s0 - self.gap - 1)
            if st.roles[t] == "skipped" and self._mode_differs(t, s, a):
                whole = True
            view[t] = s
        starts = {t: (0 if whole else self._start(view[t], s0 - self.gap - 1)) for t in tags}
        frame = FrameView({t: view[t].view(st.run, t, st.roles[t], starts[t]) for t in tags})
        found = self.det.detect_run(frame, st.info())
        st.events[key] = found if whole else splice(old, found, s0)

    @staticmethod
    def _start(s: SeriesBuffer, step: int) -> int:
        """First index at `step` or after, less two earlier points (the drop before it)."""
        return max(0, index_of(s.step[:s.n], step) - 2)

    @staticmethod
    def _mode_differs(tag: str, s: SeriesBuffer, a: int) -> bool:
        """Whether the window would read a skipped counter as cumulative and the whole series
        as per-interval (the detector decides from all of a counter's values)."""
        if overflow.PER_INTERVAL.search(tag):
            return False
        mono, last = s.monotone()
        if mono and last > 1:
            return False
        return overflow.counter_is_cumulative(tag, s.value[a:s.n])


class RunStream:
    """A run-scope causal detector on the whole run at each update (rollback: a handful of
    segments; a rollback needs a second one)."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.kind = detector_kind(det)
        self.roles = tuple(det.roles)

    def update(self, st: LiveRun) -> None:
        if self.kind == "rollback" and st.segments.count < 2:
            return  # a rollback needs a second segment
        frame = FrameView({t: s.view(st.run, t, st.roles[t]) for t, s in st.series.items()})
        st.events[(self.kind, None)] = self.det.detect_run(frame, st.info())


class WholeSeriesStream(_SeriesStream):
    """A series detector with no streaming form of its own: the whole series each time."""

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer) -> None:
        st.events[(self.kind, tag)] = self.det.detect(s.view(st.run, tag, st.roles[tag]))
