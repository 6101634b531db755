"""Replay checked against the log, the way the log computed its values (pure: no torch).

A log does not always print each iteration's own loss. Megatron-LM, the HF Trainer and
fairseq print the mean over the iterations since the previous printed point (`log_interval`,
`logging_steps`); nanoGPT prints the last micro-batch's loss × gradient-accumulation steps of
the printed iteration only; most others print the iteration's own value. `LogSpec` says which,
declared by the plug-in (`log_loss = "mean" | "step"`) or taken from the log's format, and
`compare` sets each logged value beside the same reduction of the replayed values.

The learning rate is printed per iteration (HF prints the one after the step: `lr_offset`).
`lr_jumps` finds where the log's own LR column jumps (a schedule change, a restart with a new
LR): a spike there is the schedule's, whatever the data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

#: Loss reduction over the log interval, by log format (readers' names).
FORMAT_LOSS = {"megatron": "mean", "hf-trainer": "mean", "hf-trainer-state": "mean",
               "fairseq": "mean", "nanogpt": "step", "llmc": "step", "llmc-mainlog": "step",
               "torchtitan": "step", "deepspeed": "step", "olmo": "step", "olmo-core": "step"}
#: Replayed and logged losses agree within this relative difference (+ 10 × the measured noise).
MATCH_REL = 1e-3
#: Learning rates agree within this relative difference (logs print 4-7 significant digits).
LR_REL = 5e-3
#: A logged LR changing by this factor (or its inverse) between two printed points is a jump.
LR_JUMP = 3.0


@dataclass(frozen=True)
class LogSpec:
    """How the log computed the printed loss, and where that was learnt."""

    loss: str | None  # "mean" over the interval, "step" (the printed iteration's), None: unknown
    source: str
    lr_offset: int = 0  # the printed LR at step s is the LR of iteration s + lr_offset

    def describe(self) -> str:
        what = {"mean": "the mean over the iterations since the previous printed step",
                "step": "the printed iteration's own value",
                None: "unknown"}[self.loss]
        return f"logged loss = {what} ({self.source})"


def spec_for(fmt: str | None, declared: str | None = None, lr_offset: int | None = None,
             interval: int | None = None) -> LogSpec:
    """The plug-in's declaration wins; then the log's format; a log of every step needs none."""
    off = int(lr_offset or 0)
    if declared is not None:
        if declared not in ("mean", "step"):
            from ..errors import InvalidParameterError

            raise InvalidParameterError(f"log_loss must be 'mean' or 'step', got {declared!r}")
        return LogSpec(declared, "declared by the plug-in", off)
    if fmt in FORMAT_LOSS:
        return LogSpec(FORMAT_LOSS[fmt], f"how {fmt} logs print it", off)
    if interval == 1:
        return LogSpec("step", "the log has every step", off)
    return LogSpec(None, f"{fmt or 'this'} log's reduction over its interval is not known; "
                         "declare log_loss = 'mean' or 'step' in the plug-in", off)


@dataclass(frozen=True)
class Point:
    """One logged value beside the same reduction of the replayed values."""

    step: int
    covers: tuple[int, int]  # the iterations the logged value reduces
    logged: float
    replayed: float | None  # None when an iteration it covers was not replayed
    rel: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "covers": list(self.covers), "logged": self.logged,
                "replayed": self.replayed, "rel_diff": self.rel}


@dataclass(frozen=True)
class LogCheck:
    """The loss comparison of one replay: before the event (is the replay the run?) and at it
    (does the replay give what the log printed?)."""

    spec: LogSpec
    pre: tuple[Point, ...]
    event: tuple[Point, ...]
    tolerance: float
    missing: str | None  # the piece that is missing, in words, when `pre` is empty

    @property
    def pre_match(self) -> bool | None:
        vals = [p.rel for p in self.pre if p.rel is not None]
        return None if not vals else max(vals) <= self.tolerance

    @property
    def pre_worst(self) -> float | None:
        vals = [p.rel for p in self.pre if p.rel is not None]
        return max(vals) if vals else None

    @property
    def first_departure(self) -> int | None:
        """The first logged step before the event where the replay departs from the log."""
        return next((p.step for p in self.pre if p.rel is not None and p.rel > self.tolerance),
                    None)

    @property
    def event_match(self) -> bool | None:
        pts = [p for p in self.event if p.rel is not None]
        if not pts:
            return None
        return all(p.rel <= self.tolerance for p in pts)

    def to_dict(self) -> dict[str, Any]:
        return {"reduction": self.spec.loss, "reduction_source": self.spec.source,
                "tolerance": self.tolerance, "pre_event": [p.to_dict() for p in self.pre],
                "event": [p.to_dict() for p in self.event], "pre_match": self.pre_match,
                "pre_max_rel_diff": self.pre_worst, "event_match": self.event_match,
                "missing": self.missing}


def span(a: int, b: int) -> str:
    return f"step {a}" if a == b else f"steps {a}–{b}"


def _rel(a: float, b: float) -> float:
    if math.isnan(a) and math.isnan(b):
        return 0.0
    if not (math.isfinite(a) and math.isfinite(b)):
        return 0.0 if a == b else math.inf
    return abs(a - b) / max(abs(b), 1e-12)


def compare(logged: Mapping[int, float], replayed: Mapping[int, float], spec: LogSpec,
            ckpt: int, first: int, last: int, noise: float = 0.0) -> LogCheck:
    """Every logged step in (ckpt, last] beside the replay; `replayed` maps iteration → the
    loss the log would print for it (the logged rows' mean)."""
    tol = MATCH_REL + 10 * noise
    steps = sorted(logged)
    pre: list[Point] = []
    event: list[Point] = []
    for i, s in enumerate(steps):
        if s <= ckpt or s > last:
            continue
        prev = steps[i - 1] if i else None
        if spec.loss == "mean":
            lo = prev + 1 if prev is not None else s
        elif spec.loss == "step":
            lo = s
        else:
            continue
        cov = range(lo, s + 1)
        have = [replayed[c] for c in cov if c in replayed]
        val = sum(have) / len(have) if len(have) == len(cov) and lo > ckpt else None
        pt = Point(s, (lo, s), float(logged[s]), val,
                   None if val is None else _rel(val, float(logged[s])))
        (event if s >= first else pre).append(pt)
    missing = None
    if not [p for p in pre if p.rel is not None]:
        if first <= ckpt + 1:
            missing = (f"the checkpoint ({ckpt}) is right before the event: no replayed step "
                       "before it to check against the log")
        elif spec.loss is None and any(ckpt < s < first for s in steps):
            missing = spec.source
        else:
            missing = f"the log has no value at {span(ckpt + 1, first - 1)} to check against"
    return LogCheck(spec, tuple(pre), tuple(event), tol, missing)


def lr_jumps(logged_lr: Mapping[int, float], lo: int, hi: int,
             factor: float = LR_JUMP) -> list[tuple[int, float]]:
    """(step, ratio) where the logged LR changes by `factor` or more between printed points,
    the later point in [lo, hi]. A warmup from 0 (ratio at the very first steps) counts only
    once the LR was already above zero."""
    steps = sorted(logged_lr)
    out = []
    for a, b in zip(steps, steps[1:]):
        if not lo <= b <= hi:
            continue
        x, y = float(logged_lr[a]), float(logged_lr[b])
        if not (math.isfinite(x) and math.isfinite(y)) or x <= 0 or y <= 0:
            continue
        r = y / x
        if (r >= factor or r <= 1 / factor) and not (a <= 1 and r > 1):
            out.append((b, r))
    return out


@dataclass(frozen=True)
class LRCheck:
    """The replay's LR beside the log's, over the replayed steps."""

    compared: int
    worst: float | None
    mismatched: tuple[int, ...]  # logged steps where they differ
    jumps: tuple[tuple[int, float], ...]  # the log's own LR jumps in range

    @property
    def match(self) -> bool | None:
        return None if not self.compared else not self.mismatched

    def to_dict(self) -> dict[str, Any]:
        return {"compared_steps": self.compared, "max_rel_diff": self.worst,
                "mismatched_steps": list(self.mismatched),
                "log_lr_jumps": [[s, r] for s, r in self.jumps]}


def compare_lr(logged_lr: Mapping[int, float] | None, replay_lr: Mapping[int, float],
               offset: int, lo: int, hi: int) -> LRCheck | None:
    """Logged LR at printed step s against the replay's LR of iteration s + offset."""
    if not logged_lr:
        return None
    pairs = [(s, float(logged_lr[s]), replay_lr[s + offset]) for s in sorted(logged_lr)
             if lo <= s <= hi and (s + offset) in replay_lr]
    rels = [(s, abs(r - v) / max(abs(v), 1e-30)) for s, v, r in pairs if math.isfinite(v)]
    bad = tuple(s for s, d in rels if d > LR_REL)
    return LRCheck(len(rels), max((d for _, d in rels), default=None), bad,
                   tuple(lr_jumps(logged_lr, lo, hi)))


def ranges(steps: Sequence[int]) -> str:
    """'221–229, 240' for a sorted list of steps."""
    out: list[str] = []
    for s in sorted(steps):
        if out and isinstance(out[-1], list) and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])  # type: ignore[arg-type]
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in out)  # type: ignore[misc]
