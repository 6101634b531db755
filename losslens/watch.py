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

Each run keeps, per tag, the stitched series (last write per step) of the roles the causal
detectors read, and the segments as `frame.build` cuts them, both updated in place.

Detection runs the detectors that declare themselves causal (`causal = True`: spike,
divergence, nonfinite, grad_spike, overflow, rollback; their verdict on a point rests on the
points before it). A series detector runs on a trailing window: the new points plus the
detector's horizon of history, reaching further back where an event is still open (a spike not
back yet, a NaN or overflow burst that may go on, a spike whose recovery moved the statistics
of what follows, a grad spike a new loss spike may still follow). Events from the window's
trusted part on replace the earlier ones there. What the detectors decide from the whole
prefix is tracked here too: where the spike statistic leaves log space (a first value <= 0, or
the level coming near 0: after that the window is judged additively, and the update where it
happens runs on the whole series), divergence's best level since the start (divergence runs on
the whole series, but only when a new point rises above its threshold or is non-finite: the
only way its events can change; on every update while the series is short, the detector then
sizing its window from the length, or signed), whether a skipped counter is cumulative.
Over any prefix the events equal what `analyze` finds on that prefix (tests/test_watch.py).

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


# ============================================================================ run state


class _Series:
    """One tag's stitched points (sorted by step, the last write of a step winning), growable;
    `dirty` = the first index changed since the detectors last ran."""

    def __init__(self) -> None:
        self.step = np.empty(1024, np.int64)
        self.value = np.empty(1024, np.float64)
        self.n = 0
        self.dirty: int | None = None
        self.first_nonpos: int | None = None  # first finite value <= 0
        self._mono: tuple[int, bool, float] = (0, True, math.nan)  # skipped counters

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        n, k = self.n, steps.shape[0]
        if not k:
            return
        if (n == 0 or steps[0] > self.step[n - 1]) and bool(np.all(steps[1:] > steps[:-1])):
            self._reserve(n + k)
            self.step[n:n + k], self.value[n:n + k] = steps, values
            self.n, start = n + k, n
        else:
            start = self._merge(steps, values)
        self.dirty = start if self.dirty is None else min(self.dirty, start)
        if self.first_nonpos is None or self.first_nonpos >= start:
            v = self.value[start:self.n]
            with np.errstate(invalid="ignore"):
                hit = np.flatnonzero(np.isfinite(v) & (v <= 0))
            self.first_nonpos = start + int(hit[0]) if hit.shape[0] else None
        if self._mono[0] > start:
            self._mono = (0, True, math.nan)

    def _reserve(self, size: int) -> None:
        if size > self.step.shape[0]:
            cap = max(size, 2 * self.step.shape[0])
            for name, dt in (("step", np.int64), ("value", np.float64)):
                new = np.empty(cap, dt)
                new[:self.n] = getattr(self, name)[:self.n]
                setattr(self, name, new)

    def _merge(self, steps: np.ndarray, values: np.ndarray) -> int:
        """Points that go back in step (a resume, a rollback): overwrite or insert."""
        order = np.argsort(steps, kind="stable")
        s, v = steps[order], values[order]
        last = np.r_[s[1:] != s[:-1], True]
        s, v = s[last], v[last]
        n = self.n
        old = self.step[:n]
        pos = np.searchsorted(old, s)
        hit = (pos < n) & (old[np.minimum(pos, max(n - 1, 0))] == s) if n else pos < 0
        self.value[pos[hit]] = v[hit]
        if not hit.all():
            new_s = np.insert(old, pos[~hit], s[~hit])
            new_v = np.insert(self.value[:n], pos[~hit], v[~hit])
            self.n = 0
            self._reserve(new_s.shape[0])
            self.step[:new_s.shape[0]], self.value[:new_s.shape[0]] = new_s, new_v
            self.n = new_s.shape[0]
        return int(pos.min())

    def monotone(self) -> tuple[bool, float]:
        """(finite values never decrease, last finite value), kept up to date incrementally."""
        upto, ok, last = self._mono
        v = self.value[upto:self.n]
        v = v[np.isfinite(v)]
        if v.shape[0]:
            chain = np.r_[last, v] if math.isfinite(last) else v
            ok = ok and bool(np.all(np.diff(chain) >= 0))
            last = float(v[-1])
        self._mono = (self.n, ok, last)
        return ok, last

    def view(self, run: str, tag: str, role: str, a: int = 0) -> Any:
        from .frame import Series

        m = self.n - a
        return Series(run, tag, role, self.step[a:self.n], self.value[a:self.n],
                      np.full(m, np.nan), np.zeros(m, np.int32))


