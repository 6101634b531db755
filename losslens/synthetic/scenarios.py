"""Labelled scenarios for the regime and resume detectors: a Frame plus what is in it.

Each generator returns a `Scenario`: a losslens Frame built through `RecordsBuilder` the way a
reader builds it (one `order` per log line, a header order at each resume, so segments arise
exactly as they do from a real log) and the list of `Truth` events a detector should report,
with the tolerance (in steps) a found event may be off by. `absent` names the kinds that must
not be reported at all (clean curves). Everything is seeded and deterministic.

Families: clean power-law curves; regime curves (LR step drops, plateaus, level shifts);
grokking train/validation pairs (and overfitting and clean pairs, as loss or accuracy); LLM
curves with a sudden drop after a slow stretch (optionally at an LR drop); resumed runs with
overlap (clean resume, resume spike, a spike at every resume, rollback with replayed data,
rollback without), plus a resume that continues without overlap.

Curve shape: `floor + scale * (1 + t / t0) ** -k` with t0 = 1% of the run, so the curve looks
the same at every run length; noise is multiplicative (log-normal, `noise` = sd in log units).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..events import Event
from ..frame import Frame, build
from ..records import RecordsBuilder

__all__ = ["Truth", "Scenario", "NOISE_LEVELS", "LOG_INTERVALS", "RESUME_PATTERNS",
           "power_law", "frame_of", "clean_curve", "regime_curve", "grokking_pair",
           "sudden_drop_curve", "resumed_run", "score"]

NOISE_LEVELS = (0.005, 0.02, 0.05)
LOG_INTERVALS = (1, 10, 50)


@dataclass(frozen=True)
class Truth:
    """One event a detector should find: kind, where, and how far off it may be."""

    kind: str
    run: str
    tag: str
    start_step: int
    end_step: int | None = None
    tolerance: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)

    def matches(self, event: Event) -> bool:
        return (event.kind == self.kind and event.run == self.run and event.tag == self.tag
                and abs(event.start_step - self.start_step) <= self.tolerance
                and all(event.details.get(k) == v for k, v in self.details.items()))


@dataclass(frozen=True)
class Scenario:
    """A labelled Frame: `truth` must be found, `absent` kinds must not be reported."""

    name: str
    frame: Frame
    truth: tuple[Truth, ...] = ()
    absent: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


def power_law(t: np.ndarray, total: int, floor: float = 2.0, scale: float = 9.0,
              k: float = 0.5) -> np.ndarray:
    """The clean training curve: floor + scale * (1 + t/t0)^-k with t0 = total / 100."""
    t0 = max(total / 100.0, 1.0)
    return floor + scale * (1.0 + np.maximum(t, 0) / t0) ** -k


def _noisy(rng: np.random.Generator, clean: np.ndarray, noise: float) -> np.ndarray:
    return clean * np.exp(noise * rng.standard_normal(clean.shape[0]))


def _steps(n_points: int, log_interval: int) -> np.ndarray:
    return np.arange(1, n_points + 1, dtype=np.int64) * log_interval


def frame_of(run: str, tags: Mapping[str, tuple[np.ndarray, np.ndarray]],
             step_offset: int = 0) -> Frame:
    """A one-segment Frame: every tag written on the same lines (one order per step)."""
    b = RecordsBuilder()
    for tag, (steps, values) in tags.items():
        b.add_array(tag, np.asarray(steps) + step_offset, values, orders=np.asarray(steps) + 1)
    return build([b.build(run, f"synthetic://{run}", "synthetic")])


# --- regimes -----------------------------------------------------------------------------

def clean_curve(seed: int = 0, n_points: int = 2000, log_interval: int = 10,
                noise: float = 0.02, step_offset: int = 0) -> Scenario:
    """A smooth power-law decay: no changepoint, no sudden drop."""
    rng = np.random.default_rng(seed)
    t = _steps(n_points, log_interval)
    y = _noisy(rng, power_law(t, int(t[-1])), noise)
    run = f"clean-{seed}"
    return Scenario(run, frame_of(run, {"lm loss": (t, y)}, step_offset), (),
                    ("changepoint", "sudden_drop"),
                    {"n_points": n_points, "log_interval": log_interval, "noise": noise})


def regime_curve(pattern: str, seed: int = 0, n_points: int = 2000, log_interval: int = 10,
                 noise: float = 0.02, step_offset: int = 0) -> Scenario:
    """A power law with known regime changes.

    pattern: "lr_drop" (step schedule: the loss drops 12% at 50% and 8% at 75% of the run,
    with an LR series that drops there), "plateau" (flat from 30% to 55%, then the descent
    resumes), "level_shift" (a lasting 7% jump up or down at 60%). Tolerance: 1% of the run
    (3 log intervals at least); 4% for the plateau's corners, which have no jump to pin them.
    """
    rng = np.random.default_rng(seed)
    t = _steps(n_points, log_interval)
    total = int(t[-1])
    tol = max(3 * log_interval, total // 100)
    run = f"{pattern}-{seed}"
    tags: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if pattern == "lr_drop":
        breaks = [_at(t, 0.5), _at(t, 0.75)]
        width = max(total / 500.0, 1.0)  # the loss settles over ~0.2% of the run
        factor = np.ones(t.shape[0])
        lr = np.full(t.shape[0], 3e-4)
        for b, f in zip(breaks, (0.88, 0.92)):
            factor *= np.where(t >= b, f + (1 - f) * np.exp(-(t - b) / width), 1.0)
            lr = np.where(t >= b, lr * 0.1, lr)
        clean = power_law(t, total) * factor
        tags["lr"] = (t, lr)
    elif pattern == "plateau":
        breaks = [_at(t, 0.30), _at(t, 0.55)]
        frozen = np.where(t < breaks[0], t, np.where(t < breaks[1], breaks[0],
                                                     t - (breaks[1] - breaks[0])))
        clean = power_law(frozen, total)
    elif pattern == "level_shift":
        breaks = [_at(t, 0.6)]
        sign = 1.0 if rng.random() < 0.5 else -1.0
        clean = power_law(t, total) * np.where(t >= breaks[0], np.exp(sign * 0.07), 1.0)
    else:
        raise ValueError(f"unknown regime pattern {pattern!r}")
    tags["lm loss"] = (t, _noisy(rng, clean, noise))
    params = {"n_points": n_points, "log_interval": log_interval, "noise": noise}
    if pattern == "level_shift":
        params["shift"] = sign * 0.07  # log units
    if pattern == "plateau":  # a corner between two slopes localises to a few % at best
        tol = max(3 * log_interval, total // 25)
    truth = tuple(Truth("changepoint", run, "lm loss", int(b) + step_offset, None, tol)
                  for b in breaks)
    return Scenario(run, frame_of(run, tags, step_offset), truth, (), params)


def _at(t: np.ndarray, frac: float) -> int:
    """The logged step nearest to `frac` of the run."""
    return int(t[min(t.shape[0] - 1, int(round(frac * t.shape[0])))])


# --- grokking ---------------------------------------------------------------------------

def grokking_pair(pattern: str, seed: int = 0, n_points: int = 400, log_interval: int = 50,
                  noise: float = 0.02, metric: str = "loss", step_offset: int = 0) -> Scenario:
    """Train and validation of one run: "grokking", "overfitting" or "clean".

    Train saturates early (memorised by ~6-9% of the run) in all three. Grokking: validation
    stays bad (slightly worse) until 35-60% of the run, then improves within ~5% of the run.
    Overfitting: validation improves a little, then gets worse and stays worse. Clean:
    validation improves together with train. `metric` "acc" writes accuracies instead
    (accuracy = 1 / (1 + (loss / 1.5)^2): ~1 when memorised, ~0.06 at the worst).
    The truth's steps come from the noise-free curves (10% and 90% of the improvement).
    """
    rng = np.random.default_rng(seed)
    t = _steps(n_points, log_interval).astype(np.float64)
    total = float(t[-1])
    tau = total * rng.uniform(0.02, 0.03)
    train = 4.6 * np.exp(-t / tau) + 2e-3
    run = f"{pattern}-{metric}-{seed}"
    val_tag = "val/loss" if metric == "loss" else "val/acc"
    if pattern == "grokking":
        t_g, w = total * rng.uniform(0.35, 0.6), total * 0.012
        s = 1.0 / (1.0 + np.exp(-(t - t_g) / w))
        val = (4.6 + 1.4 * (1 - np.exp(-t / tau))) * (1 - s) + 0.05 * s
    elif pattern == "overfitting":
        t_min = total * rng.uniform(0.08, 0.15)
        val = 3.0 + 1.6 * np.exp(-t / tau) + 2.5 * np.clip((t - t_min) / total, 0, None) ** 0.7
    elif pattern == "clean":
        val = train * 1.15 + 0.3
    else:
        raise ValueError(f"unknown grokking pattern {pattern!r}")
    to_metric = (lambda v: v) if metric == "loss" else (lambda v: 1.0 / (1.0 + (v / 1.5) ** 2))
    bad = val if metric == "loss" else 1.0 - to_metric(val)  # lower is better
    truth: list[Truth] = []
    if pattern == "grokking":
        j_best = int(np.argmin(bad))
        j_top = int(np.argmax(bad[: j_best + 1]))
        top, best = bad[j_top], bad[j_best]
        start = j_top + int(np.argmax(bad[j_top:] <= top - 0.1 * (top - best)))
        end = start + int(np.argmax(bad[start:] <= best + 0.1 * (top - best)))
        truth.append(Truth("grokking", run, val_tag, int(t[start]) + step_offset,
                           int(t[end]) + step_offset, int(w + 3 * log_interval)))
    elif pattern == "overfitting":
        truth.append(Truth("changepoint", run, val_tag,
                           int(t[int(np.argmin(bad))]) + step_offset, None,
                           int(0.1 * total), {"pattern": "overfitting"}))
    steps = t.astype(np.int64)
    tags = {"train/" + metric: (steps, to_metric(_noisy(rng, train, noise))),
            val_tag: (steps, to_metric(_noisy(rng, val, noise)))}
    absent = ("grokking",) if pattern != "grokking" else ()
    return Scenario(run, frame_of(run, tags, step_offset), tuple(truth), absent,
                    {"n_points": n_points, "log_interval": log_interval, "noise": noise})


def _snap(t: np.ndarray, step: float, log_interval: int) -> int:
    return int(t[int(np.argmin(np.abs(t - step)))])


def sudden_drop_curve(seed: int = 0, n_points: int = 2000, log_interval: int = 10,
                      noise: float = 0.02, lr_drop: bool = False,
                      step_offset: int = 0) -> Scenario:
    """An LLM curve: descent, a slow stretch from ~30%, then a 12-20% drop within 1% of the
    run at 45-60% (the "grokking moment"); with `lr_drop` the LR series drops there too."""
    rng = np.random.default_rng(seed)
    t = _steps(n_points, log_interval)
    total = int(t[-1])
    p, d = _at(t, 0.3), _at(t, rng.uniform(0.45, 0.6))
    width = max(total * 0.01, 2.0 * log_interval)
    frozen = np.where(t < p, t, p + (t - p) * 0.1).astype(np.float64)
    size = rng.uniform(0.12, 0.2)
    drop = np.clip((t - d) / width, 0.0, 1.0)
    clean = power_law(frozen, total) * np.exp(-size * drop)
    run = f"sudden-{'lr-' if lr_drop else ''}{seed}"
    tags = {"lm loss": (t, _noisy(rng, clean, noise))}
    if lr_drop:
        tags["lr"] = (t, np.where(t >= d, 3e-5, 3e-4))
    tol = int(width + 3 * log_interval)
    truth = (Truth("sudden_drop", run, "lm loss", d + step_offset,
                   int(d + width) + step_offset, tol, {"lr_drop": lr_drop}),)
    return Scenario(run, frame_of(run, tags, step_offset), truth, (),
                    {"n_points": n_points, "log_interval": log_interval, "noise": noise})


# --- resumed runs -------------------------------------------------------------------------

RESUME_PATTERNS = ("clean_resume", "resume_spike", "spike_every_resume", "rollback_repeat",
                   "rollback_plain", "continue")


def resumed_run(pattern: str, seed: int = 0, n_points: int = 3000, log_interval: int = 10,
                noise: float = 0.02, checkpoint_every: int = 0,
                step_offset: int = 0) -> Scenario:
    """A run written as a log with resumes (a header line before each resumed stretch).

    clean_resume: crash, resume from the last checkpoint (steps since it are written again).
    resume_spike: the same with a spike (+50%, decaying over a few points) right after.
    spike_every_resume: three resumes, each with a spike. rollback_repeat: a deliberate
    rollback ~15% of the run back, the data stream restarts from seen data: the loss on the
    replayed steps runs 6% below the first pass, then jumps back up at the first unseen step.
    rollback_plain: the same rollback with fresh data (no gap). continue: a resume exactly at
    the crash point (a header, no overlap): nothing to report.
    """
    rng = np.random.default_rng(seed)
    t = _steps(n_points, log_interval)
    total = int(t[-1])
    ckpt = checkpoint_every or max(log_interval, (total // 20) // log_interval * log_interval)
    clean = power_law(t, total)
    run = f"{pattern}-{seed}"
    plan = _resume_plan(pattern, t, ckpt, rng)
    b = RecordsBuilder()
    order, truth = 0, []
    prev_last = 0
    for i, (first, last) in enumerate(plan):
        sel = (t >= first) & (t <= last)
        steps, level = t[sel], clean[sel].copy()
        if i and pattern in ("resume_spike", "spike_every_resume"):
            level *= 1.0 + 0.5 * np.exp(-np.arange(steps.shape[0]) / 2.0)
        if i and pattern == "rollback_repeat":
            level *= np.where(steps + step_offset <= prev_last, np.exp(-0.06), 1.0)
        values = _noisy(rng, level, noise)
        if i:
            order += 1
            b.header(order)  # "loaded checkpoint ... at iteration N"
        orders = order + 1 + np.arange(steps.shape[0])
        order = int(orders[-1]) if steps.shape[0] else order
        b.add_array("lm loss", steps + step_offset, values, orders=orders)
        b.add_array("lr", steps + step_offset, np.full(steps.shape[0], 3e-4), orders=orders)
        if i:
            truth += _resume_truth(pattern, run, int(steps[0]) + step_offset, prev_last,
                                   log_interval)
        prev_last = int(steps[-1]) + step_offset
    frame = build([b.build(run, f"synthetic://{run}", "synthetic")])
    absent = tuple(k for k in ("rollback", "resume_spike", "repeat_data")
                   if not any(tr.kind == k for tr in truth))
    return Scenario(run, frame, tuple(truth), absent,
                    {"n_points": n_points, "log_interval": log_interval, "noise": noise,
                     "plan": plan})


def _resume_plan(pattern: str, t: np.ndarray, ckpt: int,
                 rng: np.random.Generator) -> list[tuple[int, int]]:
    """(first step, last step) written by each launch, in write order."""
    total, iv = int(t[-1]), int(t[1] - t[0])
    if pattern == "spike_every_resume":
        crashes = sorted(int(c) for c in rng.uniform(0.2, 0.85, 3) * total)
        crashes = [c // iv * iv for c in crashes]
        if len(set(crashes)) < 3 or min(np.diff(crashes)) < 2 * ckpt:
            crashes = [int(total * f) // iv * iv for f in (0.25, 0.5, 0.75)]
    else:
        crashes = [int(total * rng.uniform(0.4, 0.6)) // iv * iv]
    plan, first = [], int(t[0])
    for c in crashes:
        plan.append((first, c))
        if pattern == "continue":
            first = c + iv
        elif pattern in ("rollback_repeat", "rollback_plain"):
            first = max(int(t[0]), (c - int(0.15 * total)) // ckpt * ckpt + iv)
        else:  # resume from the last checkpoint at or before the crash
            first = (c // ckpt) * ckpt + iv
            if first > c:
                first -= ckpt
    plan.append((first, total))
    return plan


def _resume_truth(pattern: str, run: str, first: int, prev_last: int,
                  iv: int) -> list[Truth]:
    out = []
    if pattern != "continue":
        out.append(Truth("rollback", run, "lm loss", first, None, 0,
                         {"from_step": prev_last}))
    if pattern in ("resume_spike", "spike_every_resume"):
        details = {"every_resume": True} if pattern == "spike_every_resume" else {}
        out.append(Truth("resume_spike", run, "lm loss", first, None, 2 * iv, details))
    if pattern == "rollback_repeat":
        out.append(Truth("repeat_data", run, "lm loss", first, prev_last + iv, 2 * iv))
    return out


def score(events: Sequence[Event], scenario: Scenario, kind: str) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of `kind` events on a scenario.

    Each truth matches at most one event and vice versa (greedy, nearest first).
    """
    truths = [tr for tr in scenario.truth if tr.kind == kind]
    found = [e for e in events if e.kind == kind]
    if kind == "changepoint":  # overfitting verdicts are scored as their own kind
        found = [e for e in found if e.details.get("pattern") != "overfitting"]
    if kind == "overfitting":  # the overfitting detector's events (kind "overfitting")
        truths = [tr for tr in scenario.truth if tr.details.get("pattern") == "overfitting"]
        found = [e for e in events if e.kind == "overfitting"]
        truths = [Truth("overfitting", tr.run, tr.tag, tr.start_step, None, tr.tolerance)
                  for tr in truths]
    used: set[int] = set()
    tp = 0
    for tr in truths:
        best = None
        for j, e in enumerate(found):
            if j not in used and tr.matches(e):
                if best is None or (abs(e.start_step - tr.start_step)
                                    < abs(found[best].start_step - tr.start_step)):
                    best = j
        if best is not None:
            used.add(best)
            tp += 1
    return tp, len(found) - len(used), len(truths) - tp
