"""From replay measurements to a verdict (pure: no torch, unit-testable on numbers).

Verdicts (docs/replay.md), in the order they are decided:

- `inconclusive` — replay cannot be trusted (two runs of the same step differ beyond the
  tolerance, the replay departs from the log before the event, no checkpoint before it), or
  the spike came back only in part.
- `not_reproducible` — a faithful replay (deterministic, matching the log where the log has
  values) does not show the event: something outside the data and the checkpoint caused it
  (hardware fault, silent data corruption, a data loader that served other batches than
  `get_batch` does, an unlogged change).
- `numerics` — the event reproduces in the run's precision (autocast) and not in fp32.
- `bad_batch` — without the flagged batches the event is gone, and the flagged batches cause
  it from an earlier checkpoint too: the data alone.
- `batch_state_interaction` — without the flagged batches the event is gone, but from an
  earlier checkpoint the same batches are harmless: PaLM's finding (arXiv 2204.02311 §5.1).
- `optimizer_state` — the event happens with other batches in place of the flagged ones, and
  Adam's measurements show it: the update RMS/lr or the share of coordinates whose gradient is
  far above sqrt(v) jumps (Molybog et al., arXiv 2304.09871).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

VERDICTS = ("bad_batch", "batch_state_interaction", "optimizer_state", "numerics",
            "not_reproducible", "inconclusive")

#: Replayed excess (ratio - 1) must reach this share of the logged excess (or of its log) to
#: count as the spike coming back, and stay under WEAK_SHARE to count as not coming back.
STRONG_SHARE, WEAK_SHARE = 0.5, 0.2
#: Spikes of this ratio or more (orders of magnitude: an Adam instability) compare the
#: shares in log space: the replayed log-ratio against the logged log-ratio.
LOG_SPACE_RATIO = 10.0
#: ... and the replayed peak must stand this many robust scales above the level.
STRONG_Z, WEAK_Z = 5.0, 3.0
#: Without a logged magnitude (nonfinite events, JSON without one) a spike is a ratio of:
DEFAULT_RATIO = 1.3
#: Preflight: two runs of one step may differ by this relative loss difference at most.
MAX_NOISE = 1e-2
#: Replayed and logged losses agree when within this relative difference (+ tolerance).
LOG_MATCH_REL = 1e-3
#: A flagged batch is an outlier at the checkpoint's weights above this robust z.
OUTLIER_Z = 6.0
#: Adam indicators "jump": update RMS/lr ×2, or outlier share ×10 (and at least 1e-4).
UPDATE_JUMP, SHARE_JUMP, SHARE_MIN = 2.0, 10.0, 1e-4


@dataclass(frozen=True)
class SpikeCheck:
    """Did a run (replay or counterfactual) show the event at the flagged steps?"""

    peak: float  # highest finite value at the flagged steps
    level: float  # the same quantity on neighbouring batches at the pre-event state
    scale: float
    ratio: float
    z: float
    nonfinite: bool
    shows: bool | None  # True, False, or None (in part)
    nonfinite_event: bool = False  # judged on finiteness alone

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_spike(values: Sequence[float], level: float, scale: float,
                magnitude: float | None = None, nonfinite_event: bool = False) -> SpikeCheck:
    """Compare the flagged-step values of a run with its level (median of neighbours)."""
    vals = [float(v) for v in values]
    nonfinite = any(not math.isfinite(v) for v in vals)
    fin = [v for v in vals if math.isfinite(v)]
    peak = max(fin) if fin else math.nan
    ratio = peak / level if fin and level > 0 else math.nan
    z = (peak - level) / scale if fin and scale > 0 else math.nan
    if nonfinite:
        shows: bool | None = True
    elif nonfinite_event or not fin or not math.isfinite(level):
        shows = False if fin else None
    else:
        want = magnitude if magnitude and magnitude > 1 else DEFAULT_RATIO
        if want >= LOG_SPACE_RATIO:  # ×100 of a logged ×1e4 is the same event
            strong, weak = want ** STRONG_SHARE, want ** WEAK_SHARE
        else:
            strong, weak = 1 + STRONG_SHARE * (want - 1), 1 + WEAK_SHARE * (want - 1)
        if level <= 0 or not math.isfinite(ratio):  # additive losses: z alone
            shows = True if z >= STRONG_Z else False if z < WEAK_Z else None
        elif ratio >= strong and z >= STRONG_Z:
            shows = True
        elif ratio < weak or z < WEAK_Z:
            shows = False
        else:
            shows = None
    return SpikeCheck(peak, level, scale, ratio, z, nonfinite, shows, nonfinite_event)


@dataclass
class Facts:
    """The measurements a verdict rests on (summaries of the probes)."""

    checkpoint: int | None
    preflight_noise: float | None = None  # relative loss difference of two runs of one step
    preflight_bitwise: bool | None = None
    log_match: bool | None = None  # replay agrees with the log before the event
    log_mismatch: float | None = None  # worst relative difference before the event
    replay: SpikeCheck | None = None
    substitute: SpikeCheck | None = None
    earlier: SpikeCheck | None = None
    earlier_checkpoint: int | None = None
    fp32: SpikeCheck | None = None
    run_dtype: str | None = None
    first_nonfinite_module: str | None = None
    flagged_loss_z: float | None = None  # batch-level, at the checkpoint's weights
    flagged_grad_z: float | None = None
    top_sample_z: float | None = None
    adam_update_jump: float | None = None  # flagged max / pre-event median of update RMS/lr
    adam_share_jump: float | None = None
    adam_share_peak: float | None = None
    notes: list[str] = field(default_factory=list)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, ".3g" if abs(x) >= 1e4 else spec)


def decide(f: Facts) -> tuple[str, list[str]]:
    """The verdict and its evidence (one sentence per measurement that decided it)."""
    ev: list[str] = list(f.notes)
    if f.checkpoint is None:
        return "inconclusive", ev or ["no checkpoint to replay from"]
    if f.preflight_noise is not None:
        if f.preflight_bitwise:
            ev.append("preflight: two runs of the first step are bitwise equal")
        else:
            ev.append(f"preflight: two runs of the first step differ by {_fmt(f.preflight_noise)} "
                      "(relative loss); that is the tolerance")
        if f.preflight_noise > MAX_NOISE:
            ev.append(f"replay is not deterministic enough to judge (> {MAX_NOISE:g})")
            return "inconclusive", ev
    if f.log_match is False:
        ev.append(f"replay departs from the log before the event (worst relative difference "
                  f"{_fmt(f.log_mismatch)}): the plug-in does not reproduce the run — check "
                  "get_batch, lr_at, grad_clip and the checkpoint")
        return "inconclusive", ev
    r = f.replay
    if r is None or r.shows is None:
        if r is not None:
            ev.append(_describe(f"replay from checkpoint {f.checkpoint}", r))
        return "inconclusive", ev
    ev.append(_describe("replay from checkpoint " + str(f.checkpoint), r))
    if not r.shows:
        ev.append("the log matches the replay before the event" if f.log_match else
                  "no logged values to check the replay against before the event")
        return "not_reproducible", ev
    return _reproduced(f, ev)


def _reproduced(f: Facts, ev: list[str]) -> tuple[str, list[str]]:
    if f.fp32 is not None:
        ev.append(_describe("the same steps in fp32", f.fp32))
        if not f.fp32.shows:
            where = (f"; first non-finite output: {f.first_nonfinite_module}"
                     if f.first_nonfinite_module else "")
            ev.append(f"the event needs the run's precision ({f.run_dtype}){where}")
            return "numerics", ev
    s = f.substitute
    if s is None or s.shows is None:
        if s is not None:
            ev.append(_describe("other batches in place of the flagged ones", s))
        ev.append(_static(f))
        return "inconclusive", ev
    ev.append(_describe("other batches in place of the flagged ones", s))
    if s.shows:
        return _state_driven(f, ev)
    ev.append(_static(f))
    e = f.earlier
    if e is None or e.shows is None:
        if e is None:
            ev.append("no earlier checkpoint to tell a bad batch from a batch-state "
                      "interaction (PaLM's ablation)")
        else:
            ev.append(_describe(f"the flagged batches from checkpoint {f.earlier_checkpoint}", e))
        strong = (f.flagged_loss_z or 0) >= OUTLIER_Z or (f.flagged_grad_z or 0) >= OUTLIER_Z
        return ("bad_batch" if strong and e is None else "inconclusive"), ev
    ev.append(_describe(f"the flagged batches from checkpoint {f.earlier_checkpoint}", e))
    return ("bad_batch" if e.shows else "batch_state_interaction"), ev


def _state_driven(f: Facts, ev: list[str]) -> tuple[str, list[str]]:
    jump_u = f.adam_update_jump is not None and f.adam_update_jump >= UPDATE_JUMP
    jump_s = (f.adam_share_jump is not None and f.adam_share_jump >= SHARE_JUMP
              and (f.adam_share_peak or 0) >= SHARE_MIN)
    ev.append(f"Adam: update RMS/lr ×{_fmt(f.adam_update_jump)}, share of |g| ≫ sqrt(v) "
              f"×{_fmt(f.adam_share_jump)} (peak {_fmt(f.adam_share_peak)}) against the "
              "steps before")
    if jump_u or jump_s:
        return "optimizer_state", ev
    ev.append("the event comes from the state at the checkpoint, not the flagged batches, "
              "but Adam's measurements do not single out the optimizer")
    return "inconclusive", ev


def _static(f: Facts) -> str:
    return (f"at the checkpoint's weights the flagged batches have loss z = "
            f"{_fmt(f.flagged_loss_z, '.1f')} and grad-norm z = {_fmt(f.flagged_grad_z, '.1f')} "
            f"against neighbouring batches; top sample z = {_fmt(f.top_sample_z, '.1f')}")


def _describe(what: str, c: SpikeCheck) -> str:
    if c.nonfinite:
        return f"{what}: non-finite values at the flagged steps"
    if c.nonfinite_event and c.shows is False:
        return f"{what}: all values finite (peak {_fmt(c.peak, '.4g')})"
    verb = {True: "event reproduced", False: "no event", None: "event in part"}[c.shows]
    return (f"{what}: {verb} — peak {_fmt(c.peak, '.4g')} vs level "
            f"{_fmt(c.level, '.4g')} (×{_fmt(c.ratio, '.2f')}, z = {_fmt(c.z, '.1f')})")