class _Segments:
    """The run's segments, cut as `frame._segment_ids` cuts them, updated batch by batch."""

    def __init__(self) -> None:
        self.bounds: list[tuple[int, str]] = []  # (order, reason) of each raw boundary
        self.cuts: list[int] = []  # first order of each raw segment after the first
        self.agg: dict[int, list[int]] = {}  # raw id -> first, last, points, order, code, step
        self.last: dict[int, tuple[int, int]] = {}  # tag code -> (step, order) of its last point
        self.first_order: int | None = None
        self.pending: list[int] = []

    def add(self, codes: np.ndarray, steps: np.ndarray, orders: np.ndarray,
            headers: tuple[int, ...]) -> None:
        if self.first_order is None and codes.shape[0]:
            self.first_order = int(orders.min())
        self.pending += headers
        if self.first_order is None:
            return
        cands = [(h, "header", -1, -1) for h in sorted(set(self.pending)) if h > self.first_order]
        self.pending = []
        idx = np.lexsort((orders, codes))
        c, s, o = codes[idx], steps[idx], orders[idx]
        cands += self._step_backs(c, s, o)
        for o_, reason, _, prev in sorted(cands):
            if reason == "step_back" and self.bounds and prev < self.bounds[-1][0]:
                continue  # the tag restarts with the boundary before, not anew
            if self.bounds and self.bounds[-1][0] == o_:
                continue
            self.bounds.append((o_, reason))
            self.cuts.append(o_ if reason == "step_back" else o_ + 1)
        self._aggregate(c, s, o)

    def _step_backs(self, c: np.ndarray, s: np.ndarray, o: np.ndarray) -> list[tuple]:
        n = c.shape[0]
        if not n:
            return []
        prev_s, prev_o = np.empty_like(s), np.empty_like(o)
        prev_s[1:], prev_o[1:] = s[:-1], o[:-1]
        has = np.ones(n, bool)
        heads = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        for i in heads.tolist():
            last = self.last.get(int(c[i]))
            if last is None:
                has[i] = False
            else:
                prev_s[i], prev_o[i] = last
        ends = np.r_[heads[1:] - 1, n - 1]
        for i in ends.tolist():
            self.last[int(c[i])] = (int(s[i]), int(o[i]))
        back = np.flatnonzero(has & (s < prev_s))  # a step written twice in a row is not
        return [(int(o[i]), "step_back", int(c[i]), int(prev_o[i])) for i in back.tolist()]

    def _aggregate(self, c: np.ndarray, s: np.ndarray, o: np.ndarray) -> None:
        if not c.shape[0]:
            return
        seg = np.searchsorted(np.asarray(self.cuts, np.int64), o, side="right")
        for k in np.unique(seg).tolist():
            m = np.flatnonzero(seg == k)
            top = m[o[m] == o[m].max()]
            j = top[np.argmin(c[top])]
            a = self.agg.get(k)
            first, last, pts = int(s[m].min()), int(s[m].max()), int(m.shape[0])
            if a is None:
                self.agg[k] = [first, last, pts, int(o[j]), int(c[j]), int(s[j])]
                continue
            a[0], a[1], a[2] = min(a[0], first), max(a[1], last), a[2] + pts
            if (int(o[j]), -int(c[j])) > (a[3], -a[4]):
                a[3], a[4], a[5] = int(o[j]), int(c[j]), int(s[j])

    def segments(self) -> tuple:
        from .frame import Segment

        out: list[Segment] = []
        prev: int | None = None
        for k in sorted(self.agg):
            first, last, pts, _, _, step = self.agg[k]
            reason = self.bounds[k - 1][1] if out else "start"
            out.append(Segment(len(out), first, last, pts, reason, prev))
            prev = step
        return tuple(out)


