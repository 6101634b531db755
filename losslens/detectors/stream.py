"""The detectors' streaming form: feed a run's new points, get its events and their revisions.

`LiveRun` is one run followed as it grows. Points come in as reader records (`feed`), or
tag by tag (`add`, as an in-training guard has them); `update()` runs the causal detectors'
streams on what changed and returns a `Revisions`: every current event, and which of them
are new, revised (an open event that changed: a spike first seen before it was back gets its
end and recovery class later) or withdrawn (a rewrite of the series removed it).

Each causal detector owns its stream (`STREAMS`: spike, divergence, nonfinite, grad_spike,
overflow, rollback); a detector without one is re-run on its whole series or run at each
update (`WholeSeriesStream`, `RunStream`), and a detector class may bring its own by a
`stream()` method returning an object with `kind`, `roles` and `update(live_run)`.

The guarantee: over any prefix, fed in any chunking, the events equal the batch detectors'
on that prefix (`losslens.analysis.detect_run` with the same detectors, less what compares
losses over time: `details.shared_with` / `isolated` / `all_losses`; the marks of
`analysis.mark_over_time` are made where `watch` settles its events, on `LiveRun.view()`),
spikes inside a divergence folded into it as there. tests/test_detectors_stream.py checks it
on random series and random chunkings.

Streams keep their state in the LiveRun (`series`, `events`, `memo`), so one set of streams
(`CausalStreams`) serves many runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..events import Event
from ..frame import RunInfo, Segment, SeriesInfo
from ..records import RunMeta, RunRecords
from .divergence_fold import fold_spikes
from .stream_base import FrameView, SeriesBuffer
from .stream_misc import (DivergenceStream, NonFiniteStream, OverflowStream, RunStream,
                          WholeSeriesStream, detector_kind)
from .stream_spike import GradSpikeStream, SpikeStream
from .stream_stats import prefer_scipy

#: kind -> the stream class of each causal detector (constructed with the detector).
STREAMS: dict[str, type] = {
    "spike": SpikeStream,
    "divergence": DivergenceStream,
    "nonfinite": NonFiniteStream,
    "grad_spike": GradSpikeStream,
    "overflow": OverflowStream,
    "rollback": RunStream,
}


def stream_for(det: Any) -> Any:
    """The stream of one detector: its own `stream()`, the registered one for its kind (when
    it is of the registered class), else a whole-series / whole-run re-run."""
    own = getattr(det, "stream", None)
    if callable(own):
        return own()
    kind = detector_kind(det)
    spec = STREAMS.get(kind)
    if spec is not None:
        from . import DETECTORS

        cls = type(det)
        if DETECTORS.get(kind) == f"{cls.__module__}:{cls.__qualname__}":
            return spec(det)
    return RunStream(det) if det.scope == "run" else WholeSeriesStream(det)


class CausalStreams:
    """The streams of the causal detectors among `detectors` (as
    `analysis.resolve_detectors` takes them: None = every registered one)."""

    def __init__(self, detectors: Any = None) -> None:
        from . import resolve_detectors

        prefer_scipy()
        self.streams: list[Any] = []
        for det in resolve_detectors(detectors):
            if not getattr(det, "causal", False):
                continue
            det.validate()
            self.streams.append(stream_for(det))
        # series streams first, run streams after (a run stream may read series events)
        self.streams.sort(key=lambda s: getattr(getattr(s, "det", None), "scope", "") == "run")
        self.roles = frozenset(r for s in self.streams for r in s.roles)


@dataclass(frozen=True)
class Revisions:
    """What one update changed: `events` (all current ones, sorted), `new`, `revised` (the
    new state of events seen before; same kind, tag and start step) and `withdrawn`."""

    events: list[Event] = field(default_factory=list)
    new: list[Event] = field(default_factory=list)
    revised: list[Event] = field(default_factory=list)
    withdrawn: list[Event] = field(default_factory=list)


def event_key(e: Event) -> tuple[str, str | None, int]:
    """What identifies an event across updates: (kind, tag, start_step)."""
    return (e.kind, e.tag, e.start_step)


class LiveRun:
    """One run fed its points as they come; `update()` says what the detectors now find.

    Args:
        run: the run's name (events carry it).
        detectors: as `resolve_detectors` takes them (only causal ones run), or a
            `CausalStreams` to share between runs.
        roles: tag -> role overrides (else inferred from the tag's name).
        source, format: what `info()` reports (run-scope detectors read it).

    Attributes the streams use: `series` (tag -> SeriesBuffer, for the roles some stream
    reads), `roles` (tag -> role), `events` ((kind, tag or None) -> events), `memo` (per
    stream), `segments` (SegmentTracker), `tick` (updates so far).
    """

    def __init__(self, run: str = "run", *, detectors: Any = None,
                 roles: Mapping[str, str] | None = None, source: str = "",
                 format: str = "") -> None:
        self.run, self.source, self.format = run, source, format
        self.streams = detectors if isinstance(detectors, CausalStreams) \
            else CausalStreams(detectors)
        self.overrides = dict(roles or {})
        self._reported: dict[tuple, Event] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every point (the log was rewritten whole)."""
        self.codes: dict[str, int] = {}
        self.roles: dict[str, str] = {}
        self.series: dict[str, SeriesBuffer] = {}
        self.segments = SegmentTracker()
        self.events: dict[tuple[str, str | None], list[Event]] = {}
        self.memo: dict[tuple[str, str], dict[str, Any]] = {}
        self.tick = 0
        self._order = 0
        self.metadata = RunMeta()  # the first hyper-parameters a reader found

    def _tag(self, tag: str) -> int:
        code = self.codes.get(tag)
        if code is None:
            from ..roles import infer_role

            code = self.codes[tag] = len(self.codes)
            self.roles[tag] = self.overrides.get(tag) or infer_role(tag)
        return code

    def feed(self, rec: RunRecords) -> None:
        """A reader's records of this run, in write order after everything fed before
        (their `order` and `headers` continue the earlier ones)."""
        for tag in rec.tags:
            self._tag(tag)
        if self.metadata == RunMeta() and rec.metadata != RunMeta():
            self.metadata = rec.metadata
        if not len(rec):
            self.segments.add(np.empty(0, np.int32), np.empty(0, np.int64),
                              np.empty(0, np.int64), rec.headers)
            return
        self._order = max(self._order, int(rec.order.max()) + 1)
        lut = np.asarray([self.codes[t] for t in rec.tags], np.int32)
        self.segments.add(lut[rec.tag_code], rec.step, rec.order, rec.headers)
        idx = np.lexsort((rec.order, rec.tag_code))
        codes = rec.tag_code[idx]
        bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            tag = rec.tags[int(codes[a])]
            if self.roles[tag] in self.streams.roles:
                self.series.setdefault(tag, SeriesBuffer()).add(rec.step[idx[a:b]],
                                                                rec.value[idx[a:b]])

    def add(self, tag: str, steps: Any, values: Any) -> None:
        """Points of one tag (steps and values, array-likes), written after all fed before."""
        steps = np.asarray(steps, np.int64).reshape(-1)
        values = np.asarray(values, np.float64).reshape(-1)
        code = self._tag(tag)
        orders = np.arange(self._order, self._order + steps.shape[0], dtype=np.int64)
        self._order += steps.shape[0]
        self.segments.add(np.full(steps.shape[0], code, np.int32), steps, orders, ())
        if self.roles[tag] in self.streams.roles:
            self.series.setdefault(tag, SeriesBuffer()).add(steps, values)

    def add_many(self, batches: list[tuple[str, Any, Any]]) -> None:
        """`add(tag, steps, values)` for each batch in turn, the same state as those calls
        (the segment tracker takes them in one pass: the guard feeds three or four tags at
        each update)."""
        codes, steps_all, orders, series = [], [], [], []
        for tag, steps, values in batches:
            steps = np.asarray(steps, np.int64).reshape(-1)
            values = np.asarray(values, np.float64).reshape(-1)
            code = self._tag(tag)
            n = steps.shape[0]
            codes.append(np.full(n, code, np.int32))
            steps_all.append(steps)
            orders.append(np.arange(self._order, self._order + n, dtype=np.int64))
            self._order += n
            if self.roles[tag] in self.streams.roles:
                series.append((tag, steps, values))
        if not codes:
            return
        if not self.segments.add_plain(codes, steps_all, orders):
            self.segments.add(np.concatenate(codes), np.concatenate(steps_all),
                              np.concatenate(orders), ())
        for tag, steps, values in series:
            self.series.setdefault(tag, SeriesBuffer()).add(steps, values)

    def add_header(self, order: int | None = None) -> None:
        """A run header (a restart announced in the log) at `order` (default: here)."""
        o = self._order if order is None else int(order)
        self.segments.add(np.empty(0, np.int32), np.empty(0, np.int64),
                          np.empty(0, np.int64), (o,))

    def info(self) -> RunInfo:
        """The run as run-scope detectors see it (tags, roles, extents, segments)."""
        infos = []
        for tag in self.codes:
            s = self.series.get(tag)
            n = s.n if s is not None else 0
            infos.append(SeriesInfo(tag, self.roles[tag], n, int(s.step[0]) if n else None,
                                    int(s.step[n - 1]) if n else None, 0, n))
        return RunInfo(self.run, self.source, self.format, tuple(infos),
                       self.segments.segments(), self.metadata)

    def view(self) -> FrameView:
        """The points so far, read as a Frame's `series(run, tag)` (no copy)."""
        return FrameView({t: self.series.get(t, SeriesBuffer()).view(self.run, t, self.roles[t])
                          for t in self.codes})

    def current(self) -> list[Event]:
        """The current events (spikes inside a divergence folded into it), sorted."""
        events = fold_spikes([e for lst in self.events.values() for e in lst])
        return sorted(events, key=lambda e: (e.start_step, e.kind, e.tag))

    def detect(self) -> list[Event]:
        """Run the streams on what changed since the last call; the current events."""
        self.tick += 1
        for stream in self.streams.streams:
            stream.update(self)
        for s in self.series.values():
            s.dirty = None
        return self.current()

    def update(self) -> Revisions:
        """`detect()`, and how its events differ from the last update's."""
        events = self.detect()
        now: dict[tuple, Event] = {}
        for e in events:  # several of one key (restarts resuming from one step): by order
            k = event_key(e)
            n = 0
            while k + (n,) in now:
                n += 1
            now[k + (n,)] = e
        new, revised = [], []
        for k, e in now.items():
            before = self._reported.get(k)
            if before is None:
                new.append(e)
            elif before != e:
                revised.append(e)
        withdrawn = [e for k, e in self._reported.items() if k not in now]
        self._reported = now
        return Revisions(events, new, revised, withdrawn)


class SegmentTracker:
    """The run's segments, cut as `frame.build` cuts them (the step counter going back, a run
    header), updated batch by batch."""

    def __init__(self) -> None:
        self.bounds: list[tuple[int, str]] = []  # (order, reason) of each raw boundary
        self.cuts: list[int] = []  # first order of each raw segment after the first
        self.agg: dict[int, list[int]] = {}  # raw id -> first, last, points, order, code, step
        self.last: dict[int, tuple[int, int]] = {}  # tag code -> (step, order) of its last point
        self.first_order: int | None = None
        self.pending: list[int] = []

    def add(self, codes: np.ndarray, steps: np.ndarray, orders: np.ndarray,
            headers: tuple[int, ...]) -> None:
        if self.first_order is None and codes.shape[0]:
            self.first_order = int(orders.min())
        self.pending += headers
        if self.first_order is None:
            return
        cands = [(h, "header", -1, -1) for h in sorted(set(self.pending)) if h > self.first_order]
        self.pending = []
        idx = np.lexsort((orders, codes))
        c, s, o = codes[idx], steps[idx], orders[idx]
        cands += self._step_backs(c, s, o)
        for o_, reason, _, prev in sorted(cands):
            if reason == "step_back" and self.bounds and prev < self.bounds[-1][0]:
                continue  # the tag restarts with the boundary before, not anew
            if self.bounds and self.bounds[-1][0] == o_:
                continue
            self.bounds.append((o_, reason))
            self.cuts.append(o_ if reason == "step_back" else o_ + 1)
        self._aggregate(c, s, o)

    def add_plain(self, codes: list[np.ndarray], steps: list[np.ndarray],
                  orders: list[np.ndarray]) -> bool:
        """`add` of one batch per tag (distinct tags, orders going on from the last point's,
        no header), done in a few scalar steps where no step goes back (an in-training
        guard's batches): nothing to cut, every point in the last segment. False (nothing
        done) where that does not hold: then `add`."""
        if self.pending or not codes:
            return False
        tags = [int(c[0]) if c.shape[0] else -1 for c in codes]
        if -1 in tags or len(set(tags)) != len(tags) or (
                self.cuts and self.cuts[-1] > int(orders[0][0])):
            return False
        for code, s in zip(tags, steps):
            last = self.last.get(code)
            if (last is not None and int(s[0]) < last[0]) or bool((s[1:] < s[:-1]).any()):
                return False  # (a step back: `add` cuts there)
        if self.first_order is None:
            self.first_order = int(orders[0][0])
        for code, s, o in zip(tags, steps, orders):
            self.last[code] = (int(s[-1]), int(o[-1]))
        first = min(int(s[0]) for s in steps)  # (each batch's steps never decrease)
        last = max(int(s[-1]) for s in steps)
        pts = sum(int(s.shape[0]) for s in steps)
        o_j, c_j, s_j = int(orders[-1][-1]), tags[-1], int(steps[-1][-1])  # the latest point
        k = len(self.cuts)
        a = self.agg.get(k)
        if a is None:
            self.agg[k] = [first, last, pts, o_j, c_j, s_j]
            return True
        a[0], a[1], a[2] = min(a[0], first), max(a[1], last), a[2] + pts
        if (o_j, -c_j) > (a[3], -a[4]):
            a[3], a[4], a[5] = o_j, c_j, s_j
        return True

    def _step_backs(self, c: np.ndarray, s: np.ndarray, o: np.ndarray) -> list[tuple]:
        n = c.shape[0]
        if not n:
            return []
        prev_s, prev_o = np.empty_like(s), np.empty_like(o)
        prev_s[1:], prev_o[1:] = s[:-1], o[:-1]
        has = np.ones(n, bool)
        heads = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        for i in heads.tolist():
            last = self.last.get(int(c[i]))
            if last is None:
                has[i] = False
            else:
                prev_s[i], prev_o[i] = last
        ends = np.r_[heads[1:] - 1, n - 1]
        for i in ends.tolist():
            self.last[int(c[i])] = (int(s[i]), int(o[i]))
        back = np.flatnonzero(has & (s < prev_s))  # a step written twice in a row is not
        return [(int(o[i]), "step_back", int(c[i]), int(prev_o[i])) for i in back.tolist()]

    def _aggregate(self, c: np.ndarray, s: np.ndarray, o: np.ndarray) -> None:
        if not c.shape[0]:
            return
        seg = np.searchsorted(np.asarray(self.cuts, np.int64), o, side="right")
        for k in np.unique(seg).tolist():
            m = np.flatnonzero(seg == k)
            top = m[o[m] == o[m].max()]
            j = top[np.argmin(c[top])]
            a = self.agg.get(k)
            first, last, pts = int(s[m].min()), int(s[m].max()), int(m.shape[0])
            if a is None:
                self.agg[k] = [first, last, pts, int(o[j]), int(c[j]), int(s[j])]
                continue
            a[0], a[1], a[2] = min(a[0], first), max(a[1], last), a[2] + pts
            if (int(o[j]), -int(c[j])) > (a[3], -a[4]):
                a[3], a[4], a[5] = int(o[j]), int(c[j]), int(s[j])

    @property
    def count(self) -> int:
        """How many segments hold points."""
        return len(self.agg)

    def segments(self) -> tuple[Segment, ...]:
        out: list[Segment] = []
        prev: int | None = None
        for k in sorted(self.agg):
            first, last, pts, _, _, step = self.agg[k]
            reason = self.bounds[k - 1][1] if out else "start"
            out.append(Segment(len(out), first, last, pts, reason, prev))
            prev = step
        return tuple(out)
