"""fp16 overflows: loss-scale drops, skipped-iteration counters, DeepSpeed OVERFLOW lines.

Training meaning (DESIGN §1): with fp16 and a dynamic loss scaler, a step whose gradients
overflow is skipped and the loss scale halves. A few at start-up (the scaler calibrating) are
normal; frequent overflows or a scale collapsing towards 1 are the fp16 symptoms BLOOM cured
with bf16 (and that scaling Q and K before their matmul avoids).

Statistic: every drop of a `loss_scale` series counts log2(before / after) overflows (one per
halving; the DeepSpeed reader emits one `loss scale` point per OVERFLOW line); a `skipped`
counter counts its per-interval values, or the increases of a cumulative counter (DeepSpeed
`skipped=N`: a non-decreasing series whose name does not say "number of"), and an `overflow`
counter (the DeepSpeed reader's count of OVERFLOW lines per step) counts its values. These
report the same overflows (a skipped counter often one logged step later), so a burst's count
is the larger of the two totals, not their sum. Overflows at most `burst_gap` steps apart form
one burst = one event. `nan iterations` and `num zeros` counters are not overflows.
Known false positives: a loss scale lowered by hand, or a scaler with a backoff factor other
than 2 (the count is then in halvings, not overflows).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..events import Event
from ..frame import Frame, RunInfo
from .spike import is_int, is_num, require

_NOT_OVERFLOW = re.compile(r"nan[ _-]?iter|num[ _-]?zeros", re.IGNORECASE)
_OVERFLOW_COUNT = re.compile(r"overflow", re.IGNORECASE)  # DeepSpeed OVERFLOW lines per step
#: Skipped-iteration counter names that count per logging interval (never cumulative).
PER_INTERVAL = re.compile(r"number[ _-]?of|step[ _-]?skipped|per[ _-]|overflow", re.IGNORECASE)


@dataclass(frozen=True)
class OverflowDetector:
    """Bursts of fp16 overflows, with their count and the lowest loss scale reached."""

    #: Overflows at most this many steps apart are one burst.
    burst_gap: int = 200
    #: A loss scale below this has collapsed: the gradients no longer fit fp16 at all.
    collapse_below: float = 1.0
    #: A burst with at least this many overflows is frequent (start-up calibration from
    #: 2^32 to a working scale takes ~16).
    frequent: int = 20

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("loss_scale", "skipped")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "overflow"

    def validate(self) -> None:
        require(self, "burst_gap", is_int(self.burst_gap) and self.burst_gap >= 0, "an int >= 0")
        require(self, "collapse_below", is_num(self.collapse_below) and self.collapse_below >= 0,
                "a number >= 0")
        require(self, "frequent", is_int(self.frequent) and self.frequent >= 1, "an int >= 1")

    def detect_run(self, frame: Frame, run: RunInfo) -> list[Event]:
        self.validate()
        counts: dict[int, dict[str, float]] = {}

        def add(key: str, pairs: list[tuple[int, int]]) -> None:
            for step, n in pairs:
                per = counts.setdefault(step, {})
                per[key] = per.get(key, 0) + n

        scales = [frame.series(run.run, t) for t in run.tags_with_role("loss_scale")]
        for s in scales:
            add("drops", _drops(s.step, s.value))
        for tag in run.tags_with_role("skipped"):
            if _NOT_OVERFLOW.search(tag):
                continue
            s = frame.series(run.run, tag)
            key = "overflow" if _OVERFLOW_COUNT.search(tag) else "skipped"
            add(key, _skips(tag, s.step, s.value))
        if not counts:
            return []
        steps = np.asarray(sorted(counts), dtype=np.int64)
        cuts = np.flatnonzero(np.diff(steps) > self.burst_gap) + 1
        return [self._event(run.run, [counts[int(x)] for x in part], part, scales)
                for part in np.split(steps, cuts)]

    def _event(self, run: str, per_step: list[dict[str, float]], steps: np.ndarray,
               scales: list) -> Event:
        drops = sum(c.get("drops", 0) for c in per_step)
        skipped = sum(c.get("skipped", 0) for c in per_step)
        # one overflow shows as a scale drop and an OVERFLOW-line count at its own step, and
        # in a skipped-iteration counter at the next logged step: count it once
        lines = sum(max(c.get("drops", 0), c.get("overflow", 0)) for c in per_step)
        count = max(lines, skipped)
        first, last = int(steps[0]), int(steps[-1])
        details: dict[str, Any] = {"count": int(count), "drops": int(drops),
                                   "skipped": int(skipped), "min_loss_scale": None}
        peak, tag = None, scales[0].tag if scales else ""
        for s in scales:
            inside = (s.step >= first) & (s.step <= last) & np.isfinite(s.value)
            if inside.any():
                i = np.flatnonzero(inside)[np.argmin(s.value[inside])]
                low = float(s.value[i])
                if details["min_loss_scale"] is None or low < details["min_loss_scale"]:
                    details["min_loss_scale"], peak, tag = low, int(s.step[i]), s.tag
        low = details["min_loss_scale"]
        collapsed = low is not None and low < self.collapse_below
        details["collapsed"] = collapsed
        details["frequent"] = count >= self.frequent
        severity = "warning" if collapsed or count >= self.frequent else "info"
        return Event(kind=self.kind, run=run, tag=tag, start_step=first, peak_step=peak,
                     end_step=last, severity=severity, magnitude=float(count), details=details)


def _drops(steps: np.ndarray, values: np.ndarray) -> list[tuple[int, int]]:
    """(step, overflows) at each drop of the loss scale: one per halving, at least one."""
    ok = np.isfinite(values) & (values > 0)
    st, v = steps[ok], values[ok]
    if v.shape[0] < 2:
        return []
    i = np.flatnonzero(v[1:] < v[:-1]) + 1
    n = np.maximum(1, np.rint(np.log2(v[i - 1] / v[i]))).astype(int)
    return list(zip(st[i].tolist(), n.tolist()))


def _skips(tag: str, steps: np.ndarray, values: np.ndarray) -> list[tuple[int, int]]:
    """(step, overflows) from a skipped-iteration counter, per-interval or cumulative."""
    ok = np.isfinite(values)
    st, v = steps[ok], values[ok]
    if v.shape[0] == 0:
        return []
    if counter_is_cumulative(tag, v):
        inc = np.diff(v, prepend=v[0])
        i = np.flatnonzero(inc > 0)
        return list(zip(st[i].tolist(), np.rint(inc[i]).astype(int).tolist()))
    i = np.flatnonzero(v > 0)
    return list(zip(st[i].tolist(), np.maximum(1, np.rint(v[i])).astype(int).tolist()))


def counter_is_cumulative(tag: str, values: np.ndarray) -> bool:
    """Whether a skipped-iteration counter counts since the start (DeepSpeed `skipped=N`):
    its name does not say per-interval and its finite values never decrease, ending above 1.
    Decided from all of the counter's values (a streaming form must re-decide on the whole)."""
    v = values[np.isfinite(values)]
    return (not PER_INTERVAL.search(tag) and v.shape[0] > 1
            and bool(np.all(np.diff(v) >= 0)) and bool(v[-1] > 1))
