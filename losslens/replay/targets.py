"""Which events to replay, from an `Analysis` (a log just read) or a `losslens.analysis/1` document.

Replayable: spikes of a training loss, divergence and non-finite losses, grad-norm spikes, fp16
overflows — events tied to the batches of particular iterations. Validation-loss spikes, resume
artefacts, grokking and changepoints are not (no batch caused them). By default an event that
overlaps one already chosen, onset through recovery (a grad-norm spike under a loss spike or in
its recovery), is left out: one replay
answers both. `--events ID,...` picks events by id (then overlaps are kept).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import InvalidParameterError, LogNotFoundError, ParseError
from ..events import Event

REPLAYABLE = {"spike": ("train_loss",), "divergence": ("train_loss",),
              "nonfinite": ("train_loss",), "grad_spike": ("grad_norm",),
              "overflow": None}
#: Preferred first when two events overlap.
PRIORITY = ("nonfinite", "spike", "divergence", "overflow", "grad_spike")


@dataclass(frozen=True)
class Target:
    """One event to replay, with what the log says around it."""

    event: Event
    role: str
    logged: Mapping[int, float] | None = None  # the event's tag, by step (from a log)
    logged_loss: Mapping[int, float] | None = None  # the train loss, by step (from a log)
    restart_hint: int | None = None  # the skip plan's restart step
    logged_lr: Mapping[int, float] | None = None  # the learning rate, by step (from a log)
    logged_grad_norm: Mapping[int, float] | None = None
    logged_loss_scale: Mapping[int, float] | None = None
    log_format: str | None = None  # the reader's format name (how the log reduces its values)
    log_interval: int | None = None  # from the log's metadata


def _event_from_dict(d: Mapping[str, Any], run: str) -> Event:
    try:
        return Event(kind=d["kind"], run=run, tag=d["tag"], start_step=int(d["start_step"]),
                     peak_step=d.get("peak_step"), end_step=d.get("end_step"),
                     severity=d.get("severity", "info"), recovery=d.get("recovery"),
                     recovery_steps=d.get("recovery_steps"),
                     magnitude=_num(d.get("magnitude")), details=d.get("details") or {},
                     id=d.get("id", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ParseError(f"analysis document: event {d.get('id', '?')} lacks {exc}") from None


def _num(v: Any) -> float | None:
    return None if v is None else float(v)  # "inf"/"-inf" strings parse too


def read_document(path: str | Path) -> dict[str, Any]:
    """A `losslens analyze --format json` document, checked for its schema."""
    p = Path(path)
    if not p.is_file():
        raise LogNotFoundError(f"--analysis {p}: file not found")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"--analysis {p}: not JSON ({exc})") from None
    except RecursionError:
        raise ParseError(f"--analysis {p}: not an analysis document (nested too deeply to "
                         "read)") from None
    if not isinstance(doc, dict) or doc.get("schema") != "losslens.analysis/1":
        raise ParseError(f"--analysis {p}: expected schema losslens.analysis/1, got "
                         f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__}")
    check_document(doc, f"--analysis {p}")
    return doc


#: What replay reads of a run in an analysis document: key -> (types, what is expected)
_RUN_PARTS = {"run": (str, "a string"), "series": (list, "a list"), "events": (list, "a list"),
              "skip_plan": ((dict, type(None)), "an object or null"),
              "metadata": ((dict, type(None)), "an object or null")}
_EVENT_STEPS = ("start_step", "peak_step", "end_step")


def check_document(doc: Mapping[str, Any], where: str = "analysis document") -> None:
    """Raise ParseError naming the first part of `doc` that is not the shape replay reads
    (docs/schema/analysis.schema.json): `runs[1].events[0]: expected an object, got list`."""
    def bad(at: str, expected: str, got: Any) -> ParseError:
        return ParseError(f"{where}: {at}: expected {expected}, got {type(got).__name__}"
                          + (f" {got!r}"[:60] if isinstance(got, (int, float, str)) else ""))

    runs = doc.get("runs", [])
    if not isinstance(runs, list):
        raise bad("runs", "a list", runs)
    for i, r in enumerate(runs):
        if not isinstance(r, dict):
            raise bad(f"runs[{i}]", "an object", r)
        for key, (types, expected) in _RUN_PARTS.items():
            if key in r and not isinstance(r[key], types):
                raise bad(f"runs[{i}].{key}", expected, r[key])
        for j, item in enumerate(r.get("series", [])):
            if not isinstance(item, dict) or not isinstance(item.get("tag"), str):
                raise bad(f"runs[{i}].series[{j}]", "an object with a string tag", item)
        for j, e in enumerate(r.get("events", [])):
            if not isinstance(e, dict):
                raise bad(f"runs[{i}].events[{j}]", "an object", e)
            for key in _EVENT_STEPS:
                v = e.get(key)
                if (v is not None or key == "start_step") and (
                        isinstance(v, bool) or not isinstance(v, int)
                        or not -2 ** 63 <= v < 2 ** 63):
                    raise bad(f"runs[{i}].events[{j}].{key}", "a step (a 64-bit integer"
                              + (")" if key == "start_step" else ") or null"), v)


def _pick_run(names: Sequence[str], run: str | None) -> str:
    if run is not None:
        if run not in names:
            raise InvalidParameterError(f"--run {run}: no such run (runs: {', '.join(names)})")
        return run
    if len(names) != 1:
        raise InvalidParameterError(f"{len(names)} runs read ({', '.join(names) or 'none'}): "
                                    "pick one with --run")
    return names[0]


def targets_from_document(doc: Mapping[str, Any], run: str | None = None,
                          events: Sequence[str] | None = None) -> tuple[str, list[Target]]:
    check_document(doc)
    runs = {r.get("run"): r for r in doc.get("runs", [])}
    name = _pick_run(list(runs), run)
    r = runs[name]
    roles = {s["tag"]: s.get("role", "other") for s in r.get("series", [])}
    evs = [_event_from_dict(e, name) for e in r.get("events", [])]
    plan = r.get("skip_plan") or {}
    meta = r.get("metadata") or {}
    interval = meta.get("log_interval")
    return name, [replace(t, log_format=r.get("format"),
                          log_interval=int(interval) if isinstance(interval, int) else None)
                  for t in select(evs, roles, events, restart=plan.get("restart_from_step"))]


def targets_from_analysis(analysis: Any, run: str | None = None,
                          events: Sequence[str] | None = None) -> tuple[str, list[Target]]:
    """From a `pipeline.Analysis`: the logged values come along (replay checks them)."""
    name = _pick_run([ra.info.run for ra in analysis.runs], run)
    ra = next(x for x in analysis.runs if x.info.run == name)
    roles = ra.info.roles
    restart = ra.skip_plan.restart_from_step if ra.skip_plan else None
    chosen = select(list(ra.events), roles, events, restart)
    loss_tags = ra.info.tags_with_role("train_loss")

    def first_of(role: str) -> dict[int, float] | None:
        tags = ra.info.tags_with_role(role)
        return _values(analysis.frame, name, tags[0]) if tags else None

    lr, gn, ls = first_of("lr"), first_of("grad_norm"), first_of("loss_scale")
    out = []
    for t in chosen:
        logged = _values(analysis.frame, name, t.event.tag)
        loss_tag = t.event.tag if t.role == "train_loss" else (loss_tags[0] if loss_tags else None)
        loss = logged if loss_tag == t.event.tag else (
            _values(analysis.frame, name, loss_tag) if loss_tag else None)
        out.append(Target(t.event, t.role, logged, loss, t.restart_hint, lr, gn, ls,
                          ra.info.format, ra.info.metadata.log_interval))
    return name, out


def _values(frame: Any, run: str, tag: str) -> dict[int, float]:
    s = frame.series(run, tag)
    return {int(k): float(v) for k, v in zip(s.step, s.value)}


def select(evs: Sequence[Event], roles: Mapping[str, str], wanted: Sequence[str] | None,
           restart: int | None = None) -> list[Target]:
    """The replayable events (or exactly `wanted`, by id), overlaps folded by default."""
    if wanted:
        ids = {e.id: e for e in evs}
        unknown = [w for w in wanted if w not in ids]
        if unknown:
            raise InvalidParameterError(
                f"--events: no event {', '.join(unknown)} (events: {', '.join(ids) or 'none'})")
        return [Target(ids[w], roles.get(ids[w].tag, "other"), restart_hint=restart)
                for w in wanted]
    ok = [e for e in evs if e.kind in REPLAYABLE and (
        REPLAYABLE[e.kind] is None or roles.get(e.tag) in REPLAYABLE[e.kind])]
    ok.sort(key=lambda e: (PRIORITY.index(e.kind), e.start_step))
    chosen: list[Event] = []
    for e in ok:
        if not any(_overlap(e, c) for c in chosen):
            chosen.append(e)
    chosen.sort(key=lambda e: e.start_step)
    return [Target(e, roles.get(e.tag, "other"), restart_hint=restart) for e in chosen]


def flagged_range(event: Event, max_flagged: int,
                  logged_steps: Sequence[int] | None = None) -> tuple[int, int]:
    """The iterations whose batches are flagged: onset through peak (or end), capped.

    With a log that does not print every step, the onset widens to the first iteration after
    the previous printed step: the value printed at the onset covers (or follows) every batch
    since then, and the batch that caused it may be any of them. The cap grows to hold that
    whole interval."""
    ends = [s for s in (event.peak_step, event.end_step if event.kind != "spike" else None)
            if s is not None]
    last = max([event.start_step, *ends])
    first = event.start_step
    if logged_steps:
        prev = [s for s in logged_steps if s < first]
        if prev and prev[-1] < first - 1:
            first = prev[-1] + 1
        max_flagged = max(max_flagged, event.start_step - first + 1)
    return first, min(last, first + max_flagged - 1)


def _extent(event: Event) -> tuple[int, int]:
    """Onset through the end of recovery: a grad-norm spike while the loss is still coming
    back from its spike is the same event (the replay of the loss spike covers it)."""
    ends = [s for s in (event.peak_step, event.end_step) if s is not None]
    return event.start_step, max([event.start_step, *ends])


def _overlap(a: Event, b: Event) -> bool:
    a0, a1 = _extent(a)
    b0, b1 = _extent(b)
    return a0 <= b1 and b0 <= a1
