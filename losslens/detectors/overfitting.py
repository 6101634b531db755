"""Overfitting: validation loss climbing from its best while the training loss does not.

Training meaning (the playbook's grokking entry): memorisation with validation getting worse
is not grokking, and a user should hear it while the run is young, when a run often has only a
handful of evaluations. So this works from five evaluations on.

Run scope: each validation series is paired with a training series of the run (`val_loss`
with `train_loss`, `val_acc` with `train_acc`, the other kind when the run logs only that; the
first one when several) and judged on its "badness": the loss, or 1 - accuracy (accuracy in
percent allowed). With the finite points of the validation series:

- `best` = its lowest point; at least `min_after` evaluations must follow it;
- the stretch from `best` to the end must climb: Kendall's tau of value against order at least
  `min_tau` (a noisy flat stretch has tau near 0) — or, with at least 2 x `min_after`
  evaluations after the best, stay worse: every one of its later half at least 2 x
  `min_rise` above the best (validation that jumped up and stayed there), or all but
  STAY_SHARE % of it and by 2 x the noise band (it climbed and stays there, noisily) — and the
  late level (the mean of the later half of the evaluations after the best) at least
  `level_rise` (relative) above the level at the best (the median of the best and its
  neighbours) and by `level_z` times the noise of that difference (`level_noise`). Not the
  last value against the best one: the best is the lowest of all the evaluations, so on a
  flat noisy curve it lies about two noise scales under their level (for 25 evaluations)
  and any later one looks like a rise; a measured flat curve (25 evaluations, 3 % noise)
  fired 4 % of the time that way, 22 % at 10 % noise, and a +1.5 % rise over a 0.25 %
  noise (a fine-tune overfitting at an epoch boundary) could not fire under a fixed 5 %;
- the noise is the evaluations' scatter around their local trend (`eval_noise`, from
  second differences — the changes between consecutive evaluations of a falling
  validation curve are its trend, not noise, and a steady climb cancels too; over the
  evaluations from the best on when there are LOCAL of them: a noisy warm-up is not the
  noise where validation turned), or the scatter of the changes after the best about their
  median (a trend cancels), when larger: second differences of a few evaluations often
  undershoot it;
- the training badness must not have got worse: its median over the evaluation interval that
  ends at the last evaluation at most `1 + min_rise` times that over the interval ending at
  the best one (at least three points each; where train logged nothing by the best
  evaluation, its first point after it: HF Trainer logs the loss every 500 steps and may
  evaluate sooner). A train loss that climbs (the run diverges) or
  stepped up for good (a spike that never recovered) takes validation with it: the run got
  worse, it did not overfit. A train spike in between that is gone by the end is not that.
- an accuracy series, in a run that also logs the validation loss of the same evaluations
  (the `val_loss` tag named like it, or the run's only one), needs that loss `min_rise` worse
  too from the accuracy's best evaluation to its last: accuracy is a coarse view of the
  predictions the loss scores, and a dip of a few points that the loss does not share is
  the argmax flipping on a few examples (a Keras classifier's 0.626 -> 0.600).

One event per validation series: kind `overfitting`, tag = the validation tag, start_step = the
best evaluation (where the U-curve turns: both labelled families and the real logs put the
onset at the minimum; the last evaluation within noise of the best lags it), end_step = the
last one,
magnitude = last / best, severity `warning` for a clear rise, `info` for a drift within
CLEAR_Z of the run's evaluation noise (`noise_scales`: the late level over the level at the
best, in that noise); details: `best_step` (the checkpoint to keep),
`best_value`, `last_value` (in the series' own units), `evals_after`, `tau`, `metric` (loss /
accuracy), `train_tag`, `train_change` (relative change of the training badness from the
best evaluation to the last).

Or, where that level test fails, a climb (CLIMB): every evaluation after the best above the
one before it, the last `min_rise` over the best and `noise_z` noise scales over the first
evaluation after it (that one is not the lowest by selection); or a jump that stays
(JUMPED: with 2 x `min_after` evaluations after the best, all of the later half of them
2 x `min_rise` and `noise_z` noise scales over the best: a best at the first evaluation
has no neighbour before it, and the level at it would take in half the jump).

Measured (`benchmarks/overfitting_noise.py`, 200 seeds a cell): flat and still-falling
log-normal validation curves of 6-50 evaluations at 0.3-10 % noise fire 0-7.5 % of the time
(1.1 % on average; it was 3.7 %, up to 22 %; at 1 % noise 0-2 %, 0 % before under the fixed
5 %); a +3 % climb at 0.3 % noise over 13-50 evaluations is found 94-100 % of the time (0 %
before); a +10 % climb at 3 % noise 27-36 % (41-76 % before, at those false-alarm rates).

Known misses: validation that jumps up and stays flat with fewer than 2 x `min_after`
evaluations after its best; a climb of under ~3 noise scales after the best; a short run
whose descent bends sharply (8 evaluations, 3 after the best, +5 % at 0.3 % noise: found
18 %, 54 % before), where second differences take the bend for noise;
validation that keeps climbing after a train step-up for good; known false positives: a validation set whose distribution drifts away from training's
(continued pre-training on a new domain), which is a real but different story.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..events import Event
from ..frame import Frame, RunInfo, Series
from .spike import is_int, is_num, require


#: "Stays worse" also holds when the later half of the evaluations after the best, less its
#: lowest STAY_SHARE %, lies 2 x `min_rise` above the best and by 2 x the noise band: a noisy
#: validation loss that climbed and stays up dips back now and then (a YOLOv8 run's val box
#: loss: best 1.228, the later half 1.30-1.51, a quarter of it under +11 %, 7 noise scales
#: up; its climb-then-plateau has tau 0.4), while a flat noisy one's lower quartile lies only
#: ~2.3 noise scales above its lowest point.
STAY_SHARE = 25.0


#: A clear rise (`warning`): the late level CLEAR_Z or more of the run's evaluation-to-
#: evaluation noise (`eval_noise` over all its evaluations, as wide as an engineer sees the
#: curve wiggle on its plot) above the level at the best; a smaller one is a drift (`info`).
#: Real logs: every labelled overfitting rises 5.3-63 such scales, the clean runs' late
#: drifts (a YOLOv8 run's last 16 of 500 epochs, +6 %; a fine-tune's eval wobble) 0.9-2.5.
CLEAR_Z = 4.0

#: JUMPED with fewer than 2 x `min_after` evaluations after the best (a spectra encoder's
#: 6 evaluations, best at the first, +22-31 % at the five after): all of them, by FEW_Z x
#: `noise_z` noise scales over the best (2 x `noise_z` fired on 7.5-12 % of flat curves of
#: 6-10 evaluations at 10 % noise, 2-7.5 % before).
FEW_Z = 2.0

#: With this many evaluations from the best on, the noise is measured on them: a noisy
#: start of the run (warm-up) is not the noise where validation turned.
LOCAL = 5

#: CLIMB: the evaluations after the best (without it: the lowest of all is lowest by
#: selection, which made a flat noisy stretch after it "climb") rising this steadily.
CLIMB_TAU = 0.99


def kendall_tau(y: np.ndarray) -> float:
    """Kendall's tau-a of y against its order (1 = strictly increasing)."""
    n = y.shape[0]
    if n < 2:
        return 0.0
    d = np.sign(y[None, :] - y[:, None])
    return float(np.triu(d, 1).sum() / (n * (n - 1) / 2))


