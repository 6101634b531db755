"""The JSON contract of DESIGN §3 (`losslens.analysis/1`), built from typed records only."""
from __future__ import annotations

import json
import math
from typing import Any, Mapping, Sequence

from ..events import Event, Finding, SkipPlan
from ..frame import Frame, RunInfo

SCHEMA = "losslens.analysis/1"


def run_document(info: RunInfo, events: Sequence[Event] = (), findings: Sequence[Finding] = (),
                 skip_plan: SkipPlan | None = None) -> dict[str, Any]:
    """One RUN object of the contract."""
    return {
        "run": info.run,
        "source": info.source,
        "format": info.format,
        "series": [s.to_dict() for s in info.series],
        "segments": [s.to_dict() for s in info.segments],
        "metadata": info.metadata.to_dict(),
        "events": [e.to_dict() for e in events],
        "findings": [f.to_dict() for f in findings],
        "skip_plan": skip_plan.to_dict() if skip_plan else None,
        "skipped_lines": {"count": info.skipped_count,
                          "examples": [s.to_dict() for s in info.skipped[:20]]},
        "warnings": list(info.warnings),
        "last_step": info.last_step,  # the last iteration (tags on other step axes left out)
        "notes": list(info.notes),
        "error": info.error,  # why the run could not be read or analysed; null when it was
    }


def document(frame: Frame, per_run: Mapping[str, tuple] | None = None) -> dict[str, Any]:
    """The whole document; `per_run` maps run → (events, findings, skip_plan)."""
    from .. import __version__

    per_run = per_run or {}
    return {"schema": SCHEMA, "version": __version__,
            "runs": [run_document(info, *per_run.get(info.run, ())) for info in frame.runs]}


def _default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(doc: Mapping[str, Any]) -> str:
    """Strict JSON (no NaN tokens): non-finite floats were already mapped by to_dict()."""
    def fix(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v
    return json.dumps(fix(doc), indent=2, default=_default, allow_nan=False)


def analysis_document(analysis) -> dict[str, Any]:
    """The contract for a `pipeline.Analysis`."""
    from .. import __version__

    runs = []
    for ra in analysis.runs:
        doc = run_document(ra.info, ra.events, ra.findings, ra.skip_plan)
        doc["warnings"] = doc["warnings"] + list(ra.plan_warnings)
        # what the skip plan could restart from (those the run reached), and where those
        # checkpoints came from
        steps = None
        if ra.checkpoints is not None:
            last = ra.info.last_step
            steps = [c for c in ra.checkpoints if last is None or c <= last]
        doc["checkpoints"] = {"source": ra.checkpoint_source, "steps": steps}
        runs.append(doc)
    return {"schema": SCHEMA, "version": __version__, "runs": runs}
