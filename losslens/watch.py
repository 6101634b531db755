"""Follow a growing training log and report loss events as they appear (`losslens watch`).

What is new, and only that, is read on each look (`Follower.poll`):

- Text logs: `_Tail` keeps the byte offset just past the last complete line; a half-written
  last line waits for its newline. A file shorter than the offset (truncated), another file at
  the path (rotated, replaced) or a deleted and re-created file is read again from its start as
  a new segment (a run header between the two), and what was left in the old file is read
  first. Formats whose lines carry their own step (`CONTEXT_LINES`) hand the format's own
  reader only the new lines plus a few lines before them (the context a line may lean on: the
  iteration line before a DeepSpeed OVERFLOW line, an OLMo block header before its metrics),
  through a small temporary file; the cost of an update is proportional to the new bytes.
  The other formats infer their steps from the whole file (HF console, pix2pix) or are
  rewritten whole (trainer_state.json, CSV); they are read whole again when they change.
- TensorBoard folders: each event file is followed from a record boundary (a record still
  being written waits); a new event file is a new segment, as `tensorboard.read` makes it.
  Every folder under the path that holds event files is a run, as in `losslens analyze`.

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
into it as in `analyze`; `details.shared_with` / `isolated` (which compare losses over time)
are not computed. The library never prints: `Update.notices` holds
the messages for stderr.
"""
from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .errors import LogNotFoundError, LossLensError, UnknownFormatError
from .detectors.stream import CausalStreams, LiveRun
from .events import Event
from .records import RunRecords

#: Text formats read a line batch at a time, with how many earlier lines each batch carries.
CONTEXT_LINES: dict[str, int] = {
    "megatron": 64, "nanogpt": 16, "llmc": 64, "llmc-mainlog": 8, "torchtitan": 16,
    "olmo": 256, "olmo-core": 256, "fairseq": 64, "jsonl": 0,
}
#: Above this many bytes the first read hands the reader the file itself (no copy).
DIRECT_READ_BYTES = 1 << 20


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


@dataclass
class Batch:
    """New points of one run; `reset`: they replace all read so far; `header`: a run header
    (new segment) at this order, before the points."""

    run: str
    source: str
    format: str
    records: RunRecords | None
    reset: bool = False
    header: int | None = None


# ============================================================================ text sources


