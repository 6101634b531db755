"""`losslens skiplist`: the PaLM skip plan in the exact form a trainer takes.

Flag targets print one paste-able line on stdout and how steps are counted as `#` comments on
stderr. A thin shell over `pipeline.analyze` (the plan) and `exporters` (its forms).
"""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from .common import (BEFORE, CHECKPOINT_DIR, CHECKPOINT_EVERY, CHECKPOINTS, CONFIG, DEBUG,
                     GLOBAL_BATCH_SIZE, INPUT_FORMAT, MAX_SKIP, MIN_SKIP, OUTPUT, PATH, ROLE,
                     emit, err, read_frame, settings)


class Target(str, Enum):
    megatron_deepspeed = "megatron-deepspeed"
    megatron_lm = "megatron-lm"
    metaseq = "metaseq"
    samples = "samples"
    gpt_neox = "gpt-neox"
    hf = "hf"
    json = "json"
    text = "text"


def skiplist(
    path: str = PATH,
    target: Target = typer.Option(
        Target.text, "--format", "-f", "--target", "-t",
        help="megatron-deepspeed (--skip-train-iteration-range), megatron-lm "
             "(--iterations-to-skip), metaseq (--skip-batches), samples, gpt-neox "
             "(skip_train_iteration_ranges), hf (for losslens.skipdata: HF Trainer or a "
             "PyTorch loop), json or text."),
    indexing: int = typer.Option(
        1, "--indexing", metavar="0|1",
        help="megatron-lm: 1 as upstream ((iteration + 1) in the list) or 0 for releases and "
             "forks that test `iteration in` the list."),
    compact: bool = typer.Option(
        False, "--compact", help="megatron-lm: $(seq A B) per range instead of every number."),
    allow_no_checkpoint: bool = typer.Option(
        False, "--allow-no-checkpoint",
        help="Print the plan even when its restart step is not a known checkpoint "
             "(otherwise: an error, exit 2)."),
    output: Optional[str] = OUTPUT,
    config: Optional[str] = CONFIG,
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
    from ..checkpoints import parse_checkpoint_list
    from ..exporters import export, nothing_to_skip, plan_contexts
    from ..pipeline import analyze

    options = settings(
        config, role, input_format=input_format, checkpoint_every=checkpoint_every,
        checkpoints=parse_checkpoint_list(checkpoints) if checkpoints else None,
        checkpoint_dir=checkpoint_dir, before=before, min_skip=min_skip, max_skip=max_skip,
        global_batch_size=global_batch_size)
    analysis = analyze(read_frame([path], options), options)
    from dataclasses import replace

    from ..errors import InvalidParameterError

    if indexing not in (0, 1):
        raise InvalidParameterError(f"--indexing must be 0 or 1, got {indexing}")
    contexts = [replace(c, indexing=indexing, compact=compact)
                for c in plan_contexts(analysis, run)]
    if not contexts:
        err(nothing_to_skip(analysis, run))
        return
    out = export(target.value, contexts, allow_no_checkpoint)
    for note in out.notes:
        err(f"# {note}")
    for warning in out.warnings:
        err(f"Warning: {warning}")
    emit(out.stdout, output, [path])
