"""`losslens watch`: follow a live log, report events as they happen.

A thin shell over `losslens.watch.follow`: each new event is one line on stdout (text, or one
JSON object per line), flushed at once so that a pipe sees it; messages (truncation, rotation,
`--on-event` failures) go to stderr. Ctrl-C ends it quietly with exit code 0.
"""
from __future__ import annotations

import json
import sys
from enum import Enum
from typing import List, Optional

import typer

from .common import CONFIG, DEBUG, INPUT_FORMAT, ROLE, err, format_option, settings


class WatchFormat(str, Enum):
    text = "text"
    json = "json"


def watch(
    path: str = typer.Argument(..., metavar="PATH", help="A growing text log (any format losslens reads), an "
                               "event file, or a TensorBoard folder."),
    interval: float = typer.Option(0.5, "--interval", min=0.01, metavar="SECONDS",
                                   help="Seconds between looks at the log."),
    from_start: bool = typer.Option(
        True, "--from-start/--from-end",
        help="Report the events already in the log, then follow (default); or read them as "
             "history only and report what appears from now on."),
    once: bool = typer.Option(False, "--once", help="Process what is there and exit."),
    max_updates: Optional[int] = typer.Option(None, "--max-updates", min=1, metavar="N",
                                              help="Stop after this many looks."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, metavar="SECONDS",
                                            help="Stop after this many seconds."),
    on_event: Optional[str] = typer.Option(
        None, "--on-event", metavar="CMD",
        help="Run CMD for each reported event with its JSON on stdin (no shell; a failure is "
             "reported on stderr and watching goes on)."),
    hook_timeout: float = typer.Option(10.0, "--on-event-timeout", min=0.1, metavar="SECONDS",
                                       help="Seconds CMD may take before it is killed."),
    fmt: WatchFormat = format_option(
        WatchFormat.text, "text (one line per event) or json (one object per line: the event "
                          "as in the JSON contract, plus run and update)."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE",
        help="Append the event lines to FILE (flushed per event) instead of stdout."),
    config: Optional[str] = CONFIG,
    input_format: Optional[str] = INPUT_FORMAT,
    role: List[str] = ROLE,
    debug: bool = DEBUG,
) -> None:
    """Follow a live log or TensorBoard folder and report loss events as they happen.

    Only what was appended is read on each look. An event is printed
    when first seen and again, marked update, when it changes: a spike
    is first seen before it is back, and updated when it comes back
    (fast or slow). The events are those analyze finds on the same part
    of the log (spike, divergence, nonfinite, grad_spike, overflow,
    rollback). Ctrl-C or SIGTERM (`kill`) stops watching (exit 0); started
    with SIGINT ignored (a `&` job of a script) it keeps ignoring Ctrl-C, as
    the shell asked: stop it with `kill`.
    """
    from pathlib import Path

    from ..watch import Hooks, describe, follow

    options = settings(config, role, input_format=input_format)
    sink = _sink(output)
    hooks = Hooks(on_event, hook_timeout) if on_event else None
    _stop_on_sigterm()  # SIGTERM stops watching as Ctrl-C does: temp files removed, exit 0
    try:
        show_run = Path(path).is_dir()
        updates = follow(path, interval=interval, timeout=timeout,
                         max_updates=1 if once else max_updates, strict=once,
                         input_format=options.input_format, roles=options.roles,
                         detectors=options.detector_instances(), from_end=not from_start,
                         options=options)
        try:
            for update in updates:
                for notice in update.notices:
                    err(f"losslens watch: {notice}")
                for reported in update.events:
                    if not options.keep(reported.event):  # the settings ignore it
                        continue
                    line = (json.dumps(reported.to_dict()) if fmt is WatchFormat.json
                            else describe(reported, show_run))
                    sink.write(line + "\n")
                    sink.flush()
                    if hooks:
                        hooks.submit(json.dumps(reported.to_dict()))
                for problem in hooks.problems() if hooks else ():
                    err(f"losslens watch: {problem}")
        except KeyboardInterrupt:
            updates.close()
    finally:
        for problem in hooks.close() if hooks else ():
            err(f"losslens watch: {problem}")
        if sink is not sys.stdout:
            sink.close()


def _stop_on_sigterm() -> None:
    """SIGTERM (a job scheduler, `kill`) raises KeyboardInterrupt in the main thread, so the
    followers close and remove their temporary files (/dev/shm/losslens-watch-*)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):
        pass


def _sink(output: Optional[str]):
    """stdout, or FILE opened for appending (a live log of events: lines, not one document)."""
    if not output or output == "-":
        return sys.stdout
    try:
        return open(output, "a", encoding="utf-8")
    except OSError as exc:
        from ..errors import OutputError

        raise OutputError(f"{output}: cannot write ({exc.strerror or exc})") from None
