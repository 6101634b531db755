"""Typed records for what detectors and diagnosis produce: Event, Finding, SkipPlan.

Field names and meanings follow the JSON contract (docs/json.md). Steps are the trainer's own
step numbers and every range is inclusive. Only `to_dict()` serialises.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

#: Every kind of event the detectors report (settings name them in `ignore-kinds`).
EVENT_KINDS = ("spike", "divergence", "nonfinite", "grokking", "sudden_drop", "changepoint",
               "rollback", "resume_spike", "repeat_data", "grad_spike", "overflow", "overfitting")
#: Severities, least severe first: the one severity order of the project.
SEVERITIES = ("info", "warning", "critical")
RECOVERIES = ("fast", "slow", "none")


def severity_rank(severity: str) -> int:
    """0 for info, 1 for warning, 2 for critical: sort and compare severities by this."""
    return SEVERITIES.index(severity)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None or strings, numpy scalars become Python."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    """One thing that happened to one series of one run."""

    kind: str
    run: str
    tag: str
    start_step: int
    peak_step: int | None = None
    end_step: int | None = None
    severity: str = "info"
    recovery: str | None = None  # "fast", "slow", "none" (spikes only)
    recovery_steps: int | None = None
    magnitude: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""  # assigned by analysis: "<kind>-<n>", unique within the run

    def to_dict(self) -> dict[str, Any]:
        return _clean({
            "id": self.id, "kind": self.kind, "tag": self.tag, "start_step": self.start_step,
            "peak_step": self.peak_step, "end_step": self.end_step, "severity": self.severity,
            "recovery": self.recovery, "recovery_steps": self.recovery_steps,
            "magnitude": self.magnitude, "details": dict(self.details),
        })


@dataclass(frozen=True)
class Finding:
    """A diagnosis: what it means, what to do, and which playbook rule it rests on."""

    severity: str
    title: str
    explanation: str
    advice: str
    event_ids: tuple[str, ...] = ()
    cites: tuple[str, ...] = ()
    rule: str = ""  # the diagnosis rule that made it (`diagnosis.RULES`), e.g. "nonfinite"

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity, "title": self.title, "explanation": self.explanation,
                "advice": self.advice, "event_ids": list(self.event_ids), "cites": list(self.cites),
                "rule": self.rule}


@dataclass(frozen=True)
class SkipPlan:
    """The PaLM policy: restart from a checkpoint and skip these (inclusive) iteration ranges."""

    restart_from_step: int
    skip: tuple[tuple[int, int], ...]
    reason: str
    samples: tuple[tuple[int, int], ...] | None = None
    units: str = "iterations"
    #: where the checkpoints it chose from came from ("the log's save lines (nanoGPT)", "checkpoint
    #: folders beside the log: out", "--checkpoints"...); in the JSON contract it is the run's
    #: `checkpoints.source` (the PLAN object keeps its agreed keys)
    checkpoint_source: str | None = None
    #: the samples' batch size (the user's `--global-batch-size`, else the log's)
    global_batch_size: int | None = None
    #: the restart in words, the one sentence every view prints (`skipplan.restart_note`):
    #: a known checkpoint, the start of training, or a step assumed without one
    restart_note: str = ""

    def __post_init__(self) -> None:
        if not self.restart_note:  # a plan made outside the pipeline (the guard, tests)
            object.__setattr__(self, "restart_note",
                               f"restart from iteration {self.restart_from_step}")

    def to_dict(self) -> dict[str, Any]:
        return {"restart_from_step": self.restart_from_step,
                "skip": [list(r) for r in self.skip], "units": self.units,
                "samples": None if self.samples is None else [list(r) for r in self.samples],
                "reason": self.reason}
