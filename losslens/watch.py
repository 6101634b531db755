"""Follow a growing training log and report loss events as they appear (`losslens watch`).

What is new, and only that, is read on each look (`Follower.poll`): the path's source
(`losslens.readers.follow.open_source`: a text log of any format, an event file, or a folder
holding any of the runs `analyze` reads there) hands over the new points of each run; a
truncated, rotated or re-created file starts a new segment, a half-written line or record
waits.

Each run is a `losslens.detectors.stream.LiveRun`: the causal detectors' streaming forms
(spike, divergence, nonfinite, grad_spike, overflow, rollback) fed the new points of each
look. Over any prefix the events equal what `analyze` finds on that prefix
(tests/test_watch.py, tests/test_detectors_stream.py).

Reporting: an event is reported when it first appears, and again as an update (`update: true`)
when its severity, its recovery or its peak (spikes and grad spikes: a spike is first seen
before it is back, so it starts as `none`/critical and is updated when it comes back, fast or
slow), or whether it recovered (divergence) changes; a moving end or count alone is not
reported. Nothing is retracted: an event that a rollback later overwrote stays reported.
Event ids are `<kind>-<n>` in order of first report. Spikes inside a divergence are folded
into it, and severities follow the findings that cite each event
(`pipeline.settle_events`), as in
`analyze`; `details.shared_with` / `isolated` (which compare losses over time) are not
computed. The library never prints: `Update.notices` holds
the messages for stderr.
"""
from __future__ import annotations

import math
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

from .detectors.stream import CausalStreams, LiveRun
from .events import Event
from .pipeline import settle_events
from .readers.follow import open_source
from .textsafe import line as safe_line

# ============================================================================ public records


@dataclass(frozen=True)
class Reported:
    """An event as watch reports it: new, or an update of one reported before."""

    run: str
    event: Event
    update: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, **self.event.to_dict(), "update": self.update}


@dataclass
class Update:
    """What one look at the log found: events to report, messages for stderr, and cost."""

    events: list[Reported] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    units: int = 0  # new lines (text) or records (TensorBoard) read
    seconds: float = 0.0


# ============================================================================ the follower


def _signature(e: Event) -> tuple:
    """What makes an event worth reporting again."""
    return (e.severity, e.recovery, e.peak_step if e.kind in ("spike", "grad_spike") else None,
            e.details.get("recovered") if e.kind == "divergence" else None)


class _Reporter:
    """Which events of a run were reported, with which ids and signatures."""

    def __init__(self) -> None:
        self.seen: dict[tuple, tuple[str, tuple]] = {}
        self.counts: dict[str, int] = {}

    def diff(self, run: str, events: list[Event]) -> tuple[list[Reported], list[Event]]:
        """(what to report, every current event with its id). Events of one kind, tag and
        start step (three restarts resuming from one step) are told apart by their order."""
        out, current = [], []
        nth: dict[tuple, int] = {}
        for e in events:
            key = (e.kind, e.tag, e.start_step)
            nth[key] = nth.get(key, -1) + 1
            key = key + (nth[key],)
            sig = _signature(e)
            known = self.seen.get(key)
            if known is None:
                self.counts[e.kind] = self.counts.get(e.kind, 0) + 1
                eid = f"{e.kind}-{self.counts[e.kind]}"
            else:
                eid = known[0]
            e = replace(e, id=eid)
            current.append(e)
            if known is None or known[1] != sig:
                out.append(Reported(run, e, update=known is not None))
                self.seen[key] = (eid, sig)
        return out, current


