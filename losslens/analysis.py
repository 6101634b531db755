"""Detection: every detector on every series of the right role, the events put in order.

`detect_run` is the one place detectors meet a Frame: series detectors get each stitched
series whose role they accept, run detectors get the run once. Then it

- folds spikes found inside a divergence into it (the rise of a divergence reads as a spike
  that never recovers, and the grad norm rises with it; the divergence says it better:
  `details.spikes_within` counts them),
- marks a training-loss divergence over which every validation loss of the run improved
  (`details.val_improving`): the task got harder (a curriculum), the model did not get worse,
- marks, when a run has several losses (train and per-dataset validation), which spikes hit
  the other losses at the same time (`details.shared_with`, `details.all_losses`) and which
  hit one loss alone (`details.isolated`): spikes can hit one dataset and not another,
- sorts by (start_step, kind, tag) and assigns ids `<kind>-<n>`, unique within the run.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import numpy as np

from .detectors import resolve_detectors
from .detectors.divergence_fold import fold_spikes
from .echoes import mark_echoes
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
    events = mark_over_time(events, frame, run_info)
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
    if len(tags) < 2 or not any(e.kind == "spike" for e in events):
        return events  # (nothing to mark: a run of 10^5 losses paid for their gaps)
    steps = {t: frame.series(run.run, t).step for t in tags}
    gap = {t: int(np.median(np.diff(s))) if s.shape[0] > 1 else 0 for t, s in steps.items()}
    spikes: dict[str, list[Event]] = {t: [] for t in tags}
    for e in events:
        if e.kind == "spike" and e.tag in spikes:
            spikes[e.tag].append(e)
    parts = loss_parts(frame, run)
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
        # spike that validation did not see is not that; nor is a spike of one part of a
        # multi-part train loss (a GAN's generator and discriminator terms; `loss_parts`)
        peers = [t for t in checkable if role[t] == role[e.tag]
                 and not ({t, e.tag} & parts)]
        details = {**e.details, "shared_with": shared, "isolated": bool(peers) and not shared,
                   "all_losses": bool(checkable) and len(shared) == len(checkable)}
        out.append(replace(e, details=details))
    return out



#: Names of a run's total training loss, when it logs its components beside it.
_TOTAL_HINTS = ("total", "mean_loss", "train_loss", "lm loss", "train/loss")


def primary_losses(frame: Frame, run: RunInfo) -> list[str]:
    """The run's total training loss tag(s) when it logs several: those named like a total,
    else the ones with the largest median (a sum of positive components is the largest)."""
    tags = [s.tag for s in run.series if s.role == "train_loss"]
    if len(tags) < 2:
        return tags
    named = [t for t in tags if t.strip().lower() in ("loss", "train/loss")
             or any(h in t.lower() for h in _TOTAL_HINTS)]
    if named:
        return named
    med = {}
    for t in tags:
        v = frame.series(run.run, t).value
        v = v[np.isfinite(v)]
        med[t] = float(np.median(v)) if v.shape[0] else -np.inf
    top = max(med.values())
    return [t for t, m in med.items() if m >= 0.9 * top] if top > 0 else tags


#: Names of the terms of an adversarial objective (a GAN's generator / discriminator / critic
#: losses: lossG, loss_D, g_loss, D_loss, disc_loss, generator_loss ...).
_ADVERSARIAL = re.compile(r"(?i:gen(erator)?|disc(riminator)?|critic|adv(ersarial)?)(?![a-z])"
                          r"|(?<![A-Za-z])(?:loss_?[GD]|[GD]_?loss|[gd]_loss|err_?[GD])(?![a-z])"
                          r"|(?<=[a-z_])[GD](?![A-Za-z])")


def loss_parts(frame: Frame, run: RunInfo) -> set[str]:
    """The train-loss tags of a run that are parts of one objective, not losses of their
    own: those beside the run's total (`primary_losses`, when not every train loss is one),
    and the terms of an adversarial objective by their names (`_ADVERSARIAL`)."""
    tags = [s.tag for s in run.series if s.role == "train_loss"]
    primary = set(primary_losses(frame, run))
    parts = set(tags) - primary if len(primary) < len(tags) else set()
    return parts | {t for t in tags if _ADVERSARIAL.search(t)}


def mark_over_time(events: list[Event], frame: Any, run: RunInfo) -> list[Event]:
    """The marks that read a run's losses against each other over an event's span (parts of
    one objective: `_mark_components`; a training loss rising while validation improves:
    `_mark_val_improving`; a validation loss repeating at its next evaluation what the training
    loss did: `echoes.mark_echoes`). `frame` is anything whose `series(run, tag)` gives `.step` and
    `.value` arrays: the Frame here, a live run's view (`LiveRun.view`) for `watch` and the
    guard, so that they settle these events as `analyze` does."""
    events = _mark_components(list(events), frame, run)
    events = _mark_val_improving(events, frame, run)
    return mark_echoes(events, frame, run)


def _mark_components(events: list[Event], frame: Frame, run: RunInfo) -> list[Event]:
    """Events of one part of a multi-part loss (a PINN's boundary term, a GAN's generator term)
    read against the total: a divergence of a part while the total does not diverge is a
    trade-off between the parts (`details.component = True`), and a spike that never
    recovered on a part whose peak stays under NEGLIGIBLE x the total is too small to matter
    (`details.negligible = True`); diagnosis reports both apart, as information."""
    parts = [e for e in events if e.kind == "divergence"
             or (e.kind == "spike" and e.recovery == "none")]
    if not parts:
        return events
    primary = set(primary_losses(frame, run))
    role = {s.tag: s.role for s in run.series}
    if len(primary) == sum(r == "train_loss" for r in role.values()):
        return events
    total_divs = [e for e in events if e.kind == "divergence" and e.tag in primary]
    total = [frame.series(run.run, t).value for t in primary]
    total_level = max((float(np.nanmedian(v)) for v in total if np.isfinite(v).any()),
                      default=np.nan)
    out = []
    for e in events:
        part = e.tag not in primary and role.get(e.tag) == "train_loss"
        flat = _flat_beside(e, frame, run, role, primary)
        if flat:
            e = replace(e, details={**e.details, "component": True, "objective": True,
                                    "flat_tags": flat})
        elif part and e.kind == "divergence" and not e.details.get("nonfinite") and not any(
                _overlap(d, e) for d in total_divs):
            e = replace(e, details={**e.details, "component": True,
                                    "total_tags": sorted(primary)})
        elif (part and e.kind == "spike" and e.recovery == "none" and total_level > 0
              and float(e.details.get("peak_value", np.inf)) < NEGLIGIBLE * total_level):
            e = replace(e, details={**e.details, "negligible": True,
                                    "total_tags": sorted(primary)})
        out.append(e)
    return out


#: A part of a multi-part loss whose spike peaks under this share of the total cannot matter.
NEGLIGIBLE = 1e-3
#: "Flat" beside a rising total: the median over the rise within this factor of the one before.
FLAT_WITHIN = 1.1


def _flat_beside(e: Event, frame: Frame, run: RunInfo, role: dict[str, str],
                 primary: set[str]) -> list[str]:
    """The loss tags that stayed flat while the total training loss `e` diverged, when
    both a part of it (another train loss) and every validation loss did: the total rose
    because its objective changed (a term's weight on a schedule: KL annealing, a penalty
    coefficient), not because the model got worse; else []. Flat: the median over the
    divergence within FLAT_WITHIN x the median before it (each >= 3 finite points; before
    fewer than 3, the series' first 3)."""
    if e.kind != "divergence" or e.tag not in primary or e.details.get("nonfinite"):
        return []
    flat: dict[str, bool] = {}
    for s in run.series:
        if s.tag in primary or s.role not in LOSS_ROLES:
            continue
        sides = _before_during(frame.series(run.run, s.tag), e, positive=True)
        if sides is not None:
            before, during = sides
            flat[s.tag] = float(np.median(during)) <= FLAT_WITHIN * float(np.median(before))
    vals = [t for t in flat if role[t] == "val_loss"]
    parts = [t for t in flat if role[t] == "train_loss" and flat[t]]
    if not vals or not parts or not all(flat[t] for t in vals):
        return []
    return sorted(parts + vals)


def _overlap(a: Event, b: Event) -> bool:
    a1 = a.end_step if a.end_step is not None else a.start_step
    b1 = b.end_step if b.end_step is not None else b.start_step
    return a.start_step <= b1 and b.start_step <= a1


#: "Improved": the validation loss's median over the last third of a divergence at most this
#: share of its median before it (and not above FLAT_WITHIN x its median over the first third).
IMPROVED_BY = 0.9


def _mark_val_improving(events: list[Event], frame: Frame, run: RunInfo) -> list[Event]:
    """A training-loss divergence over which every validation loss of the run improved (its
    median over the last third of the divergence under IMPROVED_BY x its median before it —
    the first 3 points when fewer came before — and no higher than FLAT_WITHIN x over the
    first third; 3+ finite points over it, each) is no model getting worse: a model that
    diverged does worse on held-out data too. The training objective or data got harder (a
    curriculum, a rising augmentation level): `details.val_improving`, `val_tags`; diagnosis
    reports it as information. A flat validation loss is not enough alone (the objective
    change of `_flat_beside` needs a flat part of the loss too); one that rises keeps it a
    divergence."""
    vals = [s.tag for s in run.series if s.role == "val_loss"]
    if not vals or not any(e.kind == "divergence" for e in events):
        return events
    role = {s.tag: s.role for s in run.series}
    out = []
    for e in events:
        if (e.kind == "divergence" and role.get(e.tag) == "train_loss"
                and not e.details.get("nonfinite") and not e.details.get("component")
                and all(_improved(frame.series(run.run, t), e) for t in vals)):
            e = replace(e, details={**e.details, "val_improving": True, "val_tags": vals})
        out.append(e)
    return out


def _before_during(ser: Any, e: Event, positive: bool) -> "tuple[np.ndarray, np.ndarray] | None":
    """A series' finite values (and > 0, with `positive`) before event `e` (the series' first
    three when fewer than 3 came before: a rise from early on) and over it; None when either
    side has fewer than 3."""
    end = e.end_step if e.end_step is not None else e.start_step
    ok = np.isfinite(ser.value) & (ser.value > 0) if positive else np.isfinite(ser.value)
    before = ser.value[ok & (ser.step < e.start_step)]
    if before.shape[0] < 3:
        before = ser.value[ok][:3]
    during = ser.value[ok & (ser.step >= e.start_step) & (ser.step <= end)]
    if before.shape[0] < 3 or during.shape[0] < 3:
        return None
    return before, during


def _improved(ser: Any, e: Event) -> bool:
    sides = _before_during(ser, e, positive=False)
    if sides is None:
        return False
    before, during = sides
    k = max(1, during.shape[0] // 3)
    late, early, ref = (float(np.median(during[-k:])), float(np.median(during[:k])),
                        float(np.median(before)))
    if ref > 0:
        return late <= IMPROVED_BY * ref and late <= FLAT_WITHIN * early
    return late < ref and late <= early  # (a signed loss: lower, not a share)