class _View:
    """The little of a Frame that run-scope detectors use: `series(run, tag)`."""

    def __init__(self, series: Mapping[str, Any]) -> None:
        self._series = series

    def series(self, run: str, tag: str, raw: bool = False) -> Any:
        return self._series[tag]


class _RunState:
    """One run as watch knows it: tags and roles, stored series, segments, current events."""

    def __init__(self, run: str, source: str, fmt: str, roles: Mapping[str, str],
                 stored: frozenset[str]) -> None:
        self.run, self.source, self.fmt = run, source, fmt
        self.overrides, self.stored = dict(roles), stored
        self.reset()

    def reset(self) -> None:
        self.codes: dict[str, int] = {}
        self.roles: dict[str, str] = {}
        self.series: dict[str, _Series] = {}
        self.segments = _Segments()
        self.events: dict[tuple[str, str | None], list[Event]] = {}
        self.memo: dict[tuple[str, str], dict[str, Any]] = {}
        self.tick = 0  # detection rounds so far

    def ingest(self, rec: RunRecords) -> None:
        from .roles import infer_role

        for tag in rec.tags:
            if tag not in self.codes:
                self.codes[tag] = len(self.codes)
                self.roles[tag] = self.overrides.get(tag) or infer_role(tag)
        if not len(rec):
            self.segments.add(np.empty(0, np.int32), np.empty(0, np.int64),
                              np.empty(0, np.int64), rec.headers)
            return
        lut = np.asarray([self.codes[t] for t in rec.tags], np.int32)
        self.segments.add(lut[rec.tag_code], rec.step, rec.order, rec.headers)
        idx = np.lexsort((rec.order, rec.tag_code))
        codes = rec.tag_code[idx]
        bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            tag = rec.tags[int(codes[a])]
            if self.roles[tag] in self.stored:
                self.series.setdefault(tag, _Series()).add(rec.step[idx[a:b]],
                                                           rec.value[idx[a:b]])

    def info(self) -> Any:
        from .frame import RunInfo, SeriesInfo
        from .records import RunMeta

        infos = []
        for tag in self.codes:
            s = self.series.get(tag)
            n = s.n if s is not None else 0
            infos.append(SeriesInfo(tag, self.roles[tag], n, int(s.step[0]) if n else None,
                                    int(s.step[n - 1]) if n else None, 0, n))
        return RunInfo(self.run, self.source, self.fmt, tuple(infos), self.segments.segments(),
                       RunMeta())

    def current(self) -> list[Event]:
        from .analysis import _fold_into_divergence

        events = _fold_into_divergence([e for lst in self.events.values() for e in lst])
        return sorted(events, key=lambda e: (e.start_step, e.kind, e.tag))


# ============================================================================ detection


def _index(steps: np.ndarray, step: int) -> int:
    return int(np.searchsorted(steps, step))


def _splice(old: list[Event], found: list[Event], cut_step: float) -> list[Event]:
    """Events before `cut_step` as they were, from it on as found now."""
    return ([e for e in old if e.start_step < cut_step]
            + [e for e in found if e.start_step >= cut_step])


