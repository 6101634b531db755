"""Which numbering of the checkpoint the log agrees with, when the replay departs from the log
at its very first compared step (docs/replay.md, "The plug-in API").

Checkpoint c must be the state after iteration c. A plug-in that numbers a file one off (a loop
that counts from 0 and saves at the top of iteration N holds the state after N − 1; a loop that
saves after the update and before counting it holds N + 1) gives a replay that departs at once.
Replay then loads checkpoint c once more and replays it as the state after c − 1 (iterations c,
c + 1, ...), and — when that departs too — as the state after c + 1: a short replay each, to
the first logged steps that can be compared (at most `COMPARED` of them). The numbering that
matches is reported; the event stays `inconclusive` (the plug-in is to be fixed, not guessed).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import logcheck

if TYPE_CHECKING:
    from .probes import EventProbe

#: Numberings tried, in order: nanoGPT's save-at-the-top-of-the-iteration first.
SHIFTS = (-1, 1)
#: Logged steps compared per shifted replay.
COMPARED = 2


@dataclass(frozen=True)
class Shift:
    """A numbering tried: checkpoint c loaded as the state after c + shift."""

    shift: int
    match: bool | None  # None: no logged step could be compared
    compared: int
    worst: float | None
    steps: tuple[int, int] | None  # the iterations replayed

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _end(probe: "EventProbe", start: int) -> int | None:
    """The last iteration to replay from the state after `start`: the COMPARED-th logged
    step that can be compared (a mean over an interval must lie after the state), before the
    event and within --max-steps; None when there is none."""
    logged = sorted(s for s in (probe.t.logged_loss or {}) if start < s < probe.first)
    need = COMPARED + (1 if probe.spec.loss == "mean" else 0)
    steps = [s for s in logged if s - start <= probe.o.max_steps][:need]
    return steps[-1] if steps else None


def try_shifts(probe: "EventProbe", noise: float) -> list[Shift]:
    """Checkpoint `probe.ckpt` replayed as the state after ckpt − 1, then ckpt + 1 (only when
    the first does not match); each compared with the log the way the main replay was."""
    out: list[Shift] = []
    c = probe.ckpt
    for d in SHIFTS:
        start = c + d
        end = _end(probe, start)
        if end is None or start < 0:
            out.append(Shift(d, None, 0, None, None))
            continue
        probe.s.load(c)
        replayed = {}
        n = end - start
        for i, step in enumerate(range(start + 1, end + 1)):
            r = probe.s.train_step(step)
            replayed[step] = r.log_loss if r.log_loss is not None else r.loss
            probe.progress(probe.ev.id, f"checkpoint {c} as the state after {start}", i + 1, n)
        lc = logcheck.compare(probe.t.logged_loss, replayed, probe.spec, start, probe.first,
                              end, noise)
        k = sum(1 for p in lc.pre if p.rel is not None)
        out.append(Shift(d, lc.pre_match if k else None, k, lc.pre_worst, (start + 1, end)))
        if lc.pre_match:
            break
    return out
