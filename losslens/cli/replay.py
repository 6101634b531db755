"""`losslens replay`: a thin shell over `losslens.replay`.

    losslens replay --plugin my_plugin.py train.log
    losslens replay --plugin my_pkg.replay_plugin --analysis analysis.json --format json

Progress goes to stderr (a bar on a terminal, otherwise one line per finished stage); the
verdict table (or the `losslens.replay/1` JSON document) goes to stdout.
"""
from __future__ import annotations

import math
import sys
from enum import Enum
from typing import Any, List, Optional

import typer

from .common import (CONFIG, DEBUG, INPUT_FORMAT, OUTPUT, ROLE, emit, format_option, read_frame,
                     settings)


class ReplayFormat(str, Enum):
    text = "text"
    json = "json"


VERDICT_STYLE = {"bad_batch": "bold red", "batch_state_interaction": "bold magenta",
                 "optimizer_state": "bold yellow", "lr_schedule": "bold blue",
                 "numerics": "bold cyan", "not_reproducible": "bold green", "inconclusive": "dim"}


def _verdict(verdict: str) -> str:
    """The verdict as rich markup, styled; a verdict without a style is plain text (an empty
    `[]` tag would make rich fail on the closing `[/]`)."""
    from rich.markup import escape

    style = VERDICT_STYLE.get(verdict)
    return f"[{style}]{escape(verdict)}[/]" if style else escape(verdict)