def eval_noise(y: np.ndarray) -> float:
    """The scatter of evaluations around their local trend: the median non-zero distance of
    each from the midpoint of its neighbours (second differences), scaled so that on a flat
    noisy series it equals the median change between consecutive ones. A falling
    validation curve moves a lot between evaluations without any noise; its moves are trend."""
    if y.shape[0] < 3:
        return 0.0
    off = np.abs(y[1:-1] - (y[:-2] + y[2:]) / 2)
    off = off[off > 0]
    return float(np.sqrt(2 / 1.5) * np.median(off)) if off.shape[0] else 0.0


def after_noise(y: np.ndarray, after: np.ndarray) -> float:
    """The evaluations' noise: `eval_noise`, or the scatter of the changes after the best
    about their median when larger and there are three of them (a trend cancels)."""
    noise = eval_noise(after if after.shape[0] >= LOCAL else y)
    d = np.diff(after[1:])
    if d.shape[0] >= 3:
        noise = max(noise, 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2))
    return noise


def level_noise(y: np.ndarray, after: np.ndarray, late: int) -> float:
    """The noise of (the mean of the `late` last evaluations) - (the median at the best):
    `after_noise` times sqrt(1/late + 1/2)."""
    return after_noise(y, after) * float(np.sqrt(1 / max(late, 1) + 0.5))


