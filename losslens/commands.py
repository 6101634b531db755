"""The `skiplist` and `check` commands (registered on `losslens.cli.app`), and file output.

Thin shells: parse options, call the library (`pipeline`, `exporters`, `checks`), print.
Machine output on stdout (the paste-able flag, the CI document), messages on stderr.
Heavy modules are imported inside the functions so that `losslens --help` stays fast.
"""
from __future__ import annotations

import os
import sys
import tempfile
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically: a temp file in the same folder, then os.replace, so
    a reader (or a crash) never sees half a report."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        from .errors import LogNotFoundError

        raise LogNotFoundError(f"--output {target}: folder {folder} does not exist")
    from .errors import OutputError

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, permissions: one line, no traceback
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise


def emit(text: str, output: Optional[str]) -> None:
    """Print to stdout, or write atomically to `output` (and say so on stderr)."""
    if output and output != "-":
        write_atomic(output, text)
        sys.stderr.write(f"losslens: wrote {output}\n")
    else:
        sys.stdout.write(text)


# --------------------------------------------------------------------------- skiplist

class Target(str, Enum):
    megatron_deepspeed = "megatron-deepspeed"
    megatron_lm = "megatron-lm"
    metaseq = "metaseq"
    samples = "samples"
    json = "json"
    text = "text"