class _SpikePolicy:
    """Spikes on a trailing window (see the module docstring for what it must include)."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.w = int(getattr(det, "window", 129)) | 1
        self.lw = int(getattr(det, "level_window", 15)) | 1
        self.bp = int(getattr(det, "back_points", 5))
        self.back_z = float(getattr(det, "back_z", 3.0))
        self.min_points = int(getattr(det, "min_points", 8))
        #: points of history a verdict can lean on: the tail count over z-scores whose
        #: baseline spans a window and two level windows, and the re-judging after a spike.
        self.horizon = 4 * self.w + int(getattr(det, "tail_window", 1000)) + 4 * self.lw \
            + 2 * self.bp + 64

    def run(self, st: _RunState, tag: str, s: _Series) -> None:
        key = (self.det.kind, tag)
        old = st.events.get(key, [])
        a0 = self.start(old, s.step[:s.n], s.value[:s.n], int(s.dirty))
        series, cut_step = self.window(st, tag, s, a0)
        st.events[key] = _splice(old, self.det.detect(series), cut_step)

    def start(self, old: list[Event], steps: np.ndarray, values: np.ndarray, d: int) -> int:
        """The first index whose events must be found again when points from `d` on are new
        (the window then starts `horizon` points earlier)."""
        return min([d] + [self._reach(e, steps, values, d) for e in old])

    def window(self, st: _RunState, tag: str, s: _Series, a0: int) -> tuple[Any, float]:
        """The series to run the detector on so that its events from index `a0` on are as
        in the whole series, and the step from which they are."""
        # shared by the policies that run the same statistic on this tag (spike, grad_spike)
        memo = st.memo.setdefault((f"switch-{self.w}-{self.lw}-{self.min_points}", tag), {})
        k, moved = self._switch(s, memo, st.tick)
        a = max(0, a0 - self.horizon)
        if moved or (k is not None and k >= a):
            a = 0  # the series turned additive just now, or inside the window: all of it
        series = s.view(st.run, tag, st.roles[tag], a)
        if a and k is not None:  # additive since before the window: a 0 first says so
            series = replace(series, step=np.r_[series.step[0] - 1, series.step],
                             value=np.r_[0.0, series.value],
                             wall_time=np.r_[np.nan, series.wall_time],
                             segment=np.r_[0, series.segment])
        cut_step = -math.inf if a == 0 else s.step[a0] if a0 < s.n else math.inf
        return series, cut_step

    def _reach(self, e: Event, steps: np.ndarray, values: np.ndarray, d: int) -> int:
        """Where the window must start (before the horizon) for `e` to be judged as in the
        whole series: its start if it is still open or sways the new points, else `d`."""
        ci = _index(steps, e.start_step)
        if e.end_step is None:
            if ci >= d - 4 * self.w - 2 * self.bp - 64 or self._may_be_back(e, values[d:]):
                return ci
            return d
        ei = _index(steps, e.end_step)
        return ci if ei >= d - 3 * self.w - 2 * self.bp - 8 else d

    def _may_be_back(self, e: Event, new: np.ndarray) -> bool:
        """Whether a new point is back within the old spike's band (then its end is found)."""
        pre, scale = e.details.get("pre_level"), e.details.get("scale")
        if pre is None or scale is None:
            return True
        v = new[np.isfinite(new)]
        if e.details.get("space") == "log":
            if pre <= 0 or bool((v <= 0).any()):
                return True
            return bool((np.log(v) <= math.log(pre) + self.back_z * scale).any())
        return bool((v <= pre + self.back_z * scale).any())

    # -- where the statistic leaves log space (mirrors SpikeDetector.find / _near_zero) ----

    def _switch(self, s: _Series, memo: dict[str, Any], tick: int) -> tuple[int | None, bool]:
        """(index from which the detector judges the series additively, or None; whether
        that changed since the last update). It is the first value <= 0, or the first point
        whose log-space level is within NEAR_ZERO noise scales of 0 (unless every value so
        far exceeds NEAR_ZERO times the largest step); kept up to date incrementally."""
        from .detectors import spike as sp

        if not hasattr(self.det, "_near_zero"):
            return s.first_nonpos, False
        if memo.get("tick") == tick:  # already brought up to date in this update
            return memo["k"], memo["moved"]
        moved = False
        if memo and memo["upto"] > (s.n if s.dirty is None else s.dirty):
            memo.clear()  # points were rewritten: start over
            moved = True
        if not memo:
            memo.update(upto=0, fin=0, vmin=math.inf, smax=0.0, last=math.nan, cond=None,
                        k="unset")
        k0 = s.first_nonpos
        end = s.n if k0 is None else min(s.n, k0)
        if memo["upto"] < end:
            self._scan(s, memo, end, sp)
        memo["upto"] = max(memo["upto"], end)
        near = memo["cond"]
        if memo["smax"] == 0.0 or memo["vmin"] > sp.NEAR_ZERO * memo["smax"]:
            near = None  # the detector's shortcut: nowhere near 0
        if k0 is not None and memo["fin"] <= self.min_points:  # fin: finite points before k0
            near = None  # no log space at all: additive from the first value <= 0
        k = k0 if near is None else near if k0 is None else min(k0, near)
        moved = moved or (memo["k"] != "unset" and memo["k"] != k)
        memo.update(k=k, moved=moved, tick=tick)
        return k, moved

    def _scan(self, s: _Series, memo: dict[str, Any], end: int, sp: Any) -> None:
        """Fold the finite values of [upto, end) into the running min / largest step, and
        look for the first point of them where the level comes near 0."""
        upto = memo["upto"]
        seg = s.value[upto:end]
        vals = seg[np.isfinite(seg)]
        if vals.shape[0]:
            chain = np.r_[memo["last"], vals] if math.isfinite(memo["last"]) else vals
            if chain.shape[0] > 1:
                memo["smax"] = max(memo["smax"], float(np.abs(np.diff(chain)).max()))
            memo["vmin"] = min(memo["vmin"], float(vals.min()))
            memo["last"] = float(vals[-1])
        if memo["cond"] is None and vals.shape[0]:
            memo["cond"] = self._near_from(s, upto, end, memo["fin"], sp)
        memo["fin"] += int(vals.shape[0])

    def _near_from(self, s: _Series, upto: int, end: int, fin: int, sp: Any) -> int | None:
        """First index in [upto, end) whose level is within NEAR_ZERO noise scales of 0,
        computed on enough finite points before `upto` to be exact."""
        need, lo = 2 * self.w + 4 * self.lw + 16, upto
        while lo > 0 and np.count_nonzero(np.isfinite(s.value[lo:upto])) < need:
            lo = max(0, lo - 2 * need)
        seg = s.value[lo:end]
        ok = np.isfinite(seg)
        v, pos = seg[ok], lo + np.flatnonzero(ok)
        if v.shape[0] < 3:
            return None
        vmin, vmax, smax = float(v.min()), float(v.max()), float(np.abs(np.diff(v)).max())
        if vmin > 0 and vmin * vmin / vmax > sp.NEAR_ZERO * sp.DIFF_TO_SIGMA * smax:
            return None  # the level (>= vmin^2/vmax) stays above any noise bound here
        fin_index = fin - int(np.count_nonzero(ok[:upto - lo])) + np.arange(v.shape[0])
        logb = sp.baseline(v, self.w, True, level_window=self.lw)
        noise = np.full(v.shape[0], np.nan)
        noise[2:] = sp.DIFF_TO_SIGMA * sp.trailing_median(np.abs(np.diff(v)), self.w)[:-1]
        with np.errstate(invalid="ignore", over="ignore"):
            near = np.exp(logb.level) < sp.NEAR_ZERO * noise
        hit = np.flatnonzero(near & (pos >= upto) & (fin_index >= self.min_points))
        return int(pos[hit[0]]) if hit.shape[0] else None


