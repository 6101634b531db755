"""Divergence across a run's two losses: the divergence detector's run stage.

Training meaning (docs/playbook.md): a run whose learning rate is far too high can go bad
without any one series showing the classic sustained rise. A fine-tune that logs its train loss
every 500 steps has five points, too few for the trailing level of the series stage; its
validation loss, evaluated every 132 steps, jumped up after the first evaluation and never
came back. Either series alone is ambiguous: validation alone getting worse is overfitting
(the train loss falls meanwhile), and five train points rising x1.7 are a short wiggle. Both at
once say the model got worse at what it is trained on and at held-out data: it diverged.

Statistic (causal: over any prefix it reads only that prefix; the judgement is made at each
evaluation, from the train points logged up to it):

- The validation loss (positive; its finite evaluations) has its best (lowest, the first of
  equals) at evaluation `b`, with at least `evals_after` evaluations after it, and every one of
  them is at least `eval_rise` x the best: worse at every evaluation since, and never back
  (one that came back within `eval_rise` ends the episode: a hump, not a divergence).
  The least of them is also `EVAL_Z` noise scales of one evaluation (log) over the best: the
  best of a noisy validation loss is its lowest draw, and one that wanders +-20 % with no
  trend stays within a noise scale or two of it (a forecaster's val loss at 600-1400).
- Validation on a floor (`divergence_floor`'s principle): the evaluations since the best
  sat, in median, `NEAR_FLOOR` x or more under the validation's start and their second half
  is not `STILL_RISING` over the first: still ~0 against where it started, and not rising
  (a grokking run's test loss collapsing off 1e-6 and decaying back), not a divergence.
- The train loss rose over the same stretch: at some evaluation k >= b + `evals_after`, at
  least `sustain_steps` after the first evaluation since the best (a slow spike that hits both
  losses for a few hundred steps is a hump, and a streaming form must not call it a divergence
  while it lasts), its level (the median of its points over the evaluation interval ending
  at k, at least its last three) is at least `train_rise` x its level at the best evaluation (the same median; where the
  train loss logged nothing by then, its first point after it: HF Trainer logs the loss every
  500 steps and may evaluate sooner). The level at k must rest on three train points or more.
  A train loss that falls while validation rises is overfitting, the overfitting detector's.
- Event: `divergence` on the validation tag, start = the first evaluation after the best (the
  onset of the rise), end = the last evaluation, magnitude = the highest evaluation since / the
  best; details say the train tag and how much each series rose (`train_change`, `val_change`:
  the least rise of an evaluation since the best), `best_step` (the checkpoint to keep) and
  `declared_step` (the evaluation it was first judged at).

One event per run: the validation series whose divergence starts first (others that agree are
named in `details.also`), paired with the run's first train loss (as the overfitting
detector pairs them). The detector's run stage drops it when the series stage already found a
divergence of that train loss overlapping it (that event says it, from one series).

Known misses: a divergence whose validation dips back within `eval_rise` of its best once;
one shorter than `sustain_steps` (a slow spike of both losses that stays up past it is
judged a divergence while it lasts, and withdrawn once validation is back); one whose train loss rises under `train_rise` on the median of an evaluation interval (a
noisy per-batch loss rising by a fifth). Known false positives: a deliberate learning-rate
re-warm-up that sends both losses up for a while, and a curriculum switch to harder data
(both losses rise, the run is fine).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..events import Event
from ..frame import RunInfo
from .divergence_floor import NEAR_FLOOR, PLATEAU_SPANS, STILL_RISING, half_heights


def train_level(steps: np.ndarray, values: np.ndarray, at: int, gap: float,
                least: int = 1) -> float | None:
    """The train loss level at an evaluation at step `at`: the median of its points in
    (at - gap, at], at least its last three up to `at`; None when fewer than `least` points
    were logged by then."""
    k = int(np.searchsorted(steps, at, side="right"))
    if k < least or k == 0:
        return None
    lo = int(np.searchsorted(steps, at - gap, side="right"))
    lo = min(lo, k - 3) if k >= 3 else 0
    return float(np.median(values[max(0, lo):k]))


#: Every evaluation since the best must be this many noise scales of one evaluation (log,
#: `eval_noise`) above it: the best of a noisy validation loss is its lowest draw, and one that
#: wanders with no trend (+-20 % an evaluation) stays within a noise scale or so of it.
EVAL_Z = 2.0
#: The validation's start level: the median of its first this many evaluations.
INIT_POINTS = 5


def eval_noise(y: np.ndarray) -> float:
    """The noise of one evaluation of a log-space validation series `y`: from consecutive
    differences, or second differences when smaller (a steady rise or fall is no noise)."""
    d = np.diff(y)
    if d.shape[0] == 0:
        return 0.0
    s = 1.4826 / np.sqrt(2) * float(np.median(np.abs(d)))
    if d.shape[0] > 1:
        s = min(s, 1.4826 / np.sqrt(6) * float(np.median(np.abs(np.diff(d)))))
    return s


def settled_near_floor(y: np.ndarray, b: int, span: int, start: float) -> bool:
    """Whether the evaluations after the best `b` of a log-space validation `y` sat near a
    floor and were not rising: at least PLATEAU_SPANS spans (`span` evaluations each) of
    them, their median NEAR_FLOOR x or more under the `start` level (a grokking run's test
    loss collapsing from 1e-6 to 1.0 and decaying back sits at ~1e-2 against a start of 30:
    still ~0), and the median height of their second half over the best under STILL_RISING x
    their first half's (`divergence_floor`: the same rule as the series stage's)."""
    seg = y[b + 1:]
    if seg.shape[0] < PLATEAU_SPANS * span:
        return False  # too short to tell: still rising as far as anyone can tell
    if float(np.median(seg)) > start - float(np.log(NEAR_FLOOR)):
        return False  # sat within two decades of where it started: the ratio counts
    first, second = half_heights(seg, float(y[b]))
    return second < STILL_RISING * first


def judge_pair(vx: np.ndarray, vy: np.ndarray, tx: np.ndarray, ty: np.ndarray, *,
               evals_after: int, eval_rise: float, train_rise: float,
               sustain_steps: int) -> dict[str, Any] | None:
    """The divergence a validation series (steps `vx`, values `vy`) and a train series
    (`tx`, `ty`) show together, or None; see the module docstring. Non-finite points are
    skipped; a loss that is ever <= 0 is not judged (its ratios mean nothing)."""
    ok = np.isfinite(vy)
    vx, vy = np.asarray(vx)[ok].astype(np.int64), np.asarray(vy, dtype=float)[ok]
    m = vy.shape[0]
    if m < evals_after + 1:
        return None
    # the train points up to the last evaluation (the judgement is made at evaluations)
    ok = np.isfinite(ty) & (np.asarray(tx) <= vx[-1])
    tx, ty = np.asarray(tx)[ok].astype(np.int64), np.asarray(ty, dtype=float)[ok]
    if tx.shape[0] < 3 or vy.min() <= 0 or ty.min() <= 0:
        return None
    b = int(np.argmin(vy))
    best = float(vy[b])
    after = vy[b + 1:]
    if after.shape[0] < evals_after or float(after.min()) < eval_rise * best:
        return None  # too few evaluations since the best, or one came back near it
    y = np.log(vy)
    if float(np.log(after.min() / best)) < EVAL_Z * eval_noise(y):
        return None  # within noise of the best: a noisy validation loss that wanders
    span = max(evals_after, int(np.ceil(sustain_steps / max(float(np.median(np.diff(vx))), 1.0))))
    if settled_near_floor(y, b, span, float(np.median(y[:INIT_POINTS]))):
        return None  # sat near a floor decades under its start, and not rising
    for k in range(b + evals_after, m):
        if vx[k] - vx[b + 1] < sustain_steps:
            continue  # not yet sustained: a slow spike of both losses is a hump
        # the evaluation interval (the median of the last 128: bounded work per evaluation)
        gap = float(np.median(np.diff(vx[max(0, k - 128):k + 1])))
        ref = train_level(tx, ty, int(vx[b]), gap)
        if ref is None:  # nothing logged by the best evaluation: its first point after it
            first = int(np.searchsorted(tx, vx[b], side="right"))
            if first >= tx.shape[0] or tx[first] > vx[k]:
                continue
            ref = float(ty[first])
        now = train_level(tx, ty, int(vx[k]), gap, least=3)
        if now is None or now < train_rise * ref:
            continue
        return {"start": int(vx[b + 1]), "end": int(vx[-1]),
                "magnitude": float(after.max() / best),
                "details": {"declared_step": int(vx[k]), "best_step": int(vx[b]),
                            "best_level": best, "preceded_by_spike": False,
                            "recovered": False, "nonfinite": False, "space": "log",
                            "evals_after": int(after.shape[0]),
                            "val_change": round(float(after.min() / best) - 1, 6),
                            "train_change": round(now / ref - 1, 6)}}
    return None


def pair_candidate(frame: Any, run: RunInfo, *, evals_after: int, eval_rise: float,
                   train_rise: float, sustain_steps: int) -> Event | None:
    """The divergence the run's train and validation losses show together (at most one), before
    `covered` is asked; `frame` is a Frame, or anything with its `series(run, tag)`. It reads
    no train point after the last evaluation (a streaming form relies on it)."""
    trains = [s.tag for s in run.series if s.role == "train_loss" and s.points]
    if not trains:
        return None
    train = frame.series(run.run, trains[0])
    found = []
    for tag in [s.tag for s in run.series if s.role == "val_loss" and s.points]:
        val = frame.series(run.run, tag)
        d = judge_pair(val.step, val.value, train.step, train.value, evals_after=evals_after,
                       eval_rise=eval_rise, train_rise=train_rise, sustain_steps=sustain_steps)
        if d is not None:
            found.append((d["start"], tag, d))
    if not found:
        return None
    found.sort(key=lambda t: (t[0], t[1]))
    start, tag, d = found[0]
    details = {**d["details"], "train_tag": train.tag, "also": [t for _, t, _ in found[1:]]}
    return Event(kind="divergence", run=run.run, tag=tag, start_step=start, end_step=d["end"],
                 severity="critical", magnitude=d["magnitude"], details=details)


def covered(event: Event, own: list[Event]) -> bool:
    """Whether a divergence the series stage found on the event's train loss overlaps it
    (that one says it, from one series)."""
    return any(e.tag == event.details["train_tag"] and e.start_step <= (event.end_step or 0)
               and (e.end_step is None or e.end_step >= event.start_step) for e in own)
