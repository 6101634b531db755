"""The probes of one flagged event, run in order on a `Session` (docs/replay.md).

0. Preflight — the first iteration after the checkpoint, twice: loading the checkpoint again
   must give back the same weights (a `strict=False` load that matched nothing does not), and
   the two runs are bitwise equal or their difference (loss, parameter update) is the tolerance.
1. Dynamic replay from the checkpoint through the event: loss, LR, grad norm, the optimizer's
   update RMS/lr, share of coordinates with |g| far above sqrt(v), momentum/gradient cosine,
   attention-logit and activation abs-max. It is checked against the log at every printed step
   the way the log computed it (`logcheck`), and the event "shows" when the flagged steps stand
   out from the level — the same run's values just before the event.
2. Static scan at the checkpoint's weights, no updates: per-sample and per-batch loss and
   gradient norm of every flagged batch against neighbouring batches (robust z-scores); the
   samples to look at are the flagged rows with the highest loss z.
3. Counterfactuals (`counterfactuals.py`), when the event reproduces: the flagged steps re-run from the same state
   (transient or persistent); other batches — checked to differ — in place of the flagged ones;
   the same batches from several earlier checkpoints (PaLM's ablation); the flagged steps in
   fp32 from the pre-event state against the run's precision.

Steps: checkpoint c is the state after c iterations; iteration s trains on `get_batch(s)`; the
logged loss of iteration s is measured before its update — as replay measures it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..events import Event
from . import budget, logcheck, numbering, schedule, stats
from .counterfactuals import ABLATION_MAX_LEVEL, Counterfactuals, RunOut
from .engine import Session, StepRecord, batch_digest, sample, threads
from .options import Options
from .plugin import PluginError
from .scan import StaticScan
from .targets import Target, flagged_range
from .verdicts import Facts, check_spike, decide, untrusted

#: (event id, stage, done, total)
Progress = Callable[[str, str, int, int], None]


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
    cause: str | None = None
    contributing: list[str] = field(default_factory=list)
    facts: Facts | None = field(default=None, repr=False)  # what the verdict was decided on
    target: Target | None = field(default=None, repr=False)

    def redecide(self) -> None:
        """The verdict again, after a measurement was added to `facts`."""
        d = decide(self.facts)
        self.verdict, self.evidence, self.cause, self.contributing = (d.verdict, d.evidence,
                                                                      d.cause, d.contributing)

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event.to_dict(), "verdict": self.verdict, "cause": self.cause,
                "evidence": self.evidence, "contributing": self.contributing,
                "checkpoint": self.checkpoint, "earlier_checkpoint": self.earlier_checkpoint,
                "flagged_steps": list(self.flagged),
                "replayed_steps": list(self.replayed) if self.replayed else None,
                "samples": self.samples, "measurements": self.measurements,
                "timings": {k: round(v, 4) for k, v in self.timings.items()}}


def _noop(*_a: Any) -> None:
    return None


def _interval(steps: Sequence[int]) -> int | None:
    if len(steps) < 3:
        return None
    diffs = sorted(b - a for a, b in zip(steps, steps[1:]))
    return diffs[len(diffs) // 2]


class EventProbe(Counterfactuals, StaticScan):
    """All probes of one event; `run()` gives its EventResult."""

    def __init__(self, session: Session, target: Target, checkpoints: Sequence[int],
                 opts: Options, progress: Progress | None = None) -> None:
        self.s, self.t, self.o = session, target, opts
        self.ev = target.event
        logged_steps = sorted(target.logged) if target.logged else None
        self.first, self.last = flagged_range(self.ev, opts.max_flagged, logged_steps)
        # fp16 overflows show in the gradient; non-finite events in either
        self.metric = ("grad_norm" if target.role == "grad_norm" or self.ev.kind == "overflow"
                       else "loss")
        self.nonfinite_event = self.ev.kind in ("nonfinite", "overflow")
        self.checkpoints = sorted(checkpoints)
        # the loss printed at the onset is measured on the weights after update first - 1:
        # replay that update too when a checkpoint before it is within --max-steps (a schedule
        # jump or an optimizer step there is the cause, and from a checkpoint right after it
        # every batch would spike); else the one right after it
        before = [c for c in self.checkpoints if c <= self.first - 1]
        self.ckpt = max(before) if before else None
        if self.ckpt == self.first - 1:
            earlier = [c for c in before if c < self.ckpt and self.last - c <= opts.max_steps]
            if earlier:
                self.ckpt = max(earlier)
        self.earlier = self._ablation_checkpoints()
        loss_steps = sorted(target.logged_loss) if target.logged_loss else []
        self.spec = logcheck.spec_for(target.log_format, session.plugin.value("log_loss"),
                                      session.plugin.value("lr_log_offset"),
                                      target.log_interval or _interval(loss_steps))
        self.progress = self._ticking(progress or _noop, opts.deadline)
        self.timings: dict[str, float] = {}
        self.m: dict[str, Any] = {}
        if logged_steps and self.first < self.ev.start_step:
            self.m["flagged_widened"] = {
                "from": [self.ev.start_step, self.last], "to": [self.first, self.last],
                "why": "the log prints every "
                       f"{_interval(logged_steps) or '?'} steps: the batch behind the value "
                       "printed at the onset may be any since the previous printed step"}

    @staticmethod
    def _ticking(progress: Progress, deadline: float | None) -> Progress:
        """`progress`, then the budget's deadline checked (between two replayed steps)."""
        def tick(event_id: str, stage: str, done: int, total: int) -> None:
            progress(event_id, stage, done, total)
            budget.check(deadline, f"{stage}, step {done} of {total}")
        return tick

    def _ablation_checkpoints(self) -> list[int]:
        """Earlier checkpoints for PaLM's ablation: the nearest, then about twice as far back
        each time; not the initialisation (step 0) and not states whose logged loss is far above
        the pre-event level (not trained comparably)."""
        if self.ckpt is None or self.o.ablations <= 0:
            return []
        cands = [c for c in self.checkpoints if 0 < c < self.ckpt]
        level = self._logged_level_before(self.first)
        self.skipped_ablations: list[int] = []
        ok = []
        for c in cands:
            lc = self._logged_level_before(c + 1)
            if level and lc and math.isfinite(lc) and lc > ABLATION_MAX_LEVEL * level > 0:
                self.skipped_ablations.append(c)
            else:
                ok.append(c)
        if not ok:
            return []
        out = [ok[-1]]
        dist = self.ckpt - ok[-1]
        while len(out) < self.o.ablations:
            dist *= 2
            older = [c for c in ok if c <= self.ckpt - dist and c < out[-1]]
            if not older:
                break
            out.append(older[-1])
        return out

    def _logged_level_before(self, step: int, k: int = 8) -> float | None:
        logged = self.t.logged_loss
        if not logged:
            return None
        vals = [logged[s] for s in sorted(logged) if s < step][-k:]
        lv = stats.median_or_nan(vals)
        return None if math.isnan(lv) else lv

    # ---- driver

    def run(self) -> EventResult:
        facts = Facts(checkpoint=self.ckpt)
        facts.has_lr_at = self.s.plugin.has("lr_at")
        if self.ckpt is None:
            facts.notes.append(f"no checkpoint before step {self.first}: nothing to replay from")
            return self._result(facts, [])
        if self.last - self.ckpt > self.o.max_steps:
            facts.checkpoint = None
            facts.notes.append(f"the latest checkpoint before the event ({self.ckpt}) is "
                               f"{self.last - self.ckpt} steps before its end; raise "
                               f"--max-steps (now {self.o.max_steps}) to replay that far")
            return self._result(facts, [])
        if self.s.optimizer is None:
            facts.notes.append("the plug-in has no build_optimizer: the steps are evaluated at "
                               "the checkpoint's weights without updates")
        self._log_notes(facts)
        self.samples: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        try:
            budget.check(self.o.deadline, "not started")
            self._probes(facts)
        except budget.OutOfBudget as exc:
            where = ("not started: the budget was spent before it" if exc.stage ==
                     "not started" else f"stopped after {time.perf_counter() - t0:.0f} s, in "
                     f"{exc.stage}")
            facts.budget_stop = budget.BudgetStop(self.o.budget_s or 0.0, where)
        return self._result(facts, self.samples)

    def _probes(self, facts: Facts) -> None:
        try:
            self.s.load(self.ckpt)
        except PluginError as exc:  # one listed checkpoint that does not load: this event's
            facts.load_ok = False
            facts.load_note = (f"checkpoints() lists {self.ckpt}, but it does not load (a "
                               f"deleted or partly written checkpoint?): {exc}")
            return
        self.neighbours = self._neighbours()
        main = self._timed("replay", self._replay)
        self._facts_from_replay(facts, main)
        if facts.load_ok is False:
            return
        if facts.log_departs_at is not None and facts.log_departs_at[0] <= \
                facts.log_departs_at[1]:  # at once: is the checkpoint numbered one off?
            noise = max(facts.preflight_noise or 0.0, facts.param_noise or 0.0)
            tried = self._timed("numbering", numbering.try_shifts, self, noise)
            self.m["numbering"] = [t.to_dict() for t in tried]
            facts.numbering = [(t.shift, t.match, t.compared, t.worst) for t in tried]
        self.samples = self._timed("static", self._static, facts)
        shows = facts.replay.shows if facts.replay is not None else None
        if (facts.event_log_match or shows) and facts.lr_jump is None and not untrusted(facts):
            cf = self._timed("schedule", schedule.without_jump, self)  # a jump before the replay?
            if cf is not None:
                facts.lr_without_jump = (cf["jump_step"], cf["ratio"], cf["checkpoint"],
                                         cf["check"])
                self.m["schedule"] = {**cf, "check": cf["check"].to_dict()}
                if cf["check"].shows is False and not shows:  # at the diverged level: decided
                    self.m["cost"] = self._cost(main)
                    return
        reproduced = facts.event_log_match or (facts.replay is not None and facts.replay.shows)
        if reproduced and self.o.counterfactuals:
            if untrusted(facts):
                facts.counterfactuals_skipped = True
            elif self._affordable(facts, main):
                self._counterfactuals(facts, main)
        self.m["cost"] = self._cost(main)

    def _affordable(self, facts: Facts, main: RunOut) -> bool:
        """The counterfactuals' cost estimated from the replay's seconds per step (shown as a
        progress stage); False, with the budget's reason, when it exceeds what is left."""
        per = stats.median_or_nan(r.seconds for r in main.records)
        n = budget.counterfactual_steps(
            self.last - self.first + 1, self.o.reruns if main.snapshot is not None else 0,
            self.s.dtype is not None, [self.last - self.ckpt] * len(self.earlier))
        est = per * n if math.isfinite(per) else math.nan
        self.m["estimate"] = {"counterfactual_steps": n, "seconds_per_step": per,
                              "counterfactual_s": est}
        rem = budget.left(self.o.deadline)
        if rem is not None and math.isfinite(est) and est > rem:
            facts.budget_stop = budget.BudgetStop(
                self.o.budget_s or 0.0, f"the counterfactuals need about {est:.0f} s ({n} "
                f"replayed steps at {per:.2g} s each) and {max(rem, 0.0):.0f} s are left: not run")
            return False
        self.progress(self.ev.id, f"counterfactuals, about {est:.0f} s", 0, n)
        return True

    def _log_notes(self, facts: Facts) -> None:
        logged = self.t.logged
        where = logcheck.span(self.ev.start_step, self.ev.peak_step or self.ev.start_step)
        if logged:
            vals = [logged[s] for s in range(self.ev.start_step, self.last + 1) if s in logged]
            fin = [v for v in vals if math.isfinite(v)]
            what = self.ev.tag
            facts.notes.append(f"log: {self.ev.kind} of {what} at {where}, logged peak "
                               f"{max(fin):.4g}" if fin else
                               f"log: non-finite {what} at {where}")
        if "flagged_widened" in self.m:
            facts.notes.append(f"flagged batches widened to {logcheck.span(self.first, self.last)}"
                               f": {self.m['flagged_widened']['why']}")

    def _timed(self, name: str, fn: Callable, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0

    def _result(self, facts: Facts, samples: list) -> EventResult:
        d = decide(facts)
        replayed = (self.ckpt + 1, self.last) if self.m.get("replay") else None
        earliest = facts.ablations[0][0] if facts.ablations else (
            self.earlier[0] if self.earlier else None)
        return EventResult(self.ev, d.verdict, d.evidence, facts.checkpoint, earliest,
                           (self.first, self.last), replayed, samples, self.m, self.timings,
                           d.cause, d.contributing, facts, self.t)

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

    def _substitutes(self, n: int, avoid: set[str]) -> list[int]:
        """n batches after the neighbours whose contents differ from the flagged ones (up to
        3n looked at); the neighbours, reused, when the data ends."""
        k = self.o.neighbours
        out: list[int] = []
        step = self.last + 1 + k
        seen = self._flagged_samples()
        try:
            while len(out) < n and step < self.last + 1 + k + 3 * n:
                # a later epoch serves the flagged samples again: no "other batch"
                if self.s.digest(step) not in avoid and not self._shares(step, seen):
                    out.append(step)
                step += 1
        except PluginError:
            pass
        if len(out) < n:  # too few different batches: reuse the neighbours (checked by the caller)
            pool = out or list(self.neighbours)
            out = out + [pool[i % len(pool)] for i in range(n - len(out))]
        return out

    # ---- runs

    def _sequence(self, ckpt: int, plan: list[tuple[int, int]], stage: str,
                  precision: bool = True, preflight: bool = False,
                  snapshot: bool = False) -> RunOut:
        """Load `ckpt`, train on `plan` [(iteration, batch step)], measuring each step."""
        s = self.s
        s.load(ckpt)
        out = RunOut([])
        if preflight:
            out.preflight = self._preflight(ckpt, plan[0], precision)
            if out.preflight.get("load_ok") is False:
                # the first run's record and samples stay private (not JSON: a StepRecord)
                out.preflight = {k: v for k, v in out.preflight.items() if k[0] != "_"}
                return out
        few_before = sum(1 for st, _ in plan if st < self.first) < 3
        for i, (step, bstep) in enumerate(plan):
            if step == self.first:
                if few_before:
                    out.fallback_level = self._neighbour_level(precision)
                out.snapshot = s.snapshot() if snapshot else None
            out.records.append(s.train_step(step, bstep, precision=precision))
            if preflight and i == 0:
                self._compare_second(out.preflight, out.records[0])
            self.progress(self.ev.id, stage, i + 1, len(plan))
        return out

    def _preflight(self, ckpt: int, first: tuple[int, int], precision: bool) -> dict[str, Any]:
        """Run the first step once, then reload the checkpoint: it must restore the weights."""
        s = self.s
        c0 = s.checksum()
        s0 = [sample(p).clone() for p in s.params]
        a = s.train_step(*first, precision=precision)
        ca = s.checksum()
        sa = [sample(p).clone() for p in s.params]
        s.load(ckpt)
        c1 = s.checksum()
        pf: dict[str, Any] = {"step": first[0], "_a": a, "_ca": ca, "_sa": sa, "_s0": s0}
        # get_batch must be random access: a second call gives the same tensors (replay keeps
        # recent batches, so a random augmentation would not show in the two runs above)
        again = s.plugin.call("get_batch", first[1])
        pf["get_batch_repeatable"] = (batch_digest(again, True)
                                      == batch_digest(s.batch(first[1]), True))
        if ca != c0 and c1 != c0:
            changed = sum(1 for x, y in zip(c0, c1) if x != y)
            kept = sum(1 for x, y in zip(ca, c1) if x == y)
            pf["load_ok"] = False
            pf["load_note"] = (
                f"load_checkpoint({ckpt}) did not restore the weights: after one training step, "
                f"loading it again leaves {kept} of {len(c1)} parameter tensors as trained "
                f"({changed} differ from the first load) — a load_state_dict(strict=False) that "
                "matched no key? replay cannot judge without the checkpoint's weights")
        else:
            pf["load_ok"] = True if ca != c0 else None
        return pf

    def _compare_second(self, pf: dict[str, Any], b: StepRecord) -> None:
        a, ca, sa, s0 = pf.pop("_a"), pf.pop("_ca"), pf.pop("_sa"), pf.pop("_s0")
        sb = [sample(p) for p in self.s.params]
        same = ca == self.s.checksum()
        num = math.sqrt(sum(float(((x.float() - y.float()) ** 2).sum()) for x, y in zip(sa, sb)))
        den = math.sqrt(sum(float(((x.float() - y.float()) ** 2).sum()) for x, y in zip(sa, s0)))
        if math.isfinite(a.loss) and math.isfinite(b.loss):
            rel = abs(a.loss - b.loss) / max(abs(a.loss), 1e-12)
        else:
            rel = 0.0 if (math.isnan(a.loss) and math.isnan(b.loss)) or a.loss == b.loss \
                else math.inf
        pf.update({"bitwise": same and (a.loss == b.loss or (math.isnan(a.loss)
                                                             and math.isnan(b.loss))),
                   "loss_rel_diff": rel,
                   "param_rel_diff": (num / den if den > 0 else (0.0 if num == 0 else math.inf)),
                   "losses": [a.loss, b.loss]})

    def _neighbour_level(self, precision: bool) -> tuple[float, float]:
        pairs = self.s.evaluate(self.neighbours, precision)
        vals = [p[1] if self.metric == "grad_norm" else p[0] for p in pairs]
        return stats.level_and_scale(vals)

    def _level(self, out: RunOut, use_log: bool) -> tuple[float, float, str]:
        """The event's level: this run's values just before the event (up to `neighbours`
        of them), topped up with the log's when the replay has fewer than 3; else the
        neighbouring batches evaluated at the pre-event state."""
        k = self.o.neighbours
        pre = [getattr(r, self.metric) for r in out.records if r.step < self.first][-k:]
        pre = [v for v in pre if math.isfinite(v)]
        how = "the replayed steps before the event"
        src = self.t.logged if self.metric == "grad_norm" else self.t.logged_loss
        if len(pre) < 3 and use_log and src:
            before = [src[s] for s in sorted(src) if s < self.first][-(k - len(pre)):]
            pre = [v for v in before if math.isfinite(v)] + pre
            how = "the logged and replayed steps before the event"
        if len(pre) >= 3:
            lv, sc = stats.level_and_scale(pre)
            return lv, sc, how
        if out.fallback_level is not None:
            return (*out.fallback_level, "neighbouring batches at the pre-event state")
        return math.nan, math.nan, "none"

    def _values(self, records: list[StepRecord]) -> list[float]:
        flagged = [r for r in records if self.first <= r.step <= self.last]
        out = [getattr(r, self.metric) for r in flagged]
        if self.nonfinite_event:  # a NaN loss or a NaN gradient both reproduce it
            out += [r.loss for r in flagged] + [r.grad_norm for r in flagged]
        return out

    def _check(self, out: RunOut, use_log: bool, noise: float = 0.0):
        level, scale, how = self._level(out, use_log)
        if math.isfinite(scale):
            scale = max(scale, noise * abs(level))
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        return check_spike(self._values(out.records), level, scale, mag,
                           nonfinite_event=self.nonfinite_event), level, scale, how

    def _replay(self) -> RunOut:
        plan = [(i, i) for i in range(self.ckpt + 1, self.last + 1)]
        return self._sequence(self.ckpt, plan, "replay", preflight=True,
                              snapshot=self.o.counterfactuals)

    def _facts_from_replay(self, facts: Facts, main: RunOut) -> None:
        pf = main.preflight or {}
        self.m["preflight"] = pf
        facts.load_ok = pf.get("load_ok")
        if facts.load_ok is False:
            facts.load_note = pf.get("load_note")
            return
        facts.preflight_noise, facts.preflight_bitwise = pf.get("loss_rel_diff"), pf.get("bitwise")
        if pf.get("get_batch_repeatable") is False:
            facts.batch_unrepeatable = pf["step"]
        facts.param_noise = pf.get("param_rel_diff")
        if self.s.device.type == "cpu" and self.s.dtype is not None:
            facts.cpu_autocast = (str(self.s.dtype).replace("torch.", ""), threads())
        noise = max(facts.preflight_noise or 0.0, facts.param_noise or 0.0)
        facts.replay, level, scale, how = self._check(main, True, noise)
        self._log_match(facts, main.records, noise)
        self._lr(facts, main.records)
        self._grad_norm_and_scale(facts, main.records)
        self._optimizer(facts, main.records)
        facts.first_nonfinite_module = next((r.first_nonfinite_module for r in main.records
                                             if r.first_nonfinite_module), None)
        if self.t.restart_hint is not None:
            self.m["skip_plan_restart_from_step"] = self.t.restart_hint
        self.m["level"] = {"metric": self.metric, "value": level, "scale": scale, "from": how,
                           "neighbour_steps": self.neighbours}
        self.m["replay"] = {"check": facts.replay.to_dict(),
                            "steps": [r.to_dict() for r in main.records]}
        self._main_level = (level, scale)

    def _log_match(self, facts: Facts, records: list[StepRecord], noise: float) -> None:
        logged = self.t.logged_loss
        facts.log_reduction = self.spec.describe()
        if not logged:
            facts.log_missing = ("no logged loss to check the replay against (give the log, "
                                 "not only an analysis document)")
            return
        replayed = {r.step: r.log_loss if r.log_loss is not None else r.loss for r in records}
        lc = logcheck.compare(logged, replayed, self.spec, self.ckpt, self.first, self.last, noise)
        facts.log_match, facts.log_mismatch = lc.pre_match, lc.pre_worst
        dep = lc.first_departure
        if dep is not None:
            facts.log_departs_at = (dep, min(p.step for p in lc.pre if p.rel is not None))
        facts.log_compared = sum(1 for p in lc.pre if p.rel is not None)
        facts.log_missing = lc.missing
        facts.event_log_match = lc.event_match
        ev_pts = [p for p in lc.event if p.replayed is not None]
        if ev_pts:
            top = max(ev_pts, key=lambda p: p.logged if math.isfinite(p.logged) else math.inf)
            facts.event_logged, facts.event_replayed = top.logged, top.replayed
        self.m["log"] = {**lc.to_dict(), "compared_steps": facts.log_compared,
                         "max_rel_diff": lc.pre_worst, "match": lc.pre_match}

    def _lr(self, facts: Facts, records: list[StepRecord]) -> None:
        replay_lr = {r.step: r.lr for r in records if r.lr is not None}
        lrc = logcheck.compare_lr(self.t.logged_lr, replay_lr, self.spec.lr_offset,
                                  self.ckpt + 1, self.last)
        if lrc is None:
            return
        facts.lr_match = lrc.match
        facts.lr_mismatch_steps = logcheck.ranges(lrc.mismatched) if lrc.mismatched else None
        if lrc.jumps:
            facts.lr_jump = max(lrc.jumps, key=lambda j: abs(math.log(j[1])))
        self.m["lr"] = lrc.to_dict()

    def _grad_norm_and_scale(self, facts: Facts, records: list[StepRecord]) -> None:
        """The logged grad norm beside the replay's (the printed iteration's own, before
        clipping; informative: logs print it with few digits), and the log's loss scale: a
        drop inside the replayed range is an fp16 overflow the run skipped."""
        gn = self.t.logged_grad_norm
        if gn:
            pts = [(r.step, gn[r.step], r.grad_norm) for r in records if r.step in gn]
            rel = [abs(b - a) / max(abs(a), 1e-12) for _, a, b in pts
                   if math.isfinite(a) and math.isfinite(b)]
            self.m["grad_norm_log"] = {"compared_steps": len(rel),
                                       "max_rel_diff": max(rel) if rel else None,
                                       "points": [[s, a, b] for s, a, b in pts]}
        ls = self.t.logged_loss_scale
        if ls:
            steps = [s for s in sorted(ls) if self.ckpt < s <= self.last]
            drops = [s for a, s in zip(steps, steps[1:]) if 0 < ls[s] < ls[a]]
            if drops:
                s0 = drops[0]
                facts.notes.append(f"log: the loss scale drops at {s0} "
                                   f"({ls[steps[steps.index(s0) - 1]]:g} → {ls[s0]:g}): an fp16 "
                                   "overflow the run skipped")
                self.m["loss_scale_drops"] = drops

    def _optimizer(self, facts: Facts, records: list[StepRecord]) -> None:
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
        cos = [r.momentum_cosine for r in near if r.momentum_cosine is not None]
        self.m["adam"] = {"update_rms_over_lr_jump": facts.adam_update_jump,
                          "outlier_share_jump": facts.adam_share_jump,
                          "outlier_share_peak": facts.adam_share_peak,
                          "momentum_cosine_min": min(cos) if cos else None}


def probe(session: Session, target: Target, checkpoints: Sequence[int], opts: Options,
          progress: Progress | None = None) -> EventResult:
    return EventProbe(session, target, checkpoints, opts, progress).run()


def on_second_device(session: Session, result: EventResult, checkpoints: Sequence[int],
                     opts: Options) -> None:
    """Replay a reproduced event again on `session`'s device, from its checkpoint through the
    flagged steps (`Counterfactuals.second_device`); adds to `result` and re-decides it."""
    if result.target is not None:
        EventProbe(session, result.target, checkpoints, opts).second_device(result)
