"""`losslens analyze`, `series` and `formats`: what was read, and what it means.

Thin shells: Options (settings file + flags) → library (`losslens.read`, `pipeline.analyze`,
`parallel`) → one renderer (`losslens.report.render`) → `emit`.
"""
from __future__ import annotations

import sys
from enum import Enum
from typing import List, Optional

import typer

from .common import (CHECKPOINT_EVERY, CONFIG, DEBUG, GLOBAL_BATCH_SIZE, INPUT_FORMAT, OUTPUT,
                     PATHS, ROLE, UNIT_TIMEOUT, emit, failed_runs, format_option, progress,
                     read_frame, settings, warn_frame)


class SeriesFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def series(
    paths: List[str] = PATHS,
    fmt: SeriesFormat = format_option(
        SeriesFormat.table, "table (terminal), json (the analysis document, without events) "
                            "or csv (the frame)."),
    raw: bool = typer.Option(False, "--raw", help="csv: every segment, not the stitched view."),
    output: Optional[str] = OUTPUT,
    config: Optional[str] = CONFIG,
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Show what was read: runs, tags, roles, points, step range, segments, skipped lines."""
    frame = read_frame(paths, settings(config, role, input_format=input_format))
    if fmt is SeriesFormat.json:
        from ..report.jsondoc import document, dumps

        emit(dumps(document(frame)) + "\n", output, paths)
    elif fmt is SeriesFormat.csv:
        import io

        buf = io.StringIO()
        table = frame.data if raw else frame.stitched
        # run and tag names from a log: a spreadsheet must not read them as formulas
        from ..textsafe import csv_cell

        table = table.assign(**{c: table[c].astype(str).map(csv_cell) for c in ("run", "tag")})
        table.to_csv(buf, index=False, na_rep="nan")
        emit(buf.getvalue(), output, paths)
    elif output:
        from ..report import render_series

        emit(render_series(frame), output, paths)
    else:
        from ..report.terminal import print_series

        print_series(frame)


class ReportFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


def analyze(
    paths: List[str] = PATHS,
    fmt: ReportFormat = format_option(
        ReportFormat.text, "text (terminal report), json (losslens.analysis/1, see docs/json.md),"
                           " markdown or html (one offline file)."),
    output: Optional[str] = OUTPUT,
    config: Optional[str] = CONFIG,
    checkpoint_every: Optional[int] = CHECKPOINT_EVERY,
    global_batch_size: Optional[int] = GLOBAL_BATCH_SIZE,
    jobs: int = typer.Option(
        1, "--jobs", "-j", metavar="N", help="Read and analyse runs in N processes (0: one per "
                                             "CPU)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", metavar="ADDRESS",
        help="Analyse the runs on the Dask cluster at ADDRESS (pip install 'losslens[dask]')."),
    unit_timeout: Optional[float] = UNIT_TIMEOUT,
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Find loss spikes, divergence, grokking and resume artefacts; explain; say what to do."""
    options = settings(config, role, input_format=input_format,
                       checkpoint_every=checkpoint_every, global_batch_size=global_batch_size,
                       unit_timeout=unit_timeout)
    if jobs != 1 or scheduler:
        from ..parallel import analyze_paths

        bar = progress()
        try:  # the points travel back only for the reports that plot them
            analysis = analyze_paths(paths, options, jobs, scheduler,
                                     bar.analysing if bar else None,
                                     keep_frames=fmt in (ReportFormat.text, ReportFormat.html))
        finally:
            if bar:  # clear the progress line
                bar.close()
        warn_frame(analysis.frame)
    else:
        from ..pipeline import analyze as run_analysis

        bar = progress()
        try:
            frame = read_frame(paths, options, bar)
            if bar:
                bar.analysing(0, 1, f"{len(frame.runs)} run(s)")
            analysis = run_analysis(frame, options)
        finally:
            if bar:
                bar.close()
    if fmt is ReportFormat.text and not output:
        from ..report.terminal import print_analysis

        print_analysis(analysis)
    else:
        from ..report import render

        emit(render(analysis, fmt.value), output, paths)
    failed_runs(analysis.runs)


def formats() -> None:
    """List the log formats losslens reads."""
    from ..readers import FORMATS

    for fmt in FORMATS.values():
        sys.stdout.write(f"{fmt.name:18} {fmt.description}\n")
