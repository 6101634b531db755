"""Terminal rendering with rich: what was read (series) and, later, the analysis report.

Everything that comes from a log (run names, paths, tags, metadata, and the finding texts that
quote them) goes through `escape`: rich would read `[red]x[/red]` in a tag as markup.
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape as _markup_escape

from ..textsafe import line as _line


def escape(value: object) -> str:
    """Log text for rich: control characters visible (no escape sequence reaches the
    terminal: `ESC]52` clipboard writes, `ESC[2J`), newlines folded, markup escaped."""
    return _markup_escape(_line(value))
from rich.table import Table

from ..frame import Frame


def _console() -> Console:
    return Console(soft_wrap=False)


def print_series(frame: Frame, console: Console | None = None) -> None:
    console = console or _console()
    for info in frame.runs:
        console.print(f"[bold]{escape(info.run)}[/bold]  ({escape(info.format)}, "
                      f"{escape(info.source)})")
        table = Table(show_edge=False, pad_edge=False)
        for col, just in (("tag", "left"), ("role", "left"), ("points", "right"),
                          ("steps", "right"), ("non-finite", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for s in info.series:
            steps = f"{s.first_step}–{s.last_step}" if s.first_step is not None else "-"
            table.add_row(escape(s.tag), escape(s.role), f"{s.points:,}", steps,
                          str(s.nonfinite or ""))
        console.print(table)
        if len(info.segments) > 1:
            segs = ", ".join(
                f"#{g.index} {g.first_step}–{g.last_step} ({g.reason})" for g in info.segments)
            console.print(f"  segments: {segs}")
        meta = info.metadata.to_dict()
        meta.pop("extra", None)
        if meta:
            console.print("  metadata: " + escape(", ".join(f"{k}={v}" for k, v in meta.items())))
        if info.skipped_count:
            console.print(f"  [yellow]skipped lines: {info.skipped_count}[/yellow]")
        console.print()


#: Event kinds marked under the loss plot (changepoints and grad-norm events only when they
#: matter: they would crowd the axis).
_PLOTTED = {"spike", "divergence", "nonfinite", "rollback", "resume_spike", "repeat_data",
            "grokking", "sudden_drop"}


def loss_plot(frame, ra, losses, width: int):
    """The losses of one run (at most 4 tags) with their events marked under the curve."""
    from .termplot import Curve, Marker, render

    curves = []
    for s in losses[:4]:
        series = frame.series(ra.info.run, s.tag)
        curves.append(Curve(_line(s.tag), series.step, series.value))  # (a legend: no ESC)
    tags = {s.tag for s in losses[:4]}
    marks = [Marker(e.start_step, e.kind, e.severity) for e in ra.events
             if e.tag in tags and (e.kind in _PLOTTED or e.severity != "info")]
    return render(curves, marks, width=min(width, 120), height=10)


_SEV_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def print_analysis(analysis, console: Console | None = None) -> None:
    """The terminal report: per run, series, events, findings and the skip plan."""
    console = console or _console()
    if len(analysis.runs) > 1:
        print_fleet(analysis, console)
    for ra in analysis.runs:
        info = ra.info
        worst = "failed" if ra.error else ra.worst or "clean"
        console.rule(f"[bold]{escape(info.run)}[/bold]  {escape(info.format)}  "
                     f"[{_SEV_STYLE.get(worst, 'green')}]{worst}[/]")
        if ra.error:
            console.print(f"  [red]could not be read or analysed:[/red] {escape(ra.error)}")
            console.print()
            continue
        losses = [s for s in info.series if s.role in ("train_loss", "val_loss")]
        for s in losses:
            console.print(f"  {escape(s.tag)} ({s.role}): {s.points:,} points, steps "
                          f"{s.first_step}–{s.last_step}")
        if losses and analysis.frame is not None:
            console.print(loss_plot(analysis.frame, ra, losses, console.width))
        if ra.events:
            table = Table(show_edge=False, pad_edge=False, title="events", title_justify="left")
            for col in ("id", "kind", "tag", "steps", "magnitude", "recovery", "severity"):
                table.add_column(col)
            for e in ra.events:
                steps = f"{e.start_step}" + (f"–{e.end_step}" if e.end_step is not None
                                             and e.end_step != e.start_step else "")
                mag = f"{e.magnitude:.3g}" if e.magnitude is not None else ""
                rec = (f"{e.recovery} ({e.recovery_steps})" if e.recovery and
                       e.recovery_steps is not None else (e.recovery or ""))
                table.add_row(escape(e.id), escape(e.kind), escape(e.tag), steps, mag,
                              escape(rec),
                              f"[{_SEV_STYLE[e.severity]}]{e.severity}[/]")
            console.print(table)
        else:
            console.print("  no events")
        for f in ra.findings:
            console.print(f"[{_SEV_STYLE[f.severity]}]{f.severity.upper()}[/] "
                          f"{escape(f.title)}")
            console.print(f"  {escape(f.explanation)}")
            console.print(f"  [bold]→[/bold] {escape(f.advice)}")
            console.print(f"  [dim]cites: {escape('; '.join(f.cites))}[/dim]")
        if ra.skip_plan:
            p = ra.skip_plan
            ranges = " ".join(f"{a}-{b}" for a, b in p.skip)
            console.print(f"[bold]skip plan[/bold]: restart from step {p.restart_from_step}, "
                          f"skip iterations {ranges} (inclusive)")
        for w in ra.plan_warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(w)}")
        console.print()


def print_fleet(analysis, console: Console | None = None) -> None:
    """One row per run (worst finding, events, last step): the overview of a folder of runs."""

    from ..pipeline import fleet

    console = console or _console()
    table = Table(show_edge=False, pad_edge=False, title=f"{len(analysis.runs)} runs",
                  title_justify="left")
    for col, just in (("run", "left"), ("worst", "left"), ("finding", "left"),
                      ("events", "right"), ("last step", "right")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for row in fleet(analysis):
        worst = row.worst or "clean"
        if any(ra.error for ra in analysis.runs if ra.info.run == row.run):
            worst = "failed"
        table.add_row(escape(row.run), f"[{_SEV_STYLE.get(worst, 'green')}]{worst}[/]",
                      escape(row.finding or ""),
                      str(row.events), "-" if row.last_step is None else f"{row.last_step:,}")
    console.print(table)
    console.print()