class _DivergencePolicy:
    """Divergence on the whole series, run only when a new point could change its events."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.k = int(getattr(det, "window", 21)) | 1
        self.thr = math.log(float(getattr(det, "rise_ratio", 1.5)))

    def run(self, st: _RunState, tag: str, s: _Series) -> None:
        memo = st.memo.setdefault((self.det.kind, tag), {"best": math.inf, "upto": 0})
        d = int(s.dirty)
        if s.first_nonpos is not None or not self._long(s, memo):
            # additive space (the detector's noise scale is the whole series') or a short
            # series (its window and span are a share of its length): all of it, each time
            rerun, memo["upto"] = True, 0
        else:
            if d < memo["upto"] or memo["upto"] == 0:
                memo["best"] = float(self._levels(s, 0).min(initial=math.inf))
                rerun = True
            else:
                rerun = self._rises(s, max(0, d - 1), memo)
            memo["upto"] = s.n
        if rerun:
            st.events[(self.det.kind, tag)] = self.det.detect(s.view(st.run, tag, st.roles[tag]))

    def _long(self, s: _Series, memo: dict[str, Any]) -> bool:
        """Whether the series is long enough that the detector's window and sustain span no
        longer depend on its length (twice what `DivergenceDetector._short` asks), for good."""
        if memo.get("long") or not hasattr(self.det, "_short"):
            return True
        st = s.step[:s.n][np.isfinite(s.value[:s.n])]
        memo["long"] = (not self.det._short(st)) and st.shape[0] // 8 >= 2 * self.det._span(st)
        return memo["long"]

    def _levels(self, s: _Series, lo: int) -> np.ndarray:
        """The detector's level (trailing median of log values) at the finite points >= lo,
        +inf at the first `window - 1` finite points (the best level starts after them)."""
        from .detectors.spike import trailing_median

        a = lo
        while True:  # k - 1 finite points before lo, or the start
            a = max(0, a - 2 * self.k)
            v = s.value[a:lo]
            if a == 0 or np.count_nonzero(np.isfinite(v)) >= self.k - 1:
                break
        v = s.value[a:s.n]
        fin = np.isfinite(v)
        with np.errstate(divide="ignore", invalid="ignore"):
            level = trailing_median(np.log(v[fin]), self.k)
        if a == 0:
            level[:self.k - 1] = np.inf
        return level[np.count_nonzero(fin[:lo - a]):]

    def _rises(self, s: _Series, lo: int, memo: dict[str, Any]) -> bool:
        """Whether a point from `lo` on is non-finite or above the threshold (best updated)."""
        nonfinite = not np.all(np.isfinite(s.value[lo:s.n]))
        level = self._levels(s, lo)
        if not level.shape[0]:
            return nonfinite
        best = np.minimum(memo["best"], np.minimum.accumulate(level))
        memo["best"] = float(best[-1])
        with np.errstate(invalid="ignore"):  # inf - inf before the first full window
            return nonfinite or bool(np.any(level - best >= self.thr))


class _NonFinitePolicy:
    """NaN/inf bursts on a trailing window of `merge_within` points plus the open burst."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.gap = int(getattr(det, "merge_within", 1000))

    def run(self, st: _RunState, tag: str, s: _Series) -> None:
        n, d = s.n, int(s.dirty)
        steps = s.step[:n]
        key = (self.det.kind, tag)
        old = st.events.get(key, [])
        a0 = d
        if old:
            last = old[-1]
            end = last.end_step if last.end_step is not None else last.start_step
            if steps[d] - end <= self.gap or not last.details.get("finite_after", True):
                a0 = min(a0, _index(steps, last.start_step))
        a = max(0, a0 - self.gap - 2)
        cut = 0 if a == 0 else a0
        found = self.det.detect(s.view(st.run, tag, st.roles[tag], a))
        st.events[key] = _splice(old, found, steps[cut] if cut < n else math.inf)


