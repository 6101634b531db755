"""The plan file a stopped run leaves, and skipping its batches on resume.

`write_plan(folder, decision)` writes `losslens-guard-plan.json` next to the checkpoints
(atomically); `read_plan(path)` reads it back (None when there is none). Ranges are the
trainer's optimizer steps, inclusive, 1-based: step k trains on the k-th batch of the run's
data order (k-th group of `batches_per_step` loader batches with gradient accumulation).

On resume, the run restarts from `plan.restart_from_step` and the data of the planned steps
is left out: the steps after the restart train on the batches after the skipped ones, as
PaLM did. `SkippingSampler` does that for a map-style dataset's sampler (HF Trainer and
Lightning use it through their callbacks), `skip_planned` for any iterable of batches.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import LossLensError
from ..events import SkipPlan

PLAN_FILE = "losslens-guard-plan.json"
SCHEMA = "losslens.guard_plan/1"


def write_plan(folder: str | os.PathLike, decision: Any) -> Path:
    """Write the stop decision (with its plan and events) as JSON into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, **decision.to_dict()}
    path = folder / PLAN_FILE
    fd, tmp = tempfile.mkstemp(prefix=".losslens-plan-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_plan(path: str | os.PathLike) -> SkipPlan | None:
    """The plan in `path` (a plan file or the folder holding one); None when none is there."""
    p = Path(path)
    if p.is_dir():
        p = p / PLAN_FILE
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        plan = doc["plan"]
        if doc.get("schema") != SCHEMA:
            raise ValueError(f"schema {doc.get('schema')!r}, expected {SCHEMA!r}")
        if plan is None:
            return None
        return SkipPlan(restart_from_step=int(plan["restart_from_step"]),
                        skip=tuple((int(a), int(b)) for a, b in plan["skip"]),
                        reason=str(plan.get("reason", "")), units=plan.get("units", "iterations"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LossLensError(f"{p}: not a losslens guard plan ({exc})") from None


def _ranges(skip: SkipPlan | Sequence[Sequence[int]] | None) -> list[tuple[int, int]]:
    if skip is None:
        return []
    if isinstance(skip, SkipPlan):
        return [tuple(r) for r in skip.skip]
    return sorted((int(a), int(b)) for a, b in skip)


def planned(step: int, skip: SkipPlan | Sequence[Sequence[int]] | None) -> bool:
    """Whether the 1-based step `step` is in one of the planned ranges."""
    return any(a <= step <= b for a, b in _ranges(skip))


def skip_planned(batches: Iterable[Any], skip: SkipPlan | Sequence[Sequence[int]] | None,
                 batches_per_step: int = 1, first_step: int = 1) -> Iterator[Any]:
    """The batches of `batches` (the run's data in order, starting at step `first_step`)
    without those of the planned steps."""
    ranges = _ranges(skip)
    for i, batch in enumerate(batches):
        step = first_step + i // batches_per_step
        if not any(a <= step <= b for a, b in ranges):
            yield batch


class SkippingSampler:
    """A sampler that leaves out the samples of the planned steps.

    `sampler` is the run's sampler (its order must be the same as in the stopped run: a
    seeded RandomSampler, a SequentialSampler); `samples_per_step` how many of its indices
    one optimizer step consumes (batch size x gradient accumulation on this process). Steps
    are counted over epochs: `set_epoch(e)` (called by the trainers) says which epoch an
    iteration is, `steps_per_epoch` how many steps one holds (len(sampler) // samples_per_step
    when not given).
    """

    def __init__(self, sampler: Any, skip: SkipPlan | Sequence[Sequence[int]] | None,
                 samples_per_step: int, steps_per_epoch: int | None = None) -> None:
        self.sampler, self.ranges = sampler, _ranges(skip)
        self.samples_per_step = int(samples_per_step)
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def _per_epoch(self) -> int:
        if self.steps_per_epoch is not None:
            return self.steps_per_epoch
        return max(1, len(self.sampler) // self.samples_per_step)

    def __iter__(self) -> Iterator[int]:
        base = self.epoch * self._per_epoch()
        for i, index in enumerate(self.sampler):
            step = base + i // self.samples_per_step + 1
            if not any(a <= step <= b for a, b in self.ranges):
                yield index

    def __len__(self) -> int:
        base, n, per = self.epoch * self._per_epoch(), len(self.sampler), self.samples_per_step
        last = base + -(-n // per)  # the epoch's last step
        dropped = 0
        for a, b in self.ranges:
            for s in range(max(a, base + 1), min(b, last) + 1):
                dropped += min(per, n - (s - base - 1) * per)
        return n - dropped


def install_skipping(dataloader: Any, skip: SkipPlan | Sequence[Sequence[int]] | None,
                     samples_per_step: int) -> bool:
    """Wrap the sampler inside `dataloader`'s batch sampler (in place) with a
    SkippingSampler; False when the loader has no such sampler (an iterable dataset)."""
    bs = getattr(dataloader, "batch_sampler", None)
    while bs is not None and not hasattr(bs, "sampler") and hasattr(bs, "batch_sampler"):
        bs = bs.batch_sampler  # accelerate's BatchSamplerShard
    inner = getattr(bs, "sampler", None)
    if inner is None or isinstance(inner, SkippingSampler):
        return isinstance(inner, SkippingSampler)
    bs.sampler = SkippingSampler(inner, skip, samples_per_step)
    return True
