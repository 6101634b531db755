"""Many runs at once: each unit of the folder walk read and analysed in its own worker.

`losslens analyze DIR --jobs N` and `--scheduler ADDRESS` come here. The paths are planned in
the calling process (`plan_units`: the folder walk of `readers.walk_units`, without sniffing, which
the workers do); each unit (a TensorBoard folder, a log file, a W&B run file) goes to a worker
that reads it, builds its Frame, analyses it and sends back only the typed results
(`RunAnalysis`, frozen dataclasses): the points stay in the worker unless a reporter needs
them (`keep_frames`, for the plots of the text and HTML reports). With `--jobs` every unit
runs in a process of its own, forked from a server that preloaded the modules (`_context`),
at most N at a time: a unit whose process dies (a segfault in a C library, the OOM killer) or
runs past the unit time-out (`Options.unit_timeout`) is killed and becomes that unit's failed
run, and the rest complete. Or the workers of a Dask cluster (`--scheduler`;
`pip install 'losslens[dask]'`, imported only then).

The results are those of the serial `losslens.read` + `pipeline.analyze`, in the same
order and with the same run names: a unit that fails in a walked folder becomes a failed run
(as in the serial walk), a path given directly fails the command, duplicate run names get the same
`#2` suffixes, and `--checkpoint-every` gives each run the checkpoints the serial run would use
(only those before a run's own events ever matter).
"""
from __future__ import annotations

import os
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .errors import (LogNotFoundError, LossLensError, LossLensWarning, NoSeriesError,
                     UnknownRunError)
from .options import Options

if TYPE_CHECKING:
    from .frame import Frame, RunInfo, Series
    from .pipeline import Analysis, RunAnalysis

#: progress(done, total), called in the calling process as units finish.
Progress = Callable[[int, int], None]
#: How long to try to reach a Dask scheduler before giving up.
CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class Unit:
    """One thing a worker reads: a walked unit, or a path given directly (`direct`)."""

    path: str
    run: str
    format: str | None  # registry name; None: sniffed by the worker (or --input-format)
    direct: bool  # a path the user named: its errors fail the command
    group: int  # index of the user's path this unit came from
    error: str | None = None  # the walk could not even open it (permissions): why


@dataclass(frozen=True)
class Work:
    """What every worker needs besides its unit (picklable): the command's Options, and
    whether the points travel back (for the reports that plot them)."""

    options: Options = field(default_factory=Options)
    keep_frames: bool = False


@dataclass(frozen=True)
class UnitResult:
    """What comes back from a worker: the analyses, the reader's names, warnings raised."""

    runs: tuple["RunAnalysis", ...]
    names: tuple[str, ...]  # the run names the reader gave, before build's de-duplication
    warnings: tuple[str, ...]
    frame: "Frame | None" = None


def plan_units(paths: Sequence[str | os.PathLike], input_format: str | None = None) -> list[Unit]:
    """The units of every path, in the order the serial read visits them."""
    from .readers import Unreadable, walk_units

    units: list[Unit] = []
    for group, path in enumerate(paths):
        text = str(path)
        if text.startswith("wandb://"):
            units.append(Unit(text, text, input_format, True, group))
            continue
        p = Path(path)
        if not p.exists():
            raise LogNotFoundError(f"{p}: no such file or directory")
        if p.is_file():
            units.append(Unit(text, p.name, input_format, True, group))
            continue
        # files are sniffed by the workers (~60 ms each: a serial cost of seconds here)
        passed: list[str] = []
        units += [Unit(str(u), run, None, False, group, fmt.reason)
                  if isinstance(fmt, Unreadable)
                  else Unit(str(u), run, fmt.name if fmt else None, False, group)
                  for u, run, fmt in walk_units(p, input_format, passed)]
        for message in passed:  # (a dangling link, a FIFO: as the serial read says them)
            warnings.warn(message, LossLensWarning, stacklevel=2)
    return units


def analyze_unit(unit: Unit, work: Work) -> UnitResult:
    """Read one unit, build its Frame, analyse it (runs in the worker)."""
    from .frame import build
    from .pipeline import analyze

    messages: list[str] = []
    with _caught(messages):
        records = [r for r in _read_unit(unit, work.options) if len(r) or r.error]
        runs: tuple = ()
        frame = None
        if records:
            frame = build(records, work.options.roles)
            runs = analyze(frame, work.options).runs  # (each run isolated there)
    return UnitResult(runs, tuple(r.run for r in records), tuple(messages),
                      frame if work.keep_frames else None)


