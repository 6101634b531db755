"""The command line: thin commands over the library, and the one error boundary.

Every command parses options, calls one library function and hands the result to a reporter.
`LossLensError` is caught once (`_boundary`): `Error: ...` on stderr, exit 2, no traceback.
Heavy modules (pandas, ruptures, the readers) are imported inside the commands so that
`losslens --help` stays fast.
"""
from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Iterator, List, Optional

import typer

app = typer.Typer(
    name="losslens",
    help="Read a training run's logbook; find loss spikes, divergence, grokking, resume and "
         "rollback artefacts; say what to do.",
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    # plain click help: rich's help formatter imports rich.markdown, markdown-it and pygments
    # (~0.1 s CPU, 0.3 s wall on a busy machine) before printing a line
    rich_markup_mode=None,
)


class SeriesFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def _err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


@contextmanager
def _boundary(debug: bool = False) -> Iterator[None]:
    """The one place errors become messages: `Error: ...` on stderr, exit code 2."""
    from .errors import LossLensError, LossLensWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossLensWarning)
        try:
            yield
        except LossLensError as exc:
            if debug:
                raise
            _flush_warnings(caught)
            _err(f"Error: {exc}")
            raise typer.Exit(2) from None
        except (KeyboardInterrupt, BrokenPipeError):
            raise typer.Exit(130) from None
        _flush_warnings(caught)


def _flush_warnings(caught: list) -> None:
    from .errors import LossLensWarning

    for w in caught:
        if issubclass(w.category, LossLensWarning):
            _err(f"Warning: {w.message}")


def _read(paths: List[str], input_format: Optional[str], role: List[str]):
    from . import read
    from .roles import parse_overrides

    overrides = parse_overrides(role)
    if not sys.stderr.isatty():
        return read(paths, format=input_format, roles=overrides)
    try:  # a progress line on a terminal only: which file, how far, how big
        return read(paths, format=input_format, roles=overrides, progress=_reading)
    finally:
        sys.stderr.write("\r\x1b[K")


def _reading(name: str, done: int, total: int) -> None:
    import os

    try:
        size = f", {os.path.getsize(name) / 1e6:,.0f} MB" if os.path.isfile(name) else ""
    except OSError:
        size = ""
    count = f" {done + 1}/{total}" if total > 1 else ""
    sys.stderr.write(f"\r\x1b[Klosslens: reading{count} {name[-60:]}{size}")
    sys.stderr.flush()


def _warn_frame(frame) -> None:
    """Per-run reader warnings and skipped-line counts, on stderr (never lost)."""
    for info in frame.runs:
        for w in info.warnings:  # (readers' messages mostly name their file already)
            _err(f"Warning: {w}" if w.startswith(info.source) else f"Warning: {info.run}: {w}")
        if info.skipped_count:
            first = info.skipped[0] if info.skipped else None
            where = f" (first: {first.location}: {first.reason})" if first else ""
            _err(f"Warning: {info.run}: {info.skipped_count} line(s) looked like metrics but "
                 f"did not parse{where}")


PATHS = typer.Argument(..., help="Log files, folders (walked) or wandb://entity/project/run.")
INPUT_FORMAT = typer.Option(None, "--input-format", "-i",
                            help="Force a format instead of sniffing (see `losslens formats`).")
ROLE = typer.Option([], "--role", help="Override a series role: ROLE=TAG (repeatable).")
DEBUG = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")


