"""Non-finite values: NaN or +-inf in a loss or the grad norm, and "nan iterations" counters.

Training meaning (docs/playbook.md): a NaN/inf loss means the step's arithmetic overflowed or a
division blew up (fp16 attention scores, Adam's epsilon, a bad batch); the weights may be
poisoned from there on. Megatron counts such steps (`number of nan iterations`) and prints the
line without `lm loss`, which its reader turns into a NaN point.

Statistic: none: every non-finite value (or counter value > 0) is reported. Points closer than
`merge_within` steps form one event (first -> last), and so do points consecutive in the
series whatever their step gap (a validation loss logged once an epoch that stays NaN is one
stretch, not an event per evaluation); `details.count` says how many, and
`details.bursts` lists each run of consecutive ones as [first, last] steps (the first
`MAX_BURSTS`; `details.burst_count` counts them all): NaN bursts with training going on between
them are one event, not a storm, yet each burst stays visible (a batch to look at).
A grad norm (not a loss) that is NaN/inf only on a few isolated steps, in bursts of at most
`skip_burst` consecutive points, at most `skip_points` points in all and finite again after
them, is the fp16 loss scaler skipping overflowed steps (HF Trainer logs the grad norm of a
skipped step as NaN/inf while the loss stays finite): that event is `info` with
`details.overflow_skip` true, and the diagnosis names it an overflow, not a NaN (a NaN loss on
the same steps is its own, critical, event). Every value event says its series' `role`.
Known false positives: a trainer that logs `inf` as a placeholder before the first step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..events import Event
from ..frame import Series
from .params import validate_once
from .spike import is_int, require

#: Counter tags of steps whose loss or gradient was NaN (role `skipped`).
NAN_COUNTER = re.compile(r"nan[ _-]?iter", re.IGNORECASE)
#: Bursts listed per event (a long stretch of flickering NaN would list thousands).
MAX_BURSTS = 20


@dataclass(frozen=True)
class NonFiniteDetector:
    """NaN/inf values, and nan-iteration counters above zero; see the module docstring."""

    #: Non-finite points at most this many steps apart are one event (a burst, not many).
    merge_within: int = 1000
    #: A grad-norm burst of at most this many consecutive non-finite points can be an fp16
    #: overflow skip (HF's scaler skips one step per overflow; start-up calibration a few).
    skip_burst: int = 5
    #: ... and at most this many non-finite points in the event (more is persistent, not skips;
    #: the overflow detector's `frequent`).
    skip_points: int = 20

    scope: ClassVar[str] = "series"
    roles: ClassVar[tuple[str, ...]] = ("train_loss", "val_loss", "grad_norm", "skipped")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "nonfinite"

    def validate(self) -> None:
        require(self, "merge_within", is_int(self.merge_within) and self.merge_within >= 0,
                "an int >= 0")
        require(self, "skip_burst", is_int(self.skip_burst) and self.skip_burst >= 0,
                "an int >= 0")
        require(self, "skip_points", is_int(self.skip_points) and self.skip_points >= 0,
                "an int >= 0")

    def detect(self, series: Series) -> list[Event]:
        validate_once(self)
        steps = np.asarray(series.step).astype(np.int64)
        values = np.asarray(series.value, dtype=float)
        if series.role == "skipped":
            if not NAN_COUNTER.search(series.tag):
                return []
            with np.errstate(invalid="ignore"):
                hit = np.isfinite(values) & (values > 0)
            source, counts = "counter", np.where(hit, values, 0.0)
        else:
            hit = ~np.isfinite(values)
            source, counts = "value", hit.astype(float)
        idx = np.flatnonzero(hit)
        if idx.shape[0] == 0:
            return []
        # a new event where the next hit is far in steps AND a finite point lies between
        gaps = np.flatnonzero((np.diff(steps[idx]) > self.merge_within) & (np.diff(idx) > 1))
        firsts = np.r_[0, gaps + 1]
        lasts = np.r_[gaps, idx.shape[0] - 1]
        return [self._event(series, steps, values, counts, idx[f:l + 1], source)
                for f, l in zip(firsts, lasts)]

    def _event(self, series: Series, steps: np.ndarray, values: np.ndarray,
               counts: np.ndarray, idx: np.ndarray, source: str) -> Event:
        breaks = np.flatnonzero(np.diff(idx) > 1)
        firsts, lasts = idx[np.r_[0, breaks + 1]], idx[np.r_[breaks, idx.shape[0] - 1]]
        details: dict[str, object] = {
            "count": int(round(float(counts[idx].sum()))), "points": int(idx.shape[0]),
            "source": source, "burst_count": int(firsts.shape[0]),
            "bursts": [[int(steps[a]), int(steps[b])]
                       for a, b in zip(firsts[:MAX_BURSTS], lasts[:MAX_BURSTS])]}
        if source == "value":
            v = values[idx]
            details.update(nan=int(np.isnan(v).sum()), posinf=int((v == np.inf).sum()),
                           neginf=int((v == -np.inf).sum()))
            after = idx[-1] + 1
            details["finite_after"] = bool(np.isfinite(values[after:]).any())
            details["role"] = series.role
            details["overflow_skip"] = bool(
                series.role == "grad_norm" and details["finite_after"]
                and idx.shape[0] <= self.skip_points
                and int((lasts - firsts).max()) + 1 <= self.skip_burst)
        skip = bool(details.get("overflow_skip"))
        return Event(kind=self.kind, run=series.run, tag=series.tag,
                     start_step=int(steps[idx[0]]), end_step=int(steps[idx[-1]]),
                     severity="info" if skip else "critical", details=details)