class Follower:
    """Follows one path (a text log, an event file or a folder of them); `poll()` reads what
    is new and returns the events to report.

    Args:
        path: the file or folder; it may not exist yet (it is waited for) unless `strict`.
        input_format: a name from `losslens.readers.FORMATS`; sniffed when None.
        roles: tag -> role overrides.
        from_end: read what is already there as history without reporting its events.
        detectors: as `detectors.resolve_detectors` takes them; only causal ones run.
        strict: raise (LogNotFoundError, UnknownFormatError) instead of waiting.
        options: the `Options` whose severity policy and ignored events the events follow
            (as in `analyze`; the defaults when None).
    """

    def __init__(self, path: str | os.PathLike, *, input_format: str | None = None,
                 roles: Mapping[str, str] | None = None, from_end: bool = False,
                 detectors: Any = None, strict: bool = False, options: Any = None) -> None:
        if input_format is not None:
            from .readers import get_format

            get_format(input_format)
        self.path = Path(path)
        self.format, self.roles, self.strict = input_format, dict(roles or {}), strict
        self.streams = CausalStreams(detectors)
        self.options = options
        self.source: Any = None
        self.states: dict[str, LiveRun] = {}
        self.reporters: dict[str, _Reporter] = {}
        self._current: dict[str, list[Event]] = {}
        self._settled: dict[str, tuple[list[Event], list[Event]]] = {}
        self._quiet = from_end
        self._waiting_said = False

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.source is not None:
            self.source.close()

    def events(self) -> dict[str, list[Event]]:
        """Every run's current events (with the ids they were reported under)."""
        return {run: list(events) for run, events in self._current.items()}

    def poll(self) -> Update:
        """Read what is new, run the detectors on it, and say what to report."""
        t0 = time.perf_counter()
        update = Update()
        if self.source is None and not self._open(update.notices):
            self._quiet = False  # nothing was there: all that comes is new
            update.seconds = time.perf_counter() - t0
            return update
        batches, update.units = self.source.poll(update.notices)
        touched: dict[str, LiveRun] = {}
        for b in batches:
            st = self.states.get(b.run)
            if st is None:
                st = self.states[b.run] = LiveRun(b.run, detectors=self.streams,
                                                  roles=self.roles, source=b.source,
                                                  format=b.format)
            if b.reset:
                st.reset()
                self._settled.pop(b.run, None)
            elif b.metadata and b.records is not None and st.metadata != b.records.metadata:
                st.metadata = b.records.metadata  # (read whole again: it is the run's now)
                self._settled.pop(b.run, None)
            if b.header is not None:
                st.add_header(b.header)
            if b.records is not None:
                st.feed(b.records)
            touched[b.run] = st
        for run, st in touched.items():
            report, self._current[run] = self.reporters.setdefault(run, _Reporter()).diff(
                run, self._settle(run, st))
            if not self._quiet:
                update.events += report
        self._quiet = False
        update.seconds = time.perf_counter() - t0
        return update

    def _settle(self, run: str, st: LiveRun) -> list[Event]:
        """The run's events with analyze's severities (diagnosed again only when they
        changed)."""
        events = st.detect()
        before = self._settled.get(run)
        if before is not None and before[0] == events:
            return before[1]
        out = settle_events(st.info(), events, self.options, st.view())
        self._settled[run] = (events, out)
        return out

    def _open(self, notices: list[str]) -> bool:
        self.source = open_source(self.path, self.format, self.strict)
        if self.source is None:
            if not self._waiting_said:
                notices.append(f"{self.path}: does not exist yet; waiting for it")
                self._waiting_said = True
            return False
        return True


def follow(path: str | os.PathLike, *, interval: float = 0.5, timeout: float | None = None,
           max_updates: int | None = None, stop: threading.Event | None = None,
           **kwargs: Any) -> Iterator[Update]:
    """Poll `path` every `interval` seconds and yield each Update, until `max_updates`
    looks, `timeout` seconds, or `stop` is set. `kwargs` go to `Follower`."""
    start = time.monotonic()
    with Follower(path, **kwargs) as follower:
        looks = 0
        while True:
            t0 = time.monotonic()
            yield follower.poll()
            looks += 1
            if max_updates is not None and looks >= max_updates:
                return
            now = time.monotonic()
            wait = max(0.0, interval - (now - t0))
            if timeout is not None:
                left = timeout - (now - start)
                if left <= 0:
                    return
                wait = min(wait, left)
            if stop is not None:
                if stop.wait(wait):
                    return
            elif wait:
                time.sleep(wait)


# ============================================================================ output


