"""Divergence: the training loss rises and keeps rising (or turns NaN/inf and stays there).

Training meaning (docs/playbook.md): a run that diverges does not come back by itself;
restart from a checkpoint before the onset (PaLM), and look at Adam epsilon, init std and fp16
numerics. It may start with a spike or come without one.

Statistic (causal: declared from past points only):

- level = trailing median of `window` finite points (log space for a positive series, so a
  single spike shorter than half the window does not move it); best = running minimum of
  the level once the median rests on a full window.
- The level must stay at least `rise_ratio` x best (additive series: best + `rise_z` noise
  scales, measured where the best was reached) over a span of `sustain_points` points or
  `sustain_steps` steps at the usual logging interval, whichever is longer; it must be near
  its top over that span (not coming down), and either have grown `min_growth` x (additive:
  the same share of the threshold, a quarter of it at the defaults) and `GROW_Z` standard
  errors of the level since it settled after crossing (half a window on: a trailing median
  climbs through a step for half a window, and a step that stays is a plateau, not a rise;
  a climb over several points with no one point making `JUMP_SHARE` of it is a ramp and
  counts from the crossing), or sit `stuck_ratio` x above the best for the whole span (log
  space: a run stuck near the uniform-prediction loss is dead, not settled), or have climbed
  over several points (a ramp) back within `INIT_NEAR` of its initial level and sit there
  for the whole span (a model that blew up predicts near uniformly again: the loss a
  pre-training run starts from; one jump there is a step up, the spike detector's).
- An episode that never grew is dropped once it comes back (a slow spike's hump) or once it
  no longer sits `stuck_ratio` x up (a spike decaying): the spike detector has those.
- Log space, near a floor (`divergence_floor.floor_episode`): an episode off a level two decades
  under the start that stayed under it and stopped rising, or came back, is dropped; one back
  near the start stands only if still there at the end, from its last climb (slingshots: spikes).
- A short run (the window and span shrunk) that ends climbing diverges when its level rose
  at every point for a span and half a window (a span when the climb was a ramp), by more
  than the threshold.
- Or `nan_points` consecutive non-finite values that stay to the end after a rise into
  them: the level (or the median of the last five points) over the best by `NAN_RISE` x and
  `LEVEL_Z` standard errors (here with the level's own wander, log space too: AR(1) noise on
  a plateau; additive: the usual threshold), or the last point over that and either twice as
  far above the recent median as anything in the `4 x window` points before or the top of
  a climb at each of the last `CLIMB_POINTS` points or more by `CLIMB_Z` noise scales (an
  exponential blow-up logged every 100 steps is a few rising points). NaN out of a flat
  stretch (its last point a blip of noise), or a NaN burst training goes on after: `nonfinite`.
- Noise: one point's from consecutive (or, where the loss moves faster than its noise,
  second) differences over the last 129 points. The rise must also clear `LEVEL_Z` standard
  errors of the trailing median, now and where the best level was reached (a loud stretch
  leaves a best level its quiet successors seem to rise from; not within the first REF_MIN
  windows: a run climbing from its start has only its climb there). The standard error is the
  i.i.d. one (1.2533 sigma / sqrt(window)) or, on a signed series, the level's own wander
  when larger (AR(1) noise: consecutive differences see a third of it); on a signed series,
  at the best level, also from its window's scatter about their line (`spread_error`).
- Onset = the first point after the last point within noise of the best level (a level that
  climbed at every point from a best within the first REF_MIN windows: the centre of that
  best window, the climb's first point); or, when the loss sat settled higher for over 4
  sustain spans in between (a step up that stayed), of the trough before the rise. A spike precedes the rise when its first point jumped 3x more
  than the loss then grew per point (a steep steady rise is the divergence itself); the start
  is then where the rise after the spike begins (or the spike, when the loss never came
  down from it or never rose again), and `details.spike_step` says where the spike was.
- The event ends at the last point (or, if the level comes back below the threshold, at the
  last point before it did: `details.recovered`).

Run stage (`detect_run`; `divergence_pair`): the series stage on every train loss, and one
divergence a run's train and validation losses show together when neither alone is enough
(validation worse than its best at every evaluation since, while the train loss rose
`train_rise` x): a fine-tune whose learning rate is far too high, its train loss logged too
sparsely for a trailing level.

Known false positives: a spike that settles `stuck_ratio` x higher and stays there is called a
divergence (on purpose); a part of a multi-part loss that rises while the total falls
(analysis marks it `component`, information); a deliberate LR re-warm-up; adversarial
losses (a GAN generator's loss rises as its discriminator improves).
Known exceptions to causality: the space (log or additive), the usual logging interval and, on
short series (under ~170 points), the window and sustain span come from the whole series.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..events import Event
from ..frame import Frame, RunInfo, Series
from .divergence_floor import floor_episode
from .filters import median
from .params import validate_once
from .spike import SpikeDetector, is_int, is_num, require, trailing_median

#: On short series (a smoke test, a short fine-tune) the median window and the sustain span
#: are at most 1/8 of the points, so a run that diverges within its first hundred
#: logged points is still seen (e.g. a 62-iteration Megatron run rising for 30 iterations).
#: Under 40 points both bottom out at a median of 3 and a span of 4 points: a 17-point run
#: whose loss rises x7 over its last 8 points is diverging (a median of 5 and a span of 5
#: saw the rise only after the run had ended).
_SHORT_WINDOW, _SHORT_SPAN = 8, 8
_MIN_WINDOW, _MIN_SPAN = 3, 4

#: Noise scale from consecutive differences (robust to trends): MAD(diff) / (0.6745 sqrt 2).
_DIFF_TO_SIGMA = 1.4826 / np.sqrt(2)
#: In log space the level must also rise this many standard errors of its trailing median
#: (1.2533 sigma / sqrt(window)) above the best: per-batch losses that flicker over decades
#: move their median by more than `rise_ratio` without diverging.
LEVEL_Z = 8.0
#: Before a NaN run, a level this many times its best (log space; and above LEVEL_Z standard
#: errors) is a rise into it: a loss that climbs 15-60 % over hundreds of steps and then turns
#: NaN diverged, though it never reached `rise_ratio`. (Additive series: `rise_z` as ever.)
NAN_RISE = 1.1
#: Growth after the crossing must also clear this many standard errors of the level: a noisy
#: level that settled higher flickers by more than `min_growth` without rising (over a few
#: hundred points its largest flicker reaches 3-4 standard errors).
GROW_Z = 5.0
#: A climb to the crossing where no one logged point made this share of it is a ramp (a loss
#: rising over several points to its uniform-prediction level), not a step up that settled.
JUMP_SHARE = 0.6
#: A loss back within this factor of its initial level (the median of its first
#: `INIT_POINTS` points) has lost what training taught it: a model that blew up predicts
#: (near) uniformly again, and a pre-training run starts at that uniform-prediction loss.
INIT_NEAR = 1.1
INIT_POINTS = 5
#: A loss that climbed at each of its last `CLIMB_POINTS` (or more) finite points into a
#: NaN, by this many noise scales, rose into it (an exponential blow-up logged every
#: 100 steps is a few rising points, too short to move a trailing median).
CLIMB_POINTS, CLIMB_Z = 3, 6.0
#: The standard error where the best level was reached counts once that best rests on this
#: many median windows of points (before, its noise is three points' worth of the climb).
REF_MIN = 2


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _noise(y: np.ndarray) -> float:
    d = np.diff(y)
    return float(_DIFF_TO_SIGMA * np.median(np.abs(d))) if d.shape[0] else 0.0


@dataclass(frozen=True)
class DivergenceDetector:
    """Sustained rise of the training loss, or non-finite values that stay; see the docstring."""

    #: Trailing points of the median level (odd). A spike shorter than half of it is ignored.
    window: int = 21
    #: The level must reach this many times its best so far ("well above the running minimum").
    rise_ratio: float = 1.5
    #: Additive-space equivalent of rise_ratio, in robust noise scales (series that go <= 0).
    #: A step up for good of this size or more is told from a rise by the growth asked after
    #: it settled (a signed loss's steps of 6-15 noise scales settle, its rises grow).
    rise_z: float = 6.0
    #: ...and keep growing: this many times the level it had when it first crossed.
    min_growth: float = 1.1
    #: ...or sit this many times above the best without coming down (a dead run).
    stuck_ratio: float = 4.0
    #: The rise must hold for at least this many points...
    sustain_points: int = 20
    #: ...and this many steps (so that a densely logged slow spike is not a divergence).
    sustain_steps: int = 500
    #: This many consecutive NaN/inf values are a divergence on their own.
    nan_points: int = 3
    #: A spike that started up to this many steps before the onset "preceded" the divergence.
    spike_within: int = 500
    #: Run stage (train + validation, `divergence_pair`): evaluations after the best one...
    evals_after: int = 3
    #: ...each at least this many times the best...
    eval_rise: float = 1.1
    #: ...while the train loss's level rose this many times its level at the best evaluation.
    train_rise: float = 1.25

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "divergence"

    def validate(self) -> None:
        require(self, "window", is_int(self.window) and self.window >= 3, "an int >= 3")
        for name, lo in (("rise_ratio", 1.0), ("min_growth", 1.0), ("stuck_ratio", 1.0)):
            value = getattr(self, name)
            require(self, name, is_num(value) and value > lo, f"a number > {lo:g}")
        require(self, "rise_z", is_num(self.rise_z) and self.rise_z > 0, "a number > 0")
        require(self, "sustain_points", is_int(self.sustain_points) and self.sustain_points >= 1,
                "an int >= 1")
        require(self, "sustain_steps", is_int(self.sustain_steps) and self.sustain_steps >= 0,
                "an int >= 0")
        require(self, "nan_points", is_int(self.nan_points) and self.nan_points >= 1,
                "an int >= 1")
        require(self, "spike_within", is_int(self.spike_within) and self.spike_within >= 0,
                "an int >= 0")
        require(self, "evals_after", is_int(self.evals_after) and self.evals_after >= 2,
                "an int >= 2")
        for name in ("eval_rise", "train_rise"):
            require(self, name, is_num(getattr(self, name)) and getattr(self, name) > 1.0,
                    "a number > 1")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        """Each train loss's divergences (`detect`), and the run stage's: one the train and
        validation losses show together (`detect_pair`)."""
        self.validate()
        own = [e for tag in run.tags_with_role("train_loss")
               for e in self.detect(frame.series(run.run, tag))]
        return sorted(own + self.detect_pair(frame, run, own), key=lambda e: e.start_step)

    def detect_pair(self, frame: Any, run: RunInfo, own: list[Event]) -> list[Event]:
        """The run stage (`divergence_pair`): a divergence the train and validation losses
        show together, unless one of `own` (the train losses' divergences) covers it."""
        from .divergence_pair import covered

        found = self.pair_candidate(frame, run)
        return [] if found is None or covered(found, own) else [found]

    def pair_candidate(self, frame: Any, run: RunInfo) -> Event | None:
        """The run stage's divergence before the series stage's are asked (`divergence_pair`)."""
        from .divergence_pair import pair_candidate

        return pair_candidate(frame, run, evals_after=self.evals_after,
                              eval_rise=self.eval_rise, train_rise=self.train_rise,
                              sustain_steps=self.sustain_steps)

    def detect(self, series: Series) -> list[Event]:
        """The series stage: the divergences of one train loss series."""
        validate_once(self)
        return [Event(kind=self.kind, run=series.run, tag=series.tag, start_step=d["start"],
                      end_step=d["end"], severity="critical", magnitude=d["magnitude"],
                      details=d["details"])
                for d in self.find(series.step, series.value)]

    def find(self, steps: np.ndarray, values: np.ndarray) -> list[dict[str, Any]]:
        steps = np.asarray(steps).astype(np.int64)
        values = np.asarray(values, dtype=float)
        if steps.shape[0] == 0:
            return []
        finite = np.isfinite(values)
        if steps.shape[0] <= min(self.sustain_points, _MIN_SPAN) and bool(finite.all()):
            return []  # (no NaN run, and no more points than any sustain span: `_finite`)
        st, v = steps[finite], values[finite]
        log = bool(v.shape[0] == 0 or np.all(v > 0))
        y = np.log(v) if log else v
        window = self._window(v.shape[0])
        level = trailing_median(y, window)
        # the best level so far, once the median rests on a full window
        full = np.where(np.arange(level.shape[0]) >= window - 1, level, np.inf)
        best = np.minimum.accumulate(full) if v.shape[0] else level
        found = self._finite(st, v, y, level, best, log)
        found = self._merge_nonfinite(found, steps, finite, st, y, level, best, log)
        last = int(steps[-1])
        for d in found:
            if not d["details"]["recovered"]:
                d["end"] = last
        return sorted(found, key=lambda d: d["start"])

    # -- sustained rise of the finite values ---------------------------------------------

    def median_window(self, n: int) -> int:
        """The median window on `n` finite points (a streaming form asks when it is full)."""
        return self._window(n)

    def _window(self, n: int) -> int:
        """The median window: `window`, shrunk on short series (at most an eighth of them)."""
        return min(self.window | 1, max(_MIN_WINDOW, n // _SHORT_WINDOW) | 1)

    def is_short(self, st: np.ndarray) -> bool:
        """True when the series is so short that the window and span were shrunk."""
        typical = median(np.diff(st)) if st.shape[0] > 1 else 1.0
        full = max(self.sustain_points, int(np.ceil(self.sustain_steps / max(typical, 1.0))))
        return full > max(_MIN_SPAN, st.shape[0] // _SHORT_SPAN)

    def sustain_span(self, st: np.ndarray) -> int:
        """Points in the sustain span: sustain_points, or more to cover sustain_steps at the
        series' typical logging interval; at most an eighth of a short series."""
        typical = median(np.diff(st)) if st.shape[0] > 1 else 1.0
        span = max(self.sustain_points, int(np.ceil(self.sustain_steps / max(typical, 1.0))))
        return min(span, max(_MIN_SPAN, st.shape[0] // _SHORT_SPAN))

    def _finite(self, st: np.ndarray, v: np.ndarray, y: np.ndarray, level: np.ndarray,
                best: np.ndarray, log: bool) -> list[dict[str, Any]]:
        from .filters import maximum_filter1d, minimum_filter1d

        n = v.shape[0]
        span = self.sustain_span(st)
        if n <= span:
            return []
        thr, tol, growth, stuck, se = self.thresholds(y, level, best, log)
        flicker = GROW_Z * se  # what a settled noisy level moves by without rising
        above = (level - best) >= thr
        if not above.any():
            return []
        idx = np.arange(n)
        run_start = np.maximum.accumulate(np.where(above & ~np.r_[False, above[:-1]], idx, 0))
        top = maximum_filter1d(level, size=span + 1, origin=span // 2)
        # growth is counted from where the level settled after crossing (half a window on):
        # a trailing median climbs through a step for half a window after it crosses, and
        # that climb is the step's, not a rise (a loss that stepped up and stays is a plateau)
        settled = np.minimum(idx, run_start + self._window(n) // 2)
        ramp = np.zeros(n, dtype=bool)
        if log:  # a climb over several points grows through the crossing (a signed loss's
            # noise makes every climb look like one)
            ramp = self._ramps(y, level, above)[run_start]
            settled = np.where(ramp, run_start, settled)
        grown = level - level[settled] >= np.maximum(growth, flicker)
        if self.is_short(st):
            # a short series: the rise may have started before the level crossed, so a level
            # still climbing over the last span (half the growth) counts too; a jump that
            # settled higher is flat there and does not
            back = np.maximum(idx - span, settled)
            grown |= level - level[back] >= np.maximum(growth / 2, flicker)
        # stuck: the level sat stuck_ratio x over the best for the whole span (a noisy level
        # that touches it now and then is a step up that settled, not a dead run)
        low = minimum_filter1d(level, size=span + 1, origin=span // 2)
        init = float(np.median(y[:min(n, INIT_POINTS)]))
        steady = above & (idx - span >= run_start) & (level >= top - tol)
        grew = rising = steady & grown
        dead = low - best >= stuck
        if log:  # or climbed over several points (a ramp, not one jump) back to its initial
            # level and sat there for the whole span: a model that blew up and predicts the
            # uniform-prediction loss it started from, however low its best was
            dead |= ramp & (low >= init - np.log(INIT_NEAR)) & (init - best >= thr)
        declare = rising | (steady & dead)
        if self.is_short(st):
            # a short run that ends climbing: its level rose at every point for a span and
            # more, and by more than the threshold (a 13-point run going x8 over its last 6
            # points ends before a span can pass after the crossing)
            # (a trailing median climbs through a step for a window: half a window more)
            w = self._window(n)
            climbing = np.r_[False, np.diff(level) > 0]
            rise_from = np.maximum.accumulate(np.where(climbing, 0, idx))
            need = np.where(ramp, span, max(span, w) + w // 2)  # a ramp is no step's transit
            rising = rising | (above & (idx - rise_from >= need)
                                & (level - level[rise_from] >= thr))
            declare |= rising
        out = []
        for a, b in _runs(above):
            hits = np.flatnonzero(declare[a:b])
            if b < n and not grew[a:b].any():
                continue  # sat high without growing, then came back: a slow spike's hump
            if not rising[a:b].any() and not dead[b - 1]:
                continue  # a dead run only while it still sits stuck_ratio x up: one that
                # came down is a spike decaying
            fl = floor_episode(level, y, init, float(best[a]), a, b, span) if log else (a, None)
            hits = hits[hits >= fl[0] - a] if fl is not None else hits[:0]  # None: dropped
            if hits.shape[0]:
                out.append(self._event(st, v, y, level, best, a, b, a + int(hits[0]), log, fl[1]))
        return out

    def _ramps(self, y: np.ndarray, level: np.ndarray, above: np.ndarray) -> np.ndarray:
        """Per crossing index: whether the loss climbed there over several logged points
        (a ramp: no one point made JUMP_SHARE of the climb from the trough over the two
        windows before to the level half a window after), not in one jump (a step)."""
        n, w = y.shape[0], self._window(y.shape[0])
        out = np.zeros(n, dtype=bool)
        for c in np.flatnonzero(above & ~np.r_[False, above[:-1]]):
            lo, hi = max(0, c - 2 * w), min(n - 1, c + w // 2)
            total = level[hi] - float(level[lo:c + 1].min())
            jumps = np.diff(y[max(0, c - w):hi + 1])
            out[c] = bool(total > 0 and jumps.shape[0] and jumps.max() < JUMP_SHARE * total)
        return out

    @staticmethod
    def point_noise(y: np.ndarray) -> np.ndarray:
        """Per point, the noise of one point (causal, over the last 129): from consecutive
        differences, or from second differences where the loss still falls or climbs faster
        than its noise (a short run's steep start: consecutive differences are the trend)."""
        n = y.shape[0]
        d1 = _DIFF_TO_SIGMA * trailing_median(np.abs(np.diff(y, prepend=y[0])), 129)
        if n < 3:
            return d1
        d2 = 1.4826 / np.sqrt(6) * trailing_median(np.abs(y[2:] - 2 * y[1:-1] + y[:-2]), 129)
        d1[2:] = np.minimum(d1[2:], d2)
        return d1

    def level_error(self, y: np.ndarray, level: np.ndarray, noise: np.ndarray,
                    wander: bool = True) -> np.ndarray:
        """Per point, the standard error of the trailing-median level (causal): the larger of
        the i.i.d. value (1.2533 sigma / sqrt(window), sigma from consecutive differences) and
        the level's own wander, measured from its second differences at a lag of one window
        (each of var 6 se^2; a linear trend cancels); `noise` from `point_noise`. Correlated noise (AR(1), a slow data
        wander) moves the median far more than consecutive differences show."""
        n, w = y.shape[0], self._window(y.shape[0])
        se = 1.2533 * noise / np.sqrt(w)
        first = 3 * w - 2  # level[i - 2w] rests on a full window
        if n > first and wander:
            dd = np.abs(level[first:] - 2 * level[first - w:n - w] + level[first - 2 * w:n - 2 * w])
            lag = 1.4826 / np.sqrt(6) * trailing_median(dd, 129)
            se[first:] = np.maximum(se[first:], lag)
        return se

    def spread_error(self, y: np.ndarray, ref: np.ndarray) -> np.ndarray:
        """Per point, the standard error of the level at `ref[i]` from the scatter of its window
        about their least-squares line (1.2533 x IQR / 1.349 / sqrt(window); 0 where not finite):
        the honest error of a median of a mixture (consecutive differences: within one mode)."""
        w = self._window(y.shape[0])
        refs, back = np.unique(ref, return_inverse=True)
        err = np.zeros(refs.shape[0])
        x = np.arange(w) - (w - 1) / 2
        for k, r in enumerate(refs.tolist()):
            if r < w - 1:
                continue  # no full window there
            seg = y[r - w + 1:r + 1]
            with np.errstate(all="ignore"):  # (values at the edge of float64 overflow)
                q1, q3 = np.percentile(seg - seg.mean() - x * (x @ seg) / (x @ x), [25, 75])
            err[k] = 1.2533 * (q3 - q1) / 1.349 / np.sqrt(w)
        return np.where(np.isfinite(err), err, 0.0)[back.reshape(-1)]

    def thresholds(self, y: np.ndarray, level: np.ndarray, best: np.ndarray,
                   log: bool, nan_rise: bool = False) -> tuple[Any, Any, Any, Any]:
        """(rise over the best level that counts, "near the top" tolerance, growth since the
        crossing, stuck height, standard error of the level) per point, in the detector's
        space. `nan_rise`: the rise that counts before a NaN run (log space: `NAN_RISE` x, or
        the wander bound)."""
        n = y.shape[0]
        noise = self.point_noise(y)
        # (the rise into a NaN also clears the level's own wander in log space: AR(1) noise
        # on a plateau moves the median of its last points by over NAN_RISE)
        se = self.level_error(y, level, noise, wander=nan_rise or not log)
        # where the best level was last reached: its error is that of its own stretch
        ref = np.maximum.accumulate(np.where(level <= best, np.arange(n), 0))
        # (a best reached within the first REF_MIN windows has no stretch of its own to
        # measure: a run climbing from its start would be judged by the noise of its climb)
        se = np.where(ref >= REF_MIN * self._window(n), np.maximum(se, se[ref]), se)
        if log:
            # scale-aware: on a noisy loss (per-batch losses over decades) the trailing median
            # itself wanders and its running minimum sits low; the rise must also clear
            # LEVEL_Z standard errors of that median, now and where the best was reached (a
            # loud stretch set a low best)
            wander = LEVEL_Z * se
            if nan_rise:  # the rise into a NaN: NAN_RISE x, or the wander when larger
                return np.maximum(np.log(NAN_RISE), wander), None, None, None, se
            thr = np.maximum(np.log(self.rise_ratio), wander)
            stuck = np.maximum(np.log(self.stuck_ratio), wander)
            return thr, np.maximum(np.log(1.02), se), np.log(self.min_growth), stuck, se
        # in noise scales measured where the best level was last reached, or LEVEL_Z standard
        # errors of the level when it wanders more (AR(1) noise); the growth asked after the
        # crossing is the same share of the threshold as in log space
        tiny = 1e-12 * np.maximum(1.0, np.abs(level))
        tol = np.maximum(np.maximum(noise[ref], se[ref]), tiny)
        # (and LEVEL_Z standard errors of the best level from the scatter of the values it is
        # the median of: a mixture, such as an RL policy loss whose groups with equal rewards
        # log ~0 and the others negative, has calm consecutive differences while its median
        # moves with the mixture's share; `spread_error`)
        thr = np.maximum(self.rise_z * np.maximum(noise[ref], tiny),
                         LEVEL_Z * np.maximum(se[ref], self.spread_error(y, ref)))
        share = np.log(self.min_growth) / np.log(self.rise_ratio)
        return thr, tol, share * thr, np.inf, se  # a signed series has no dead run

    def _event(self, st: np.ndarray, v: np.ndarray, y: np.ndarray, level: np.ndarray,
               best: np.ndarray, a: int, b: int, decl: int, log: bool,
               climb: tuple[int, int, int | None] | None = None) -> dict[str, Any]:
        onset = self._onset(y, best, a)
        w = self._window(v.shape[0])
        ref = int(np.flatnonzero(level[:a + 1] <= best[a])[-1])  # where the best was reached
        if ref < REF_MIN * w and np.all(np.diff(level[ref:a + 1]) > 0):
            # climbing from its best near the start on (the noise there is the climb's own,
            # so `_onset`'s band would swallow the first rising points): the rise starts
            # at the centre of the best window
            onset = min(onset, max(1, ref - w // 2))
        own = self._nan_onset(y, level, a)
        if own - onset > 4 * self.sustain_span(st):
            # the loss sat settled higher for long between its best and this rise (a step up
            # that never came back): the rise starts at its own trough
            onset = own
        if climb is not None:  # (floor_episode: a jump, or the first point off its trough)
            onset = self._nan_onset(y, level, *climb[:2]) if climb[2] is None else climb[2]
        start, spike = self._after_spike(st, v, y, onset, decl) if climb is None else (
            onset, None if climb[2] is None else {"start": int(st[onset])})  # (a jump: a spike)
        top = float(level[a:b].max() - best[a])
        details = {
            "declared_step": int(st[decl]), "best_level": float(np.exp(best[a]) if log else best[a]),
            "preceded_by_spike": spike is not None, "recovered": b < v.shape[0],
            "nonfinite": False, "space": "log" if log else "linear",
        }
        if spike is not None:
            details["spike_step"] = spike["start"]
        return {"start": int(st[start]), "end": int(st[b - 1]), "start_index": start,
                "magnitude": float(np.exp(top)) if log else top, "details": details}

    def _onset(self, y: np.ndarray, best: np.ndarray, a: int) -> int:
        """First point after the last point within noise of the best level, searching back."""
        span = 512
        while True:
            lo = max(0, a - span)
            seg = y[lo:a + 1]
            band = max(2 * _noise(seg), 0.01)
            normal = np.flatnonzero(seg <= best[lo:a + 1] + band)
            if normal.shape[0]:
                return min(lo + int(normal[-1]) + 1, a)
            if lo == 0:
                return 0
            span *= 4

    def _after_spike(self, st: np.ndarray, v: np.ndarray, y: np.ndarray, onset: int,
                     decl: int) -> tuple[int, dict[str, Any] | None]:
        """(start index, preceding spike or None). A spike precedes the divergence when it
        jumped (3x more in one point than the loss then grew per point: a steep but steady
        rise is the divergence itself). The start is then where the rise after the spike
        begins, when the loss came down from the spike and rose again; else the spike."""
        lo = max(0, onset - 4 * SpikeDetector.window)
        first = int(st[onset]) - self.spike_within
        spikes = [s for s in SpikeDetector(trend=False).find(  # (its return: the plain one)
                      st[lo:decl + 1], v[lo:decl + 1], head=lo == 0)
                  if first <= s["start"] <= int(st[decl]) and s["details"]["abrupt"]
                  and (s["end"] is None or s["end"] > st[onset])]
        spike = next((s for s in spikes if self._jumped(y, lo + s["start_index"], decl)), None)
        if spike is None:
            return onset, None
        c = lo + spike["start_index"]
        p = int(np.searchsorted(st, spike["peak"]))
        if decl - p < 3:
            return c, spike
        from .filters import median_filter

        smooth = median_filter(y[p:decl + 1], size=5)
        low = float(smooth.min())
        grown = np.log(self.min_growth)
        if smooth[0] - low < grown or smooth[-1] - low < grown:
            return c, spike  # never came down, or did not rise again: the spike started it
        band = max(2 * _noise(y[p:decl + 1]), 0.01)
        flat = np.flatnonzero(smooth <= low + band)
        return min(p + int(flat[-1]) + 1, decl), spike

    @staticmethod
    def _jumped(y: np.ndarray, c: int, decl: int) -> bool:
        if c < 1:
            return False
        after = np.diff(y[c:min(decl, c + 5) + 1])
        growth = max(float(np.median(after)), 0.0) if after.shape[0] else 0.0
        return float(y[c] - y[c - 1]) >= 3 * growth

    # -- non-finite values that stay -----------------------------------------------------

    def _merge_nonfinite(self, found: list[dict[str, Any]], steps: np.ndarray,
                         finite: np.ndarray, st: np.ndarray, y: np.ndarray, level: np.ndarray,
                         best: np.ndarray, log: bool) -> list[dict[str, Any]]:
        n_finite_before = np.cumsum(finite)
        thr = None  # the rise into a NaN run, computed when one needs it
        for a, b in _runs(~finite):
            if b - a < self.nan_points or n_finite_before[a] == 0:
                continue  # NaN from the first point on is broken, not diverged (nonfinite)
            first, last, recovered = int(steps[a]), int(steps[b - 1]), b < steps.shape[0]
            owner = next((d for d in found if d["start"] <= first
                          and d["end"] >= int(steps[max(a - 1, 0)])), None)
            if owner is not None:  # the rise ended in NaN: one divergence
                owner["details"].update(nonfinite=True, recovered=recovered,
                                        first_nonfinite_step=first)
                owner["end"] = last
                continue
            e = int(n_finite_before[a]) - 1  # last finite point before the NaN run
            if recovered:
                continue  # a NaN burst and training went on: nonfinite says it (a rise
                # that goes on after it is the finite branch's)
            if thr is None:
                thr = self.thresholds(y, level, best, log, nan_rise=True)[0]
            if not self._rose_into(y, e, level, self._nan_floor(st, y, e, level, best, thr)):
                continue  # NaN out of a flat stretch: the nonfinite event says it all
            start = int(st[self._nan_onset(y, level, e)])  # it was rising into the NaN
            found.append({"start": start, "end": last, "magnitude": None, "details": {
                "declared_step": int(steps[a + self.nan_points - 1]),
                "preceded_by_spike": False, "recovered": recovered, "nonfinite": True,
                "first_nonfinite_step": first}})
        return found

    def _nan_onset(self, y: np.ndarray, level: np.ndarray, e: int, j: int | None = None) -> int:
        """Where the rise into the NaN after finite point e began: the first point after the
        last one within noise of the trough before it (the lowest level over a stretch that
        doubles from 4 windows back until its lowest point is not at its left edge). Not the
        best level of the whole run: a spike that settled higher earlier would pull the start
        back to it. (`j`: that trough, given.)"""
        j = self._trough(level, e) if j is None else j
        a = max(0, j - self._window(y.shape[0]) + 1)  # the points behind that (trailing) level
        seg = y[a:e + 1]
        band = max(2 * _noise(y[max(0, a - 256):e + 1]), 0.01)
        normal = np.flatnonzero(seg <= level[j] + band)
        return min(a + int(normal[-1]) + 1, e) if normal.shape[0] else j

    def _trough(self, level: np.ndarray, e: int) -> int:
        """The lowest level before finite point e, over a stretch that doubles from 4 windows
        back until its lowest point is not at its left edge."""
        span = 4 * self._window(level.shape[0])
        while True:
            lo = max(0, e - span)
            j = lo + int(np.argmin(level[lo:e + 1]))
            if j > lo or lo == 0:
                return j
            span *= 2

    def _nan_floor(self, st: np.ndarray, y: np.ndarray, e: int, level: np.ndarray,
                   best: np.ndarray, thr: Any) -> float:
        """The level a loss must be over at finite point e to have risen into the NaN after
        it: the threshold over the best level (or over the median, before a full window), or
        over the trough before it when the loss sat settled higher for long in between (the
        same rule as a finite rise's onset: a step up that stayed is no rise into the NaN)."""
        if e < 1:
            return np.inf
        rise = float(np.broadcast_to(thr, y.shape)[e])
        if not np.isfinite(best[e]):
            return float(np.median(y[:e])) + rise
        if self._nan_onset(y, level, e) - self._onset(y, best, e) > 4 * self.sustain_span(st):
            return float(level[self._trough(level, e)]) + rise
        return float(best[e]) + rise

    def _rose_into(self, y: np.ndarray, e: int, level: np.ndarray, floor: float) -> bool:
        """Whether the loss was rising into the NaN after finite point e: its level, or the
        median of its last five points, is already over `floor`; or its last point is over it
        and beyond the recent envelope (twice as far above the median of the `4 x window`
        points before as the highest of them). One point of noise at the edge of a plateau
        is neither."""
        if e < 1:
            return False
        if level[e] >= floor or (e >= 4 and float(np.median(y[e - 4:e + 1])) >= floor):
            return True
        k = e  # the loss climbed at each of its last points into the NaN, well over noise
        while k > 0 and y[k] > y[k - 1]:
            k -= 1
        if e - k >= CLIMB_POINTS and y[e] >= floor \
                and y[e] - y[k] >= CLIMB_Z * _noise(y[max(0, k - 128):k + 1]):
            return True
        prev = y[max(0, e - 4 * self._window(y.shape[0])):e]
        if prev.shape[0] < 3:
            return False
        med = float(np.median(prev))
        return bool(y[e] >= floor and y[e] - med > 2 * (float(prev.max()) - med))
