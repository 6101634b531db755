"""`losslens check`: the CI gate — exit 1 on findings at or above `--fail-on`.

`check` = `pipeline.analyze` + `checks.gate`, with the Options every command reads.
"""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from .common import (CONFIG, DEBUG, INPUT_FORMAT, OUTPUT, PATHS, ROLE, UNIT_TIMEOUT, emit,
                     failed_runs, read_frame, settings)


class FailOn(str, Enum):
    info = "info"
    warning = "warning"
    critical = "critical"


class CheckFormat(str, Enum):
    text = "text"
    json = "json"
    github = "github"
    junit = "junit"


def check(
    paths: List[str] = PATHS,
    fail_on: Optional[FailOn] = typer.Option(
        None, "--fail-on", help="Exit 1 on findings at or above this (default: critical)."),
    config: Optional[str] = CONFIG,
    baseline: Optional[str] = typer.Option(
        None, "--baseline", metavar="PATH",
        help="Reference run (a log, or Megatron golden-values JSON)."),
    rtol: Optional[float] = typer.Option(
        None, "--rtol", metavar="X",
        help="Per-step relative tolerance against the baseline (default 0.05)."),
    fmt: CheckFormat = typer.Option(CheckFormat.text, "--format", "-f",
                                    help="text, json, github (annotations) or junit."),
    output: Optional[str] = OUTPUT,
    junit_file: Optional[str] = typer.Option(
        None, "--junit-file", metavar="FILE", help="Also write JUnit XML to FILE."),
    unit_timeout: Optional[float] = UNIT_TIMEOUT,
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """CI gate: exit 1 on findings at or above --fail-on or a baseline regression.

    Exit 0 when clean, 2 on usage or input errors. Settings (fail-on,
    detector thresholds, ignored tags and kinds, allowed step ranges,
    rtol, baseline) come from [tool.losslens] in pyproject.toml or
    from losslens.toml, searched from the current folder upward.
    """
    import time

    from ..checks import RENDERERS
    from ..errors import InvalidParameterError, LossLensError

    if output in RENDERERS:  # `--output json` was the format before -f/--format
        raise InvalidParameterError(
            f"--output takes a FILE; for the {output} format use --format {output}")
    t0 = time.monotonic()
    try:
        report = _run(paths, fail_on, config, baseline, rtol, input_format, role, unit_timeout)
    except LossLensError as exc:  # exit 2: the CI's test view still says what broke
        _junit_on_error(exc, paths, time.monotonic() - t0, fmt, output, junit_file)
        raise
    _emit(report, time.monotonic() - t0, fmt, output, junit_file, paths)
    failed_runs(report.runs)  # units of a folder that could not be read: exit 2
    raise typer.Exit(report.exit_code)


def _run(paths, fail_on, config, baseline, rtol, input_format, role, unit_timeout=None):
    from ..checks import gate, read_reference
    from ..pipeline import analyze

    options = settings(config, role, input_format=input_format,
                       fail_on=fail_on.value if fail_on else None, rtol=rtol, baseline=baseline,
                       unit_timeout=unit_timeout)
    analysis = analyze(read_frame(paths, options), options)
    reference = None
    if options.baseline:
        reference = analyze(read_reference(options.baseline, options.roles), options)
    return gate(analysis, reference)


def _emit(report, elapsed: float, fmt: CheckFormat, output, junit_file, paths) -> None:
    """The report in its format; JUnit carries the wall time; `github` also appends the
    summary table to $GITHUB_STEP_SUMMARY."""
    from ..checks import RENDERERS
    from ..cioutput import append_step_summary, render_junit, step_summary
    from ..textsafe import write_file

    if fmt is CheckFormat.junit:
        emit(render_junit(report, elapsed), output, paths)
    else:
        emit(RENDERERS[fmt.value](report), output, paths)
    if fmt is CheckFormat.github:
        append_step_summary(step_summary(report))
    if junit_file:
        write_file(junit_file, render_junit(report, elapsed), inputs=paths)


def _junit_on_error(exc, paths, elapsed: float, fmt: CheckFormat, output, junit_file) -> None:
    """On exit 2, JUnit with one errored testcase wherever JUnit was asked for."""
    from ..cioutput import render_junit_error
    from ..textsafe import write_file

    doc = render_junit_error(str(exc), paths, elapsed, type(exc).__name__)
    if junit_file:
        write_file(junit_file, doc, inputs=paths)
    if fmt is CheckFormat.junit:
        emit(doc, output, paths)
