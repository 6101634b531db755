"""Loss spikes: points far above the loss's own recent level, and whether the loss came back.

Training meaning (docs/playbook.md): a spike is a sudden jump of the loss. Fast-recovering spikes
(back where the loss left off within a few hundred steps) are usually harmless; slow ones cost
compute; spikes that never come back (the loss settles higher, or diverges) are the ones PaLM
restarted from a checkpoint for.

Statistic (causal: a point's verdict uses only the points before it):

- Space: log of the values while every value so far is positive (a loss spanning decades keeps one
  noise scale, and "2x the loss" reads the same at 8.0 and at 0.08); additive from the first
  non-positive value on (RL and policy losses change sign), or from where the level comes within 5
  additive noise scales of 0 having fallen `floor_fallen` x below the highest value (values
  hovering near 0; the noise of a window of a steep fall is mostly the fall). In log space the
  scale is floored by the additive noise of the last few points over the level. Near 0 a spike must
  also stand out in log space (spike_stats.LogCheck): flicker on a 1e-7 floor is large additively
  and ordinary as a ratio, a collapse from the floor is large either way (a lone point on a floor
  the loss fell to: 2 x `threshold`, spike_stats.LONE_FLOOR; with heavy-tail evidence, the lone
  point's heavier tail of log space: SINGLE_INDEX).
- Expected value, from the finite points before the point, by whichever of two predictors made the
  smaller errors over the last `window` points: the median of the last `level_window` points plus
  its measured lag (the median of its recent residuals: a median lags a trending curve), or the
  previous point (better where a sparse eval series curves faster than a median can follow; the
  point before it where the previous point dipped far under its own expected value: the return from
  a lone dip is no rise, spike_stats.DIP_Z). Scale: 1.4826 x the median absolute error of that
  predictor over `window` points, floored by the print resolution (the smallest non-zero change
  between consecutive values in the window: a 4-decimal loss near 0 has a MAD of 0).
- A point is elevated when it exceeds the expected value by `threshold` scales (x 1 + 4/n while the
  window holds only n points; raised where the last `tail_window` points show heavy-tailed noise,
  more for a spike of a single point: the one verdict that looks one point ahead, so a one-point
  spike at the newest point waits for the next) and by the ratio `min_ratio` (when the level is
  above 0); or, for a rise over up to HUMP points, the level HUMP points before it by `threshold`
  of that level's own errors (the plain `threshold` where the rise doubled that level; such a spike
  starts at the point before, from that level: a x4.5 rise over 4 evaluations of a noisy series;
  one that climbed `threshold` one-step scales over that level is no lone point); or with the
  point before both PAIR x `threshold` up, from that point (PAIR). The steep early descent never
  flags: it lies below what the trailing points expect. For a lone outlier point, heavy-tail
  evidence is counted over the points seen so far (early in a run two large excursions already
  cast doubt on it: TAIL_EARLY; on a loss that changes sign, lone dips below 0 count too), and
  under x1.2 of its level it is a blip of the noise unless far above it (LONE_RATIO); where lone
  outliers are common it must outdo those seen before (spike_stats.outdone). The point after a
  dip (TAIL_Z scales under its level) is judged against the dip's level, not the dip: the way
  back is no spike. A spike not back fast that rose from a dip under a flat loss which it
  settled back at is judged against that flat level (spike_trend.dip_return: a GAN starting to
  train). A lone point is also judged against the mean of its two neighbours where that
  predicts better (log space, `look_ahead`: spike_lone; a sparse log's fall between points
  bends), and one or two points x100 over the rest of the window are a blow-up (spike_storm).
- A spike that tops out where two spikes of the last `window` points did is the loss switching
  between two states it keeps returning to, not a new event (spike_stats.REPEAT_TOL).
- The first points (the trailing statistic has little history there): a blow-up above every point
  before but the blow-ups that came back (points 1 .. min_points - 1: spike_early.blowups; a storm
  of them is each a spike), and, in log space, points 3 .. 23 judged with the points on both sides
  of them (spike_early: a jump over a robust trend of the points before, in units of the jumps of
  its neighbours before and after; the streaming form re-judges them until the points they look at
  have come).
- Consecutive elevated points are one spike. It ends at the first point back within `back_z`
  pre-spike scales of the pre-spike level, confirmed by at least half of the `back_points` points
  from it. Recovery: `fast` (back within `fast_within` steps, or at the very next logged point),
  `slow` (back later, and then also back at the pre-spike trend projected forward, in log space:
  spike_trend), `none` (never back). What follows a spike is judged without it: its points leave
  the trailing statistics once it is back, and a spike that is not back a level window after it
  began starts the statistics afresh from there.

Held values (carried over between evaluations) are counted once (`held`). Known false positives: a
level shift upwards at an LR or data-mixture switch reads as a spike that never recovers;
heavy-tailed per-batch noise (mixed-length batches) gives isolated 1-point spikes of modest
magnitude (raise `threshold` or `min_ratio`). Known misses: a second spike less than a level window
after an unrecovered one is part of it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..events import Event
from ..frame import Series
from . import held, spike_floor, spike_storm
from .params import is_int, is_num, require, validate_once  # noqa: F401  (re-exported: their home was here)
from .spike_early import (BUMP_RATIO, EARLY_RATIO, EARLY_SCALE, HEAD, SIDE_RATIO, blowup_level,
                          blowups, early_spikes)
from .spike_stats import (  # noqa: F401  (re-exported: the statistics' public home was here)
    ADDITIVE_FLOOR, DIFF_TO_SIGMA, MAD_TO_SIGMA, NEAR_ZERO, Baseline, Known, LogCheck,
    baseline, find_back, finite_trailing_median, hump_back, lone_threshold,
    masked_trailing_median, near_zero_points, next_true, outdone, repeats, spike_record,
    start_level, trailing_median, trailing_min)
from .spike_lone import lone_dips, lone_flags
from .spike_tail import (  # noqa: F401  (re-exported: their home was here)
    SINGLE_INDEX, TAIL_EARLY, TAIL_INDEX, TAIL_MIN_SEEN, TAIL_RATE, TAIL_Z, tail_big,
    tail_threshold)
from .spike_trend import dip_return

#: The threshold is multiplied by (1 + SMALL_SAMPLE / n) while the window holds n points.
SMALL_SAMPLE = 4.0
#: ... but a positive loss that doubles (or more) from its level in one step is judged by the
#: plain `threshold` (near 0 too, in log space: LogCheck.doubled): the heavy-tail raise
#: extrapolates from a few excursions of 3.5-6 scales, and asked a x8.9 loss spike at z 16
#: on a 140-point CNN run for z 70 after four excursions of its first 60 steps (log units).
DOUBLED = float(np.log(2.0))
#: A lone point (back at the next one) less than LONE_RATIO x its level is a blip of the
#: per-batch noise, not a spike, unless it is 2 x `threshold` scales up (unmistakable against
#: any noise seen): both labelled families' one-point spikes are x1.26 or more, their false
#: ones mostly x1.05-x1.2 at z 6-8 (a +6.6 % one-step blip on a real log read as a spike).
LONE_RATIO = 1.2
#: Log space: a spike is also back once its excess over the pre-spike level has shrunk to this
#: share of its height (a x450 spike that settles 7 % above a very quiet level is back).
BACK_SHARE = 0.05
#: A rise spread over up to HUMP points is also judged against the level HUMP points before
#: it plus the typical HUMP-step drift, in units of that predictor's own errors (on AR(1)-
#: correlated noise far larger than the one-step scale: measured so, correlated noise gives
#: no false alarms); the point before must be half as high; a rise that doubled that level
#: is judged by the plain `threshold`, as one step that doubled (DOUBLED). Not near 0, where
#: LogCheck judges (0 turns this off).
HUMP = 5
#: Two points in a row PAIR x the threshold up, the first TAIL_Z scales over both points
#: before it (a descent turning flat reads high against a level still falling), are a spike
#: from the first: a x1.7 jump of 10 % noise decaying at z 6.15, 5.13 against 6.19. Not near 0.
PAIR = 0.75
#: The log of the smallest rise (over the lowest point before) by which `spike_early.blowups`
#: flags one of the first points (its blow-up, second-point and bump rules).
RISE_MIN = float(np.log(min(EARLY_RATIO, SIDE_RATIO, BUMP_RATIO)))


@dataclass(frozen=True)
class SpikeDetector:
    """Loss spikes with their recovery class (fast / slow / none); see the module docstring."""

    #: Trailing points for the scale (the predictors' errors), made odd: long enough for a
    #: stable MAD (+-12 %), short enough to follow a changing noise level.
    window: int = 129
    #: Trailing points of the median level, made odd: short, so that the level follows the
    #: curve (its remaining lag is measured and corrected) and a sparse eval series is not
    #: judged against its whole past; a spike shorter than half of it does not move it.
    level_window: int = 15
    #: Robust z-score (in scales) above the trailing level that makes a point elevated. At 6 a
    #: Gaussian-noise series of a million points gives about no false alarm.
    threshold: float = 6.0
    #: A point must also be this many times the level (when the level is above 0): smaller
    #: blips on a very quiet series are real but not what anyone calls a spike.
    min_ratio: float = 1.05
    #: No verdict before this many finite points (the scale needs a few points).
    min_points: int = 8
    #: "Back at the pre-spike level" = within this many pre-spike scales of it.
    back_z: float = 3.0
    #: The return is confirmed when at least half of this many points from it are back.
    back_points: int = 5
    #: Back within this many steps = a fast recovery (docs/playbook.md: usually harmless).
    fast_within: int = 250
    #: Trailing points in which large excursions are counted to detect heavy-tailed noise
    #: (and raise the threshold there); 0 turns this off.
    tail_window: int = 1000
    #: Judge the first points of a series also with the points after them (spike_early: the
    #: trailing statistic has too little history there), a lone point (spike_lone) and a
    #: blow-up (spike_storm) with the point after it; False: the trailing statistic only.
    look_ahead: bool = True
    #: Near 0 only this many times below the highest value so far (0: off; grad norms).
    floor_fallen: float = 100.0
    #: The loss rules for lone points: near 0 one that doubled is judged by the plain
    #: threshold (LogCheck.doubled), and where lone outliers are common it must outdo them
    #: (spike_stats.outdone). False: neither (grad norms: lone outliers are their events).
    lone_rules: bool = True
    #: A return later than `fast_within` must also be back at the pre-spike trend projected
    #: forward (spike_trend: a loss that keeps falling reaches its pre-spike level in time
    #: even when the spike left it higher for good); False: the pre-spike level only.
    trend: bool = True

    scope: ClassVar[str] = "series"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "spike"

    def validate(self) -> None:
        require(self, "window", is_int(self.window) and self.window >= 5, "an int >= 5")
        require(self, "level_window", is_int(self.level_window) and self.level_window >= 3, "an int >= 3")
        require(self, "threshold", is_num(self.threshold) and self.threshold > 0, "a number > 0")
        require(self, "min_ratio", is_num(self.min_ratio) and self.min_ratio >= 1, "a number >= 1")
        require(self, "min_points", is_int(self.min_points) and self.min_points >= 3, "an int >= 3")
        require(self, "back_z", is_num(self.back_z) and 0 < self.back_z, "a number > 0")
        require(self, "back_points", is_int(self.back_points) and self.back_points >= 1, "an int >= 1")
        require(self, "fast_within", is_int(self.fast_within) and self.fast_within >= 0, "an int >= 0")
        require(self, "tail_window", is_int(self.tail_window) and self.tail_window >= 0, "an int >= 0")
        require(self, "look_ahead", isinstance(self.look_ahead, bool), "true or false")
        require(self, "floor_fallen", is_num(self.floor_fallen) and self.floor_fallen >= 0, ">= 0")
        require(self, "lone_rules", isinstance(self.lone_rules, bool), "true or false")
        require(self, "trend", isinstance(self.trend, bool), "true or false")

    def detect(self, series: Series, known: Known | None = None, head: bool = True,
               judged: bool = False, prior: Any = None) -> list[Event]:
        """The spikes of `series` judged without its held repeats (`held.judged`; `judged`:
        a streaming form's window of the judged points; `known`, `head`, `prior`: as `find`)."""
        validate_once(self)
        series = series if judged else held.judged(series)
        found = self.find(series.step, series.value, known, head, prior,  # eval loss: no per-
                          series.role != "val_loss")  # batch flicker; blow-ups: spike_storm
        return [self._event(series, s) for s in spike_storm.merge(series, found, self)]

    # -- the work, on plain arrays (gradspike and divergence reuse it) --------------------

    def find(self, steps: np.ndarray, values: np.ndarray, known: Known | None = None,
             head: bool = True, prior: Any = None, flicker: bool = True
             ) -> list[dict[str, Any]]:
        """Spikes as dicts of steps and statistics; non-finite points are ignored.

        `known`: where the finite values turn additive and their baselines, as a streaming
        form keeps them up to date (`Known`); else found here from the values. `head`: the
        values start at the series' first point (its first points are then also judged
        with the points after them, `look_ahead`); False for a window that starts later.
        `prior`: for such a window, the points before it (spike_trend.prior_points).
        `flicker`: the values may flicker per batch on a floor (spike_stats.LONE_FLOOR);
        False for an evaluation loss (an average over a whole set: a x20 point is a spike)."""
        finite = np.isfinite(values)
        st = np.asarray(steps)[finite].astype(np.int64)
        v = np.asarray(values, dtype=float)[finite]
        n = v.shape[0]
        if n < 2 or (known is None and n <= self.min_points and self._quiet_head(v, head)):
            return []
        w = self.window | 1
        lw = self.level_window | 1
        if known is None:
            known = self.spaces(v)
        k = known.split  # log space before k, additive from k
        spaces = []
        if known.log is not None and (k > self.min_points or k == n):
            spaces.append((0, k, known.log))
        check, signed = None, bool(k < n and v[k:].min() < 0)  # (a signed loss: no floor)
        if k < n and known.log is not None and k < known.log.y.shape[0]:
            # near 0: additive, each spike confirmed in log space (LogCheck)
            check = self._log_check(known.log, n, known.start, flicker, signed)
        if k < n:
            spaces.append((k, n, known.additive(v) if callable(known.additive)
                           else known.additive))
        out: list[dict[str, Any]] = []
        for lo, hi, base in spaces:
            out.extend(self._extract(st, v, base, lo, hi, w, check if lo == k else None,
                                     head and lo == 0, prior if lo == 0 else None,
                                     None if signed else known.start))
        return out

    def _quiet_head(self, v: np.ndarray, head: bool) -> bool:
        """Whether `find` finds nothing in the finite values `v`, no more than `min_points`
        of them, without making its baselines (a run of 10^5 three-point tags paid ~3 ms a
        tag for them): the trailing statistic flags no point before `min_points`, so only
        the first points' rules (`blowups`, `early_spikes`, both in log space only: every
        value positive) can; their log values are the log baseline's (`baseline`)."""
        if bool((v <= 0).any()):  # additive from the first value <= 0, all under min_points
            return True
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log(v)
        # every first-points rule needs a point RISE_MIN x over the lowest point before it
        if bool((y[1:] - np.minimum.accumulate(y)[:-1] >= RISE_MIN).any()) \
                and blowups(y, True, 0, self.min_points).any():
            return False
        return not (head and self.look_ahead and bool(early_spikes(
            y, float(self.threshold), float(np.log(self.min_ratio))).start.any()))

    def _log_check(self, logb: Baseline, n: int, start: float | None, flicker: bool = True,
                   signed: bool = False) -> LogCheck:
        """The log-space check (`LogCheck`) for the positive values that `logb` (their
        log-space baseline, from the first of `n` values on) covers."""
        m = logb.y.shape[0]

        def pad(x: np.ndarray) -> np.ndarray:
            return np.r_[x, np.full(n - m, np.nan)]

        small = 1 + SMALL_SAMPLE / np.maximum(logb.count, 1)
        thr, p = self._tail_threshold(logb) * small, self.threshold * small
        plain = lone_threshold(logb.level, p, p, self.tail_window if flicker else 0)
        lone = np.maximum(np.maximum(thr, plain), self._tail_threshold(  # a lone loss point:
            logb, None, 0, None, SINGLE_INDEX) * small if self.lone_rules else 0)  # SINGLE_INDEX
        return LogCheck(pad(logb.y), pad(logb.scale), pad(thr), m,
                        self.window | 1, self.level_window | 1, float(np.log(self.min_ratio)),
                        pad(lone), pad(plain), start, flicker,
                        pad(p) if self.lone_rules else None,  # (a collapse: plain threshold)
                        signed)

    def spaces(self, v: np.ndarray) -> Known:
        """Where the finite values `v` turn additive (the first value <= 0, or where the
        level comes near 0) and their baselines (the additive one made when asked)."""
        n = v.shape[0]
        w, lw = self.window | 1, self.level_window | 1
        nonpos = np.flatnonzero(v <= 0)
        k = int(nonpos[0]) if nonpos.shape[0] else n
        logb = None
        if k > self.min_points or (k == n and n > 1):
            logb = baseline(v[:k], w, True, level_window=lw)
            k = min(k, self.near_zero(v[:k], logb, w))
        return Known(k, logb, lambda vals: baseline(vals, w, False, level_window=lw),
                     start_level(v))

    def near_zero(self, v: np.ndarray, logb: Baseline, w: int) -> int:
        """Index from which `find` judges the positive values `v` (log baseline `logb`, odd
        window `w`) additively: the first from `near_zero_from` near 0, len(v) when none."""
        first = self.near_zero_from(w)
        near = np.flatnonzero(near_zero_points(v, logb, w, fallen=self.floor_fallen)[first:])
        return first + int(near[0]) if near.shape[0] else v.shape[0]

    def near_zero_from(self, w: int) -> int:
        """The first finite index that may turn additive: with `look_ahead`, after the first
        points (spike_early judges them in log space; the differences of a steep early
        descent would read as additive noise near 0)."""
        return max(self.min_points, HEAD) if self.look_ahead else self.min_points

    def _tail_big(self, base: Baseline) -> np.ndarray:
        """Large excursions (spike_tail.tail_big)."""
        return tail_big(base, self.threshold)

    def flagged(self, base: Baseline, a: int, b: int, offset: int, hump: bool = True) -> np.ndarray:
        """`_extract`'s first mask of points a..b-1 of `base` (one space's baseline from the
        series' point `offset` on, from its start or with max(tail_window, 2 x window) + 16
        points before a; `hump`: no LogCheck), before any spike re-judges what follows it."""
        a1 = max(0, a - (self.window | 1) - 2)  # the hump predictor on full windows
        back = hump and tuple(x[a - a1:] for x in  # (their heads are not read from 2w on)
                              self._back(base.y, base.level, base.scale, a1, b,
                                         a1 < 2 * (self.window | 1)))
        at = (base.y[a:b], base.level[a:b], base.scale[a:b], base.count[a:b])
        small = 1 + SMALL_SAMPLE / np.maximum(at[3], 1)
        p = self.threshold * small  # (`_elevated`'s plain threshold)
        # the plain threshold first: every rule's threshold is the tail-raised one, the plain
        # one or a share of them (PAIR), so where no rule flags a point by the plain one none
        # does (the tail counts are not made: a quiet update's work)
        with np.errstate(invalid="ignore"):
            ok = self._above(*at[:3], min(PAIR or 1.0, 1.0) * p, base.log)  # (and PAIR's)
            if back:
                ok |= self._above(at[0], back[0], back[1], p, base.log) & self._above(
                    back[2], back[0], back[1], p / 2, base.log)
            ok |= self._both((base.y[:b], a), at[1], at[2], np.where(self._doubled(
                at[0], at[1], base.log), self.threshold, p / small), base.log)
        ok[:max(0, self.min_points - offset - a)] = False
        if not ok.any():
            return ok
        thr = self._tail_threshold(base, self._tail_big(base), a, b)
        return self._elevated(*at, thr, base.log, offset + a, back or None,  # type: ignore[arg-type]
                              (base.y[:b], a))

    def _tail_threshold(self, base: Baseline, big: np.ndarray | None = None, a: int = 0,
                        b: int | None = None, index: float = TAIL_INDEX) -> np.ndarray:
        """Per point of a..b: `threshold` raised by heavy-tail evidence (spike_tail)."""
        return tail_threshold(base, self.threshold, self.tail_window, big, a, b, index)

    def _elevated(self, y: np.ndarray, level: np.ndarray, scale: np.ndarray,
                  count: np.ndarray, thr: np.ndarray, log: bool, offset: int,
                  back: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                  full: tuple[np.ndarray, int] | None = None) -> np.ndarray:
        """Elevated-point mask for points offset.. (`y`, `level`... are their slices; `back`:
        the level and scale HUMP points earlier and the previous value, for rises spread over
        a few points: the point and the one before it well above that earlier level). A rule
        added here must flag fewer points at a higher `thr`: `flagged`'s screen relies on it."""
        small = 1 + SMALL_SAMPLE / np.maximum(count, 1)
        thr = thr * small
        with np.errstate(invalid="ignore"):
            ok = self._above(y, level, scale, thr, log)
            # the loss doubled: the plain threshold, whatever the tail did (DOUBLED)
            ok |= self._doubled(y, level, log) & self._above(y, level, scale,
                                                             self.threshold * small, log)
            if back is not None and HUMP:  # a multi-point hump: the level follows its rise
                lb, sb, prev, pu = back[:4]  # (one that doubled that level: the plain threshold)
                th = np.where(self._doubled(y, lb, log), self.threshold * small, thr)
                ok |= self._above(y, lb, sb, th, log) & self._above(prev, lb, sb, th / 2, log)
                if PAIR:  # this point and the one before both PAIR x the threshold up
                    ok |= self._above(y, level, scale, PAIR * thr, log) & (pu > PAIR * thr) \
                        & (back[4] > TAIL_Z)
            if full is not None:  # a lone point, judged with both of its neighbours too
                th = np.where(self._doubled(y, level, log), self.threshold, thr / small)
                ok |= self._both(full, level, scale, th, log) & self._above(y, level, scale, 0, log)
        ok[:max(0, self.min_points - offset)] = False
        return ok

    def _both(self, full: tuple[np.ndarray, int], level: np.ndarray, scale: np.ndarray,
              thr: Any, log: bool) -> np.ndarray:
        """`spike_lone.lone_flags` for the points full[1].. of full[0] (log space, with
        `look_ahead`: the two-sided test; else none is flagged)."""
        if not (log and self.look_ahead):
            return np.zeros(level.shape[0], bool)
        return lone_flags(full[0], full[1], level, scale, np.asarray(thr, dtype=float),
                          self.window | 1, self.level_window | 1, TAIL_Z, SMALL_SAMPLE)

    @staticmethod
    def _doubled(y: Any, level: Any, log: bool) -> Any:
        """Whether `y` is at least twice its `level` in log space (additive: never)."""
        if not log:
            return np.zeros(np.shape(y), bool) if np.ndim(y) else False
        with np.errstate(invalid="ignore"):
            return y - level >= DOUBLED

    def _blip(self, y: float, level: float, scale: float, log: bool) -> bool:
        """Whether a lone point `y` over `level` is a blip (LONE_RATIO)."""
        if y - level >= 2 * self.threshold * scale:
            return False
        if log:
            return y - level < np.log(LONE_RATIO)
        return level > 0 and y < level * LONE_RATIO

    @staticmethod
    def _persists(y: np.ndarray, level: np.ndarray, scale: np.ndarray, c: int, hi: int) -> bool:
        """Whether the point after c is also TAIL_Z scales above c's level."""
        return c + 1 < hi and bool(y[c + 1] - level[c] > TAIL_Z * scale[c])

    def _above(self, y: np.ndarray, level: np.ndarray, scale: np.ndarray, thr: np.ndarray,
               log: bool) -> np.ndarray:
        rise = y - level
        ok = rise > thr * scale
        if log:
            ok &= rise >= np.log(self.min_ratio)
        else:  # additive, but above 0: the ratio still applies
            ok &= (level <= 0) | (y >= level * self.min_ratio)
        return ok

    def _back(self, y: np.ndarray, level: np.ndarray, scale: np.ndarray, a: int, b: int,
              head: bool = True) -> tuple[np.ndarray, ...]:
        """The HUMP predictor and PAIR's inputs for the points a..b-1 (`spike_stats.hump_back`)."""
        return hump_back(y, level, scale, a, b, max(HUMP, 1), self.window | 1, head)

    def _extract(self, st: np.ndarray, v: np.ndarray, base: Baseline, lo: int, hi: int,
                 w: int, check: LogCheck | None = None, head: bool = False,
                 prior: Any = None, start: float | None = None) -> list[dict[str, Any]]:
        y = base.y[:hi]
        level, scale, count = base.level[:hi].copy(), base.scale[:hi].copy(), base.count[:hi].copy()
        big = self._tail_big(base)[:hi].copy()
        thr = self._tail_threshold(base, big, 0, hi)
        elev = np.zeros(hi, bool)
        hump = None if check else self._back(y, level, scale, lo, hi)
        elev[lo:] = self._elevated(y[lo:], level[lo:], scale[lo:], count[lo:], thr[lo:],
                                   base.log, lo, hump, (y, lo))
        # the first points: a blow-up from the first few (_early), and (log space) judged
        # with the points after them too (spike_early); their pre-spike level and scale
        # are kept apart (re-judging after a spike moves `level`)
        ahead = np.zeros(hi, bool)
        pre_at = np.full(min(hi, HEAD), np.nan)
        sc_at = pre_at.copy()
        early = blowups(y, base.log, lo, self.min_points)
        for c in np.flatnonzero(early):  # no statistics yet: the highest point before
            pre_at[c], sc_at[c] = blowup_level(y, early, c), EARLY_SCALE
        if head and self.look_ahead and base.log:
            ej = early_spikes(y, float(self.threshold), float(np.log(self.min_ratio)))
            m = ej.start.shape[0]
            ahead[:m] = ej.start
            pre_at[:m] = np.where(ej.start, ej.level, pre_at[:m])
            sc_at[:m] = np.where(ej.start, ej.scale, sc_at[:m])
        ahead |= early
        elev |= ahead
        masked = dips = None  # recovered spikes blanked out; lone dips below 0 (made when needed)
        tops: list[tuple[int, float]] = []  # (start, highest value) of each spike so far
        spans: list[tuple[float, float]] = []  # (start, end) steps of each spike reported
        out: list[dict[str, Any]] = []
        allowed = lo
        restart = (self.level_window | 1) + 1  # points after which the loss starts over
        while (c := next_true(elev, allowed)) is not None:
            if check is not None:  # near 0: the spike must stand out in log space too
                r = c + 1
                while r < min(hi, c + restart) and elev[r]:
                    r += 1
                back = find_back(y, c + 1, float(level[c]) + self.back_z * float(scale[c]),
                                 self.back_points)
                last = min(hi, c + restart, back if back is not None else hi)
                far = self.lone_rules and bool(  # see LogCheck.doubled
                    y[c] - level[c] > 2 * thr[c] * scale[c])
                if not check.confirms(c, v[c:max(last, r)], masked, far):
                    elev[c:r] = False
                    continue
            small_c = 1 + SMALL_SAMPLE / max(int(count[c]), 1)
            if c > lo and not ahead[c] and y[c - 1] - level[c - 1] < -TAIL_Z * scale[c - 1] \
                    and not self._above(y[c:c + 1], level[c - 1:c], scale[c - 1:c],
                                        thr[c:c + 1] * small_c, base.log)[0]:
                elev[c] = False  # the way back from a dip: judged by the level before it
                continue
            # a rise over two points (PAIR: from the first) or a few (only HUMP flags it)
            multi = hump is not None and c > max(allowed, lo) and not self._elevated(
                y[c:c + 1], level[c:c + 1], scale[c:c + 1], count[c:c + 1], thr[c:c + 1],
                base.log, c, None, (y, c))[0]
            lb, sb = (float(hump[0][c - lo]), float(hump[1][c - lo])) if multi else (0.0, 0.0)
            th = (self.threshold if self._doubled(y[c], lb, base.log) else thr[c]) * small_c
            by_hump = bool(y[c] - lb > th * sb and y[c - 1] - lb > th / 2 * sb)
            pair = multi and PAIR > 0 and c >= 3 and bool(  # (as `_elevated` judges it)
                y[c - 1] - level[c - 1] > PAIR * thr[c] * small_c * scale[c - 1]
                and y[c - 1] - max(y[c - 2], y[c - 3]) > TAIL_Z * scale[c - 1]
                and self._above(y[c:c + 1], level[c:c + 1], scale[c:c + 1],
                                PAIR * thr[c:c + 1] * small_c, base.log)[0])
            rise = multi and not pair
            # ... that climbed `threshold` one-step scales and LONE_RATIO x over the level
            # HUMP points before (no drift: that of a descent or crash) and whose next point
            # is as high over that level as the point before is no lone point
            climbed_hump = rise and c >= HUMP and c + 1 < hi and bool(
                y[c] - level[c - HUMP] > self.threshold * scale[c] and y[c + 1] - lb > th / 2 * sb
            ) and not self._blip(float(y[c]), float(level[c - HUMP]), np.inf, base.log)
            # (or a collapse off a floor: no lone point either)
            climbed = climbed_hump or spike_floor.off(check, c, v, start)
            if c >= self.min_points and not ahead[c] and self.tail_window and self.lone_rules \
                    and not climbed and not pair and not self._persists(y, level, scale, c, hi) \
                    and outdone(y, level, scale * TAIL_Z, c, max(lo, c - self.tail_window)):
                elev[c] = False  # like the lone outliers the noise made before (outdone)
                continue
            if c >= self.min_points and not ahead[c] and not climbed and not pair \
                    and not self._persists(y, level, scale, c, hi) \
                    and not self._doubled(y[c], level[c], base.log) \
                    and not (check is not None and check.doubled(c, v[c:c + 1], masked, far)):
                # one point alone in heavy-tailed noise: judged by the heavier tail
                if dips is None:
                    dips = lone_dips(base, v, hi, TAIL_Z)
                one = float(self._tail_threshold(base, big | dips, c, c + 1, SINGLE_INDEX)[0])
                one *= small_c
                if self._blip(float(y[c]), float(level[c]), float(scale[c]), base.log) or \
                        not (self._above(y[c:c + 1], level[c:c + 1], scale[c:c + 1],
                                         np.array([one]), base.log)[0] or self._both(
                            (y, c), level[c:c + 1], scale[c:c + 1], [one / small_c], base.log)[0]):
                    elev[c] = False
                    continue
            pre, sc, c0 = float(level[c]), float(scale[c]), c  # (c0: the flagged point)
            if ahead[c]:
                pre, sc = float(pre_at[c]), float(sc_at[c])
            elif pair and not by_hump:  # two points up: from the first, over its own level
                c, pre, sc = c - 1, float(level[c - 1]), float(scale[c - 1])
            elif multi:  # a rise over a few points (HUMP): from the point before, over
                c, pre = c - 1, lb  # the level before it
            end = spike_floor.back(self, y, c + 1, pre + self.back_z * sc, pre, check)  # (near 0)
            drop, pre, end = dip_return(self, st, y[:hi], c, pre, sc, end, w, restart - 1, c0)
            if drop:  # on the way back from a dip: judged by the level before it
                elev[c:c0 + 1] = False
                continue
            if repeats(tops, c, self.window | 1, v[c:max(c + 1, end if end is not None
                                                         else min(hi, c + restart))]):
                elev[c:end if end is not None else min(hi, c + restart)] = False
                elev[c0] = False  # (a spike from the point before may be back at c0)
                continue
            if end is None and hi < v.shape[0]:
                end = hi  # a log-space spike is back when the values turn non-positive
            # its recovery: back within the noise, or its excess down to BACK_SHARE of its
            # height (log space); the statistics leave out all of it (to `end`)
            seen = end
            if base.log and (end is None or end > c + 1):
                early_back = spike_floor.log_back(self, y, v, c + 1, pre + self.back_z * sc, pre,
                                                  BACK_SHARE, start)
                if early_back is not None and (end is None or early_back < end):
                    seen = early_back
            stop = seen if seen is not None else min(hi, c + restart)
            p = c + int(np.argmax(y[c:stop]))
            slope = None
            if base.log and self.trend:  # not back fast: back at the pre-spike trend
                seen, slope = spike_floor.trend_back(self, (v, start), st, y, c, seen, pre, pre + sc
                                                     * self.back_z, self.back_points, BACK_SHARE, max(
                    self.fast_within, int(st[c] - st[c - 1]) if c else 0), prior, spans)
            out.append(spike_record(st, v, base, c, p, seen, pre, sc, float(thr[c]) * (
                1 + SMALL_SAMPLE / max(int(count[c]), 1)), self.back_z, self.fast_within))
            spans.append((float(st[c]), float(st[seen]) if seen is not None else np.inf))
            if slope is not None:  # (spike_trend: the trend the return was judged against)
                out[-1]["details"].update(slope.details())
            if self.tail_window and big[max(0, c - 3):stop].any():
                # a spike's own shoulders are no evidence of heavy-tailed noise
                big[max(0, c - 3):stop] = False
                z1 = min(hi, stop + self.tail_window)
                thr[c:z1] = self._tail_threshold(base, big, c, z1)
                elev[stop:z1] |= self._elevated(y[stop:z1], level[stop:z1], scale[stop:z1],
                                                count[stop:z1], thr[stop:z1], base.log, stop,
                                                None, (y, stop))
            if end is not None and end <= c + restart:
                # back soon: judge what follows without the spike's points (from: spike_floor.after)
                allowed = max(spike_floor.after(self, y, (c, end, pre), check), c0 + 1)
                masked = v[:hi].copy() if masked is None else masked
                masked[c:end] = np.nan
                self._rebase(masked, base.log, check is None, max(0, end - 3 * w), end, level,
                             scale, count, thr, elev, lo)
                elev |= ahead  # re-judging keeps the look-ahead verdicts
                continue
            # not back within a level window: the loss starts over from there (causal: later
            # spikes may start then, judged on what followed this one); if it comes back
            # later, what follows its return is judged without its points
            allowed = min(c + restart, hi)
            masked = v[:hi].copy() if masked is None else masked
            self._rebase(masked, base.log, check is None, allowed, allowed, level, scale, count,
                         thr, elev, lo)
            elev |= ahead  # re-judging keeps the look-ahead verdicts
            if end is not None:
                masked[c:end] = np.nan
                self._rebase(masked, base.log, check is None, max(0, end - 3 * w), end, level,
                             scale, count, thr, elev, lo)
                elev |= ahead  # re-judging keeps the look-ahead verdicts
                # a share return's decaying tail is its spike's also past the level window
                elev[end:spike_floor.after(self, y, (c, end, pre), check)] = False
        return out

    def _rebase(self, masked: np.ndarray, log: bool, hump: bool, a: int, z0: int,
                level: np.ndarray, scale: np.ndarray, count: np.ndarray, thr: np.ndarray,
                elev: np.ndarray, lo: int) -> None:
        """Re-judge the points z0 .. z0 + 3 windows from the values a.. with spikes blanked out
        (`masked`): a spike's points would otherwise pull the trailing statistics (level, lag,
        scale) off for three windows after it."""
        w = self.window | 1
        hi = masked.shape[0]
        z1 = min(hi, z0 + 3 * w)
        if z0 >= z1:
            return
        local = baseline(masked[a:z1], w, log, masked=True, level_window=self.level_window | 1)
        local_y_full = np.full(z1, np.nan)
        local_y_full[a:z1] = local.y
        k = slice(z0 - a, z1 - a)
        level[z0:z1], scale[z0:z1], count[z0:z1] = local.level[k], local.scale[k], local.count[k]
        start = max(z0, lo)
        # the hump predictor: where the loss starts over (a == z0: a spike not back within a
        # level window), on the re-judged statistics alone; the levels before are those of
        # before a lasting step and would predict the old level (a grad norm stepping
        # 0.93 -> 4.6 -> 1.45 for good read its next x1.01 wiggle as a x2.4 hump)
        back = None if not hump else self._back(local.y, local.level, local.scale, start - a,
                                                z1 - a) if a == z0 else self._back(
            local_y_full, level, scale, start, z1)
        elev[start:z1] = self._elevated(local.y[start - a:z1 - a], level[start:z1],
                                        scale[start:z1], count[start:z1], thr[start:z1], log,
                                        start, back, (local.y, start - a))

    def _event(self, series: Series, s: dict[str, Any]) -> Event:
        # the severity policy; None (a spike at the last point): not critical on one point
        severity = {"fast": "info", "slow": "warning", "none": "critical", None: "warning"}[
            s["recovery"]]
        return Event(kind=self.kind, run=series.run, tag=series.tag, start_step=s["start"],
                     peak_step=s["peak"], end_step=s["end"], severity=severity,
                     recovery=s["recovery"], recovery_steps=s["recovery_steps"],
                     magnitude=float(s["magnitude"]), details=s["details"])
