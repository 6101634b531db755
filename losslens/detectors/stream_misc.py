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

    def __init__(self, det: DivergenceDetector) -> None:
        super().__init__(det)
        self.k = int(det.window) | 1
        self.thr = math.log(float(det.rise_ratio))

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer) -> None:
        memo = st.memo.setdefault((self.kind, tag), {"best": math.inf, "upto": 0})
        d = int(s.dirty)
        if s.first_nonpos is not None:
            # additive space (the detector's noise scale is the whole series'): all of it
            rerun, memo["upto"] = True, 0
        elif not self._long(s, memo):
            # a short series (its window and span are a share of its length): all of it,
            # each time, unless nothing can be found (`_quiet_short`)
            rerun = not self._quiet_short(s, d, memo)
            if not rerun:
                st.events[(self.kind, tag)] = []
        else:
            if d < memo["upto"] or memo["upto"] == 0:
                memo["best"] = float(self._levels(s, 0).min(initial=math.inf))
                rerun = True
            else:
                rerun = self._rises(s, max(0, d - 1), memo)
            memo["upto"] = s.n
        if rerun:  # (the level and noise medians of what the series was are kept)
            kept = memo.get("medians")
            if kept is None or len(s.rewrites) != memo.get("rewrites"):
                kept = memo["medians"] = KeptMedians()
                memo["rewrites"] = len(s.rewrites)
            with keeping(kept):
                st.events[(self.kind, tag)] = self.det.detect(s.view(st.run, tag,
                                                                     st.roles[tag]))

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
    `merge_within` points plus the burst still open."""

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
            if steps[d] - end <= self.gap or not last.details.get("finite_after", True):
                a0 = min(a0, index_of(steps, last.start_step))
        a = max(0, a0 - self.gap - 2)
        cut = 0 if a == 0 else a0
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
