"""Terminal rendering with rich: what was read (series) and, later, the analysis report."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..frame import Frame


def _console() -> Console:
    return Console(soft_wrap=False)


def print_series(frame: Frame, console: Console | None = None) -> None:
    console = console or _console()
    for info in frame.runs:
        console.print(f"[bold]{info.run}[/bold]  ({info.format}, {info.source})")
        table = Table(show_edge=False, pad_edge=False)
        for col, just in (("tag", "left"), ("role", "left"), ("points", "right"),
                          ("steps", "right"), ("non-finite", "right")):
            table.add_column(col, justify=just)  # type: ignore[arg-type]
        for s in info.series:
            steps = f"{s.first_step}–{s.last_step}" if s.first_step is not None else "-"
            table.add_row(s.tag, s.role, f"{s.points:,}", steps, str(s.nonfinite or ""))
        console.print(table)
        if len(info.segments) > 1:
            segs = ", ".join(
                f"#{g.index} {g.first_step}–{g.last_step} ({g.reason})" for g in info.segments)
            console.print(f"  segments: {segs}")
        meta = info.metadata.to_dict()
        meta.pop("extra", None)
        if meta:
            console.print("  metadata: " + ", ".join(f"{k}={v}" for k, v in meta.items()))
        if info.skipped_count:
            console.print(f"  [yellow]skipped lines: {info.skipped_count}[/yellow]")
        console.print()
