"""Detection: every detector on every series of the right role, the events put in order.

`detect_run` is the one place detectors meet a Frame: series detectors get each stitched
series whose role they accept, run detectors get the run once. Then it

- folds spikes found inside a divergence into it (the rise of a divergence reads as a spike
  that never recovers, and the grad norm rises with it; the divergence says it better:
  `details.spikes_within` counts them),
- marks, when a run has several losses (train and per-dataset validation), which spikes hit
  the other losses at the same time (`details.shared_with`, `details.all_losses`) and which
  hit one loss alone (`details.isolated`): spikes can hit one dataset and not another,
- sorts by (start_step, kind, tag) and assigns ids `<kind>-<n>`, unique within the run.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .detectors import resolve_detectors
from .detectors.divergence import fold_spikes
from .events import Event
from .frame import Frame, RunInfo

#: Roles whose series are losses (compared for shared / isolated spikes).
LOSS_ROLES = ("train_loss", "val_loss")


def detect_run(frame: Frame, run_info: RunInfo, detectors: Any = None, *,
                shared_within: int = 50) -> list[Event]:
    """All events of one run, sorted, with ids."""
    events: list[Event] = []
    for det in resolve_detectors(detectors):
        if det.scope == "run":
            events.extend(det.detect_run(frame, run_info))
            continue
        for info in run_info.series:
            if info.role in det.roles:
                events.extend(det.detect(frame.series(run_info.run, info.tag)))
    events = fold_spikes(events)
    events = _mark_shared(events, frame, run_info, shared_within)
    events.sort(key=lambda e: (e.start_step, e.kind, e.tag))
    counters: dict[str, int] = {}
    out = []
    for e in events:
        counters[e.kind] = counters.get(e.kind, 0) + 1
        out.append(replace(e, id=f"{e.kind}-{counters[e.kind]}"))
    return out


def detect(frame: Frame, detectors: Any = None, **kwargs: Any) -> dict[str, list[Event]]:
    """`detect_run` on every run of the frame: run name -> events (`pipeline.analyze` goes on
    to findings and skip plans)."""
    resolved = resolve_detectors(detectors)
    return {info.run: detect_run(frame, info, resolved, **kwargs) for info in frame.runs}


def _mark_shared(events: list[Event], frame: Frame, run: RunInfo,
                 shared_within: int) -> list[Event]:
    tags = [s.tag for s in run.series if s.role in LOSS_ROLES]
    role = {s.tag: s.role for s in run.series}
    if len(tags) < 2:
        return events
    steps = {t: frame.series(run.run, t).step for t in tags}
    gap = {t: int(np.median(np.diff(s))) if s.shape[0] > 1 else 0 for t, s in steps.items()}
    spikes: dict[str, list[Event]] = {t: [] for t in tags}
    for e in events:
        if e.kind == "spike" and e.tag in spikes:
            spikes[e.tag].append(e)
    out = []
    for e in events:
        if e.kind != "spike" or e.tag not in spikes:
            out.append(e)
            continue
        checkable, shared = [], []
        for other in tags:
            if other == e.tag:
                continue
            tol = max(shared_within, gap[other])
            lo, hi = e.start_step - tol, (e.end_step or e.peak_step or e.start_step) + tol
            st = steps[other]
            if not ((st >= lo) & (st <= hi)).any():
                continue
            checkable.append(other)
            if any(o.start_step <= hi and (o.end_step or o.peak_step or o.start_step) >= lo
                   for o in spikes[other]):
                shared.append(other)
        # "one dataset alone" needs peers of the same role (per-dataset losses): a train
        # spike that validation did not see is not that
        peers = [t for t in checkable if role[t] == role[e.tag]]
        details = {**e.details, "shared_with": shared, "isolated": bool(peers) and not shared,
                   "all_losses": bool(checkable) and len(shared) == len(checkable)}
        out.append(replace(e, details=details))
    return out