def replay(
    log: Optional[str] = typer.Argument(
        None, metavar="PATH", help="A log file or folder to analyse (or give --analysis instead)."),
    plugin: str = typer.Option(
        ..., "--plugin", "-p", metavar="PATH|MODULE",
        help="The replay plug-in: a .py file or an importable module (see docs/replay.md)."),
    analysis: Optional[str] = typer.Option(
        None, "--analysis", "-a", metavar="FILE", help="A `losslens analyze --format json` document."),
    events: List[str] = typer.Option(
        [], "--events", "-e", metavar="ID",
        help="Event ids to replay (repeatable or comma-separated); default: every spike, "
             "divergence, non-finite loss, grad-norm spike and overflow."),
    device: str = typer.Option("auto", "--device", "-d", metavar="auto|cpu|cuda",
                               help="Where to replay."),
    run: Optional[str] = typer.Option(None, "--run", metavar="NAME", help="The run, when there are several."),
    fmt: ReplayFormat = format_option(ReplayFormat.text,
                                      "text (verdict table) or json (losslens.replay/1)."),
    output: Optional[str] = OUTPUT,
    config: Optional[str] = CONFIG,
    max_steps: int = typer.Option(
        256, "--max-steps", metavar="N", help="Replay at most N iterations from the checkpoint."),
    neighbours: int = typer.Option(8, "--neighbours", metavar="N", help="Reference batches per event."),
    samples: int = typer.Option(8, "--samples", metavar="N", help="Samples to list per event."),
    no_counterfactuals: bool = typer.Option(
        False, "--no-counterfactuals", help="Skip the counterfactual replays (faster)."),
    second_device: str = typer.Option(
        "auto", "--second-device", metavar="auto|none|cpu|cuda:N",
        help="Re-run reproduced events on another device (transient or persistent); auto: "
             "another GPU when there is one."),
    threads: Optional[int] = typer.Option(
        None, "--threads", metavar="N",
        help="CPU threads for torch (torch.set_num_threads); default: the faster of torch's "
             "default and 1, timed on one forward+backward."),
    budget: Optional[float] = typer.Option(
        None, "--budget", metavar="SECONDS",
        help="Stop after this many seconds: an event not finished by then is inconclusive "
             "(budget), with what its measurements so far point at."),
    deterministic: Optional[bool] = typer.Option(
        None, "--deterministic/--no-deterministic",
        help="torch deterministic algorithms (default: on for CUDA, off for CPU)."),
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Re-run the flagged batches through the model to confirm each diagnosis."""
    from ..errors import InvalidParameterError
    from ..replay import load_plugin, replay as run_replay, require_torch

    if (log is None) == (analysis is None):
        raise InvalidParameterError("give a LOG to analyse or --analysis FILE (one of them)")
    for name, value in (("--max-steps", max_steps), ("--neighbours", neighbours),
                        ("--samples", samples)):
        if value < 1:
            raise InvalidParameterError(f"{name} must be >= 1, got {value}")
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise InvalidParameterError(f"--budget must be a positive number of seconds, got {budget}")
    require_torch()  # before anything that imports it
    from ..replay.probes import Options

    plug = load_plugin(plugin)  # validated before any log is read
    if threads is not None and threads < 1:
        raise InvalidParameterError(f"--threads must be >= 1, got {threads}")
    wanted = [e.strip() for item in events for e in item.split(",") if e.strip()] or None
    opts = Options(max_steps=max_steps, neighbours=neighbours, top_samples=samples,
                   counterfactuals=not no_counterfactuals,
                   second_device=None if second_device == "none" else second_device,
                   deterministic=deterministic, budget_s=budget, threads=threads)
    source = analysis if analysis is not None else _analyse(log, config, input_format, role)
    with _progress() as progress:
        report = run_replay(plug, source, run=run, events=wanted, device=device,
                            options=opts, progress=progress)
    if fmt is ReplayFormat.json or output:
        from ..report.jsondoc import dumps

        text = dumps(report.to_dict()) + "\n" if fmt is ReplayFormat.json else _text(report)
        emit(text, output, [p for p in (log, analysis) if p])
    else:
        _print(report)


def _analyse(log: str, config: Optional[str], input_format: Optional[str],
             role: List[str]) -> Any:
    from ..pipeline import analyze

    options = settings(config, role, input_format=input_format)
    return analyze(read_frame([log], options), options)


class _progress:
    """A rich progress display on stderr when it is a terminal; otherwise one line on stderr
    per finished stage (and the counterfactuals' estimate), so a long replay is never silent."""

    def __enter__(self):
        if not sys.stderr.isatty():
            import time

            self.t0 = time.perf_counter()
            return self.line
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        self.tasks: dict[tuple[str, str], Any] = {}
        return self.update

    def line(self, event_id: str, stage: str, done: int, total: int) -> None:
        import time

        from ..textsafe import line

        if done == total or (done == 0 and "about" in stage):
            print(f"losslens replay: {line(event_id)}: {stage}"
                  + (f" {done}/{total}" if total else "")
                  + f" ({time.perf_counter() - self.t0:.0f} s)", file=sys.stderr, flush=True)

    def update(self, event_id: str, stage: str, done: int, total: int) -> None:
        key = (event_id, stage)
        if key not in self.tasks:
            self.tasks[key] = self.bar.add_task(f"{event_id}: {stage}", total=total)
        self.bar.update(self.tasks[key], completed=done, total=total)

    def __exit__(self, *exc):
        if hasattr(self, "bar"):
            self.bar.__exit__(*exc)
        return False


def _samples_cell(samples: list[dict[str, Any]], k: int = 4) -> str:
    out = []
    for s in samples[:k]:
        who = f"#{s['sample_id']}" if s.get("sample_id") is not None else f"row {s['index']}"
        z = s["z"]
        loss = s.get("loss")
        if isinstance(loss, float) and not math.isfinite(loss):
            out.append(f"{s['step']}:{who} ({'NaN' if math.isnan(loss) else loss} loss)")
            continue
        out.append(f"{s['step']}:{who} ({z:.3g})" if abs(z) >= 1e4 else
                   f"{s['step']}:{who} ({z:.1f})")
    return "\n".join(out)


def _table(report):
    from rich.markup import escape
    from rich.table import Table

    from ..textsafe import line

    t = Table(title=f"replay of {escape(line(report.run))} — {escape(line(report.plugin))} on "
                    f"{report.device} "
                    f"(torch {report.torch_version}), {report.seconds:.1f} s",
              title_justify="left")
    for col in ("event", "steps", "checkpoint", "verdict", "top samples (z)", "seconds"):
        t.add_column(col, justify="right" if col in ("checkpoint", "seconds") else "left",
                     no_wrap=True)
    for r in report.results:
        a, b = r.flagged
        t.add_row(r.event.id, f"{a}" if a == b else f"{a}–{b}",
                  "—" if r.checkpoint is None else str(r.checkpoint),
                  _verdict(r.verdict),
                  _samples_cell(r.samples), f"{sum(r.timings.values()):.1f}")
    return t


def _print(report, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    from ..textsafe import line

    console = console or Console(soft_wrap=False)
    if not report.results:
        console.print(f"replay of {escape(line(report.run))}: no replayable event (spikes of a training "
                      "loss, divergence, non-finite losses, grad-norm spikes, overflows)")
        return
    console.print(_table(report))
    for r in report.results:
        console.print(f"[bold]{escape(r.event.id)}[/] → {_verdict(r.verdict)}")
        for text in r.evidence:
            console.print(f"  • {escape(line(text))}")
        cost = r.measurements.get("cost") or {}
        if cost.get("replay_step_ratio") is not None:
            console.print(f"  [dim]cost: a replayed step takes {cost['replay_step_ratio']:.1f}× a "
                          f"plain forward+backward of the batch ({1000 * cost['replay_step_s']:.1f}"
                          f" vs {1000 * cost['forward_backward_s']:.1f} ms); the whole event "
                          f"{cost['event_s']:.2f} s = {cost['event_forward_backward_units']:.0f} "
                          "forward+backward passes[/]")


def _text(report) -> str:
    from io import StringIO

    from rich.console import Console

    buf = StringIO()
    _print(report, Console(file=buf, width=120, no_color=True, soft_wrap=False))
    return buf.getvalue()
