"""The schedule counterfactual: an event after a jump of the log's own LR that lies before
the replayed range (docs/replay.md).

A run whose LR jumps up (×3 or more between printed points) and diverges some steps later is
replayed from its checkpoint after the jump at the diverged level: the flagged steps do not
stand out from the steps just before them, and the jump is outside the replay. The question is
whether the run diverges without the jump: replay from the latest checkpoint before it (within
--max-steps of the event's end), the same batches, with lr_at(step) divided by the jump's ratio
from the jump on. When the flagged steps then stay at the loss level before the jump, the event
needs the jump: `lr_schedule`. When they diverge anyway, the jump is not the cause.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from . import logcheck, stats
from .verdicts import check_spike

if TYPE_CHECKING:
    from .probes import EventProbe

#: Logged values before the jump that make its level.
LEVEL_POINTS = 8


def earlier_jump(probe: "EventProbe") -> tuple[int, float, int] | None:
    """(iteration j, ratio, checkpoint c) of the latest upward jump of the log's LR before the
    replayed range, with a checkpoint c < j within --max-steps of the event's end."""
    s = probe.s
    if s.optimizer is None or not s.plugin.has("lr_at") or not probe.t.logged_lr:
        return None
    off = probe.spec.lr_offset
    lo = probe.last - probe.o.max_steps
    jumps = [(b + off, r) for b, r in logcheck.lr_jumps(probe.t.logged_lr, lo, probe.ckpt)
             if r > 1 and b + off <= probe.ckpt]
    for j, r in reversed(jumps):
        before = [c for c in probe.checkpoints if c < j and probe.last - c <= probe.o.max_steps]
        if before:
            return j, r, max(before)
    return None


def without_jump(probe: "EventProbe") -> dict[str, Any] | None:
    """The flagged steps replayed from before the jump without it; None when there is no such
    jump (or no logged loss before it to make a level)."""
    found = earlier_jump(probe)
    logged = probe.t.logged_loss or {}
    if found is None:
        return None
    j, r, c = found
    before = [logged[x] for x in sorted(logged) if x < j and math.isfinite(logged[x])]
    if len(before) < 3:
        return None
    level, scale = stats.level_and_scale(before[-LEVEL_POINTS:])
    s = probe.s
    s.load(c)
    s.lr_divide = (j, r)
    vals = []
    try:
        n = probe.last - c
        for i, step in enumerate(range(c + 1, probe.last + 1)):
            rec = s.train_step(step)
            if step >= probe.first:
                vals.append(rec.loss)
            probe.progress(probe.ev.id, f"from checkpoint {c} without the LR jump", i + 1, n)
    finally:
        s.lr_divide = None
    chk = check_spike(vals, level, scale, None, probe.nonfinite_event)
    return {"jump_step": j, "ratio": r, "checkpoint": c, "check": chk, "values": vals}