@app.command()
def series(
    paths: List[str] = PATHS,
    fmt: SeriesFormat = typer.Option(SeriesFormat.table, "--format", "-f",
                                     help="table (terminal), json (DESIGN §3) or csv (the frame)."),
    raw: bool = typer.Option(False, "--raw", help="csv: every segment, not the stitched view."),
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Show what was read: runs, tags, roles, points, step range, segments, skipped lines."""
    with _boundary(debug):
        frame = _read(paths, input_format, role)
        _warn_frame(frame)
        if fmt is SeriesFormat.json:
            from .report.jsondoc import document, dumps

            sys.stdout.write(dumps(document(frame)) + "\n")
        elif fmt is SeriesFormat.csv:
            table = frame.data if raw else frame.stitched
            table.to_csv(sys.stdout, index=False, na_rep="nan")
        else:
            from .report.terminal import print_series

            print_series(frame)


class ReportFormat(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"
    html = "html"


@app.command()
def analyze(
    paths: List[str] = PATHS,
    fmt: ReportFormat = typer.Option(
        ReportFormat.text, "--format", "-f",
        help="text (terminal report), json (DESIGN §3), markdown or html (one offline file)."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Write the report to FILE (atomically) instead of stdout."),
    checkpoint_every: Optional[int] = typer.Option(
        None, "--checkpoint-every", help="Checkpoint interval, for the skip plan."),
    global_batch_size: Optional[int] = typer.Option(
        None, "--global-batch-size", help="Samples per iteration (skip plan in samples)."),
    jobs: int = typer.Option(
        1, "--jobs", "-j", help="Read and analyse runs in N processes (0: one per CPU)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="Analyse the runs on the Dask cluster at ADDRESS "
                                  "(pip install 'losslens[dask]')."),
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Find loss spikes, divergence, grokking and resume artefacts; explain; say what to do."""
    with _boundary(debug):
        if jobs != 1 or scheduler:
            # the points travel back only for the reports that plot them
            plots = fmt in (ReportFormat.text, ReportFormat.html)
            analysis = _analyze_parallel(paths, plots, checkpoint_every,
                                         global_batch_size, jobs, scheduler, input_format, role)
            _warn_frame(analysis.frame)
        else:
            from .pipeline import analyze_frame

            frame = _read(paths, input_format, role)
            _warn_frame(frame)
            checkpoints = _checkpoints(frame, checkpoint_every)
            analysis = analyze_frame(frame, checkpoints=checkpoints,
                                     global_batch_size=global_batch_size)
        if fmt is ReportFormat.text and not output:
            from .report.terminal import print_analysis

            print_analysis(analysis)
        else:
            from .commands import emit, render_report

            emit(render_report(analysis, fmt.value), output)


def _analyze_parallel(paths, keep_frames, checkpoint_every, global_batch_size, jobs,
                      scheduler, input_format, role):
    """`analyze` over the units of the paths in worker processes or on a Dask cluster."""
    from .parallel import Options, analyze_paths
    from .roles import parse_overrides

    if jobs < 0:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"--jobs must be >= 0, got {jobs}")
    options = Options(input_format, parse_overrides(role), checkpoint_every, global_batch_size,
                      keep_frames)
    progress = _progress if sys.stderr.isatty() else None
    try:
        return analyze_paths(paths, options, jobs, scheduler, progress)
    finally:
        if progress:  # clear the progress line
            sys.stderr.write("\r\x1b[K")


def _progress(done: int, total: int) -> None:
    sys.stderr.write(f"\r\x1b[Klosslens: {done}/{total} analysed")
    sys.stderr.flush()


def _checkpoints(frame, every: Optional[int]):
    """Checkpoint steps from --checkpoint-every, spanning every run's step range."""
    if not every:
        return None
    if every <= 0:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"--checkpoint-every must be > 0, got {every}")
    last = max((s.last_step for r in frame.runs for s in r.series if s.last_step is not None),
               default=0)
    return list(range(0, last + every, every))


@app.command()
def formats() -> None:
    """List the log formats losslens reads."""
    from .readers import FORMATS

    for fmt in FORMATS.values():
        sys.stdout.write(f"{fmt.name:18} {fmt.description}\n")


from .commands import check, skiplist  # noqa: E402  (registered here, defined there)

app.command()(skiplist)
app.command()(check)
app.command(name="replay")(__import__("losslens.commands_replay", fromlist=["replay"]).replay)

from .commands_watch import watch  # noqa: E402

app.command(name="watch")(watch)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
