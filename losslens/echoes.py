"""Echoes: a validation loss showing, at its first evaluation since, what the training loss did.

A run evaluates every few thousand steps; when its training loss turns NaN, jumps and never
comes back, or diverges, the next evaluation shows the same thing: the validation loss is NaN
from there, or jumps and stays up. The detectors see two events, one per series, and the
validation one starts later (at that evaluation), so a reader counts two incidents and dates
the second wrongly ("divergence from step 11932" where the training loss broke at 10349).

`mark_echoes` marks such a validation event (`details.echo_of`: the training event's kind,
tag and start) when

- the training event is one that does not end by itself: non-finite values, a divergence (not
  a component's or a curriculum's rise), or a spike that never recovered;
- the validation event is of the same nature (non-finite for non-finite; a spike or a
  divergence for a spike or a divergence) and starts at the validation loss' first point at
  or after the training event's start, while the training event still lasts: it could not
  have been seen earlier, and nothing came between.

`pipeline.conclude` leaves echoes out of the diagnosis: the training event's finding says
what happened and when; the echo stays in the event list, as information, with the training
event it repeats. A validation event with a point of its own between (it rose later, or
recovered and broke again) is no echo.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from .events import Event
from .frame import RunInfo

#: Which validation events can repeat which training events.
_SAME = {"nonfinite": ("nonfinite",), "spike": ("spike", "divergence"),
         "divergence": ("spike", "divergence")}


def _lasting(e: Event) -> bool:
    """A training event that does not end by itself."""
    if e.kind == "nonfinite":
        return not e.details.get("overflow_skip")
    if e.kind == "spike":
        return e.recovery == "none" and not e.details.get("negligible")
    if e.kind == "divergence":
        return not (e.details.get("component") or e.details.get("val_improving")
                    or e.details.get("objective"))
    return False


def _lasts_until(e: Event, step: int) -> bool:
    if e.kind == "nonfinite":
        end = e.end_step if e.end_step is not None else e.start_step
        return end >= step or not e.details.get("finite_after", True)
    return e.end_step is None or e.end_step >= step  # a spike that never recovered: for good


def is_echo(e: Event) -> bool:
    """Whether `mark_echoes` marked `e` as a validation loss' echo of a training event."""
    return bool(e.details.get("echo_of"))


def mark_echoes(events: Sequence[Event], frame: Any, run: RunInfo) -> list[Event]:
    """`events` with validation echoes of lasting training events marked (`details.echo_of`).
    `frame` is anything whose `series(run, tag)` gives a `.step` array (the Frame, or a live
    run's view)."""
    role = {s.tag: s.role for s in run.series}
    train = [e for e in events if role.get(e.tag) == "train_loss" and _lasting(e)]
    if not train or "val_loss" not in role.values():
        return list(events)
    steps: dict[str, np.ndarray] = {}
    out = []
    for e in events:
        if role.get(e.tag) == "val_loss" and e.kind in ("nonfinite", "spike", "divergence"):
            if e.tag not in steps:
                steps[e.tag] = np.asarray(frame.series(run.run, e.tag).step)
            st = steps[e.tag]
            for t in train:
                if (e.kind in _SAME[t.kind] and t.start_step <= e.start_step
                        and _lasts_until(t, e.start_step)):
                    first = st[st >= t.start_step]
                    if first.shape[0] and int(first[0]) == e.start_step:
                        e = replace(e, details={**e.details, "echo_of": {
                            "kind": t.kind, "tag": t.tag, "start_step": t.start_step}})
                        break
        out.append(e)
    return out
