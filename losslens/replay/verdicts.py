"""From replay measurements to a verdict (pure: no torch, unit-testable on numbers).

A verdict is given only from the measurements it claims; when one is missing the verdict is
`inconclusive` and the evidence names the missing piece. Besides the primary verdict, every
other cause the measurements point at is kept as contributing evidence (data outlier, state,
precision, schedule): a `numerics` verdict does not hide that the batch was also an outlier.

- `inconclusive` — replay cannot be trusted (the checkpoint did not load, two runs of one step
  differ beyond the tolerance, the replay departs from the log before the event), a needed
  measurement is missing (no logged value to check against, no lr_at while the log's LR jumps,
  no earlier checkpoint and no outlier), or the spike came back only in part.
- `not_reproducible` — a replay checked against the log before the event (it matches) does not
  show the event: something outside the data and the checkpoint caused it (hardware fault,
  silent data corruption, a loader that served other batches than `get_batch`, an unlogged change).
- `lr_schedule` — the log's learning rate jumps at the event, the replay (following it) spikes,
  and it spikes with other batches too: the schedule, not the data.
- `numerics` — the event reproduces in the run's precision (autocast) and not in fp32.
- `bad_batch` — without the flagged batches the event is gone, and they cause it from every
  earlier checkpoint tried too (PaLM's ablation), or — with no earlier checkpoint, or only
  replays from them that show it in part — they are loss outliers at the checkpoint's weights
  (robust z ≥ 6): the data alone.
- `batch_state_interaction` — without the flagged batches the event is gone, but from an earlier
  checkpoint the same batches are harmless: PaLM's finding (arXiv 2204.02311 §5.1).
- `optimizer_state` — the event happens with other batches in place of the flagged ones (or the
  flagged batches are the very batches that trained harmlessly before), and Adam's measurements
  show it: the update RMS/lr or the share of coordinates whose gradient is far above sqrt(v)
  jumps (Molybog et al., arXiv 2304.09871).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

VERDICTS = ("bad_batch", "batch_state_interaction", "optimizer_state", "lr_schedule",
            "numerics", "not_reproducible", "inconclusive")

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
    preflight_noise: float | None = None  # relative difference of two runs of one step
    preflight_bitwise: bool | None = None
    log_match: bool | None = None  # replay agrees with the log before the event
    log_mismatch: float | None = None  # worst relative difference before the event
    replay: SpikeCheck | None = None
    substitute: SpikeCheck | None = None
    ablations: list[tuple[int, SpikeCheck]] = field(default_factory=list)  # earlier checkpoints
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
    # checked against the log
    log_missing: str | None = None  # why there is nothing before the event to compare
    log_compared: int = 0
    event_log_match: bool | None = None  # replay gives what the log printed at the event
    event_logged: float | None = None  # the logged and replayed values at the event's peak
    event_replayed: float | None = None
    log_reduction: str | None = None
    # the learning rate
    lr_jump: tuple[int, float] | None = None  # the log's LR jumps (step, ratio) in range
    has_lr_at: bool = True
    lr_match: bool | None = None  # replay's LR agrees with the log's
    lr_mismatch_steps: str | None = None
    # trust in the replay itself
    load_ok: bool | None = None
    load_note: str | None = None
    param_noise: float | None = None  # relative parameter difference of two runs of one step
    reruns: tuple[int, int] | None = None  # (runs showing the event, runs)
    second_device: tuple[str, bool | None] | None = None  # (device, the event shows there)
    # data counterfactual validity
    substitute_same: bool | None = None  # the other batches equal the flagged ones
    flagged_seen_before: str | None = None  # steps before the event with the same batches
    # where the replay first departs from the log: (logged step, the first replayed step)
    log_departs_at: tuple[int, int] | None = None
    counterfactuals_skipped: bool = False  # not run: the replay is not trusted (`untrusted`)
    batch_unrepeatable: int | None = None  # a step whose get_batch gave other tensors when called again
    budget_stop: Any = None  # budget.BudgetStop: --budget ended (or skipped) this event's probes
    # the checkpoint replayed as the state after c + shift: (shift, matches the log or None,
    # logged steps compared, worst relative difference), when the replay departs at once
    numbering: list[tuple[int, bool | None, int, float | None]] = field(default_factory=list)
    # an LR jump before the replayed range: (iteration, ratio, checkpoint, the flagged steps
    # replayed from that checkpoint without the jump, against the level before it)
    lr_without_jump: tuple[int, float, int, SpikeCheck] | None = None
    ablations_skipped: list[int] = field(default_factory=list)  # over ABLATION_MAX_LEVEL
    cpu_autocast: tuple[str, int] | None = None  # (dtype, torch threads) of a CPU autocast replay


@dataclass
class Decision:
    verdict: str
    evidence: list[str]
    cause: str | None = None  # "schedule", "data", "state", "precision", "optimizer", None
    contributing: list[str] = field(default_factory=list)

    def __iter__(self):  # verdict, evidence = decide(f)
        return iter((self.verdict, self.evidence))


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return format(x, ".3g" if abs(x) >= 1e4 else spec)


def _value(x: float | None) -> str:
    """A logged or replayed value: NaN and inf by name (they are the event), n/a when absent."""
    if x is None:
        return "n/a"
    if not math.isfinite(x):
        return "NaN" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return _fmt(x, ".4g")


def _ratio(r: float) -> str:
    return f"×{r:.3g}" if r >= 1 else f"×{r:.3g} (÷{1 / r:.3g})"


def untrusted(f: Facts) -> bool:
    """True when the verdict is `inconclusive` whatever the counterfactuals would show: the
    checkpoint did not load, the replay is too noisy, its LR is not the run's, or it departs
    from the log before the event. Replay then skips the counterfactuals (their cost is several
    replays of the event, and they would test a replay that is not the run)."""
    if f.checkpoint is None or f.load_ok is False or f.log_match is False or \
            f.batch_unrepeatable is not None:
        return True
    if f.preflight_noise is not None and max(f.preflight_noise, f.param_noise or 0.0) > MAX_NOISE:
        return True
    return _schedule(f, [], Decision("inconclusive", [])) == "stop"


def decide(f: Facts) -> Decision:
    """The verdict, its evidence (one sentence per measurement) and contributing causes."""
    d = _decide(f)
    if f.budget_stop is not None:  # never a verdict from probes cut short
        so_far = d.verdict
        d.verdict, d.cause = "inconclusive", None
        d.evidence.append(f.budget_stop.sentence() + (
            f"; the measurements so far point at {so_far}" if so_far != "inconclusive" else ""))
    if f.counterfactuals_skipped:
        d.evidence.append("counterfactuals not run (re-runs, other batches, earlier "
                          "checkpoints): they would test a replay that is not the run")
    return d


def _departure(f: Facts) -> str:
    """Where the replay first departs from the log, and what that points at."""
    if f.log_departs_at is None:
        return ""
    text = _departure_where(f)
    if f.cpu_autocast is not None:
        dtype, n = f.cpu_autocast
        text += (f"; on CPU under {dtype} autocast the thread count changes the rounding: this "
                 f"replay ran on {n} thread(s) — give the trainer's with --threads")
    return text


def _departure_where(f: Facts) -> str:
    assert f.log_departs_at is not None
    step, first = f.log_departs_at
    c = f.checkpoint
    if step <= first and any(t[1] for t in f.numbering):
        return f"; it departs at the first logged step replayed ({step})" + _numbering(f)
    if step <= first:
        return (f"; it departs at the first logged step replayed ({step}): the checkpoint's "
                f"state or the batches after it are not the run's — checkpoint {c} must be the "
                f"state after iteration {c} and get_batch({c} + 1) the batch trained next (a "
                "loop that saves at the top of iteration N, as nanoGPT's, holds the state after "
                "N − 1)" + _numbering(f))
    return (f"; it matches the log through the logged steps before {step} and departs there: "
            "the replay drifts — check lr_at, grad_clip, grad_accum, the optimizer's settings, "
            f"or get_batch at {step}")


def _numbering(f: Facts) -> str:
    """What loading the checkpoint as its neighbours' state showed (numbering.try_shifts)."""
    c = f.checkpoint
    hit = next((t for t in f.numbering if t[1]), None)
    if hit is not None:
        d, _, k, worst = hit
        n = c + d
        why = ("a loop that saves at the top of iteration N, as nanoGPT's" if d < 0 else
               "a loop that saves after the update and before counting it")
        return (f". Replayed as the state after iteration {n}, checkpoint {c} matches the log "
                f"at {k} logged step(s) (worst relative difference {_fmt(worst)}): the file the "
                f"plug-in loads for {c} holds the state after {n} ({why}) — fix the plug-in "
                f"(checkpoints() returns {n} for that file and load_checkpoint({n}) loads it) "
                "and replay again")
    tried = [c + t[0] for t in f.numbering if t[1] is False]
    if tried:
        return (f". Replayed as the state after iteration {' or '.join(map(str, tried))} it "
                "departs too: the checkpoint's numbering is not the cause — look at get_batch "
                "(the batch of each iteration) and the step's settings")
    return ""


