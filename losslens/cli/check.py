"""`losslens check`: the CI gate — exit 1 on findings at or above `--fail-on`.

A thin shell over `checks` (settings, per-rule items, baseline) and `pipeline.analyze_frame`.
"""
from __future__ import annotations

from enum import Enum
from typing import List, Optional

import typer

from .common import (CONFIG, DEBUG, INPUT_FORMAT, OUTPUT, PATHS, ROLE, UNIT_TIMEOUT, emit, err,
                     failed_runs, read_frame)


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
    from dataclasses import replace

    from ..checks import (RENDERERS, build_detectors, load_config, read_reference,
                          render_junit, run_checks)
    from ..errors import InvalidParameterError
    from ..textsafe import write_file
    from ..pipeline import analyze_frame
    from ..roles import parse_overrides

    if output in RENDERERS:  # `--output json` was the format before -f/--format
        raise InvalidParameterError(
            f"--output takes a FILE; for the {output} format use --format {output}")
    cfg = load_config(config)
    cfg = replace(cfg, fail_on=fail_on.value if fail_on else cfg.fail_on,
                  rtol=cfg.rtol if rtol is None else rtol, baseline=baseline or cfg.baseline)
    cfg.validate()
    if cfg.source:
        err(f"losslens: settings from {cfg.source}")
    detectors = build_detectors(cfg.detectors, cfg.source or "settings")
    roles = parse_overrides(role)
    frame = read_frame(paths, input_format, roles, unit_timeout)
    analysis = analyze_frame(frame, detectors=detectors, unit_timeout=unit_timeout)
    reference = None
    if cfg.baseline:
        reference = analyze_frame(read_reference(cfg.baseline, roles), detectors=detectors)
    report = run_checks(analysis, cfg, reference, cfg.baseline)
    emit(RENDERERS[fmt.value](report), output, paths)
    if junit_file:
        write_file(junit_file, render_junit(report), inputs=paths)
    failed_runs(analysis.runs)
    raise typer.Exit(report.exit_code)
