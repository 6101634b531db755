"""Units for an event's `magnitude`, and storms of events folded into one row.

`magnitude` means something different for each kind (a ratio for spikes, a count for overflow
bursts, replayed steps for a rollback, a relative change for regime changes); a bare number
in a report mixes them up. `magnitude_text` says what it is, the same way in every report
(terminal, Markdown, HTML, watch): `×1.87 peak/level`, `×1.19 last/best` (overfitting: the
last evaluation over the best), `141 steps replayed`, `2 overflows`, `-12% level`.

`group_storms` folds many non-critical events of one kind on one series (41 grad-norm
spikes of a noisy but healthy run) into one summarised row; critical events always keep their
own row, since their ids are what `losslens replay --events` takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

#: Kinds whose magnitude is a ratio peak / level (×). (Overfitting's is last / best.)
_RATIO = {"spike", "grad_spike", "resume_spike"}
#: Kinds whose magnitude is a relative change (shown in percent).
_RELATIVE = {"changepoint": "level", "grokking": "val. improvement",
             "sudden_drop": "drop", "repeat_data": "under-reported"}

#: Events of one kind on one tag beyond which the non-critical ones become one row.
STORM_MIN = 6

#: What the plot marks mean (the same symbols in the terminal and the HTML legend).
MARK_NAMES = {"▲": "spike", "◆": "divergence", "✖": "non-finite", "↺": "rollback/resume",
              "≡": "repeated data", "▼": "sudden drop / grokking", "!": "fp16 overflow",
              "┊": "regime change", "△": "grad-norm spike", "◇": "overfitting"}


def _num(v: float) -> str:
    """Three significant figures, as the data carry: 1.87, 29,421 (whole numbers up to
    99,999), 1.16e+09 (not ten digits of a ratio over a near-zero level)."""
    a = abs(v)
    if 100 <= a < 1e5:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def magnitude_text(kind: str, magnitude: float | None, details: dict | None = None) -> str:
    """The magnitude with its unit: what a person reads in a report."""
    if magnitude is None:
        return ""
    details = details or {}
    m = float(magnitude)
    if kind == "spike" and details.get("magnitude_units") == "difference":
        return f"Δloss {m:+.3g}"
    if kind in _RATIO:
        return f"×{_num(m)} peak/level"
    if kind == "overfitting":  # the last evaluation over the best one (of 1 - accuracy)
        unit = "last/best error" if details.get("metric") == "accuracy" else "last/best"
        return f"×{_num(m)} {unit}"
    if kind == "divergence":
        if details.get("space") == "linear":
            return f"Δloss {m:+.3g}"
        return f"×{_num(m)} above best"
    if kind == "overflow":
        n = int(round(m))
        return f"{n} overflow" + ("" if n == 1 else "s")
    if kind == "rollback":
        n = int(round(m))
        return f"{n:,} step" + ("" if n == 1 else "s") + " replayed"
    if kind == "changepoint" and m >= 9:  # a level ten times higher or more: a factor,
        return f"×{_num(1 + m)} level"  # not "+2.17e+08%"
    if kind in _RELATIVE:
        return f"{m * 100:+.3g}% {_RELATIVE[kind]}"
    return _num(m)


def event_magnitude(event) -> str:
    return magnitude_text(event.kind, event.magnitude, dict(event.details))


def recovery_text(event) -> str:
    if not event.recovery:  # a spike at the series' last point: nothing after it yet
        return "not known yet (last point)" if event.kind == "spike" and \
            event.end_step is None else ""
    if event.recovery == "none":
        return "not recovered"
    if event.recovery_steps is not None:
        n = int(event.recovery_steps)
        return f"{event.recovery}, {n:,} step" + ("" if n == 1 else "s")
    return str(event.recovery)


def steps_text(start: int, end: int | None) -> str:
    if end is None or end == start:
        return f"{start:,}".replace(",", "")
    return f"{start}–{end}"


@dataclass(frozen=True)
class Storm:
    """Several events of one kind on one tag, reported as one row."""

    kind: str
    tag: str
    events: tuple  # the events, in step order
    severity: str  # the worst of them

    @property
    def ids(self) -> str:
        nums = [e.id.rsplit("-", 1)[-1] for e in self.events]
        if all(n.isdigit() for n in nums):
            a, b = int(nums[0]), int(nums[-1])
            if b - a + 1 == len(nums):
                return f"{self.kind}-{a}…{b}"
        return f"{len(self.events)}× {self.kind}"

    @property
    def first_step(self) -> int:
        return self.events[0].start_step

    @property
    def last_step(self) -> int:
        return max(e.end_step if e.end_step is not None else e.start_step for e in self.events)

    def summary(self) -> str:
        n = len(self.events)
        mags = [e.magnitude for e in self.events if e.magnitude is not None]
        parts = [f"{n} events"]
        if mags:
            lo = magnitude_text(self.kind, min(mags), dict(self.events[0].details))
            hi = magnitude_text(self.kind, max(mags), dict(self.events[0].details))
            parts.append(lo if lo == hi else f"{lo.split(' ')[0]}–{hi}")
        rec: dict[str, int] = {}
        for e in self.events:
            if e.recovery:
                rec[e.recovery] = rec.get(e.recovery, 0) + 1
        if rec:
            parts.append(", ".join(f"{v} {k}" for k, v in sorted(rec.items(),
                                                                  key=lambda kv: -kv[1])))
        return "; ".join(parts)


def group_storms(events: Sequence, min_count: int = STORM_MIN) -> list:
    """The events in order, with each storm (≥ `min_count` non-critical events of one kind on
    one tag) replaced by one `Storm` at the place of its first event."""
    groups: dict[tuple[str, str], list] = {}
    for e in events:
        if e.severity != "critical":
            groups.setdefault((e.kind, e.tag), []).append(e)
    storms = {k: v for k, v in groups.items() if len(v) >= min_count}
    out: list = []
    placed: set[tuple[str, str]] = set()
    order = {"info": 0, "warning": 1, "critical": 2}
    for e in events:
        key = (e.kind, e.tag)
        if e.severity == "critical" or key not in storms:
            out.append(e)
        elif key not in placed:
            placed.add(key)
            evs = tuple(storms[key])
            worst = max((x.severity for x in evs), key=order.__getitem__)
            out.append(Storm(e.kind, e.tag, evs, worst))
    return out
