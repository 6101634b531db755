"""Streaming forms of the spike statistic: `SpikeStream` (loss spikes) and `GradSpikeStream`.

Each update re-runs the batch detector on a trailing window of the stitched series: the new
points plus the detector's horizon of history (the tail count over z-scores whose baseline
spans a window and two level windows, and the re-judging after a spike), reaching further
back where an event is still open (a spike not back yet, or one whose recovery moved the
statistics of what follows; for grad spikes, a loss spike that may still follow). Events
from the window's trusted part on replace the earlier ones there. The statistic's baselines
(its trailing medians, the bulk of the cost) are not computed again on the window: each
tag's are kept up to date point by point (`stream_stats.BaselineCache`, equal to the whole
series' bit for bit) and handed to the detector (`SpikeDetector.find(known=...)`). Where the statistic leaves
log space (a first value <= 0, or the level coming within `NEAR_ZERO` noise scales of 0) is
tracked incrementally from the whole prefix, as `SpikeDetector.find` decides it: after that
the window is judged additively, and the update where it happens runs on the whole series.
Over any prefix and any chunking, the events equal the batch detector's on that prefix
(tests/test_detectors_stream.py).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..events import Event
from . import held as held_module
from . import spike as spike_module
from . import spike_storm
from .gradspike import GradSpikeDetector
from .spike import Known, SpikeDetector
from .spike_early import HEAD
from .spike_stats import find_back
from .spike_trend import prior_points, trend_band
from .stream_base import FrameView, SeriesBuffer, index_of, splice
from .stream_stats import BaselineCache

if TYPE_CHECKING:
    from .stream import LiveRun


class SpikeStream:
    """`SpikeDetector` fed new points: spikes on a trailing window (see the module doc)."""

    #: take the incremental path where it applies (`quiet`); False: judge the window at
    #: every update (the same events; benchmarks/guard_update.py compares the two)
    incremental: bool = True

    def __init__(self, det: SpikeDetector, judged: bool = True) -> None:
        self.det = det
        self.judged = judged
        self.kind = det.kind
        self.roles = tuple(det.roles)
        self.w = int(det.window) | 1
        self.lw = int(det.level_window) | 1
        self.bp = int(det.back_points)
        self.back_z = float(det.back_z)
        self.min_points = int(det.min_points)
        #: points of history a verdict can lean on: the tail count over z-scores whose
        #: baseline spans a window and two level windows, the re-judging after a spike, and
        #: the spikes of the window before (SpikeDetector's REPEAT rule).
        self.horizon = 5 * self.w + int(det.tail_window) + 4 * self.lw + 2 * self.bp + 64
        #: the incremental path (`quiet`): past the points judged with look-ahead, and with
        #: the history `SpikeDetector.flagged` reads
        self.first = max(self.min_points, HEAD) if det.look_ahead else self.min_points
        self.lookback = max(int(det.tail_window), 2 * self.w) + 16
        #: updates of a series that took the incremental path / judged the window again
        self.quiet_updates = self.judged_updates = 0
        self._reach_key = f"reach-{det!r}"  # (`memo`'s key: a dataclass repr costs ~20 us)

    def update(self, st: LiveRun) -> None:
        """Find the events of every changed series of the detector's roles again."""
        for tag, s in st.series.items():
            if s.dirty is not None and s.n and st.roles[tag] in self.roles:
                j = self.held(st, tag, s) if self.judged else s
                if j is s:
                    self.update_series(st, tag, s)
                    continue
                if j.dirty is not None and j.n:
                    self.update_series(st, tag, j, "-held")
                j.dirty = None

    def held(self, st: LiveRun, tag: str, s: SeriesBuffer) -> SeriesBuffer:
        """The tag's judged points (held repeats left out), brought up to date with `s`: `s`
        itself until its first held repeat (its memos then shared with `GradSpikeStream`),
        from then on a buffer of their own."""
        memo = st.memo.setdefault(("held", tag), {})
        if not memo:
            memo.update(buf=None, state=None, upto=0)
        j, d = memo["buf"], int(s.dirty)
        if d < memo["upto"]:  # rewritten from raw index d on: the verdicts from there again
            if j is not None:
                j.truncate(index_of(j.step[:j.n], s.step[d]))
            memo["state"] = held_module.scan(s.value[:d])[1] if d else None
            memo["upto"] = d
        a = memo["upto"]
        mask, memo["state"] = held_module.scan(s.value[a:s.n], memo["state"])
        memo["upto"] = s.n
        if j is None:
            if not mask.any():
                return s
            j = memo["buf"] = SeriesBuffer()
            mask = np.r_[np.zeros(a, bool), mask]  # (a: no held repeat before)
            a = 0
        keep = a + np.flatnonzero(~mask)
        j.add(s.step[keep], s.value[keep])
        return j

    def update_series(self, st: LiveRun, tag: str, s: SeriesBuffer, space: str = "") -> None:
        key = (self.kind, tag)
        old = st.events.get(key, [])
        a0 = self.start(old, s.step[:s.n], s.value[:s.n], int(s.dirty))
        if self.quiet(st, tag, s, old, a0, space):
            self.quiet_updates += 1
            return  # the events are those it had (see `quiet`)
        self.judged_updates += 1
        self.rejudged(st, tag, float(s.step[a0]), space)
        series, cut_step, known = self.window(st, tag, s, a0, space)
        # a window from the series' first point: its first points are judged with look-ahead;
        # a later one gets the points before it that a spike's trend is fitted on
        a = s.n - series.step.shape[0]
        prior = prior_points(s.step[:s.n], s.value[:s.n], a, self.spans(
            old, float(series.step[0]))) if a else None
        found = self.det.detect(series, known, head=cut_step == -math.inf, judged=True,
                                prior=prior)
        st.events[key] = splice(old, found, cut_step)

    @staticmethod
    def spans(old: list[Event], before: float) -> list[tuple[float, float]]:
        """The steps [start, end) of the spikes in `old` that start before step `before` (a
        window's first): the whole series leaves them out of a later spike's decay test."""
        return [(float(e.start_step), math.inf if e.end_step is None else float(e.end_step))
                for e in old if e.start_step < before]

    def start(self, old: list[Event], steps: np.ndarray, values: np.ndarray, d: int) -> int:
        """The first index whose events must be found again when points from `d` on are new
        (the window then starts `horizon` points earlier)."""
        # a spike's verdict may look up to a level window ahead (SpikeDetector: one-point
        # spikes, and near 0 the log-space check of the spike's points until it is back)
        d = max(0, d - self.lw - 1)
        if d < HEAD:  # the first points' verdicts look ahead to HEAD points
            d = 0
        return min([d] + [self._reach(e, steps, values, d) for e in old])

    # -- the incremental path: new points that change no event -----------------------------

    def quiet(self, st: LiveRun, tag: str, s: SeriesBuffer, old: list[Event], a0: int,
              space: str = "") -> bool:
        """Whether the tag's events from index `a0` on (`start`) are none, as before, so that
        the window need not be judged again: the work is then bounded by the new points
        (and the `tail_window` + 2 windows before them), not the horizon. True only where it
        follows from how `SpikeDetector._extract` works, in log space (every value so far
        positive and never near 0) past the first points:
        - no event starts at index `a0` or after (those are found again);
        - no spike before reaches there (`_settled`): re-judging after a spike covers 3
          windows from where it is back (and from a level window after its start when it is
          not back by then), and a spike with large excursions on its shoulders lowers the
          thresholds of the `tail_window` points after it;
        - the trailing statistic (`BaselineCache`, the tail count, the hump predictor) flags
          none of the points from `a0` on (`SpikeDetector.flagged`), nor does the blow-up
          rule (`spike_storm.flags`).
        A spike starts only at a flagged point, and only a spike changes what is flagged
        after it: so the batch detector finds no event from `a0` on either."""
        n = s.n
        if not self.incremental or a0 >= n or (old and old[-1].start_step >= s.step[a0]):
            return False
        cache = self.cache(st, tag, s, space)
        memo = st.memo.setdefault((f"switch-{self.w}-{self.lw}-{self.min_points}{space}", tag),
                                  {})
        k, moved = self._switch(s, memo, st.tick, cache)
        nf = cache.n
        fa = cache.finite_index(a0)
        if moved or fa <= self.first:
            return False
        s0 = max(0, fa - self.lookback)
        if k is None:  # log space throughout
            if cache.log.n < nf or not self._settled(st, tag, s, cache, old, fa, space):
                return False
            base, hump = cache.log_baseline(s0, nf), True
        else:  # additive from k on (and LogCheck where a log-space baseline is kept)
            fk = cache.finite_index(k)
            if fa < fk + 2 * self.w + 16 or cache.add.n < nf \
                    or not self._settled(st, tag, s, cache, old, fa, space):
                return False
            base, hump = cache.add.get(s0, nf, self.w, False), not (fk < cache.log.n)
        if self.det.flagged(base, fa - s0, nf - s0, s0, hump).any() or (
                self.det.look_ahead and spike_storm.flags(base.y, fa - s0, nf - s0, base.log,
                                                          self.w).any()):
            return False  # (or a blow-up starts there: spike_storm)
        self.memo(st, tag, space)["done"] = float(s.step[a0])  # events before it: taken in
        return True

    def memo(self, st: LiveRun, tag: str, space: str = "") -> dict[str, Any]:
        """The tag's record of how far settled spikes reach (`_settled`)."""
        return st.memo.setdefault((self._reach_key + space, tag), {})

    def rejudged(self, st: LiveRun, tag: str, cut_step: float, space: str = "") -> None:
        """The events from `cut_step` on are found again: `_settled` takes them in anew."""
        memo = self.memo(st, tag, space)
        if memo:
            memo["done"] = min(memo["done"], cut_step)

    def _settled(self, st: LiveRun, tag: str, s: SeriesBuffer, cache: BaselineCache,
                 old: list[Event], fa: int, space: str = "") -> bool:
        """Whether no spike of `old` reaches finite index `fa` (see `quiet`). Each event's
        reach is worked out once (events found again are taken in again; the furthest
        reach so far is kept: never less than the truth). A spike back by the share rule
        of log space before it is back within its band (or one not plainly back yet)
        re-judges what follows its plain return wherever that comes: it is watched."""
        memo = self.memo(st, tag, space)
        if memo.get("rewrites") != len(s.rewrites):  # points went back in step: start over
            memo.clear()
            memo.update(rewrites=len(s.rewrites), done=-math.inf, reach=0, pending={})
        i = len(old)
        while i and old[i - 1].start_step >= memo["done"]:
            i -= 1
        for e in old[i:]:
            memo["reach"] = max(memo["reach"], self._reach_of(e, s, cache, memo))
        y = cache.log.y.view
        pending = memo["pending"]  # (start, band) -> finite index scanned up to
        for (c, band), scanned in list(pending.items()):
            if bool((y[scanned:] <= band).any()):
                back = find_back(y, c + 1, band, self.bp)
                if back is not None:  # plainly back now: re-judged from there
                    memo["reach"] = max(memo["reach"], back + 3 * self.w)
                    del pending[(c, band)]
                    continue
            pending[(c, band)] = max(scanned, y.shape[0] - self.bp)
        if pending and y.shape[0] < cache.n:
            return False  # (a log-space spike not plainly back, and the series turned additive)
        return memo["reach"] <= fa

    def _reach_of(self, e: Event, s: SeriesBuffer, cache: BaselineCache,
                  memo: dict[str, Any]) -> int:
        """The finite index up to which the spike `e` sways the statistic (`_extract`)."""
        steps = s.step[:s.n]
        c = cache.finite_index(index_of(steps, e.start_step))
        restart = self.lw + 1
        reach = c + restart + 3 * self.w  # not back within a level window: afresh from there
        stop = c + restart
        log = e.details.get("space") == "log"
        side = cache.log if log else cache.add
        y = side.y.view
        pre, scale = e.details.get("pre_level"), e.details.get("scale")
        if not (isinstance(pre, float) and isinstance(scale, float) and math.isfinite(pre)
                and math.isfinite(scale) and (pre > 0 or not log) and c < y.shape[0]):
            return cache.n + 1  # (not as `_record` writes a spike: never settled)
        if e.end_step is not None or log:  # (log: judged back at its trend, or never, after
            if e.end_step is not None:  # a plain return that moved the statistic)
                stop = cache.finite_index(index_of(steps, e.end_step))
            band = (math.log(pre) if log else pre) + self.back_z * scale
            back = find_back(y, c + 1, band, self.bp)  # (log space: without the share rule)
            if back is None:
                if not log:
                    return cache.n + 1  # (additive: back is the plain return; never here)
                memo["pending"][(c, band)] = y.shape[0] - self.bp
            elif back <= c + restart:
                reach = back + 3 * self.w
            else:
                reach = max(reach, back + 3 * self.w)
            if back is not None and e.end_step is None:
                stop = max(stop, back)
        if self.det.tail_window:
            lv, sc = side.level.view, side.scale.view
            a = max(0, c - 3)
            with np.errstate(invalid="ignore", divide="ignore"):
                u = (y[a:stop] - lv[a:stop]) / sc[a:stop]
            if bool(((u > spike_module.TAIL_Z) & (u <= self.det.threshold)).any()):
                reach = max(reach, stop + int(self.det.tail_window))  # (thresholds lowered)
        return reach

    def window(self, st: LiveRun, tag: str, s: SeriesBuffer, a0: int, space: str = ""
               ) -> tuple[Any, float, Known | None]:
        """The series to run the detector on so that its events from index `a0` on are as
        in the whole series, the step from which they are, and the statistic's baselines
        and space there (kept up to date point by point: `BaselineCache`)."""
        # shared by the policies that run the same statistic on this tag (spike, grad_spike)
        cache = self.cache(st, tag, s, space)
        memo = st.memo.setdefault((f"switch-{self.w}-{self.lw}-{self.min_points}{space}", tag),
                                  {})
        k, moved = self._switch(s, memo, st.tick, cache)
        a = max(0, a0 - self.horizon)
        if moved or (k is not None and k >= a):
            a = 0  # the series turned additive just now, or inside the window: all of it
        series = s.view(st.run, tag, st.roles[tag], a)
        fa = cache.finite_index(a)
        # additive from the switch on (from the window's start when it came before)
        split = cache.n - fa if k is None else max(0, cache.finite_index(k) - fa)
        cut_step = -math.inf if a == 0 else s.step[a0] if a0 < s.n else math.inf
        return series, cut_step, cache.known(fa, split)

    def cache(self, st: LiveRun, tag: str, s: SeriesBuffer, space: str = "") -> BaselineCache:
        """The tag's baselines for this statistic, brought up to date (once an update)."""
        memo = st.memo.setdefault((f"baselines-{self.w}-{self.lw}{space}", tag), {})
        cache = memo.get("cache")
        if cache is None:
            cache = memo["cache"] = BaselineCache(self.w, self.lw)
        cache.update(s, st.tick)
        return cache

    def _reach(self, e: Event, steps: np.ndarray, values: np.ndarray, d: int) -> int:
        """Where the window must start (before the horizon) for `e` to be judged as in the
        whole series: its start if it is still open or sways the new points, else `d`."""
        ci = index_of(steps, e.start_step)
        if e.end_step is None:
            if ci >= d - 4 * self.w - 2 * self.bp - 64 or self._may_be_back(e, values[d:],
                                                                               steps[d:]):
                return ci
            return d
        ei = index_of(steps, e.end_step)
        return ci if ei >= d - 3 * self.w - 2 * self.bp - 8 else d

    def _may_be_back(self, e: Event, new: np.ndarray, steps: np.ndarray | None = None) -> bool:
        """Whether a new point is back within the old spike's band (then its end is found)."""
        pre, scale = e.details.get("pre_level"), e.details.get("scale")
        if pre is None or scale is None:
            return True
        v = new[np.isfinite(new)]
        if e.details.get("space") == "log":
            if pre <= 0 or bool((v <= 0).any()):
                return True
            trend = trend_band(e.details, self.back_z, spike_module.BACK_SHARE)
            if trend is not None and steps is not None:
                band, fit = trend  # (back at its trend: less its projected fall)
                fall = fit.fall(steps[np.isfinite(new)], float(e.start_step))
                return bool((np.log(v) - fall <= band).any())
            return bool((np.log(v) <= math.log(pre) + self.back_z * scale).any())
        return bool((v <= pre + self.back_z * scale).any())

    # -- where the statistic leaves log space (mirrors SpikeDetector.find / near_zero) ----

    def _switch(self, s: SeriesBuffer, memo: dict[str, Any], tick: int,
                cache: BaselineCache) -> tuple[int | None, bool]:
        """(index from which the detector judges the series additively, or None; whether
        that changed since the last update). It is the first value <= 0, or the first point
        whose log-space level is within NEAR_ZERO noise scales of 0 (unless every value so
        far exceeds NEAR_ZERO times the largest step); kept up to date incrementally."""
        sp = spike_module
        if memo.get("tick") == tick:  # already brought up to date in this update
            return memo["k"], memo["moved"]
        moved = False
        if memo and memo["upto"] > (s.n if s.dirty is None else s.dirty):
            memo.clear()  # points were rewritten: start over
            moved = True
        if not memo:
            memo.update(upto=0, fin=0, vmin=math.inf, vtop=-math.inf, smax=0.0, last=math.nan,
                        cond=None, k="unset")
        k0 = s.first_nonpos
        end = s.n if k0 is None else min(s.n, k0)
        if memo["upto"] < end:
            self._scan(s, memo, end, sp, cache)
        memo["upto"] = max(memo["upto"], end)
        near = memo["cond"]
        if memo["smax"] == 0.0 or memo["vmin"] > sp.NEAR_ZERO * memo["smax"]:
            near = None  # the detector's shortcut: nowhere near 0
        if k0 is not None and memo["fin"] <= self.min_points:  # fin: finite points before k0
            near = None  # no log space at all: additive from the first value <= 0
        k = k0 if near is None else near if k0 is None else min(k0, near)
        moved = moved or (memo["k"] != "unset" and memo["k"] != k)
        memo.update(k=k, moved=moved, tick=tick)
        return k, moved

    def _scan(self, s: SeriesBuffer, memo: dict[str, Any], end: int, sp: Any,
              cache: BaselineCache) -> None:
        """Fold the finite values of [upto, end) into the running min / largest step, and
        look for the first point of them where the level comes near 0."""
        upto, top = memo["upto"], memo["vtop"]
        f_up, f_end = cache.finite_index(upto), cache.finite_index(end)
        vals = cache.val.view[f_up:f_end]  # (the finite values of upto..end-1, kept)
        if vals.shape[0]:
            last = memo["last"]
            big = float(np.abs(vals[1:] - vals[:-1]).max()) if vals.shape[0] > 1 else -math.inf
            if math.isfinite(last):
                big = max(big, abs(float(vals[0]) - last))
            if big > -math.inf:
                memo["smax"] = max(memo["smax"], big)
            memo["vmin"] = min(memo["vmin"], float(vals.min()))
            memo["vtop"] = max(top, float(vals.max()))
            memo["last"] = float(vals[-1])
        if memo["cond"] is None and vals.shape[0] and not self._far(cache, f_up, f_end, sp):
            memo["cond"] = self._near_from(s, upto, end, memo["fin"], sp, cache, top)
        memo["fin"] += int(vals.shape[0])

    def _far(self, cache: BaselineCache, f_up: int, f_end: int, sp: Any) -> bool:
        """Whether none of the finite values f_up..f_end-1 can be near 0 (`_near_from`
        finds none there), from the kept log-space levels and the new points' diffs alone:
        each point's noise is the median of the `w` diffs before it, at most the
        (w // 2 + 1)-th largest diff of the stretch; every level at least NEAR_ZERO times
        that noise bound above 0 is not near 0."""
        w = self.w
        if f_up < w + 1 or cache.log.n < f_end:
            return False
        lowest = float(cache.log.level.view[f_up:f_end].min())  # (NaN: not far)
        x = cache.val.view[f_up - w - 1:f_end]
        d = np.abs(x[1:] - x[:-1])
        k = w // 2 + 1
        step = float(np.partition(d, -k)[-k])
        return math.exp(lowest) >= sp.NEAR_ZERO * (sp.DIFF_TO_SIGMA * step)

    def _near_from(self, s: SeriesBuffer, upto: int, end: int, fin: int, sp: Any,
                   cache: BaselineCache, top: float) -> int | None:
        """First index in [upto, end) whose level is within NEAR_ZERO noise scales of 0 (and
        `floor_fallen` x below the highest value, `top`: before `upto`), computed on enough
        finite points before `upto` to be exact."""
        need, lo = 3 * self.w + 4 * self.lw + 16, upto
        while lo > 0 and np.count_nonzero(np.isfinite(s.value[lo:upto])) < need:
            lo = max(0, lo - 2 * need)
        seg = s.value[lo:end]
        ok = np.isfinite(seg)
        v, pos = seg[ok], lo + np.flatnonzero(ok)
        if v.shape[0] < 3:
            return None
        diffs = np.abs(np.diff(v))
        vmin, vmax, step = float(v.min()), float(v.max()), float(diffs.max())
        k = self.w // 2 + 1
        if np.count_nonzero(ok[:upto - lo]) >= self.w and diffs.shape[0] >= k:
            # every point judged here has a full window of w steps before it: its noise
            # (their median) is at most the k-th largest step of the stretch
            step = float(np.partition(diffs, -k)[-k])
        if vmin > 0 and vmin * vmin / vmax > sp.NEAR_ZERO * sp.DIFF_TO_SIGMA * step:
            return None  # the level (>= vmin^2/vmax) stays above any noise bound here
        fin_index = fin - int(np.count_nonzero(ok[:upto - lo])) + np.arange(v.shape[0])
        f0 = cache.finite_index(lo)
        if cache.log.n >= f0 + v.shape[0] and cache.val.n >= 4:  # kept up to date
            logb = cache.log_baseline(f0, f0 + v.shape[0])
        else:
            logb = sp.baseline(v, self.w, True, level_window=self.lw)
        near = sp.near_zero_points(v, logb, self.w, lo == 0, self.det.floor_fallen,
                                   top)  # (judged: from upto on)
        hit = np.flatnonzero(near & (pos >= upto) & (fin_index >= self.det.near_zero_from(self.w)))
        return int(pos[hit[0]]) if hit.shape[0] else None


