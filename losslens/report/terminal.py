"""Terminal rendering with rich: what was read (series) and, later, the analysis report.

Everything that comes from a log (run names, paths, tags, metadata, and the finding texts that
quote them) goes through `escape`: rich would read `[red]x[/red]` in a tag as markup.
"""
from __future__ import annotations

from typing import Sequence

from rich.console import Console
from rich.markup import escape as _markup_escape
from rich.table import Table

from ..frame import Frame
from ..textsafe import line as safe


def escape(value: object) -> str:
    """Log text for rich markup: control characters visible (no escape sequence reaches the
    terminal: `ESC]52` clipboard writes, `ESC[2J`), newlines folded, markup escaped."""
    return _markup_escape(safe(value))


def _console() -> Console:
    return Console(soft_wrap=False, highlight=False)


def print_series(frame: Frame, console: Console | None = None) -> None:
    """What was read, per run: the series (tag, role, points, steps, non-finite values) in a
    table whose tags wrap instead of being cut, then segments, metadata and skipped lines."""
    from rich.text import Text

    console = console or _console()
    for info in frame.runs:
        _say(console, Text.assemble((safe(info.run), "bold"),
                                    f"  ({safe(info.format)}, {safe(info.source)})"))
        rows = [(Text(safe(s.tag)), s.role, f"{s.points:,}",
                 f"{s.first_step}–{s.last_step}" if s.first_step is not None else "-",
                 str(s.nonfinite or "")) for s in info.series]
        console.print(_grid("", ("tag", "role", "points", "steps", "non-finite"), rows,
                            console.width, justify=("left", "left", "right", "right", "right"),
                            wrap=(0,)), highlight=False)
        if len(info.segments) > 1:
            segs = ", ".join(
                f"#{g.index} {g.first_step}–{g.last_step} ({g.reason})" for g in info.segments)
            _say(console, f"segments: {segs}", indent=2)
        meta = info.metadata.to_dict()
        meta.pop("extra", None)
        if meta:
            _say(console, "metadata: " + ", ".join(f"{k}={v}" for k, v in meta.items()),
                 indent=2)
        if info.skipped_count:
            _say(console, f"skipped lines: {info.skipped_count}", indent=2, style="yellow")
        for note in info.notes:
            _say(console, f"note: {note}", indent=2)
        console.print()


#: Event kinds marked under the loss plot (changepoints and grad-norm events only when they
#: matter: they would crowd the axis).
_PLOTTED = {"spike", "divergence", "nonfinite", "rollback", "resume_spike", "repeat_data",
            "grokking", "sudden_drop"}


def loss_plot(frame, ra, losses, width: int, height: int = 10, title: str = ""):
    """The series of one run (at most 4 tags) with their events marked under the curve."""
    from .termplot import Curve, Marker, render

    curves = []
    for s in losses[:4]:
        series = frame.series(ra.info.run, s.tag)
        curves.append(Curve(safe(s.tag), series.step, series.value))  # (a legend: no ESC)
    tags = {s.tag for s in losses[:4]}
    marks = [Marker(e.start_step, e.kind, e.severity) for e in ra.events
             if e.tag in tags and (e.kind in _PLOTTED or e.severity != "info"
                                   or e.kind == "grad_spike")]
    return render(curves, marks, width=min(width, 120), height=height, title=title)


_SEV_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red", "failed": "bold red"}


def _say(console: Console, text, indent: int = 0, style: str | None = None) -> None:
    """Print wrapped at the console width, continuation lines indented like the first; never
    highlighted (rich would colour `spike(s)` like a call)."""
    from rich.padding import Padding
    from rich.text import Text

    if isinstance(text, str):
        text = Text(safe(text), style=style or "")
    text.overflow = "fold"
    console.print(Padding(text, (0, 0, 0, indent), expand=False) if indent else text,
                  highlight=False)


def _sev(severity: str):
    from rich.text import Text

    return Text(severity, style=_SEV_STYLE.get(severity, "green"))


def _header(console: Console, info, worst: str) -> None:
    from rich.text import Text

    title = Text.assemble((safe(info.run), "bold"), "  ", safe(info.format), "  ", _sev(worst))
    if title.cell_len + 6 <= console.width:
        console.rule(title, characters="─")
    else:  # a long run name: a plain rule, then the name wrapped (never cut)
        console.rule(characters="─")
        _say(console, title)


def events_table(events, width: int):
    """Events as a table that fits `width` without cutting an id or a step range: the kind is
    in the id, the tag, magnitude (with units) and recovery share one wrapped column; storms
    of non-critical events of one kind on one tag are one row."""
    from rich.text import Text

    from .units import Storm, event_magnitude, group_storms, recovery_text, steps_text

    rows = group_storms(events)
    cells = []
    for row in rows:
        if isinstance(row, Storm):
            cells.append((row.ids, steps_text(row.first_step, row.last_step), row.severity,
                          f"{safe(row.tag)}: {row.summary()}"))
            continue
        parts = [p for p in (event_magnitude(row), recovery_text(row)) if p]
        cells.append((row.id, steps_text(row.start_step, row.end_step), row.severity,
                      safe(row.tag) + (": " + "; ".join(parts) if parts else "")))
    return _grid(f"events ({len(events)})", ("id", "steps", "severity",
                                             "series · magnitude · recovery"),
                 [(a, b, _sev(c), Text(d)) for a, b, c, d in cells], width,
                 justify=("left", "right", "left", "left"))


