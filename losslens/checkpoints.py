"""Where checkpoints come from, in one place: the user's list, a checkpoint folder, an interval,
or what the reader found for the run (its save lines, the folder beside the log or named by it;
`readers.checkpoints`, which also knows the folder names).

`resolve(...)` gives the saved iterations a skip plan may restart from and a phrase saying
where they came from (exports print it: how steps were counted is where users got bitten).
Explicit sources win over the log's lines, first of: a list, a folder, an interval.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from .errors import InvalidParameterError, LogNotFoundError

def checkpoints_from_dir(directory: str | Path) -> list[int]:
    """Saved iterations found in a checkpoint folder (the names `readers.checkpoints` knows:
    iter_0001000, global_step1000, checkpoint-1000, step1000, step-1000, fairseq
    checkpoint_1_1000.pt, Lightning epoch=0-step=1000.ckpt; Megatron's
    latest_checkpointed_iteration.txt, DeepSpeed's `latest` file)."""
    from .readers.checkpoints import scan_dir

    root = Path(directory)
    if not root.is_dir():
        raise LogNotFoundError(f"--checkpoint-dir {root}: no such folder")
    steps = scan_dir(root)
    if not steps:
        raise InvalidParameterError(
            f"--checkpoint-dir {root}: no checkpoint found (expected folders named iter_0001000, "
            "global_step1000, checkpoint-1000, step1000 or step-1000, checkpoint_1_1000.pt or "
            "epoch=0-step=1000.ckpt files, or latest_checkpointed_iteration.txt)")
    return steps


def parse_checkpoint_list(text: str) -> list[int]:
    """`--checkpoints 1000,2000 3000` → [1000, 2000, 3000]."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    bad = [p for p in parts if not p.isdigit()]
    if bad or not parts:
        raise InvalidParameterError(
            f"--checkpoints must be iteration numbers separated by commas, got {text!r}")
    return sorted({int(p) for p in parts})


def grid(every: int | None, last_step: int) -> list[int] | None:
    """A checkpoint every `every` iterations from 0 through `last_step` (None: no interval)."""
    if every is None:
        return None
    if every <= 0:
        raise InvalidParameterError(f"`checkpoint_every` must be > 0, got {every}")
    return list(range(0, last_step + every, every))


def from_metadata(info: Any) -> list[int] | None:
    """Saved iterations the reader found for a run (its log's save lines, or the checkpoint
    folder beside the log or named by it: `readers.checkpoints`), if any."""
    found = info.metadata.checkpoints
    return sorted(int(c) for c in found) if found else None


def resolve(listed: Sequence[int] | str | None, directory: str | None, every: int | None,
            last_step: int) -> tuple[list[int] | None, str]:
    """Checkpoints the user gave (first of a list, a folder, an interval) and a phrase saying
    where they came from; (None, "") when none was given (each run then uses its log's)."""
    if listed:
        if isinstance(listed, str):
            return parse_checkpoint_list(listed), "--checkpoints"
        return sorted({int(c) for c in listed}), "--checkpoints"
    if directory:
        return checkpoints_from_dir(directory), f"--checkpoint-dir {directory}"
    if every is not None:
        return grid(every, last_step), f"--checkpoint-every {every}"
    return None, ""


def for_run(info: Any, explicit: Sequence[int] | None,
            source: str) -> tuple[tuple[int, ...] | None, str]:
    """The checkpoints one run's plan uses: the explicit ones, else its log's lines."""
    if explicit is not None:
        return tuple(int(c) for c in explicit), source
    found = from_metadata(info)
    if found:
        return tuple(found), info.metadata.checkpoint_source or "the log's save lines"
    return None, "none"
