"""The probes of one flagged event (docs/replay.md), run in order on a `Session`.

0. Preflight — the first iteration after the checkpoint, twice: bitwise equal, or the measured
   difference becomes the tolerance.
1. Static scan at the checkpoint's weights, no updates: per-sample and per-batch loss and
   gradient norm of the flagged batches against neighbouring batches (robust z-scores); the
   samples to look at are the flagged rows with the highest z.
2. Dynamic replay from the checkpoint through the event: loss, grad norm, Adam update RMS/lr,
   share of coordinates with |g| far above sqrt(v), attention-logit and activation abs-max.
   The event "shows" when the flagged steps stand out from the level — the same quantity on
   neighbouring batches (the iterations right after the event: unseen in every run) evaluated
   at the state just before the first flagged step.
3. Counterfactuals, when the event shows: other batches in place of the flagged ones; the same
   batch sequence from an earlier checkpoint (PaLM's ablation); the flagged steps in fp32
   from the pre-event state against the run's precision.

Steps: checkpoint c is the state after c iterations; iteration s trains on `get_batch(s)`; the
logged loss of iteration s is measured before its update — as replay measures it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..events import Event
from . import stats
from .engine import Session, StepRecord
from .persample import per_sample
from .plugin import PluginError
from .targets import Target, flagged_range
from .verdicts import LOG_MATCH_REL, Facts, check_spike, decide

#: (event id, stage, done, total)
Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class Options:
    """Limits of one replay; defaults suit a single-GPU model."""

    max_steps: int = 256  # checkpoint → last flagged step, at most
    max_flagged: int = 32
    neighbours: int = 8
    top_samples: int = 8
    counterfactuals: bool = True


@dataclass
class EventResult:
    event: Event
    verdict: str
    evidence: list[str]
    checkpoint: int | None
    earlier_checkpoint: int | None
    flagged: tuple[int, int]
    replayed: tuple[int, int] | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict(), "verdict": self.verdict,
                "evidence": self.evidence, "checkpoint": self.checkpoint,
                "earlier_checkpoint": self.earlier_checkpoint,
                "flagged_steps": list(self.flagged),
                "replayed_steps": list(self.replayed) if self.replayed else None,
                "samples": self.samples, "measurements": self.measurements,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


@dataclass
class RunOut:
    records: list[StepRecord]
    level: float = math.nan
    scale: float = math.nan
    snapshot: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None


def _noop(*_a: Any) -> None:
    return None


class EventProbe:
    """All probes of one event; `run()` gives its EventResult."""

    def __init__(self, session: Session, target: Target, checkpoints: Sequence[int],
                 opts: Options, progress: Progress | None = None) -> None:
        self.s, self.t, self.o = session, target, opts
        self.ev = target.event
        self.first, self.last = flagged_range(self.ev, opts.max_flagged)
        # fp16 overflows show in the gradient; non-finite events in either
        self.metric = ("grad_norm" if target.role == "grad_norm" or self.ev.kind == "overflow"
                       else "loss")
        self.nonfinite_event = self.ev.kind in ("nonfinite", "overflow")
        before = [c for c in checkpoints if c <= self.first - 1]
        self.ckpt = max(before) if before else None
        earlier = [c for c in checkpoints if self.ckpt is not None and c < self.ckpt]
        self.earlier = max(earlier) if earlier else None
        self.progress = progress or _noop
        self.timings: dict[str, float] = {}
        self.m: dict[str, Any] = {}

    # ---- driver

    def run(self) -> EventResult:
        facts = Facts(checkpoint=self.ckpt)
        if self.ckpt is None:
            facts.notes.append(f"no checkpoint before step {self.first}: nothing to replay from")
            return self._result(facts, [], None)
        if self.last - self.ckpt > self.o.max_steps:
            facts.checkpoint = None
            facts.notes.append(f"the latest checkpoint before the event ({self.ckpt}) is "
                               f"{self.last - self.ckpt} steps before its end; raise "
                               f"--max-steps (now {self.o.max_steps}) to replay that far")
            return self._result(facts, [], None)
        if self.s.optimizer is None:
            facts.notes.append("the plug-in has no build_optimizer: the steps are evaluated at "
                               "the checkpoint's weights without updates")
        self.neighbours = self._neighbours()
        main = self._timed("replay", self._replay)
        self._facts_from_replay(facts, main)
        static_samples = self._timed("static", self._static, facts)
        if facts.replay is not None and facts.replay.shows and self.o.counterfactuals:
            self._counterfactuals(facts, main)
        self.m["cost"] = self._cost(main)
        verdict_args = decide(facts)
        return self._result(facts, static_samples, verdict_args)

    def _timed(self, name: str, fn: Callable, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def _result(self, facts: Facts, samples: list, decided: tuple | None) -> EventResult:
        verdict, evidence = decided if decided else decide(facts)
        replayed = (self.ckpt + 1, self.last) if self.m.get("replay") else None
        return EventResult(self.ev, verdict, evidence, facts.checkpoint, self.earlier,
                           (self.first, self.last), replayed, samples, self.m, self.timings)

    def _cost(self, main: RunOut, repeats: int = 3) -> dict[str, Any]:
        """Replay's cost against a plain forward+backward of the first flagged batch (the
        fastest of `repeats`, at the current weights, no update): per replayed step, and the
        whole event in forward+backward units."""
        self.s.evaluate([self.first])  # warm-up (allocations, caches)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.s.evaluate([self.first])
            times.append(time.perf_counter() - t0)
        fb = min(times)
        step = stats.median_or_nan(r.seconds for r in main.records)
        total = sum(self.timings.values())
        return {"forward_backward_s": fb, "replay_step_s": step,
                "replay_step_ratio": step / fb if fb > 0 else None,
                "event_s": total, "event_forward_backward_units": total / fb if fb > 0 else None}

    # ---- batches

    def _neighbours(self) -> list[int]:
        """The K iterations after the event (unseen at every state replay visits); the K
        before the checkpoint when the data ends there."""
        k = self.o.neighbours
        after = list(range(self.last + 1, self.last + 1 + k))
        try:
            for s in after:
                self.s.batch(s)
            return after
        except PluginError:
            lo = max(1, self.ckpt - k + 1)
            return list(range(lo, self.ckpt + 1))

    def _substitutes(self, n: int) -> list[int]:
        k = self.o.neighbours
        steps = list(range(self.last + 1 + k, self.last + 1 + k + n))
        try:
            for s in steps:
                self.s.batch(s)
            return steps
        except PluginError:
            return [self.neighbours[i % len(self.neighbours)] for i in range(n)]

    # ---- runs

    def _sequence(self, ckpt: int, plan: list[tuple[int, int]], stage: str,
                  precision: bool = True, preflight: bool = False,
                  snapshot: bool = False) -> RunOut:
        """Load `ckpt`, train on `plan` [(iteration, batch step)], measuring each step; the
        level is evaluated on the neighbours just before iteration `first`."""
        s = self.s
        s.load(ckpt)
        out = RunOut([])
        if preflight:
            a = s.train_step(*plan[0], precision=precision)
            after = [p.detach().clone() for p in s.params]
            s.load(ckpt)
        for i, (step, bstep) in enumerate(plan):
            if step == self.first:
                out.level, out.scale = self._level(precision)
                out.snapshot = s.snapshot() if snapshot else None
            out.records.append(s.train_step(step, bstep, precision=precision))
            if preflight and i == 0:
                out.preflight = _compare(a, out.records[0], after, s.params)
            self.progress(self.ev.id, stage, i + 1, len(plan))
        return out

    def _level(self, precision: bool) -> tuple[float, float]:
        pairs = self.s.evaluate(self.neighbours, precision)
        vals = [p[1] if self.metric == "grad_norm" else p[0] for p in pairs]
        return stats.level_and_scale(vals)

    def _values(self, records: list[StepRecord]) -> list[float]:
        flagged = [r for r in records if self.first <= r.step <= self.last]
        out = [getattr(r, self.metric) for r in flagged]
        if self.nonfinite_event:  # a NaN loss or a NaN gradient both reproduce it
            out += [r.loss for r in flagged] + [r.grad_norm for r in flagged]
        return out

    def _replay(self) -> RunOut:
        plan = [(i, i) for i in range(self.ckpt + 1, self.last + 1)]
        return self._sequence(self.ckpt, plan, "replay", preflight=True,
                              snapshot=self.s.dtype is not None and self.o.counterfactuals)

    def _facts_from_replay(self, facts: Facts, main: RunOut) -> None:
        pf = main.preflight or {}
        facts.preflight_noise, facts.preflight_bitwise = pf.get("loss_rel_diff"), pf.get("bitwise")
        noise = facts.preflight_noise or 0.0
        scale = max(main.scale, noise * abs(main.level)) if math.isfinite(main.scale) else main.scale
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        facts.replay = check_spike(self._values(main.records), main.level, scale, mag,
                                   nonfinite_event=self.nonfinite_event)
        self._log_match(facts, main.records, noise)
        self._adam(facts, main.records)
        first_bad = next((r.first_nonfinite_module for r in main.records
                          if r.first_nonfinite_module), None)
        facts.first_nonfinite_module = first_bad
        self.m["preflight"] = pf
        if self.t.restart_hint is not None:
            self.m["skip_plan_restart_from_step"] = self.t.restart_hint
        self.m["level"] = {"metric": self.metric, "value": main.level, "scale": scale,
                           "neighbour_steps": self.neighbours}
        self.m["replay"] = {"check": facts.replay.to_dict(),
                            "steps": [r.to_dict() for r in main.records]}
        self._main = main

    def _log_match(self, facts: Facts, records: list[StepRecord], noise: float) -> None:
        logged = self.t.logged_loss
        if not logged:
            return
        pre = [r for r in records if r.step < self.first]
        pairs = [(r.loss, logged[r.step]) for r in pre if r.step in logged]
        peak_logged = [logged[s] for s in range(self.first, self.last + 1) if s in logged]
        if peak_logged:
            finite = [v for v in peak_logged if math.isfinite(v)]
            where = (f"step {self.first}" if self.first == self.last
                     else f"steps {self.first}–{self.last}")
            facts.notes.append(f"log: {self.ev.kind} at {where}, logged peak {max(finite):.4g}"
                               if finite else f"log: non-finite loss at {where}")
        if not pre or len(pairs) < len(pre):
            return  # the log does not have every step (log interval > 1): no exact check
        worst = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
        facts.log_mismatch = worst
        facts.log_match = worst <= LOG_MATCH_REL + 10 * noise
        self.m["log"] = {"compared_steps": len(pairs), "max_rel_diff": worst,
                         "match": facts.log_match}

    def _adam(self, facts: Facts, records: list[StepRecord]) -> None:
        lo = self.first - 2
        pre = [r for r in records if r.step < lo]
        near = [r for r in records if lo <= r.step <= self.last]

        def jump(attr: str, floor: float) -> tuple[float | None, float | None]:
            base = stats.median_or_nan(getattr(r, attr) for r in pre
                                       if getattr(r, attr) is not None)
            peak = stats.max_or_nan(getattr(r, attr) for r in near
                                    if getattr(r, attr) is not None)
            if math.isnan(base) or math.isnan(peak):
                return None, (None if math.isnan(peak) else peak)
            return peak / max(base, floor), peak
        facts.adam_update_jump, _ = jump("update_rms_over_lr", 1e-12)
        facts.adam_share_jump, facts.adam_share_peak = jump("adam_outlier_share", 1e-6)
        self.m["adam"] = {"update_rms_over_lr_jump": facts.adam_update_jump,
                          "outlier_share_jump": facts.adam_share_jump,
                          "outlier_share_peak": facts.adam_share_peak}

    # ---- static scan

    def _static(self, facts: Facts) -> list[dict[str, Any]]:
        s = self.s
        s.load(self.ckpt)
        flagged = list(range(self.first, self.last + 1))
        steps = flagged + self.neighbours
        per = {}
        for i, step in enumerate(steps):
            per[step] = per_sample(s, s.batch(step))
            self.progress(self.ev.id, "static", i + 1, len(steps))
        ref = self.neighbours
        bl = stats.robust_z([per[x].batch_loss for x in flagged], [per[x].batch_loss for x in ref])
        bg = stats.robust_z([per[x].batch_grad_norm for x in flagged],
                            [per[x].batch_grad_norm for x in ref])
        facts.flagged_loss_z = _max(bl)
        facts.flagged_grad_z = _max(bg)
        samples = self._samples(per, flagged, ref)
        facts.top_sample_z = samples[0]["z"] if samples else None
        methods = sorted({p.method for p in per.values()})
        self.m["static"] = {
            "checkpoint": self.ckpt, "per_sample_method": methods,
            "notes": sorted({p.note for p in per.values() if p.note}),
            "flagged": [{"step": x, "loss": per[x].batch_loss, "grad_norm": per[x].batch_grad_norm,
                         "loss_z": float(a), "grad_norm_z": float(b)}
                        for x, a, b in zip(flagged, bl, bg)],
            "neighbours": [{"step": x, "loss": per[x].batch_loss,
                            "grad_norm": per[x].batch_grad_norm} for x in ref]}
        return samples

    def _samples(self, per: dict, flagged: list[int], ref: list[int]) -> list[dict[str, Any]]:
        ref_l = [v for x in ref for v in per[x].losses]
        have_g = all(per[x].grad_norms is not None for x in flagged + ref)
        ref_g = [v for x in ref for v in per[x].grad_norms] if have_g else []
        rows = []
        for x in flagged:
            zl = stats.robust_z(per[x].losses, ref_l)
            zg = stats.robust_z(per[x].grad_norms, ref_g) if have_g else [math.nan] * len(zl)
            ids = self._sample_ids(x, len(zl))
            for i, (a, b) in enumerate(zip(zl, zg)):
                z = max(v for v in (float(a), float(b), -math.inf) if not math.isnan(v))
                rows.append({"step": x, "index": i, "sample_id": ids[i],
                             "loss": per[x].losses[i],
                             "grad_norm": per[x].grad_norms[i] if have_g else None,
                             "loss_z": float(a), "grad_norm_z": float(b), "z": z})
        rows.sort(key=lambda r: r["z"], reverse=True)  # z is never NaN; inf first
        return rows[: self.o.top_samples]

    def _sample_ids(self, step: int, n: int) -> list[Any]:
        if self.s.plugin.has("sample_ids"):
            ids = list(self.s.plugin.call("sample_ids", step))
            if len(ids) == n:
                return ids
        return [None] * n

    # ---- counterfactuals

    def _counterfactuals(self, facts: Facts, main: RunOut) -> None:
        cf: dict[str, Any] = {}
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        nf = self.nonfinite_event
        if self.s.dtype is not None and main.snapshot is not None:
            out = self._timed("fp32", self._fp32, main.snapshot)
            facts.fp32 = check_spike(self._values(out.records), main.level, main.scale, mag, nf)
            facts.run_dtype = str(self.s.dtype).replace("torch.", "")
            cf["fp32"] = {"check": facts.fp32.to_dict(), "run_dtype": facts.run_dtype,
                          "steps": [r.to_dict() for r in out.records]}
        subs = self._substitutes(self.last - self.first + 1)
        plan = [(i, i if i < self.first else subs[i - self.first])
                for i in range(self.ckpt + 1, self.last + 1)]
        out = self._timed("substitute", self._sequence, self.ckpt, plan, "other batches")
        facts.substitute = check_spike(self._values(out.records), out.level, out.scale, mag, nf)
        cf["substitute"] = {"batches": subs, "check": facts.substitute.to_dict(),
                            "steps": [r.to_dict() for r in out.records if r.step >= self.first]}
        if self.earlier is not None:
            plan = [(i, i) for i in range(self.ckpt + 1, self.last + 1)]
            out = self._timed("earlier", self._sequence, self.earlier, plan, "earlier checkpoint")
            facts.earlier = check_spike(self._values(out.records), out.level, out.scale, mag, nf)
            facts.earlier_checkpoint = self.earlier
            cf["earlier"] = {"checkpoint": self.earlier, "check": facts.earlier.to_dict(),
                             "steps": [r.to_dict() for r in out.records if r.step >= self.first]}
        self.m["counterfactuals"] = cf

    def _fp32(self, snap: dict[str, Any]) -> RunOut:
        self.s.restore(snap)
        out = RunOut([])
        for i, step in enumerate(range(self.first, self.last + 1)):
            out.records.append(self.s.train_step(step, precision=False))
            self.progress(self.ev.id, "fp32", i + 1, self.last - self.first + 1)
        return out


def _max(values: Any) -> float | None:
    fin = [float(v) for v in values if not math.isnan(float(v))]
    return max(fin) if fin else None


def _compare(a: StepRecord, b: StepRecord, after: list[torch.Tensor],
             params: list[torch.Tensor]) -> dict[str, Any]:
    """Two runs of the same iteration: bitwise equal, or by how much they differ."""
    same = all(torch.equal(x, p.detach()) for x, p in zip(after, params))
    diff = max((float((x.float() - p.detach().float()).abs().max()) for x, p in
                zip(after, params) if x.numel()), default=0.0)
    if math.isfinite(a.loss) and math.isfinite(b.loss):
        rel = abs(a.loss - b.loss) / max(abs(a.loss), 1e-12)
    else:
        rel = 0.0 if (math.isnan(a.loss) and math.isnan(b.loss)) or a.loss == b.loss else math.inf
    bitwise = same and (a.loss == b.loss or (math.isnan(a.loss) and math.isnan(b.loss)))
    return {"step": a.step, "bitwise": bitwise, "loss_rel_diff": rel,
            "param_max_abs_diff": diff if math.isfinite(diff) else None,
            "losses": [a.loss, b.loss]}


def probe(session: Session, target: Target, checkpoints: Sequence[int], opts: Options,
          progress: Progress | None = None) -> EventResult:
    return EventProbe(session, target, checkpoints, opts, progress).run()
