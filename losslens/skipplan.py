"""The PaLM skip plan (docs/playbook.md): which checkpoint to restart from and which batches to skip.

PaLM (arXiv 2204.02311, §5.1) restarted ~100 steps before a spike and skipped ~200–500 data
batches. For each event that needs action (a spike that does not recover, divergence,
non-finite loss) this module picks the latest checkpoint at least `before` steps before the
onset and skips the iterations from that checkpoint through the end of the event, widened to
`min_skip` and capped at `max_skip` batches; overlapping ranges merge.

How steps are counted (where real users got bitten): steps are the trainer's own iteration
numbers as logged. A checkpoint saved "at iteration N" holds the state after N iterations, so
the first iteration run after restarting from it is N + 1, and that is where a skip starts.
Ranges are inclusive on both ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from .errors import InvalidParameterError
from .events import Event, SkipPlan

#: Event kinds (and spike recoveries) that call for a restart-and-skip.
ACTIONABLE_KINDS = ("divergence", "nonfinite")


def needs_action(event: Event) -> bool:
    if event.details.get("echo_of"):  # a validation loss' echo of a training event: the
        return False  # training event is the one planned for (and the one diagnosed)
    if event.kind == "spike":
        return event.recovery == "none" and not event.details.get("negligible")
    if event.details.get("component"):  # one part of a multi-part loss rose, the total did not
        return False
    if event.details.get("val_improving"):  # the train loss rose as validation improved
        return False
    if event.details.get("overflow_skip"):  # a grad norm NaN on a step the fp16 scaler skipped
        return False
    if event.details.get("not_computed"):  # a validation loss written NaN, not computed
        return False
    return event.kind in ACTIONABLE_KINDS


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge inclusive ranges that overlap or touch: [100,250]+[200,300] → [100,300]."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


@dataclass(frozen=True)
class SkipPolicy:
    """Parameters of the PaLM policy; defaults are PaLM's (100 before, 200–500 batches)."""

    before: int = 100
    min_skip: int = 200
    max_skip: int = 500

    def validate(self) -> None:
        for name in ("before", "min_skip", "max_skip"):
            if getattr(self, name) < 0:
                raise InvalidParameterError(
                    f"`{name}` must be >= 0, got {getattr(self, name)}")
        if self.max_skip and self.min_skip > self.max_skip:
            raise InvalidParameterError(
                f"`min_skip` ({self.min_skip}) must not exceed `max_skip` ({self.max_skip})")


def restart_from_first(first_step: int, policy: SkipPolicy) -> str:
    """What restarting from the first logged step means: the start of training (step 0: no
    iteration run yet), or, where the log starts later (a resumed run's log), the checkpoint
    it resumed from."""
    if first_step <= policy.before:
        return "restart from the start of training (step 0)"
    return (f"restart from step {first_step}, where this log starts (the checkpoint the run "
            "resumed from, if it resumed there; else your latest checkpoint before it)")


def _first_restart(first_step: int, policy: SkipPolicy) -> int:
    """The restart step when nothing earlier is known: the start of training (0, so the
    skip starts at iteration 1) for a log that starts within `before` steps of it, else the
    step the log starts at (a resumed run's log)."""
    return 0 if first_step <= policy.before else first_step


def restart_note(restart: int, checkpoints: Sequence[int] | None, checkpoint_source: str,
                 first_step: int | None, before: int) -> str:
    """The restart in words, as every view prints it (analyze's reports and skiplist's
    notes): from a known checkpoint, from the start of training, from where a resumed log
    starts, or from a step assumed without a checkpoint."""
    r = restart
    if r <= 0:
        return ("restart from the start of training (step 0: no checkpoint needed); the "
                "restarted run executes iteration 1 first")
    if checkpoints and r in checkpoints:
        return (f"restart from the checkpoint saved at iteration {r} (checkpoints from "
                f"{checkpoint_source}); training then resumes at iteration {r + 1}")
    if first_step is not None and r == first_step and r > before:
        return (f"restart from iteration {r}, where this log starts (the checkpoint the run "
                "resumed from, if it resumed there): no checkpoint known is early enough")
    if checkpoints is None:
        return (f"restart from iteration {r} (no checkpoints known: assumed exactly "
                f"{before} steps before the onset; pass --checkpoint-every, "
                "--checkpoints or --checkpoint-dir)")
    return (f"restart from iteration {r}, which is not one of the known checkpoints "
            f"({checkpoint_source})")


def _event_end(event: Event) -> int:
    ends = [s for s in (event.end_step, event.peak_step, event.start_step) if s is not None]
    if event.kind == "spike" and event.peak_step is not None:
        # a spike that never recovers has no end: skip through its peak
        return max(event.peak_step, event.start_step)
    return max(ends)


def plan(events: Sequence[Event], checkpoints: Sequence[int] | None = None,
         policy: SkipPolicy | None = None, global_batch_size: int | None = None,
         first_step: int = 0, first_steps: Mapping[str, int] | None = None
         ) -> tuple[SkipPlan | None, list[str]]:
    """The skip plan for `events`, and warnings (e.g. no checkpoint early enough).

    `checkpoints` are the saved iterations known (from the log, a folder or the user); when
    None, the restart point is assumed to be exactly `before` steps before the onset.
    """
    policy = policy or SkipPolicy()
    policy.validate()
    todo = sorted((e for e in events if needs_action(e)), key=lambda e: e.start_step)
    warnings: list[str] = []
    firsts = first_steps or {}
    broken = [e for e in todo if e.kind == "nonfinite"
              and e.start_step <= firsts.get(e.tag, first_step)]
    if broken:
        # NaN from the first step: a broken setup, which no restart-and-skip can fix
        todo = [e for e in todo if e not in broken]
        warnings.append(f"the loss is non-finite from the first logged step "
                        f"({broken[0].start_step}): no skip plan for that; fix the setup")
    if not todo:
        return None, warnings
    ckpts = sorted(set(int(c) for c in checkpoints)) if checkpoints else None
    ranges, restarts = [], []
    for event in todo:
        target = event.start_step - policy.before
        if ckpts is None:
            restart = target if target >= first_step else _first_restart(first_step, policy)
        else:
            early = [c for c in ckpts if c <= target]
            if not early:
                warnings.append(
                    f"no checkpoint at least {policy.before} steps before step "
                    f"{event.start_step} ({event.kind}); earliest known is "
                    f"{ckpts[0] if ckpts else 'none'}: {restart_from_first(first_step, policy)}")
                restart = _first_restart(first_step, policy)
            else:
                restart = early[-1]
        first = restart + 1
        last = max(_event_end(event), first + policy.min_skip - 1)
        if policy.max_skip:
            last = min(last, first + policy.max_skip - 1)
        ranges.append((first, last))
        restarts.append(restart)
    merged = merge_ranges(ranges)
    samples = None
    if global_batch_size:
        # iteration i (1-based) consumes samples (i-1)*gbs .. i*gbs-1
        samples = tuple(((a - 1) * global_batch_size, b * global_batch_size - 1)
                        for a, b in merged)
    kinds = ", ".join(sorted({e.kind if e.kind != "spike" else "unrecovered spike"
                              for e in todo}))
    reason = (f"{len(todo)} event(s) need a restart ({kinds}); PaLM policy: restart from the "
              f"latest checkpoint >= {policy.before} steps before each onset, skip "
              f"{policy.min_skip}-{policy.max_skip} batches through the end of the event")
    return SkipPlan(restart_from_step=min(restarts), skip=tuple(merged), reason=reason,
                    samples=samples, global_batch_size=global_batch_size or None), warnings