@contextmanager
def _caught(messages: list[str]) -> Iterator[None]:
    """LossLensWarnings raised while a unit is read, as messages that travel back.

    `warnings.catch_warnings` swaps process-wide state, so it is used only on a process's
    main thread (pool workers, the serial path); a Dask worker's threads share a process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossLensWarning)
        yield
    messages += [str(w.message) for w in caught if issubclass(w.category, LossLensWarning)]


def _read_unit(unit: Unit, options: Options) -> list:
    from .readers import FORMATS, Unreadable, read_records, read_unit

    if unit.direct:
        return read_records(unit.path, unit.format or options.input_format,
                            unit_timeout=options.unit_timeout)
    fmt = Unreadable(unit.error) if unit.error else (FORMATS[unit.format] if unit.format
                                                     else None)
    return read_unit(Path(unit.path), unit.run, fmt, options.input_format, options.unit_timeout)


def analyze_paths(paths: Sequence[str | os.PathLike], options: Options | None = None,
                  jobs: int = 1, scheduler: str | None = None,
                  progress: Progress | None = None, keep_frames: bool = False) -> "Analysis":
    """`losslens.read` + `pipeline.analyze` over many runs, unit by unit, in parallel.

    `jobs` worker processes (0: one per CPU), or the Dask cluster at `scheduler`. Reader
    warnings are re-raised here as `LossLensWarning`s, in unit order. The checkpoint interval
    spans each unit's own steps (only the checkpoints before a run's events ever matter).
    """
    options = (options or Options()).validate()
    if jobs < 0:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"`jobs` must be >= 0, got {jobs}")
    work = Work(options, keep_frames)
    units = plan_units(paths, options.input_format)
    if scheduler:
        results = _run_dask(units, work, scheduler, progress)
    else:
        results = _run_pool(units, work, jobs or os.cpu_count() or 1, progress)
    return _combine(paths, units, results, options)


def _run_pool(units: list[Unit], work: Work, jobs: int,
              progress: Progress | None) -> list[UnitResult]:
    if jobs <= 1 or len(units) <= 1:
        out = []
        for u in units:
            out.append(analyze_unit(u, work))
            if progress:
                progress(len(out), len(units))
        return out
    import multiprocessing

    results = _run_processes(units, work, min(jobs, len(units)),
                             _context(multiprocessing, units), progress)
    # a path given directly that fails fails the command, the first such path as serially
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results


#: Seconds a worker gets past the unit time-out (its own deadline fires first when it can)
#: before it is killed from outside.
KILL_GRACE = 10.0


def _run_processes(units: list[Unit], work: Work, jobs: int, ctx: Any,
                   progress: Progress | None) -> list[Any]:
    """Each unit in a process of its own (forked from the preloaded server), at most `jobs`
    at a time: a unit that crashes its process (a segfault in a C library, the kernel's OOM
    killer) or runs past the unit time-out is killed and becomes that unit's error, and the
    rest go on -- a shared pool would break as a whole (BrokenProcessPool)."""
    import time
    from multiprocessing.connection import wait

    from .limits import UNIT_TIMEOUT

    limit = work.options.unit_timeout or UNIT_TIMEOUT
    results: list[Any] = [None] * len(units)
    todo = list(range(len(units)))[::-1]
    live: dict[Any, tuple[int, Any, float]] = {}  # result pipe -> (unit index, process, start)
    finished = 0

    def done(i: int, result: Any) -> None:
        nonlocal finished
        results[i] = result
        finished += 1
        if progress:
            progress(finished, len(units))

    try:
        while todo or live:
            while todo and len(live) < jobs:
                i = todo.pop()
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_unit_process, args=(units[i], work, writer),
                                   daemon=True)
                proc.start()
                writer.close()
                live[reader] = (i, proc, time.monotonic())
            now = time.monotonic()
            wait_for = min(start + limit + KILL_GRACE - now for _, _, start in live.values())
            for reader in wait(list(live), timeout=max(wait_for, 0.0)):
                i, proc, _ = live.pop(reader)
                try:
                    result = reader.recv()
                except (EOFError, OSError):  # the process died without an answer
                    proc.join(5)
                    result = _lost(units[i], _death(proc.exitcode))
                reader.close()
                proc.join(5)
                done(i, result)
            now = time.monotonic()
            for reader, (i, proc, start) in list(live.items()):
                if now - start > limit + KILL_GRACE:
                    proc.kill()
                    proc.join(5)
                    reader.close()
                    del live[reader]
                    done(i, _lost(units[i], f"gave up after {limit:g} s (--unit-timeout)"))
    finally:  # Ctrl-C or an error here: no worker outlives the command
        for reader, (_, proc, _) in live.items():
            proc.kill()
            proc.join(5)
            reader.close()
    return results


def _unit_process(unit: Unit, work: Work, conn: Any) -> None:
    """A worker process: analyse one unit and send back the result (or the exception of a
    path given directly)."""
    try:
        result: Any = analyze_unit(unit, work)
    except Exception as exc:  # noqa: BLE001 - travels back, raised there for a direct path
        result = exc if isinstance(exc, LossLensError) else LossLensError(
            f"{unit.path}: could not be read ({type(exc).__name__}: {exc})")
    try:
        conn.send(result)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result
        conn.send(_lost(unit, f"result could not be sent back ({type(exc).__name__})"))
    conn.close()


def _death(exitcode: int | None) -> str:
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory?)" if name == "SIGKILL" else ""
        return f"the process reading it was killed by {name}{why}"
    return f"the process reading it exited with status {exitcode}"


def _lost(unit: Unit, why: str) -> Any:
    """A unit that gave no result: its error as a run (a path given directly: the error)."""
    message = f"{unit.path}: {why}"
    if unit.direct:
        return LossLensError(message)
    from .frame import RunInfo
    from .pipeline import RunAnalysis
    from .records import RunMeta

    info = RunInfo(unit.run, unit.path, "unknown", (), (), RunMeta(), error=message)
    return UnitResult((RunAnalysis(info, (), (), None),), (unit.run,), ())


def _context(multiprocessing: Any, units: list[Unit]) -> Any:
    """forkserver where there is one: no fork of a process that may hold threads (pyarrow,
    the readers' thread pools), and workers forked from a server that already imported
    pandas, the detectors (ruptures: ~1 s) and the readers needed, once for all workers
    (spawn would import them again in every worker)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    from .detectors import DETECTORS
    from .readers import FORMATS

    modules = ["losslens.parallel", "losslens.frame", "losslens.pipeline", "losslens.diagnosis",
               *sorted({path.partition(":")[0] for path in DETECTORS.values()}), "ruptures",
               *sorted({f.module for f in FORMATS.values()
                        if any(u.format in (None, f.name) for u in units)})]
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(modules)
    return ctx


def _run_dask(units: list[Unit], work: Work, address: str,
              progress: Progress | None) -> list[UnitResult]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        from .errors import MissingDependencyError

        raise MissingDependencyError(
            "--scheduler needs Dask: pip install 'losslens[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise LossLensError(f"`scheduler` {address}: cannot connect ({exc})") from None
    with client:
        futures = client.map(analyze_unit, units, work=work, pure=False)
        for done, _ in enumerate(as_completed(futures), 1):
            if progress:
                progress(done, len(units))
        return client.gather(futures)


def _combine(paths: Sequence[Any], units: list[Unit], results: list[UnitResult],
             options: Options) -> "Analysis":
    """One Analysis in the serial order, with build's run-name de-duplication across units."""
    from .pipeline import Analysis, rename_run
    from .readers import known_formats

    for r in results:
        for message in r.warnings:
            warnings.warn(message, LossLensWarning, stacklevel=3)
    for group, path in enumerate(paths):
        if not any(r.runs for u, r in zip(units, results) if u.group == group):
            raise NoSeriesError(
                f"{Path(path)}: no metric series found (known formats: {known_formats()})")
    seen: dict[str, int] = {}
    runs: list[RunAnalysis] = []
    frames: list[tuple[str, str, Frame | None]] = []  # (final name, unit name, frame)
    for r in results:
        for name, ra in zip(r.names, r.runs):
            if name in seen:
                seen[name] += 1
                final = f"{name}#{seen[name]}"
            else:
                seen[name] = 1
                final = name
            frames.append((final, ra.info.run, r.frame))
            runs.append(rename_run(ra, final))
    return Analysis(FrameSet(tuple(ra.info for ra in runs), frames), tuple(runs), options)


class FrameSet:
    """The runs of many units seen as one Frame, for reporters: `runs`, `run()`, `series()`.

    Points are there only for units analysed with `keep_frames`; `series` of the others
    raises UnknownRunError, a KeyError (the reporters that need points ask for them)."""

    def __init__(self, runs: tuple["RunInfo", ...],
                 frames: Sequence[tuple[str, str, "Frame | None"]]) -> None:
        self.runs = runs
        self._where = {final: (frame, inner) for final, inner, frame in frames}

    def run(self, name: str) -> "RunInfo":
        for info in self.runs:
            if info.run == name:
                return info
        raise UnknownRunError(f"no run named {name!r}")

    def series(self, run: str, tag: str, raw: bool = False) -> "Series":
        frame, inner = self._where.get(run, (None, run))
        if frame is None:
            raise UnknownRunError(f"the points of run {run!r} stayed in its worker")
        return replace(frame.series(inner, tag, raw=raw), run=run)

    def __len__(self) -> int:
        return sum(s.raw_points for info in self.runs for s in info.series)