def skiplist(
    path: str = typer.Argument(..., help="A log file or folder (one run, or pick with --run)."),
    target: Target = typer.Option(
        Target.text, "--target", "-t",
        help="megatron-deepspeed (--skip-train-iteration-range), megatron-lm "
             "(--iterations-to-skip), metaseq (--skip-batches), samples, json or text."),
    checkpoint_every: Optional[int] = typer.Option(
        None, "--checkpoint-every", help="A checkpoint every N iterations."),
    checkpoints: Optional[str] = typer.Option(
        None, "--checkpoints", help="Saved iterations, comma-separated: 1000,2000,3000."),
    checkpoint_dir: Optional[str] = typer.Option(
        None, "--checkpoint-dir",
        help="Checkpoint folder: iter_0001000 / global_step1000 / checkpoint-1000 entries."),
    before: int = typer.Option(100, "--before", help="Restart at least N steps before onset."),
    min_skip: int = typer.Option(200, "--min-skip", help="Skip at least N batches."),
    max_skip: int = typer.Option(500, "--max-skip", help="Skip at most N batches (0: no cap)."),
    global_batch_size: Optional[int] = typer.Option(
        None, "--global-batch-size", help="Samples per iteration (samples target)."),
    run: Optional[str] = typer.Option(None, "--run", help="The run to export (folders)."),
    input_format: Optional[str] = typer.Option(None, "--input-format", "-i",
                                               help="Force a format instead of sniffing."),
    role: List[str] = typer.Option([], "--role", help="Override a series role: ROLE=TAG."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """The PaLM skip plan for a trainer: restart checkpoint and batches to skip.

    Checkpoints come from --checkpoints, --checkpoint-dir or
    --checkpoint-every, else from the log's "saved checkpoint" lines.
    Flag targets print one paste-able line on stdout, and how steps are
    counted as '#' comments on stderr. Nothing to skip: a message on
    stderr, empty stdout, exit 0.
    """
    from .cli import _boundary, _err, _read, _warn_frame

    with _boundary(debug):
        from .exporters import explicit_checkpoints, export, nothing_to_skip, plan_contexts
        from .pipeline import analyze_frame
        from .skipplan import SkipPolicy

        policy = SkipPolicy(before=before, min_skip=min_skip, max_skip=max_skip)
        policy.validate()
        frame = _read([path], input_format, role)
        _warn_frame(frame)
        last = max((s.last_step for r in frame.runs for s in r.series
                    if s.last_step is not None), default=0)
        ckpts, source = explicit_checkpoints(checkpoint_every, checkpoints, checkpoint_dir, last)
        analysis = analyze_frame(frame, policy=policy, checkpoints=ckpts,
                                 global_batch_size=global_batch_size)
        contexts = plan_contexts(analysis, ckpts, source, policy, global_batch_size, run)
        if not contexts:
            _err(nothing_to_skip(analysis, run))
            return
        out = export(target.value, contexts)
        for note in out.notes:
            _err(f"# {note}")
        for warning in out.warnings:
            _err(f"Warning: {warning}")
        sys.stdout.write(out.stdout)


# --------------------------------------------------------------------------- check

class FailOn(str, Enum):
    info = "info"
    warning = "warning"
    critical = "critical"


class CheckOutput(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    junit = "junit"


def check(
    paths: List[str] = typer.Argument(..., help="Log files or folders (every run is checked)."),
    fail_on: Optional[FailOn] = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above this (default: critical)."),
    config: Optional[str] = typer.Option(
        None, "--config", help="Settings file (default: [tool.losslens] in pyproject.toml or "
                               "losslens.toml, searched upward)."),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Reference run (a log, or Megatron golden-values JSON)."),
    rtol: Optional[float] = typer.Option(
        None, "--rtol", help="Per-step relative tolerance against the baseline (default 0.05)."),
    output: CheckOutput = typer.Option(CheckOutput.text, "--output",
                                       help="text, json, github (annotations) or junit."),
    output_file: Optional[str] = typer.Option(
        None, "--output-file", help="Write the output to this file (atomically)."),
    junit_file: Optional[str] = typer.Option(
        None, "--junit-file", help="Also write JUnit XML to this file."),
    input_format: Optional[str] = typer.Option(None, "--input-format", "-i",
                                               help="Force a format instead of sniffing."),
    role: List[str] = typer.Option([], "--role", help="Override a series role: ROLE=TAG."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    """CI gate: exit 1 on findings at or above --fail-on or a baseline regression.

    Exit 0 when clean, 2 on usage or input errors. Settings (fail-on,
    detector thresholds, ignored tags and kinds, allowed step ranges,
    rtol, baseline) come from [tool.losslens] in pyproject.toml or
    from losslens.toml, searched from the current folder upward.
    """

    import time

    from .cli import _boundary

    t0 = time.monotonic()
    with _boundary(debug):
        from .checks import RENDERERS, append_step_summary, render_junit, step_summary
        from .errors import LossLensError

        try:
            report = _run_check(paths, fail_on, config, baseline, rtol, input_format, role)
        except LossLensError as exc:  # the CI's test view still says what broke
            _junit_on_error(exc, paths, time.monotonic() - t0, output, output_file, junit_file)
            raise
        elapsed = time.monotonic() - t0
        if output is CheckOutput.junit:
            emit(render_junit(report, elapsed), output_file)
        else:
            emit(RENDERERS[output.value](report), output_file)
        if output is CheckOutput.github:
            append_step_summary(step_summary(report))
        if junit_file:
            write_atomic(junit_file, render_junit(report, elapsed))
    raise typer.Exit(report.exit_code)


def _junit_on_error(exc, paths, elapsed, output, output_file, junit_file) -> None:
    """On exit 2, JUnit with one errored testcase where JUnit was asked for."""
    from .checks import render_junit_error

    doc = render_junit_error(str(exc), paths, elapsed, type(exc).__name__)
    if junit_file:
        write_atomic(junit_file, doc)
    if output is CheckOutput.junit and output_file:
        write_atomic(output_file, doc)
    elif output is CheckOutput.junit:
        sys.stdout.write(doc)


def _run_check(paths, fail_on, config, baseline, rtol, input_format, role):
    from dataclasses import replace

    from .checks import build_detectors, load_config, read_reference, run_checks
    from .cli import _err, _read, _warn_frame
    from .pipeline import analyze_frame
    from .roles import parse_overrides

    cfg = load_config(config)
    cfg = replace(cfg, fail_on=fail_on.value if fail_on else cfg.fail_on,
                  rtol=cfg.rtol if rtol is None else rtol, baseline=baseline or cfg.baseline)
    cfg.validate()
    if cfg.source:
        _err(f"losslens: settings from {cfg.source}")
    detectors = build_detectors(cfg.detectors, cfg.source or "settings")
    frame = _read(paths, input_format, role)
    _warn_frame(frame)
    analysis = analyze_frame(frame, detectors=detectors)
    reference = None
    if cfg.baseline:
        ref_frame = read_reference(cfg.baseline, parse_overrides(role))
        reference = analyze_frame(ref_frame, detectors=detectors)
    return run_checks(analysis, cfg, reference, cfg.baseline)


def render_report(analysis, fmt: str) -> str:
    """The analysis as text (plain, no colours), json, markdown or html."""
    if fmt == "json":
        from .report.jsondoc import analysis_document, dumps

        return dumps(analysis_document(analysis)) + "\n"
    if fmt == "markdown":
        from .report.markdown import render

        return render(analysis)
    if fmt == "html":
        from .report.html import render as render_html

        return render_html(analysis)
    import io

    from rich.console import Console

    from .report.terminal import print_analysis

    buf = io.StringIO()
    print_analysis(analysis, Console(file=buf, width=120, color_system=None, soft_wrap=False))
    return buf.getvalue()