def describe(r: Reported, show_run: bool = False) -> str:
    """One line for the terminal: `step 2410  spike  lm loss  x1.81  critical  ...`
    (`update  step ...` for an update; the run in brackets at the end with `show_run`)."""
    e = r.event
    parts = [f"step {e.start_step}", e.kind, e.tag or "-"]
    units = e.details.get("magnitude_units")
    if e.magnitude is not None and math.isfinite(e.magnitude):
        if e.kind in ("spike", "divergence", "grad_spike") and units != "difference":
            parts.append(f"x{e.magnitude:.2f}")
        elif e.kind in ("spike", "grad_spike"):
            parts.append(f"+{e.magnitude:.3g}")
    parts.append(e.severity)
    parts.append(_detail(e))
    text = "  ".join(p for p in parts if p)
    # names and tags come from the log: one inert line (no escape sequence, no newline)
    return safe_line(("update  " if r.update else "") + text
                     + (f"  [{r.run}]" if show_run else ""))


def _detail(e: Event) -> str:
    d = e.details
    if e.kind in ("spike", "grad_spike"):
        back = (f"back at {e.end_step} ({e.recovery}, {e.recovery_steps} steps)"
                if e.end_step is not None else "not back yet")
        if e.kind == "spike":
            return f"peak {e.peak_step}, {back}"
        follow = (f"the loss followed at {d.get('loss_spike_step')}" if d.get("loss_followed")
                  else "the loss did not follow")
        return f"peak {e.peak_step}, {back}, {follow}"
    if e.kind == "divergence":
        what = "non-finite" if d.get("nonfinite") else "rising"
        return f"{what} since {e.start_step}" + (", recovered" if d.get("recovered") else "")
    if e.kind == "nonfinite":
        return f"{d.get('count')} non-finite through step {e.end_step}"
    if e.kind == "overflow":
        return f"{d.get('count')} overflow(s), lowest loss scale {d.get('min_loss_scale')}"
    if e.kind == "rollback":
        return f"resumed from step {d.get('from_step')}, {d.get('replayed_steps')} steps again"
    return ""


def run_hook(command: str, payload: str, timeout: float = 10.0) -> str | None:
    """Run `command` (split with shlex, no shell) with `payload` on stdin.

    Returns None when it exited 0, else one line saying what went wrong; never raises for a
    failing command. Its output is captured (stdout discarded, the last stderr line quoted).
    It runs in a process group of its own: one that outlives `timeout` is killed with every
    process it started (none is left orphaned).
    """
    try:
        args = shlex.split(command)
    except ValueError as exc:
        return f"--on-event: cannot split {command!r}: {exc}"
    if not args:
        return "--on-event: empty command"
    try:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        return f"--on-event: cannot run {args[0]}: {exc.strerror or exc}"
    try:
        _, stderr = proc.communicate(payload.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"--on-event: {args[0]} did not finish within {timeout:g} s (killed, with " \
               "the processes it started)"
    except BaseException:
        _kill_group(proc)
        raise
    if proc.returncode:
        err = stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {err[-1][:200]}" if err else ""
        return f"--on-event: {args[0]} exited with status {proc.returncode}{tail}"
    return None


def _kill_group(proc: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()
    proc.communicate()


class Hooks:
    """`--on-event` commands run one after another on a thread of their own, so that a slow
    or hanging hook (each bounded by its time-out) never delays the events printed after
    it; `problems()` hands back what went wrong, `close()` lets the queued ones finish."""

    def __init__(self, command: str, timeout: float) -> None:
        import queue

        self.command, self.timeout = command, timeout
        self._queue: queue.Queue = queue.Queue()
        self._problems: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="losslens-hooks", daemon=True)
        self._thread.start()

    def submit(self, payload: str) -> None:
        self._queue.put(payload)

    def problems(self) -> list[str]:
        with self._lock:
            out, self._problems = self._problems, []
        return out

    def close(self) -> list[str]:
        self._queue.put(None)
        self._thread.join()
        return self.problems()

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload is None:
                return
            problem = run_hook(self.command, payload, self.timeout)
            if problem:
                with self._lock:
                    self._problems.append(problem)