def _grid(title: str, headers: Sequence[str], rows: Sequence[Sequence], width: int,
          justify: Sequence[str], wrap: Sequence[int] = (-1,)):
    """A table as rich Text: the columns not in `wrap` are as wide as their widest cell and
    never cut; the `wrap` columns share what is left and fold onto continuation lines."""
    from rich.text import Text

    texts = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    heads = [Text(h, style="bold") for h in headers]
    n = len(headers)
    wrap = {w % n for w in wrap}
    widths = [max([heads[k].cell_len] + [r[k].cell_len for r in texts]) for k in range(n)]
    fixed = sum(widths[k] for k in range(n) if k not in wrap) + 2 * (n - 1)
    room = max(12 * len(wrap), width - fixed)
    want = sum(widths[k] for k in wrap)
    if want > room:  # share the room in proportion to what each wrapped column wants
        for k in wrap:
            widths[k] = max(8, room * widths[k] // max(want, 1))
    out = Text()
    if title:
        out.append(title + "\n", style="bold")
    for i, row in enumerate([heads] + texts):
        cells = []
        for k, cell in enumerate(row):
            if k in wrap:
                lines = cell.wrap(_CONSOLE_FOR_WRAP, widths[k], overflow="fold")
                cells.append(list(lines))
            else:
                cells.append([cell])
        height = max(len(c) for c in cells)
        for j in range(height):
            line = Text()
            for k in range(n):
                part = cells[k][j].copy() if j < len(cells[k]) else Text("")
                pad = widths[k] - part.cell_len
                if k == n - 1:
                    pad = 0 if justify[k] == "left" else pad
                if justify[k] == "right":
                    line.append(" " * pad)
                    line.append_text(part)
                else:
                    line.append_text(part)
                    line.append(" " * pad)
                if k < n - 1:
                    line.append("  ")
            out.append_text(line)
            out.append("\n")
        if i == 0:
            out.append("─" * min(width, sum(widths) + 2 * (n - 1)) + "\n", style="dim")
    out.rstrip()
    return out


_CONSOLE_FOR_WRAP = Console(width=1000, color_system=None, highlight=False)


def print_analysis(analysis, console: Console | None = None) -> None:
    """The terminal report: per run, series, plots, events, findings and the skip plan."""
    console = console or _console()
    if len(analysis.runs) > 1:
        print_fleet(analysis, console)
    for ra in analysis.runs:
        info = ra.info
        worst = "failed" if ra.error else ra.worst or "clean"
        _header(console, info, worst)
        if ra.error:
            from rich.text import Text

            _say(console, Text.assemble(("could not be read or analysed: ", "red"),
                                        safe(ra.error)), indent=2)
            console.print()
            continue
        losses = [s for s in info.series if s.role in ("train_loss", "val_loss")]
        grads = [s for s in info.series if s.role == "grad_norm"]
        for s in losses + grads:
            steps = (f"steps {s.first_step}–{s.last_step}" if s.first_step is not None
                     else "no steps")
            _say(console, f"{s.tag} ({s.role}): {s.points:,} points, {steps}", indent=2)
        for note in info.notes:  # e.g. "stopped at 344 of 500 planned iterations"
            _say(console, f"note: {note}", indent=2)
        if analysis.frame is not None:
            if losses:
                console.print(loss_plot(analysis.frame, ra, losses, console.width))
            if grads:
                console.print(loss_plot(analysis.frame, ra, grads, console.width, height=5))
        if ra.events:
            console.print(events_table(ra.events, console.width), highlight=False)
        else:
            _say(console, "no events", indent=2)
        for f in ra.findings:
            from rich.text import Text

            _say(console, Text.assemble((f.severity.upper(), _SEV_STYLE[f.severity]), " ",
                                        (safe(f.title), "bold")))
            _say(console, f.explanation, indent=2)
            _say(console, Text.assemble(("→ ", "bold"), safe(f.advice)), indent=2)
            _say(console, "cites: " + "; ".join(f.cites), indent=2, style="dim")
        if ra.skip_plan:
            p = ra.skip_plan
            ranges = " ".join(f"{a}-{b}" for a, b in p.skip)
            from rich.text import Text

            _say(console, Text.assemble(("skip plan", "bold"), f": {safe(p.restart_note)}; skip "
                                        f"iterations {ranges} (inclusive)"))
        for w in ra.plan_warnings:
            from rich.text import Text

            _say(console, Text.assemble(("warning: ", "yellow"), safe(w)), indent=0)
        console.print()


def _worst_first(item) -> tuple[int, int]:
    from ..events import severity_rank

    index, row = item
    return (-(severity_rank(row.worst) if row.worst else -1), index)


def print_fleet(analysis, console: Console | None = None) -> None:
    """One row per run (worst finding, events, last step), worst first: the overview of a
    folder of runs. Run names and findings wrap inside their column, never cut."""
    from rich.text import Text

    from ..pipeline import fleet

    console = console or _console()
    failed = {ra.info.run for ra in analysis.runs if ra.error}
    rows = [(Text(safe(row.run)), _sev("failed" if row.run in failed else row.worst or "clean"),
             Text(safe(row.finding or "")),
             str(row.events), "-" if row.last_step is None else f"{row.last_step:,}")
            for _, row in sorted(enumerate(fleet(analysis)), key=_worst_first)]
    console.print(_grid(f"{len(analysis.runs)} runs", ("run", "worst", "finding", "events",
                                                       "last step"), rows, console.width,
                        justify=("left", "left", "left", "right", "right"), wrap=(0, 2)),
                  highlight=False)
    console.print()