def badness(values: np.ndarray, role: str) -> np.ndarray:
    """Lower is better: the loss itself, or 1 - accuracy (accuracy in percent allowed)."""
    y = np.asarray(values, dtype=float)
    if role.endswith("_acc"):
        return 1.0 - (y / 100.0 if y.shape[0] and np.nanmax(y) > 1.5 else y)
    return y


@dataclass(frozen=True)
class OverfittingDetector:
    """Validation loss climbing from its best while train loss does not; see the module
    docstring."""

    #: Evaluations that must follow the best one.
    min_after: int = 3
    #: Kendall's tau of the stretch from the best evaluation to the last.
    min_tau: float = 0.6
    #: How much (relative) worse validation must stay (the later half of the evaluations
    #: after the best, jumped up) and the training loss may get.
    min_rise: float = 0.05
    #: Noise scales of the band that "stays worse" must clear.
    noise_z: float = 2.0
    #: The late level must be at least this much (relative) above the level at the best ...
    level_rise: float = 0.01
    #: ... and above it by this many noise scales of that difference.
    level_z: float = 3.0

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("val_loss", "val_acc", "train_loss", "train_acc")
    causal: ClassVar[bool] = False
    kind: ClassVar[str] = "overfitting"

    def validate(self) -> None:
        require(self, "min_after", is_int(self.min_after) and self.min_after >= 2, "an int >= 2")
        require(self, "min_tau", is_num(self.min_tau) and -1 <= self.min_tau <= 1,
                "a number in [-1, 1]")
        require(self, "min_rise", is_num(self.min_rise) and self.min_rise >= 0, "a number >= 0")
        require(self, "noise_z", is_num(self.noise_z) and self.noise_z >= 0, "a number >= 0")
        require(self, "level_rise", is_num(self.level_rise) and self.level_rise >= 0,
                "a number >= 0")
        require(self, "level_z", is_num(self.level_z) and self.level_z >= 0, "a number >= 0")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        self.validate()
        out = []
        for vrole, same, other in (("val_loss", "train_loss", "train_acc"),
                                   ("val_acc", "train_acc", "train_loss")):
            trains = run.tags_with_role(same) or run.tags_with_role(other)
            train = frame.series(run.run, trains[0]) if trains else None
            for tag in run.tags_with_role(vrole):
                ev = self._one(frame.series(run.run, tag), train)
                if ev is not None and vrole == "val_acc" and not self._loss_agrees(
                        frame, run, tag, ev):
                    ev = None
                if ev is not None:
                    out.append(ev)
        return sorted(out, key=lambda e: (e.start_step, e.tag))

    def _one(self, val: Series, train: Series | None) -> Event | None:
        ok = np.isfinite(val.value)
        x, y = val.step[ok], badness(val.value[ok], val.role)
        if x.shape[0] < self.min_after + 2:
            return None
        b = int(np.argmin(y))
        after = y[b:]
        if after.shape[0] - 1 < self.min_after:
            return None
        best, last = float(y[b]), float(y[-1])
        if best <= 0:
            return None
        at_best = float(np.median(y[max(b - 1, 0):b + 2]))
        late_half = after[1:][(after.shape[0] - 1) // 2:]
        level = float(np.mean(late_half))
        tau = kendall_tau(after)
        # the scatter of every evaluation around its local trend (a steady fall or climb
        # cancels in second differences; the fall before the best alone bends too much)
        band = self.noise_z * eval_noise(y)
        # with fewer than 2 x `min_after` evaluations after the best, every one of them, and
        # by FEW_Z x `noise_z` noise scales (less evidence: a flat noisy curve's best late)
        few = after.shape[0] - 1 < 2 * self.min_after
        late = after[1:] if few else after[after.shape[0] // 2:]
        up = best * (1 + 2 * self.min_rise)
        low = float(np.percentile(late, STAY_SHARE))  # most of it, clear of noise: STAY_SHARE
        stays = float(late.min()) >= up and (
            float(late.min()) - best >= FEW_Z * self.noise_z * after_noise(y, after)) if few \
            else (float(late.min()) >= up or (low >= up and low - best > 2 * band))
        if level < at_best * (1 + self.level_rise) \
                or level - at_best < self.level_z * level_noise(y, after, late_half.shape[0]):
            # CLIMB: or a climb at every evaluation after the best, `min_rise` over it and
            # `noise_z` noise scales over the first one after it (not selected as lowest);
            # or JUMPED: stays worse, its later half all `noise_z` noise scales over the best
            climb = last >= best * (1 + self.min_rise) and last - float(after[1]) >= band \
                and kendall_tau(after[1:]) >= CLIMB_TAU
            jumped = stays and float(late.min()) >= up \
                and float(late.min()) - best >= self.noise_z * after_noise(y, after)
            if not (climb or jumped):
                return None
        if tau < self.min_tau and not stays:
            return None
        change = None
        if train is not None:
            gap = float(np.median(np.diff(x)))
            ref, end = self._train_at(train, x[b], gap), self._train_at(train, x[-1], gap)
            if ref is None:  # train logged nothing by the best evaluation: its first
                ref = self._first_after(train, x[b], x[-1])  # point after it
            if ref is not None and end is not None and ref > 0:
                change = end / ref - 1
                if change > self.min_rise:
                    return None  # train got worse too (a divergence, or a spike that never
                    # recovered, takes validation with it): the run got worse, not overfit
        # the onset is the best evaluation: the last one within noise of it lags the turn
        # (quality.py's overfitting 1.000 -> 0.833), the middle of those as good lost real logs
        start = b
        raw = val.value[ok]
        # CLEAR_Z: from the level at the best (the best itself at the first evaluation: no
        # neighbour before it, the median with the next would take in half a jump)
        scales = (level - (at_best if b else best)) / max(eval_noise(y), 1e-12 * best)
        return Event(
            kind=self.kind, run=val.run, tag=val.tag, start_step=int(x[start]),
            end_step=int(x[-1]), severity="warning" if scales >= CLEAR_Z else "info",
            magnitude=last / best,
            details={"best_step": int(x[b]), "best_value": float(raw[b]),
                     "last_value": float(raw[-1]),
                     "metric": "accuracy" if val.role.endswith("_acc") else "loss",
                     "evals_after": int(after.shape[0] - 1), "tau": round(tau, 4),
                     "noise_scales": round(float(scales), 2),
                     "train_tag": None if train is None else train.tag,
                     "train_change": None if change is None else round(change, 6)})

    @staticmethod
    def _train_at(train: Series, step: int, gap: float) -> float | None:
        """The training badness at an evaluation: the median over the evaluation interval
        ending at `step` (at least its last three points up to it), None when it has none."""
        ok = np.isfinite(train.value) & (train.step <= step)
        steps, vals = train.step[ok], badness(train.value[ok], train.role)
        inside = steps > step - gap
        if int(inside.sum()) < 3:
            inside = np.arange(steps.shape[0]) >= steps.shape[0] - 3
        return float(np.median(vals[inside])) if inside.any() else None

    def _loss_agrees(self, frame: Frame, run: RunInfo, tag: str, ev: Event) -> bool:
        """Whether the validation loss of the same evaluations (the `val_loss` tag named like
        the accuracy one, or the run's only one) also got `min_rise` worse from the
        accuracy's best evaluation to its last; True when the run logs no such loss.
        Accuracy is a coarse view of the predictions the loss scores: a dip of a few
        points that the loss does not share is the argmax flipping on a few examples."""
        losses = run.tags_with_role("val_loss")
        named = [t for t in losses
                 if t in (tag.replace("accuracy", "loss"), tag.replace("acc", "loss"))]
        if not named and len(losses) != 1:
            return True
        loss = frame.series(run.run, (named or losses)[0])
        ok = np.isfinite(loss.value)
        steps, vals = loss.step[ok], loss.value[ok]
        best, last = ev.details["best_step"], ev.end_step
        at_best, at_last = vals[steps <= best], vals[steps <= last]
        if not at_best.shape[0] or steps[steps <= last][-1] <= best or not at_best[-1] > 0:
            return True  # no loss at (or after) the accuracy's best evaluation: no evidence
        return bool(at_last[-1] >= at_best[-1] * (1 + self.min_rise))

    @staticmethod
    def _first_after(train: Series, step: int, last: int) -> float | None:
        """The training badness at its first point after `step` (up to `last`), where it
        logged none by then: HF Trainer logs the loss every 500 steps and may evaluate
        sooner, and a train loss that rose from its first point on got worse (TRAIN_FIRST)."""
        ok = np.isfinite(train.value) & (train.step > step) & (train.step < last)
        vals = badness(train.value[ok], train.role)
        return float(vals[0]) if vals.shape[0] else None