def _decide(f: Facts) -> Decision:
    ev: list[str] = list(f.notes)
    d = Decision("inconclusive", ev)
    if f.checkpoint is None:
        if not ev:
            ev.append("no checkpoint to replay from")
        return d
    if f.load_ok is False:
        ev.append(f.load_note or f"load_checkpoint({f.checkpoint}) did not restore the weights")
        return d
    if f.preflight_noise is not None:
        if f.preflight_bitwise:
            ev.append("preflight: two runs of the first step are bitwise equal")
        else:
            ev.append(f"preflight: two runs of the first step differ by {_fmt(f.preflight_noise)} "
                      f"(relative loss) and {_fmt(f.param_noise)} (relative parameter update); "
                      "that is the tolerance")
        if max(f.preflight_noise, f.param_noise or 0.0) > MAX_NOISE:
            ev.append(f"replay is not deterministic enough to judge (> {MAX_NOISE:g})")
            return d
    if f.batch_unrepeatable is not None:
        ev.append(f"get_batch({f.batch_unrepeatable}) gave other tensors when called again: it "
                  "must be deterministic random access (seed any shuffle or augmentation from "
                  "the step); replay cannot tell which batch the run trained on")
        return d
    schedule = _schedule(f, ev, d)
    if schedule == "stop":
        return d
    if f.log_match is False:
        ev.append(f"replay departs from the log before the event (worst relative difference "
                  f"{_fmt(f.log_mismatch)}): the plug-in does not reproduce the run — check "
                  "get_batch, lr_at, grad_clip and the checkpoint" + _departure(f))
        return d
    if f.log_match:
        ev.append(f"the replay matches the log at {f.log_compared} logged step(s) before the "
                  f"event (worst relative difference {_fmt(f.log_mismatch)}; "
                  f"{f.log_reduction or 'per step'})")
    r = f.replay
    if r is not None:
        ev.append(_describe(f"replay from checkpoint {f.checkpoint}", r))
    if f.event_log_match is not None:
        ev.append(f"at the event the log printed {_value(f.event_logged)}, the replay gives "
                  f"{_value(f.event_replayed)}: "
                  + ("the same" if f.event_log_match else "different"))
    if f.lr_without_jump is not None:
        j, ratio, c, chk = f.lr_without_jump
        ev.append(f"the log's LR jumps {_ratio(ratio)} at {j}, before the replayed steps; "
                  + _describe(f"replayed from checkpoint {c} with lr_at ÷{ratio:.3g} from {j} "
                              "(the schedule without the jump), against the loss before it",
                              chk))
        if chk.shows is False and (r is None or r.shows is not True):
            ev.append("without the LR jump the run does not reach the event: the schedule")
            d.verdict, d.cause = "lr_schedule", "schedule"
            return d
        if chk.shows is False:  # a spike at this level: the counterfactuals below decide
            d.contributing.append(f"schedule: without the LR jump at {j} the event is gone")
        else:
            ev.append("without the LR jump the event comes back" + (
                " in part" if chk.shows is None else "") + ": not the schedule alone")
    if f.event_log_match and r is not None and r.shows is False and math.isfinite(r.z) \
            and r.z < WEAK_Z and not r.nonfinite:
        # the log's value is reproduced, but it is within the replay's own step-to-step noise:
        # calling it reproduced (or its re-runs "transient") would explain a non-event
        ev.append(f"the replay gives the logged values, but the flagged steps do not stand out "
                  f"from the replayed steps just before them (z = {_fmt(r.z, '.1f')} < "
                  f"{WEAK_Z:g}): no spike at this level to attribute (the detector measured it "
                  "against another level)")
        return d
    shows = True if f.event_log_match else (r.shows if r is not None else None)
    if shows is None:
        return d
    if not shows:
        if f.log_match:
            d.verdict = "not_reproducible"
            return d
        ev.append((f.log_missing or "no logged values to check the replay against before the "
                   "event") + ": a replay that does not spike may not be the run")
        return d
    if f.reruns is not None:
        k, n = f.reruns
        ev.append(f"the flagged steps re-run {n} times from the same state: the event shows in "
                  f"{k} of {n}" + (" (persistent)" if k == n else " (transient)"))
        if k != n:
            ev.append("a transient event: the replay itself varies (hardware or a "
                      "nondeterministic kernel)")
            return d
    if f.second_device is not None:
        dev, there = f.second_device
        ev.append(f"the replay on a second device ({dev}): " + {
            True: "the event shows there too (persistent)", None: "the event shows in part",
            False: "no event (transient: tied to the first device)"}[there])
        if there is False:
            return d
    _reproduced(f, ev, d, schedule == "jump")
    return d