class _OverflowPolicy:
    """Overflow bursts on the steps from `burst_gap` before the new points (or the open burst)."""

    def __init__(self, det: Any) -> None:
        self.det = det
        self.gap = int(getattr(det, "burst_gap", 200))

    def run(self, st: _RunState) -> None:
        from .detectors import overflow

        tags = [t for t, s in st.series.items() if st.roles[t] in self.det.roles]
        dirty = [int(st.series[t].step[st.series[t].dirty]) for t in tags
                 if st.series[t].dirty is not None]
        if not dirty:
            return
        key = (self.det.kind, None)
        old = st.events.get(key, [])
        s0 = min(dirty)
        if old and (old[-1].end_step or old[-1].start_step) >= s0 - self.gap - 1:
            s0 = min(s0, old[-1].start_step)
        view, whole = {}, False
        for t in tags:
            s = st.series[t]
            a = self._start(s, s0 - self.gap - 1)
            if st.roles[t] == "skipped" and self._mode_differs(t, s, a, overflow):
                whole = True
            view[t] = s
        starts = {t: (0 if whole else self._start(view[t], s0 - self.gap - 1)) for t in tags}
        frame = _View({t: view[t].view(st.run, t, st.roles[t], starts[t]) for t in tags})
        found = self.det.detect_run(frame, st.info())
        st.events[key] = found if whole else _splice(old, found, s0)

    @staticmethod
    def _start(s: _Series, step: int) -> int:
        """First index at `step` or after, less two earlier points (the drop before it)."""
        return max(0, _index(s.step[:s.n], step) - 2)

    @staticmethod
    def _mode_differs(tag: str, s: _Series, a: int, overflow: Any) -> bool:
        """Whether the window would read a skipped counter as cumulative and the whole series
        as per-interval (the detector decides from all of a counter's values)."""
        per_interval = bool(overflow._PER_INTERVAL.search(tag))
        if per_interval:
            return False
        mono, last = s.monotone()
        if mono and last > 1:
            return False
        v = s.value[a:s.n]
        v = v[np.isfinite(v)]
        return v.shape[0] > 1 and bool(np.all(np.diff(v) >= 0)) and v[-1] > 1