class GradSpikeStream:
    """Grad-norm spikes on trailing windows of the grad norms and of the losses they follow.

    A grad spike is found again from where its series changed (reaching back like a spike),
    and from `follow_within` steps before a loss's new points (a new loss spike there may
    have followed it); the losses are windowed so that their spikes from there on are exact.
    """

    def __init__(self, det: GradSpikeDetector) -> None:
        self.det = det
        self.kind = det.kind
        self.roles = tuple(det.roles)
        self.grad = SpikeStream(det.spike_detector(), judged=False)
        self.loss = SpikeStream(SpikeDetector(), judged=False)
        self.follow = int(det.follow_within)

    def update(self, st: LiveRun) -> None:
        grads = [t for t in st.series if st.roles[t] == "grad_norm"]
        losses = [t for t in st.series if st.roles[t] == "train_loss"]
        new_loss = [int(st.series[t].step[st.series[t].dirty]) for t in losses
                    if st.series[t].dirty is not None]
        if not grads or not (new_loss or any(st.series[t].dirty is not None for t in grads)):
            return
        key = (self.kind, None)
        old = st.events.get(key, [])
        follow_from = min(new_loss) - self.follow if new_loss else math.inf
        views, cuts, known = {}, {}, {}
        starts = {}
        for t in grads:
            s = st.series[t]
            steps = s.step[:s.n]
            d = min(s.n if s.dirty is None else s.dirty, index_of(steps, follow_from))
            mine = [e for e in old if e.tag == t]
            starts[t] = self.grad.start(mine, steps, s.value[:s.n], d)
            if not self.grad.quiet(st, t, s, mine, starts[t]):
                break
        else:  # no grad spike from where each could change on (and none to follow)
            self.grad.quiet_updates += 1
            return
        self.grad.judged_updates += 1
        for t in grads:
            s = st.series[t]
            a0 = starts[t] if t in starts else self.grad.start(
                [e for e in old if e.tag == t], s.step[:s.n], s.value[:s.n],
                min(s.n if s.dirty is None else s.dirty, index_of(s.step[:s.n], follow_from)))
            if a0 < s.n:
                self.grad.rejudged(st, t, float(s.step[a0]))
            views[t], cuts[t], known[t] = self.grad.window(st, t, s, a0)
        first = min(cuts.values())
        for t in losses:
            s = st.series[t]
            steps = s.step[:s.n]
            a0 = 0 if first == -math.inf else self.loss.start(
                st.events.get(("spike", t), []), steps, s.value[:s.n], index_of(steps, first))
            views[t], _, _ = self.loss.window(st, t, s, a0)
        found = self.det.detect_run(FrameView(views), st.info(), known)
        st.events[key] = sorted(
            [e for e in old if e.start_step < cuts.get(e.tag, math.inf)]
            + [e for e in found if e.start_step >= cuts[e.tag]],
            key=lambda e: (e.start_step, e.tag))
