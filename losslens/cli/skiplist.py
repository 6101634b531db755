"""`losslens skiplist`: the PaLM skip plan in the exact form a trainer takes.

Flag targets print one paste-able line on stdout and how steps are counted as `#` comments on
stderr. A thin shell over `pipeline.analyze_frame` and `exporters`.
"""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from .common import (BEFORE, CHECKPOINT_DIR, CHECKPOINT_EVERY, CHECKPOINTS, DEBUG,
                     GLOBAL_BATCH_SIZE, INPUT_FORMAT, MAX_SKIP, MIN_SKIP, OUTPUT, PATH, ROLE,
                     emit, err, read_frame)


class Target(str, Enum):
    megatron_deepspeed = "megatron-deepspeed"
    megatron_lm = "megatron-lm"
    metaseq = "metaseq"
    samples = "samples"
    json = "json"
    text = "text"


def skiplist(
    path: str = PATH,
    target: Target = typer.Option(
        Target.text, "--format", "-f", "--target", "-t",
        help="megatron-deepspeed (--skip-train-iteration-range), megatron-lm "
             "(--iterations-to-skip), metaseq (--skip-batches), samples, json or text."),
    output: Optional[str] = OUTPUT,
    checkpoint_every: Optional[int] = CHECKPOINT_EVERY,
    checkpoints: Optional[str] = CHECKPOINTS,
    checkpoint_dir: Optional[str] = CHECKPOINT_DIR,
    before: Optional[int] = BEFORE,
    min_skip: Optional[int] = MIN_SKIP,
    max_skip: Optional[int] = MAX_SKIP,
    global_batch_size: Optional[int] = GLOBAL_BATCH_SIZE,
    run: Optional[str] = typer.Option(None, "--run", metavar="NAME",
                                      help="The run to export (folders)."),
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """The PaLM skip plan for a trainer: restart checkpoint and batches to skip.

    Checkpoints come from --checkpoints, --checkpoint-dir or
    --checkpoint-every, else from the log's "saved checkpoint" lines.
    Flag targets print one paste-able line on stdout, and how steps are
    counted as '#' comments on stderr. Nothing to skip: a message on
    stderr, empty stdout, exit 0.
    """
    from ..exporters import explicit_checkpoints, export, nothing_to_skip, plan_contexts
    from ..pipeline import analyze_frame, last_step
    from ..roles import parse_overrides
    from ..skipplan import SkipPolicy

    policy = SkipPolicy(**{k: v for k, v in (("before", before), ("min_skip", min_skip),
                                             ("max_skip", max_skip)) if v is not None})
    policy.validate()
    frame = read_frame([path], input_format, parse_overrides(role))
    ckpts, source = explicit_checkpoints(checkpoint_every, checkpoints, checkpoint_dir,
                                         last_step(frame))
    analysis = analyze_frame(frame, policy=policy, checkpoints=ckpts,
                             global_batch_size=global_batch_size)
    contexts = plan_contexts(analysis, ckpts, source, policy, global_batch_size, run)
    if not contexts:
        err(nothing_to_skip(analysis, run))
        return
    out = export(target.value, contexts)
    for note in out.notes:
        err(f"# {note}")
    for warning in out.warnings:
        err(f"Warning: {warning}")
    emit(out.stdout, output, [path])