class _GradSpikePolicy:
    """Grad-norm spikes on trailing windows of the grad norms and of the losses they follow.

    A grad spike is found again from where its series changed (reaching back like a spike),
    and from `follow_within` steps before a loss's new points (a new loss spike there may
    have followed it); the losses are windowed so that their spikes from there on are exact.
    """

    def __init__(self, det: Any) -> None:
        from .detectors.spike import SpikeDetector

        self.det = det
        self.grad = _SpikePolicy(det._spikes())
        self.loss = _SpikePolicy(SpikeDetector())
        self.follow = int(getattr(det, "follow_within", 100))

    def run(self, st: _RunState) -> None:
        grads = [t for t in st.series if st.roles[t] == "grad_norm"]
        losses = [t for t in st.series if st.roles[t] == "train_loss"]
        new_loss = [int(st.series[t].step[st.series[t].dirty]) for t in losses
                    if st.series[t].dirty is not None]
        if not grads or not (new_loss or any(st.series[t].dirty is not None for t in grads)):
            return
        key = (self.det.kind, None)
        old = st.events.get(key, [])
        follow_from = min(new_loss) - self.follow if new_loss else math.inf
        views, cuts = {}, {}
        for t in grads:
            s = st.series[t]
            steps = s.step[:s.n]
            d = min(s.n if s.dirty is None else s.dirty, _index(steps, follow_from))
            a0 = self.grad.start([e for e in old if e.tag == t], steps, s.value[:s.n], d)
            views[t], cuts[t] = self.grad.window(st, t, s, a0)
        first = min(cuts.values())
        for t in losses:
            s = st.series[t]
            steps = s.step[:s.n]
            a0 = 0 if first == -math.inf else self.loss.start(
                st.events.get(("spike", t), []), steps, s.value[:s.n], _index(steps, first))
            views[t], _ = self.loss.window(st, t, s, a0)
        found = self.det.detect_run(_View(views), st.info())
        st.events[key] = sorted(
            [e for e in old if e.start_step < cuts.get(e.tag, math.inf)]
            + [e for e in found if e.start_step >= cuts[e.tag]],
            key=lambda e: (e.start_step, e.tag))