def _schedule(f: Facts, ev: list[str], d: Decision) -> str | None:
    """'stop' when the LR makes the replay unfaithful, 'jump' when the log's LR jumps and the
    replay follows it, else None."""
    if f.lr_jump is not None:
        step, r = f.lr_jump
        jump = f"the log's LR jumps {_ratio(r)} at {step}"
        if not f.has_lr_at:
            ev.append(f"the plug-in gives no lr_at and {jump}: schedule (replay kept the "
                      "checkpoint's LR; give lr_at(step) to replay it)")
            d.cause = "schedule"
            return "stop"
        if f.lr_match is False:
            ev.append(f"lr_at does not follow the log's LR (differs at {f.lr_mismatch_steps}) "
                      f"and {jump}: schedule")
            d.cause = "schedule"
            return "stop"
        ev.append(f"{jump}; lr_at follows it")
        d.contributing.append(f"schedule: {jump}")
        return "jump"
    if f.lr_match is False:
        ev.append(("the plug-in gives no lr_at: replay kept the checkpoint's LR, " if not f.has_lr_at
                   else "lr_at ") + f"which differs from the log's at {f.lr_mismatch_steps}")
        return "stop"
    return None


def _reproduced(f: Facts, ev: list[str], d: Decision, lr_jump: bool) -> None:
    numerics = False
    if f.fp32 is not None:
        ev.append(_describe("the same steps in fp32", f.fp32))
        if f.fp32.shows is False:
            where = (f"; first non-finite output: {f.first_nonfinite_module}"
                     if f.first_nonfinite_module else "")
            ev.append(f"the event needs the run's precision ({f.run_dtype}){where}")
            numerics = True
        elif f.fp32.shows is None:
            d.contributing.append(f"precision: in fp32 the event comes back only in part "
                                  f"({f.run_dtype} makes it worse)")
    data = _data(f, ev, d, lr_jump)
    if numerics:
        d.verdict, d.cause = "numerics", "precision"
        if data not in (None, "inconclusive"):
            d.contributing.append(f"data/state counterfactuals alone would say {data}")
    elif data is not None:
        d.verdict = data
    for c in d.contributing:
        ev.append("contributing — " + c)


