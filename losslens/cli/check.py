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
    from ..checks import RENDERERS, gate, read_reference, render_junit
    from ..errors import InvalidParameterError
    from ..pipeline import analyze
    from ..textsafe import write_file

    if output in RENDERERS:  # `--output json` was the format before -f/--format
        raise InvalidParameterError(
            f"--output takes a FILE; for the {output} format use --format {output}")
    options = settings(config, role, input_format=input_format,
                       fail_on=fail_on.value if fail_on else None, rtol=rtol, baseline=baseline,
                       unit_timeout=unit_timeout)
    analysis = analyze(read_frame(paths, options), options)
    reference = None
    if options.baseline:
        reference = analyze(read_reference(options.baseline, options.roles), options)
    report = gate(analysis, reference)
    emit(RENDERERS[fmt.value](report), output, paths)
    if junit_file:
        write_file(junit_file, render_junit(report), inputs=paths)
    failed_runs(analysis.runs)
    raise typer.Exit(report.exit_code)
