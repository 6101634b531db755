"""The guard's policy (`[tool.losslens.guard]`) and what it answers (`Decision`).

`GuardPolicy` holds what the guard does about what it finds (checks, bars, skips, stops,
the PaLM plan, and how it runs: a worker process, or in process in time slices); `Decision`
is what `Guard.step` returns. Kept apart from the guard's machinery (`.core`), which
`.config`, the callbacks and the worker share.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidParameterError
from ..events import Event, SkipPlan

#: What the guard can answer, mildest first.
ACTIONS = ("none", "alert", "skip_step", "stop_and_restart")
SEVERITIES = ("info", "warning", "critical")
#: Tags (and their roles) under which the guard files what `step` is given.
TAGS = {"loss": "train_loss", "grad_norm": "grad_norm", "lr": "lr", "loss_scale": "loss_scale"}


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard does about what it finds (`[tool.losslens.guard]`)."""

    #: Run the detectors every this many steps (and at once on a value over the bar).
    check_every: int = 50
    #: The bar, in robust scales over the trailing median of the log loss (and grad norm).
    screen_z: float = 3.0
    #: Answer skip_step for a step whose loss or grad norm is NaN/inf.
    skip_nonfinite: bool = True
    #: Answer skip_step for a step that starts a spike at least this many robust scales over
    #: the trailing level (0: never; OLMo-core skips at 6 standard deviations).
    skip_z: float = 0.0
    #: Stop and restart when a spike has not come back for this many steps.
    stop_after: int = 50
    #: Which events may stop the run: an unrecovered spike, a divergence, a NaN/inf burst
    #: of at least `stop_nonfinite` points.
    stop_on: tuple[str, ...] = ("spike", "divergence", "nonfinite")
    stop_nonfinite: int = 3
    #: Alert on new events (and events whose severity rose) at or above this severity.
    alert_severity: str = "warning"
    #: The PaLM plan: restart from the latest checkpoint at least `before` steps before the
    #: onset, skip `min_skip`..`max_skip` batches from there through the event.
    before: int = 100
    min_skip: int = 200
    max_skip: int = 500
    #: Run the detectors in a worker process (`step` only appends and ships the numbers;
    #: a detector decision comes back a few steps later). NaN/inf skip_step stays at once.
    #: Off when `skip_z` > 0 (a late skip_step is no use) and where there is no fork/exec.
    asynchronous: bool = True
    #: Asynchronous: `step` waits for the worker when it is more than this many calls
    #: behind, so a decision is delivered at most `max_lag` calls after its step (in
    #: process, with `slice_ms`: for the window update's slices to catch up).
    max_lag: int = 100
    #: In process: 0 (the default) runs each window update to its end in the call that is
    #: due (decisions at their own step). N > 0: a `step` gives the update at most N
    #: milliseconds and it goes on in the following calls (`.slices`, needs the `greenlet`
    #: package: the `slices` extra; its decision comes when it is done, a few calls later;
    #: it costs 30-100 % more CPU). Whole checks whenever `skip_z` > 0.
    slice_ms: float = 0.0

    def validate(self) -> None:
        if not isinstance(self.asynchronous, bool):
            raise InvalidParameterError(
                f"guard.asynchronous must be true or false, got {self.asynchronous!r}")
        for name in ("check_every", "stop_after", "stop_nonfinite", "max_lag"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidParameterError(f"guard.{name} must be an int >= 1, got {v!r}")
        for name in ("before", "min_skip", "max_skip"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidParameterError(f"guard.{name} must be an int >= 0, got {v!r}")
        for name in ("screen_z", "skip_z", "slice_ms"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise InvalidParameterError(f"guard.{name} must be a number >= 0, got {v!r}")
        if self.alert_severity not in SEVERITIES:
            raise InvalidParameterError(f"guard.alert_severity must be one of "
                                        f"{', '.join(SEVERITIES)}, got {self.alert_severity!r}")
        bad = [k for k in self.stop_on if k not in ("spike", "divergence", "nonfinite")]
        if bad:
            raise InvalidParameterError(f"guard.stop_on: unknown kind {bad[0]!r}; "
                                        "known: spike, divergence, nonfinite")


@dataclass(frozen=True)
class Decision:
    """What to do after a step. Falsy when there is nothing to do."""

    action: str
    step: int
    reason: str = ""
    events: tuple[Event, ...] = ()
    plan: SkipPlan | None = None

    def __bool__(self) -> bool:
        return self.action != "none"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "step": self.step, "reason": self.reason,
                "events": [e.to_dict() for e in self.events],
                "plan": None if self.plan is None else self.plan.to_dict()}


NOTHING = Decision("none", -1)