def _data(f: Facts, ev: list[str], d: Decision, lr_jump: bool) -> str | None:
    s = f.substitute
    if s is None and not f.substitute_same:
        ev.append(_static(f))
        ev.append("no counterfactual replay: the cause cannot be attributed")
        return "inconclusive"
    if f.substitute_same or s is None:
        ev.append("the other batches are identical to the flagged ones: no data counterfactual")
        if f.flagged_seen_before:
            ev.append(f"the flagged batches are the same as those of {f.flagged_seen_before}, "
                      "which trained without the event: the data alone cannot cause it")
            return _state_driven(f, ev, d, lr_jump)
        return "inconclusive"
    ev.append(_describe("other batches in place of the flagged ones", s))
    if s.shows is None:
        ev.append(_static(f))
        return "inconclusive"
    if s.shows:
        return _state_driven(f, ev, d, lr_jump)
    ev.append(_static(f))
    outlier = (f.flagged_loss_z or 0) >= OUTLIER_Z
    if outlier:
        d.contributing.append(f"data: the flagged batches are loss outliers at the checkpoint's "
                              f"weights (z = {_fmt(f.flagged_loss_z, '.1f')})")
    if lr_jump:
        d.contributing.append("data: without the flagged batches the event is gone")
    for c, chk in f.ablations:
        ev.append(_describe(f"the flagged batches from checkpoint {c}", chk))
    known = [(c, chk.shows) for c, chk in f.ablations if chk.shows is not None]
    if not f.ablations:
        ev.append("no earlier checkpoint to tell a bad batch from a batch-state interaction "
                  "(PaLM's ablation)" + (
                      f": checkpoint(s) {_steps(f.ablations_skipped)} not tried — their logged "
                      "loss is over 1.5× the pre-event level (not a comparably trained state)"
                      if f.ablations_skipped else ""))
        if outlier:
            d.cause = "data"
            return "bad_batch"
        ev.append(f"and the flagged batches are not loss outliers at the checkpoint's weights "
                  f"(z = {_fmt(f.flagged_loss_z, '.1f')} < {OUTLIER_Z:g})")
        return "inconclusive"
    if not known:  # every ablation in part: no better than none
        if outlier:
            ev.append("the earlier checkpoints' replays show the event only in part; the "
                      "flagged batches are loss outliers at the checkpoint's weights")
            d.cause = "data"
            return "bad_batch"
        return "inconclusive"
    if all(v for _, v in known):
        d.cause = "data"
        return "bad_batch"
    harmless = [c for c, v in known if not v]
    spiky = [c for c, v in known if v]
    if spiky:
        ev.append(f"the same batches spike from checkpoint(s) {', '.join(map(str, spiky))} and "
                  f"are harmless from {', '.join(map(str, harmless))}: they hurt only some states")
    d.cause = "state"
    if outlier:
        d.contributing.append("state: from an earlier checkpoint the same batches are harmless")
    return "batch_state_interaction"