class _RunPolicy:
    """A run-scope causal detector on the whole run (rollback: a handful of segments)."""

    def __init__(self, det: Any, kind: str) -> None:
        self.det, self.kind = det, kind

    def run(self, st: _RunState) -> None:
        if self.kind == "rollback" and len(st.segments.agg) < 2:
            return  # a rollback needs a second segment
        frame = _View({t: s.view(st.run, t, st.roles[t]) for t, s in st.series.items()})
        st.events[(self.kind, None)] = self.det.detect_run(frame, st.info())


class _WholeSeriesPolicy:
    """A series causal detector watch knows nothing more about: the whole series each time."""

    def __init__(self, det: Any) -> None:
        self.det = det

    def run(self, st: _RunState, tag: str, s: _Series) -> None:
        st.events[(self.det.kind, tag)] = self.det.detect(s.view(st.run, tag, st.roles[tag]))


def _kind(det: Any) -> str:
    """The event kind a detector emits: its `kind`, else its registry name."""
    from .detectors import DETECTORS

    kind = getattr(det, "kind", None)
    if kind:
        return str(kind)
    cls = type(det)
    for name, spec in DETECTORS.items():
        if spec == f"{cls.__module__}:{cls.__qualname__}":
            return name
    return cls.__name__


class _Engine:
    """The causal detectors, each with the policy that runs it incrementally."""

    def __init__(self, detectors: Any = None) -> None:
        from .analysis import resolve_detectors

        self.series: list[Any] = []
        self.runs: list[Any] = []
        for det in resolve_detectors(detectors):
            if not getattr(det, "causal", False):
                continue
            det.validate()
            kind = _kind(det)
            if det.scope == "run":
                policy = {"overflow": _OverflowPolicy, "grad_spike": _GradSpikePolicy}.get(kind)
                self.runs.append(policy(det) if policy else _RunPolicy(det, kind))
            elif kind == "spike":
                self.series.append(_SpikePolicy(det))
            elif kind == "divergence":
                self.series.append(_DivergencePolicy(det))
            elif kind == "nonfinite":
                self.series.append(_NonFinitePolicy(det))
            else:
                self.series.append(_WholeSeriesPolicy(det))
        self.roles = frozenset(r for p in self.series + self.runs for r in p.det.roles)

    def detect(self, st: _RunState) -> None:
        st.tick += 1
        for pol in self.series:
            for tag, s in st.series.items():
                if s.dirty is not None and s.n and st.roles[tag] in pol.det.roles:
                    pol.run(st, tag, s)
        for pol in self.runs:
            pol.run(st)
        for s in st.series.values():
            s.dirty = None


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
        detectors: as `analysis.resolve_detectors` takes them; only causal ones run.
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
        self.engine = _Engine(detectors)
        self.source: Any = None
        self.states: dict[str, _RunState] = {}
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
        touched: dict[str, _RunState] = {}
        for b in batches:
            st = self.states.get(b.run)
            if st is None:
                st = self.states[b.run] = _RunState(b.run, b.source, b.format, self.roles,
                                                    self.engine.roles)
            if b.reset:
                st.reset()
            if b.header is not None:
                st.segments.add(np.empty(0, np.int32), np.empty(0, np.int64),
                                np.empty(0, np.int64), (b.header,))
            if b.records is not None:
                st.ingest(b.records)
            touched[b.run] = st
        for run, st in touched.items():
            self.engine.detect(st)
            report, self._current[run] = self.reporters.setdefault(run, _Reporter()).diff(
                run, st.current())
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