@dataclass
class _Piece:
    data: bytes  # complete lines
    fresh: bool  # the first bytes of a file that replaced the previous one


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class _Tail:
    """The complete lines appended to one path since the last look (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.files = 0

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def read(self, notices: list[str]) -> list[_Piece]:
        st = _stat(self.path)
        pieces: list[_Piece] = []
        if self.fh is not None:
            size = os.fstat(self.fh.fileno()).st_size
            if st is not None and (st.st_dev, st.st_ino) == self.ident:
                if size < self.offset:
                    notices.append(f"{self.path}: truncated ({size} bytes, {self.offset} read); "
                                   "reading it again from the start as a new segment")
                    self.offset = 0
                    return [_Piece(self._new(size), True)]
                return [_Piece(self._new(size), False)]
            pieces.append(_Piece(self._new(size), False))  # what the old file still held
            self.close()
            notices.append(f"{self.path}: deleted; waiting for it to come back" if st is None
                           else f"{self.path}: replaced by a new file (rotated); reading the "
                                "new file from the start as a new segment")
        if st is None or not self._open():
            return pieces
        size = os.fstat(self.fh.fileno()).st_size
        return pieces + [_Piece(self._new(size), self.files > 1)]

    def _open(self) -> bool:
        try:
            self.fh = open(self.path, "rb")
        except OSError:
            return False
        st = os.fstat(self.fh.fileno())
        self.ident, self.offset = (st.st_dev, st.st_ino), 0
        self.files += 1
        return True

    def _new(self, size: int) -> bytes:
        if size <= self.offset:
            return b""
        self.fh.seek(self.offset)
        data = self.fh.read(size - self.offset)
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        return data[:cut]

    def same_file(self) -> bool:
        st = _stat(self.path)
        return st is not None and (st.st_dev, st.st_ino) == self.ident


def _select(rec: RunRecords, keep: np.ndarray, shift: int, lo: int, hi: int) -> RunRecords:
    """The points of `keep` with orders shifted; headers in (lo, hi] shifted likewise."""
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep] + shift,
                   headers=tuple(h + shift for h in rec.headers if lo < h <= hi))


def _read_one(path: Path, run: str, fmt: str) -> RunRecords | None:
    """The format's reader on one file: one run's records (None when it held no run)."""
    if fmt == "megatron":  # the vectorised path pays off from a few lines on
        from .readers import megatron

        return megatron.read_file(path, run, fast=True)
    from .readers import read_file

    records = read_file(path, run, fmt)
    return records[0] if records else None


class _LineParser:
    """Parses the complete lines appended to a text log, with a few lines of context."""

    def __init__(self, fmt: str, run: str, source: str, tmp: Path) -> None:
        self.fmt, self.run, self.source, self.tmp = fmt, run, source, tmp
        self.keep = CONTEXT_LINES[fmt]
        self.context: list[bytes] = []
        self.base = 0  # order of line 0 of the current file
        self.lines = 0  # lines of the current file read

    def new_file(self) -> int | None:
        """A new file starts: its lines follow the old ones; the header between them."""
        header = self.base + self.lines if self.base + self.lines else None
        self.base += self.lines
        self.lines, self.context = 0, []
        return header

    def parse(self, data: bytes, direct: Path | None = None) -> RunRecords | None:
        """Points of the complete lines `data` (`direct`: the file itself starts with them)."""
        n = data.count(b"\n")
        if not n:
            return None
        k = 0 if direct is not None else len(self.context)
        if direct is None:
            self.tmp.write_bytes(b"".join(line + b"\n" for line in self.context) + data)
        rec = _read_one(direct or self.tmp, self.run, self.fmt)
        shift = self.base + self.lines - k
        self.lines += n
        self._remember(data)
        if rec is None:
            return None
        keep = (rec.order > k) & (rec.order <= k + n)
        return replace(_select(rec, keep, shift, k, k + n), source=self.source)

    def _remember(self, data: bytes) -> None:
        if not self.keep:
            return
        pos = len(data) - 1
        for _ in range(self.keep):
            pos = data.rfind(b"\n", 0, pos)
            if pos < 0:
                break
        self.context = (self.context + data[pos + 1:-1].split(b"\n"))[-self.keep:]


class _TextSource:
    """One text log: followed line by line (CONTEXT_LINES formats) or re-read whole."""

    def __init__(self, path: Path, fmt: str | None, strict: bool) -> None:
        self.path, self.fmt, self.strict = path, fmt, strict
        self.run = path.name
        self.tail = _Tail(path)
        self.parser: _LineParser | None = None
        shm = Path("/dev/shm")  # the batch file lives in memory where there is such a place
        self.tmpdir = Path(tempfile.mkdtemp(prefix="losslens-watch-", dir=shm if shm.is_dir()
                                            and os.access(shm, os.W_OK) else None))
        self.seen: tuple | None = None  # whole-file formats: (inode, size, mtime) last read
        self.said = False

    def close(self) -> None:
        self.tail.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        if self.fmt is None and not self._sniff(notices):
            return [], 0
        if self.fmt not in CONTEXT_LINES:
            return self._whole(notices)
        if self.parser is None:
            self.parser = _LineParser(self.fmt, self.run, str(self.path),
                                      self.tmpdir / self.path.name)
        out, units = [], 0
        for i, piece in enumerate(self.tail.read(notices)):
            header = self.parser.new_file() if piece.fresh else None
            direct = (self.path if self.parser.base + self.parser.lines == 0 and i == 0
                      and len(piece.data) > DIRECT_READ_BYTES and self.tail.same_file()
                      else None)
            units += piece.data.count(b"\n")
            try:
                rec = self.parser.parse(piece.data, direct)
            except LossLensError as exc:
                notices.append(f"{self.path}: {exc}")
                rec = None
            if rec is not None or header is not None:
                out.append(Batch(self.run, str(self.path), self.fmt, rec, header=header))
        return out, units

    def _sniff(self, notices: list[str]) -> bool:
        from .readers import sniff

        try:
            fmt = sniff(self.path) if self.path.is_file() else None
        except OSError:
            fmt = None
        if fmt is None:
            if self.strict:
                raise UnknownFormatError(f"{self.path}: not a log format losslens knows; "
                                         "name one with --input-format")
            if not self.said:
                notices.append(f"{self.path}: no line losslens recognises yet; waiting "
                               "(or name the format with --input-format)")
                self.said = True
            return False
        self.fmt = fmt.name
        return True

    def _whole(self, notices: list[str]) -> tuple[list[Batch], int]:
        from .readers import read_file

        st = _stat(self.path)
        if st is None:
            return [], 0
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self.seen:
            return [], 0
        self.seen = sig
        try:
            records = read_file(self.path, self.run, self.fmt)
        except LossLensError as exc:
            notices.append(f"{self.path}: {exc}")
            return [], 0
        return [Batch(r.run, r.source, r.format, r, reset=True) for r in records], 1


# ============================================================================ TensorBoard


class _Shifted:
    """A file seen from `base` on (what `tfrecord.scan` reads from)."""

    def __init__(self, fh: Any, base: int) -> None:
        self.fh, self.base = fh, base

    def seek(self, pos: int) -> int:
        return self.fh.seek(self.base + pos)

    def readinto(self, buf: Any) -> int:
        return self.fh.readinto(buf)


@dataclass
class _TBFile:
    offset: int = 0
    ident: tuple[int, int] | None = None
    header_due: bool = False  # a later file (or one started over): a segment at its first record


class _TBRun:
    """One folder of event files, followed record by record."""

    def __init__(self, directory: Path, run: str, only: str | None) -> None:
        from .readers import tensorboard as tb

        self.dir, self.run, self.only = directory, run, only
        self.acc = tb._Run()
        self.files: dict[str, _TBFile] = {}

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        from .readers import tensorboard as tb

        try:
            paths = [p for p in tb.event_files(self.dir) if self.only in (None, p.name)]
        except OSError:
            return [], 0
        headers, before = [], self.acc.records
        for path in paths:
            first, parts = self.acc.records + 1, len(self.acc.parts)
            state = self.files.get(path.name)
            if state is None:
                state = self.files[path.name] = _TBFile(header_due=bool(self.files))
            state.header_due |= self._read(path, state, notices)
            if state.header_due and self.acc.records >= first:
                orders = [p[4][:1] for p in self.acc.parts[parts:] if p[4].shape[0]]
                starts_with_points = bool(orders) and int(orders[0][0]) == first
                headers.append(first - 1 if starts_with_points else first)
                state.header_due = False
        if self.acc.records == before:
            return [], 0
        self.acc.headers = headers  # with the points, so that segments are cut in order
        rec = tb._assemble(self.acc, self.run, str(self.dir))
        return [Batch(self.run, str(self.dir), "tensorboard", rec)], self.acc.records - before

    def _read(self, path: Path, f: _TBFile, notices: list[str]) -> bool:
        """Read the file's new complete records; True when it was started over."""
        from .readers import tensorboard as tb
        from .readers import tfrecord

        restarted = False
        try:
            fh = open(path, "rb")
        except OSError:
            return False
        with fh:
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            if f.ident is not None and (ident != f.ident or st.st_size < f.offset):
                notices.append(f"{path}: replaced or truncated; reading it again from the "
                               "start as a new segment")
                f.offset, restarted = 0, True
            f.ident = ident
            if st.st_size <= f.offset:
                return restarted
            consumed = 0
            for chunk in tfrecord.scan(_Shifted(fh, f.offset), st.st_size - f.offset):
                if not chunk.starts.shape[0]:
                    continue
                dec = tb._Chunk(chunk, self.acc)
                dec.decode()
                self.acc.parts.append(dec.points(self.acc.records + 1))
                self.acc.records += int(chunk.starts.shape[0])
                consumed = chunk.base + int(chunk.starts[-1]) + 16 + int(chunk.lengths[-1])
            f.offset += consumed
        return restarted


