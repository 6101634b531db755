"""The counterfactual probes of a reproduced event (a mix-in of `probes.EventProbe`).

- the flagged steps re-run from the pre-event state (transient or persistent), and the whole
  replay again on a second device (`second_device`);
- fp32 from the same state, against the run's precision;
- other batches in place of the flagged ones, checked (by a hash of their tensors) to differ;
  when none differ, whether the flagged batches are those of earlier steps that trained
  harmlessly;
- PaLM's ablation: the flagged batches from several earlier checkpoints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import logcheck
from .engine import StepRecord
from .plugin import PluginError
from .verdicts import LOG_MATCH_REL, Facts, check_spike

if TYPE_CHECKING:
    from .options import Options
    from .probes import EventResult

#: An earlier checkpoint whose logged loss is this many times the pre-event level is not a
#: trained state comparable to the event's (PaLM's ablation needs one): it is not tried.
ABLATION_MAX_LEVEL = 1.5


@dataclass
class RunOut:
    records: list[StepRecord]
    level: float = math.nan
    scale: float = math.nan
    snapshot: dict[str, Any] | None = None
    preflight: dict[str, Any] | None = None
    fallback_level: tuple[float, float] | None = None  # neighbours at the pre-event state



class Counterfactuals:
    """Counterfactual runs; the attributes they use are `probes.EventProbe`'s."""

    def _counterfactuals(self, facts: Facts, main: RunOut) -> None:
        cf: dict[str, Any] = {}
        nf = self.nonfinite_event
        level, scale = self._main_level
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        if main.snapshot is not None and self.o.reruns > 0:
            cf["reruns"] = self._timed("reruns", self._reruns, facts, main)
        if self.s.dtype is not None and main.snapshot is not None:
            out = self._timed("fp32", self._from_snapshot, main.snapshot, False, "fp32")
            facts.fp32 = check_spike(self._values(out.records), level, scale, mag, nf)
            facts.run_dtype = str(self.s.dtype).replace("torch.", "")
            cf["fp32"] = {"check": facts.fp32.to_dict(), "run_dtype": facts.run_dtype,
                          "steps": [r.to_dict() for r in out.records]}
        flagged = list(range(self.first, self.last + 1))
        digests = {x: self.s.digest(x) for x in flagged}
        pre = {x: self.s.digest(x) for x in range(self.ckpt + 1, self.first)}
        subs = self._substitutes(len(flagged), set(digests.values()))
        same = all(self.s.digest(b) == digests[x] for x, b in zip(flagged, subs))
        facts.substitute_same = same
        if set(digests.values()) <= set(pre.values()) and pre:
            seen = [x for x, d in pre.items() if d in set(digests.values())]
            facts.flagged_seen_before = logcheck.span(min(seen), max(seen)) if len(seen) > 1 \
                else f"step {seen[0]}"
        if same:
            cf["substitute"] = {"batches": subs, "identical_to_flagged": True}
        else:
            if main.snapshot is not None:  # from the pre-event state: not the steps before again
                out = self._timed("substitute", self._from_snapshot, main.snapshot, True,
                                  "other batches", subs)
                out.records[:0] = [r for r in main.records if r.step < self.first]
                out.fallback_level = main.fallback_level
            else:
                plan = [(i, i if i < self.first else subs[i - self.first])
                        for i in range(self.ckpt + 1, self.last + 1)]
                out = self._timed("substitute", self._sequence, self.ckpt, plan, "other batches")
            facts.substitute, *_ = self._check(out, True)
            cf["substitute"] = {"batches": subs, "identical_to_flagged": False,
                                "check": facts.substitute.to_dict(),
                                "steps": [r.to_dict() for r in out.records if r.step >= self.first]}
        if self.earlier:
            cf["earlier"] = []
        for c in self.earlier:
            plan = [(i, i) for i in range(self.ckpt + 1, self.last + 1)]
            try:
                out = self._timed("earlier", self._sequence, c, plan, f"from checkpoint {c}")
            except PluginError as exc:  # listed, but not loadable: not an ablation
                cf["earlier"].append({"checkpoint": c, "error": str(exc)})
                facts.notes.append(f"checkpoint {c} (listed by checkpoints()) does not load, "
                                   f"not used: {exc}")
                continue
            chk, lv, _, how = self._check(out, False)
            facts.ablations.append((c, chk))
            cf["earlier"].append({"checkpoint": c, "check": chk.to_dict(), "level_from": how,
                                  "steps": [r.to_dict() for r in out.records
                                            if r.step >= self.first]})
        facts.ablations_skipped = list(getattr(self, "skipped_ablations", None) or [])
        if facts.ablations_skipped:
            cf["earlier_not_tried"] = {
                "checkpoints": self.skipped_ablations,
                "why": f"their logged loss is over {ABLATION_MAX_LEVEL}× the pre-event level"}
        self.m["counterfactuals"] = cf

    def _from_snapshot(self, snap: dict[str, Any], precision: bool, stage: str,
                       batches: list[int] | None = None) -> RunOut:
        """The flagged steps from the pre-event state, on their own batches or on `batches`."""
        self.s.restore(snap)
        out = RunOut([])
        n = self.last - self.first + 1
        for i, step in enumerate(range(self.first, self.last + 1)):
            out.records.append(self.s.train_step(step, None if batches is None else batches[i],
                                                 precision=precision))
            self.progress(self.ev.id, stage, i + 1, n)
        return out

    def _reruns(self, facts: Facts, main: RunOut) -> dict[str, Any]:
        """The flagged steps again from the pre-event state, `reruns` times: a persistent
        event comes back every time (and bitwise equal on a deterministic setup)."""
        level, scale = self._main_level
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        ref = [r.loss for r in main.records if r.step >= self.first]
        shows, equal = 0, 0
        for _ in range(self.o.reruns):
            out = self._from_snapshot(main.snapshot, True, "re-run")
            chk = check_spike(self._values(out.records), level, scale, mag, self.nonfinite_event)
            again = [r.loss for r in out.records]
            # the same values as the replay that reproduced the event are the event again,
            # whatever the level check says (the replay may match the log at a mild spike)
            same = len(again) == len(ref) and all(
                a == b or abs(a - b) <= LOG_MATCH_REL * max(abs(a), abs(b))
                for a, b in zip(again, ref))
            shows += chk.shows is not False or same
            equal += again == ref
        n = self.o.reruns
        facts.reruns = (shows, n)
        return {"runs": n, "show_event": shows, "bitwise_equal_losses": equal}


    def second_device(self, result: EventResult) -> None:
        """Replay a reproduced event again on this probe's device (a fresh model there), from
        its checkpoint through the flagged steps: an event tied to one accelerator is
        transient."""
        f = result.facts
        if f is None or result.target is None or result.checkpoint is None or \
                "counterfactuals" not in result.measurements:
            return
        self.neighbours = self._neighbours()
        plan = [(i, i) for i in range(self.ckpt + 1, self.last + 1)]
        out = self._sequence(self.ckpt, plan, "second device")
        level = result.measurements["level"]
        mag = self.ev.magnitude if self.ev.kind in ("spike", "grad_spike") else None
        chk = check_spike(self._values(out.records), level["value"], level["scale"], mag,
                          self.nonfinite_event)
        device = str(self.s.device)
        f.second_device = (device, chk.shows)
        result.measurements["second_device"] = {"device": device, "check": chk.to_dict(),
                                                "steps": [r.to_dict() for r in out.records]}
        result.redecide()