def _state_driven(f: Facts, ev: list[str], d: Decision, lr_jump: bool) -> str:
    earlier = f.lr_without_jump is not None and f.lr_without_jump[3].shows is False
    if lr_jump or earlier:
        d.cause = "schedule"
        d.contributing[:] = [c for c in d.contributing if not c.startswith("schedule")]
        ev.append("the event happens with any batches at the LR the log shows: the schedule"
                  if lr_jump else "the event happens with any batches after the LR jump, and "
                  "not without it: the schedule")
        return "lr_schedule"
    jump_u = f.adam_update_jump is not None and f.adam_update_jump >= UPDATE_JUMP
    jump_s = (f.adam_share_jump is not None and f.adam_share_jump >= SHARE_JUMP
              and (f.adam_share_peak or 0) >= SHARE_MIN)
    ev.append(f"optimizer: update RMS/lr ×{_fmt(f.adam_update_jump)}, share of |g| ≫ sqrt(v) "
              f"×{_fmt(f.adam_share_jump)} (peak {_fmt(f.adam_share_peak)}) against the "
              "steps before")
    if jump_u or jump_s:
        d.cause = "optimizer"
        return "optimizer_state"
    ev.append("the event comes from the state at the checkpoint, not the flagged batches, "
              "but the optimizer's measurements do not single it out")
    d.cause = "state"
    return "inconclusive"


def _steps(steps: list[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]} … {steps[-1]}"


def _static(f: Facts) -> str:
    return (f"at the checkpoint's weights the flagged batches have loss z = "
            f"{_fmt(f.flagged_loss_z, '.1f')} (grad-norm z = {_fmt(f.flagged_grad_z, '.1f')}) "
            f"against neighbouring batches; top sample loss z = {_fmt(f.top_sample_z, '.1f')}")


def _describe(what: str, c: SpikeCheck) -> str:
    if c.nonfinite:
        return f"{what}: non-finite values at the flagged steps"
    if c.nonfinite_event and c.shows is False:
        return f"{what}: all values finite (peak {_fmt(c.peak, '.4g')})"
    verb = {True: "event reproduced", False: "no event", None: "event in part"}[c.shows]
    return (f"{what}: {verb} — peak {_fmt(c.peak, '.4g')} vs level "
            f"{_fmt(c.level, '.4g')} (×{_fmt(c.ratio, '.2f')}, z = {_fmt(c.z, '.1f')})")