class _TBSource:
    """Every folder under `root` that holds event files (re-walked on each look)."""

    def __init__(self, root: Path, only: str | None = None) -> None:
        self.root, self.only = root, only
        self.runs: dict[Path, _TBRun] = {}

    def close(self) -> None:
        pass

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        from .readers import tensorboard as tb

        if self.only is not None:
            dirs = [self.root]
        else:
            dirs = [Path(d) for d, _, names in os.walk(self.root)
                    if any(tb.is_event_file_name(n) for n in names)]
        out, units = [], 0
        for d in sorted(dirs):
            unit = self.runs.get(d)
            if unit is None:
                rel = str(d.relative_to(self.root)) if d != self.root else ""
                name = self.only or rel or self.root.name
                unit = self.runs[d] = _TBRun(d, name, self.only)
            batches, n = unit.poll(notices)
            out += batches
            units += n
        return out, units


# ============================================================================ the follower


def _signature(e: Event) -> tuple:
    """What makes an event worth reporting again."""
    return (e.severity, e.recovery, e.peak_step if e.kind in ("spike", "grad_spike") else None,
            e.details.get("recovered") if e.kind == "divergence" else None)


class _Reporter:
    """Which events of a run were reported, with which ids and signatures."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str, int], tuple[str, tuple]] = {}
        self.counts: dict[str, int] = {}

    def diff(self, run: str, events: list[Event]) -> tuple[list[Reported], list[Event]]:
        """(what to report, every current event with its id)."""
        out, current = [], []
        for e in events:
            key = (e.kind, e.tag, e.start_step)
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
    """

    def __init__(self, path: str | os.PathLike, *, input_format: str | None = None,
                 roles: Mapping[str, str] | None = None, from_end: bool = False,
                 detectors: Any = None, strict: bool = False) -> None:
        if input_format is not None:
            from .readers import get_format

            get_format(input_format)
        self.path = Path(path)
        self.format, self.roles, self.strict = input_format, dict(roles or {}), strict
        self.streams = CausalStreams(detectors)
        self.source: Any = None
        self.states: dict[str, LiveRun] = {}
        self.reporters: dict[str, _Reporter] = {}
        self._current: dict[str, list[Event]] = {}
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
            if b.header is not None:
                st.add_header(b.header)
            if b.records is not None:
                st.feed(b.records)
            touched[b.run] = st
        for run, st in touched.items():
            report, self._current[run] = self.reporters.setdefault(run, _Reporter()).diff(
                run, st.detect())
            if not self._quiet:
                update.events += report
        self._quiet = False
        update.seconds = time.perf_counter() - t0
        return update

    def _open(self, notices: list[str]) -> bool:
        from .readers import tensorboard as tb

        p = self.path
        if not p.exists():
            if self.strict:
                raise LogNotFoundError(f"{p}: no such file or directory")
            if not self._waiting_said:
                notices.append(f"{p}: does not exist yet; waiting for it")
                self._waiting_said = True
            return False
        if p.is_dir():
            self.source = _TBSource(p)
        elif tb.is_event_file_name(p.name) or self.format == "tensorboard":
            self.source = _TBSource(p.parent, only=p.name)
        else:
            self.source = _TextSource(p, self.format, self.strict)
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
    line = "  ".join(p for p in parts if p)
    return ("update  " if r.update else "") + line + (f"  [{r.run}]" if show_run else "")


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
    """
    try:
        args = shlex.split(command)
    except ValueError as exc:
        return f"--on-event: cannot split {command!r}: {exc}"
    if not args:
        return "--on-event: empty command"
    try:
        proc = subprocess.run(args, input=payload.encode(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"--on-event: {args[0]} did not finish within {timeout:g} s (killed)"
    except OSError as exc:
        return f"--on-event: cannot run {args[0]}: {exc.strerror or exc}"
    if proc.returncode:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {err[-1][:200]}" if err else ""
        return f"--on-event: {args[0]} exited with status {proc.returncode}{tail}"
    return None
