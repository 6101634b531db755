"""Readers fed new bytes: follow a growing log, file or folder, and hand over only what is new.

A follower's source (`open_source(path)`) returns, on each `poll(notices)`, `Batch`es of new
points per run; `losslens watch` feeds them to the detectors' streaming form.

- Text logs (`TextSource`): `FileTail` keeps the byte offset just past the last complete
  line; a half-written last line waits for its newline. A file shorter than the offset
  (truncated), another file at the path (rotated, replaced) or a deleted and re-created file
  is read again from its start as a new segment (a run header between the two), and what was
  left in the old file is read first. Formats whose lines carry their own step
  (`CONTEXT_LINES`: Megatron, nanoGPT, llm.c, torchtitan, OLMo, fairseq, MaxText,
  torchtune, Composer, modded-nanogpt, fairseq2, t5x, Levanter, JSON lines) are
  decoded by `LineDecoder`: the format's own reader on the new lines plus a few lines before
  them (the context a line may lean on: the iteration line before a DeepSpeed OVERFLOW line,
  an OLMo block header before its metrics, the JSON lines that tell a null loss is a NaN),
  through a small temporary file; the cost of an update is proportional to the new bytes.
  The other formats, and any gzipped or NUL-prefixed log, are read whole again when they
  change: some infer their steps from the whole file (HF console: a later progress bar or
  TrainingArguments dump can move every step; DeepSpeed; pix2pix: images per epoch from all
  its blocks), some are rewritten whole (trainer_state.json, W&B exports) or are record logs
  whose readers keep state across the whole file (`.wandb`, CSV). When the new read starts
  with exactly the points of the last one (`appended`: it only grew), only the points after
  them go to the detectors, which carry on incrementally; otherwise the run starts over
  (`Batch.reset`).
- TensorBoard event files (`TensorBoardRun`): each file is followed from a record boundary (a
  record still being written waits) with the reader's `RecordDecoder`; a new event file is a
  new segment, as the reader makes it.
- Folders (`FolderSource`): every unit `losslens analyze` reads there (TensorBoard folders,
  W&B run files, text logs of any format), walked again on each look, so files and runs that
  appear later are followed too; each is a run named as `analyze` names it.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LogNotFoundError, LossLensError, UnknownFormatError
from ..records import RunRecords, read_as
from . import sniff, read_file, walk_units
from . import gzipped, nulprefix
from . import tensorboard as tb
from . import tfrecord
from .textutil import cr_to_lf

#: Text formats read a line batch at a time, with how many earlier lines each batch carries.
CONTEXT_LINES: dict[str, int] = {
    "megatron": 64, "nanogpt": 16, "llmc": 64, "llmc-mainlog": 8, "torchtitan": 16,
    "olmo": 256, "olmo-core": 256, "fairseq": 64, "jsonl": 64, "maxtext": 16,
    "torchtune": 8, "composer": 512, "modded-nanogpt": 16, "fairseq2": 32, "t5x": 0,
    "levanter": 64, "build-nanogpt": 64, "build-nanogpt-log": 0,
}
#: Above this many bytes the first read hands the reader the file itself (no copy).
DIRECT_READ_BYTES = 1 << 20



@dataclass
class Batch:
    """New points of one run; `reset`: they replace all read so far; `header`: a run header
    (new segment) at this order, before the points; `metadata`: the records' metadata is
    the run's as now read (it replaces the run's)."""

    run: str
    source: str
    format: str
    records: RunRecords | None
    reset: bool = False
    header: int | None = None
    metadata: bool = False


@dataclass
class _Piece:
    data: bytes  # complete lines
    fresh: bool  # the first bytes of a file that replaced the previous one


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


class FileTail:
    """The complete lines appended to one path since the last look (see the module doc):
    truncation, rotation and a re-created file start over; a half-written line waits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None
        self.ident: tuple[int, int] | None = None
        self.offset = 0
        self.files = 0
        self.pending = 0  # bytes past `offset` already seen to hold no newline
        self.said_special = False
        self.cr: bool | None = None  # lines end in a bare `\r` (textutil.cr_lines); None: unknown

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
                if size < self.offset + self.pending:
                    if size < self.offset:
                        notices.append(f"{self.path}: truncated ({size} bytes, {self.offset} "
                                       "read); reading it again from the start as a new segment")
                        self.offset, self.pending = 0, 0
                        return [_Piece(self._new(size), True)]
                    self.pending = 0  # the unended line was cut: look at it again
                return [_Piece(self._new(size), False)]
            pieces.append(_Piece(self._new(size), False))  # what the old file still held
            self.close()
            notices.append(f"{self.path}: deleted; waiting for it to come back" if st is None
                           else f"{self.path}: replaced by a new file (rotated); reading the "
                                "new file from the start as a new segment")
        if st is not None and not stat.S_ISREG(st.st_mode):
            # a named pipe or a device: opening it would block until a writer comes (and
            # --timeout with it); it has no size to follow
            if not self.said_special:
                notices.append(f"{self.path}: not a regular file (a named pipe?); losslens "
                               "watch follows files that grow")
                self.said_special = True
            return pieces
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
        self.ident, self.offset, self.pending = (st.st_dev, st.st_ino), 0, 0
        self.files += 1
        self.cr = None
        return True

    def _new(self, size: int) -> bytes:
        """The complete lines from `offset` to `size`. The bytes already seen to hold no
        newline (a tqdm-style tail that never ends its line) are not read again on every
        look: only what came after them is searched, and they are read once with the line
        they end up in."""
        if size <= self.offset:
            self.pending = 0
            return b""
        start = self.offset + min(self.pending, size - self.offset)
        if self.cr is None:  # until the line ends are known, look from the start
            start = self.offset
        self.fh.seek(start)
        data = self.fh.read(size - start)
        if self.cr is None:  # lines ending in a bare `\r`: no `\n` yet, two `\r` or more,
            # the last at the end (a tqdm bar drawing at the start of a log does not end in
            # `\r`); undecided past 1 MiB: `\n` lines
            self.cr = False if b"\n" in data else (
                True if data.endswith(b"\r") and data.count(b"\r") > 1
                else False if len(data) > (1 << 20) else None)
        end = b"\r" if self.cr else b"\n"
        cut = data.rfind(end) + 1
        if not cut:
            self.pending = start + len(data) - self.offset
            return b""
        if start > self.offset:  # the earlier part of the first line, read once now
            self.fh.seek(self.offset)
            data = self.fh.read(start - self.offset) + data
            cut += start - self.offset
        self.offset += cut
        self.pending = len(data) - cut  # what follows the last newline holds none
        return cr_to_lf(data[:cut]) if self.cr else data[:cut]

    def same_file(self) -> bool:
        st = _stat(self.path)
        return st is not None and (st.st_dev, st.st_ino) == self.ident


def _select(rec: RunRecords, keep: np.ndarray, shift: int, lo: int, hi: int) -> RunRecords:
    """The points of `keep` with orders shifted; headers in (lo, hi] shifted likewise."""
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep] + shift,
                   headers=tuple(h + shift for h in rec.headers if lo < h <= hi))


def appended(old: RunRecords | None, new: RunRecords) -> RunRecords | None:
    """The points of `new` (a whole-file format read again after it grew) that follow those
    of `old` (the previous read), when `new` starts with exactly `old`: the same tags (codes
    kept), the same first points in write order (steps, values, wall times, orders), the
    same headers, and only later orders after them (the metadata may have changed: it comes
    with the tail). None otherwise (read it as new: a reset)."""
    if old is None or old.error or new.error:
        return None
    k = len(old)
    if (len(new) < k or new.tags[:len(old.tags)] != old.tags
            or new.headers[:len(old.headers)] != old.headers):
        return None
    io = np.lexsort((old.tag_code, old.order))  # write order (readers may group by tag)
    inew = np.lexsort((new.tag_code, new.order))
    head = inew[:k]
    if not (np.array_equal(new.order[head], old.order[io])
            and np.array_equal(new.tag_code[head], old.tag_code[io])
            and np.array_equal(new.step[head], old.step[io])
            and np.array_equal(new.value[head], old.value[io], equal_nan=True)
            and np.array_equal(new.wall_time[head], old.wall_time[io], equal_nan=True)):
        return None
    last = max(int(old.order.max()) if k else -1, max(old.headers, default=-1))
    tail = inew[k:]
    heads = new.headers[len(old.headers):]
    if (tail.shape[0] and int(new.order[tail].min()) <= last) or any(h <= last for h in heads):
        return None  # the new points go in among the old ones
    return replace(new, tag_code=new.tag_code[tail], step=new.step[tail],
                   value=new.value[tail], wall_time=new.wall_time[tail],
                   order=new.order[tail], headers=heads,
                   skipped=new.skipped[len(old.skipped):],
                   warnings=new.warnings[len(old.warnings):])


def _read_one(path: Path, run: str, fmt: str) -> RunRecords | None:
    """The format's reader on one file: one run's records (None when it held no run)."""
    if fmt == "megatron":  # the vectorised path pays off from a few lines on
        from . import megatron

        return megatron.read_file(path, run, fast=True)
    records = read_file(path, run, fmt)
    return records[0] if records else None


class LineDecoder:
    """A text format's reader fed the complete lines appended to a log: each batch is read
    with the few lines before it that a line may lean on (`CONTEXT_LINES`), and the points
    of the batch's own lines are kept, their orders continuing the earlier ones."""

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


class TextSource:
    """One text log: followed line by line (CONTEXT_LINES formats) or re-read whole."""

    def __init__(self, path: Path, fmt: str | None, strict: bool, run: str | None = None,
                 quiet: bool = False) -> None:
        self.path, self.fmt, self.strict, self.quiet = path, fmt, strict, quiet
        self.run = run or path.name
        self.sniffed_at: int | None = None  # size when sniffing last found nothing
        self.tail = FileTail(path)
        self.parser: LineDecoder | None = None
        self.tmpdir: Path | None = None  # made when the first line batch is decoded
        self.seen: tuple | None = None  # whole-file formats: (inode, size, mtime) last read
        self.last: dict[str, RunRecords] = {}  # whole-file formats: each run as last read
        self.last_meta: dict[str, Any] = {}
        self.said = False

    def close(self) -> None:
        self.tail.close()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        if self.fmt is None and not self._sniff(notices):
            return [], 0
        if self.fmt not in CONTEXT_LINES or gzipped.is_gzip_file(self.path) \
                or nulprefix.is_nul_prefixed(self.path):
            # (a gzipped log's bytes are no lines; a NUL prefix is skipped by a whole read)
            return self._whole(notices)
        if self.parser is None:
            shm = Path("/dev/shm")  # the batch file lives in memory where there is such a place
            self.tmpdir = Path(tempfile.mkdtemp(
                prefix="losslens-watch-",
                dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
            self.parser = LineDecoder(self.fmt, self.run, str(self.path),
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
        st = _stat(self.path)
        if st is not None and st.st_size == self.sniffed_at:
            return False  # nothing new to recognise
        try:
            fmt = sniff(self.path) if self.path.is_file() else None
        except (OSError, LossLensError):
            fmt = None
        self.sniffed_at = st.st_size if st is not None else None
        if fmt is None:
            if self.strict:
                raise UnknownFormatError(f"{self.path}: not a log format losslens knows; "
                                         "name one with --input-format")
            if not self.said and not self.quiet:
                notices.append(f"{self.path}: no line losslens recognises yet; waiting "
                               "(or name the format with --input-format)")
                self.said = True
            return False
        self.fmt = fmt.name
        return True

    def _whole(self, notices: list[str]) -> tuple[list[Batch], int]:
        st = _stat(self.path)
        if st is None:
            return [], 0
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        if sig == self.seen:
            return [], 0
        self.seen = sig
        try:
            records = self._read_complete(st.st_size)
        except LossLensError as exc:
            notices.append(f"{self.path}: {exc}")
            return [], 0
        out = []
        for r in records:  # what only grew is fed its new points (the detectors go on)
            tail = appended(self.last.get(r.run), r)
            self.last[r.run] = r
            if tail is None:
                out.append(Batch(r.run, r.source, r.format, r, reset=True))
            elif len(tail) or tail.headers or tail.metadata != self.last_meta.get(r.run):
                out.append(Batch(r.run, r.source, r.format, tail, metadata=True))
            self.last_meta[r.run] = r.metadata
        return out, 1


    def _read_complete(self, size: int) -> list[RunRecords]:
        """The whole log, read; of a line format (`WHOLE_LINES`) only up to its last line
        end: a last line with none is still being written (`200,2.` of `200,2.4137` read as
        2.0 made a spike), and waits for its newline as `FileTail`'s lines do."""
        cut = (complete_lines(self.path, size)
               if self.fmt in WHOLE_LINES and not gzipped.is_gzip_file(self.path) else None)
        if cut is None:
            return read_file(self.path, self.run, self.fmt)
        if cut == 0:  # not one line ended yet
            return []
        if self.tmpdir is None:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="losslens-watch-"))
        tmp = self.tmpdir / self.path.name
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            left = cut
            while left > 0:
                chunk = src.read(min(left, 1 << 22))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
        try:
            return [read_as(r, str(tmp), str(self.path))
                    for r in read_file(tmp, self.run, self.fmt)]
        except LossLensError as exc:
            raise type(exc)(str(exc).replace(str(tmp), str(self.path))) from None
        finally:
            tmp.unlink(missing_ok=True)


#: Formats read whole (not in CONTEXT_LINES) whose records are lines: a table, a console log,
#: JSON lines. (Not a JSON document rewritten whole, nor W&B's or TensorBoard's records.)
WHOLE_LINES = frozenset({"csv", "lightning-csv", "wandb-csv", "wandb-history", "hf-trainer",
                         "deepspeed", "fairseq2-jsonl", "pix2pix", "epoch-pipes", "step-pipes",
                         "epoch-lines"})
#: Bytes searched back from the end for the last line end (past them: read whole).
_LAST_LINE_MAX = 1 << 20


def complete_lines(path: Path, size: int) -> int | None:
    """The length of `path`'s complete lines (up to its last `\\n` or `\\r`) when its last
    line has no end yet; None when it ends in one, or holds none in its last
    `_LAST_LINE_MAX` bytes (a file that never ends its line: read whole)."""
    if size <= 0:
        return None
    with open(path, "rb") as fh:
        fh.seek(max(0, size - _LAST_LINE_MAX))
        tail = fh.read(size - max(0, size - _LAST_LINE_MAX))
    if not tail or tail[-1:] in (b"\n", b"\r"):
        return None
    end = max(tail.rfind(b"\n"), tail.rfind(b"\r"))
    if end < 0:
        return 0 if size <= _LAST_LINE_MAX else None
    return size - len(tail) + end + 1


class Shifted:
    """A file seen from `base` on (what `tfrecord.scan` reads from)."""

    def __init__(self, fh: Any, base: int) -> None:
        self.fh, self.base = fh, base

    def seek(self, pos: int) -> int:
        return self.fh.seek(self.base + pos)

    def readinto(self, buf: Any) -> int:
        return self.fh.readinto(buf)


@dataclass
class TBFileState:
    """Where one event file is read up to, and which file it was."""

    offset: int = 0
    ident: tuple[int, int] | None = None
    header_due: bool = False  # a later file (or one started over): a segment at its first record


class TensorBoardRun:
    """One folder of event files (or one event file: `only`), followed record by record."""

    def __init__(self, directory: Path, run: str, only: str | None = None) -> None:
        self.dir, self.run, self.only = directory, run, only
        self.decoder = tb.RecordDecoder()
        self.files: dict[str, TBFileState] = {}

    def close(self) -> None:
        pass

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        try:
            paths = [p for p in tb.event_files(self.dir) if self.only in (None, p.name)]
        except OSError:
            return [], 0
        headers, before = [], self.decoder.records
        for path in paths:
            first = self.decoder.records + 1
            state = self.files.get(path.name)
            if state is None:
                state = self.files[path.name] = TBFileState(header_due=bool(self.files))
            restarted, first_point = self._read(path, state, notices)
            state.header_due |= restarted
            if state.header_due and self.decoder.records >= first:
                headers.append(first - 1 if first_point == first else first)
                state.header_due = False
        if self.decoder.records == before:
            return [], 0
        # with the points, so that segments are cut in order
        rec = self.decoder.take(self.run, str(self.dir), headers)
        return [Batch(self.run, str(self.dir), "tensorboard", rec)], self.decoder.records - before

    def _read(self, path: Path, f: TBFileState, notices: list[str]) -> tuple[bool, int | None]:
        """Read the file's new complete records: (it was started over, first point's order)."""
        restarted, first_point = False, None
        try:
            fh = open(path, "rb")
        except OSError:
            return False, None
        with fh:
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            if f.ident is not None and (ident != f.ident or st.st_size < f.offset):
                notices.append(f"{path}: replaced or truncated; reading it again from the "
                               "start as a new segment")
                f.offset, restarted = 0, True
            f.ident = ident
            if st.st_size <= f.offset:
                return restarted, None
            consumed = 0
            for chunk in tfrecord.scan(Shifted(fh, f.offset), st.st_size - f.offset):
                if not chunk.starts.shape[0]:
                    continue
                o = self.decoder.decode(chunk)
                if first_point is None:
                    first_point = o
                consumed = chunk.base + int(chunk.starts[-1]) + 16 + int(chunk.lengths[-1])
            f.offset += consumed
        return restarted, first_point


class FolderSource:
    """Every unit `analyze` reads under `root` (re-walked on each look), each followed."""

    def __init__(self, root: Path, format: str | None = None) -> None:
        self.root, self.format = root, format
        self.units: dict[Path, Any] = {}
        self.passed: set[str] = set()  # what the walk passed over, said once each

    def close(self) -> None:
        for unit in self.units.values():
            unit.close()

    def poll(self, notices: list[str]) -> tuple[list[Batch], int]:
        passed: list[str] = []
        try:
            found = walk_units(self.root, self.format, passed)
        except OSError:
            return [], 0
        notices += [m for m in passed if m not in self.passed]
        self.passed.update(passed)
        out, units = [], 0
        for path, name, fmt in found:
            unit = self.units.get(path)
            if unit is None:
                if fmt is not None and fmt.name == "tensorboard":
                    unit = TensorBoardRun(path, name)
                else:
                    unit = TextSource(path, fmt.name if fmt else None, False, run=name,
                                      quiet=True)
                self.units[path] = unit
            try:
                batches, n = unit.poll(notices)
            except LossLensError as exc:  # one bad file does not sink the folder
                notices.append(f"{path}: {exc}")
                continue
            out += batches
            units += n
        return out, units


def open_source(path: Path, format: str | None = None, strict: bool = False,
                notices: list[str] | None = None) -> Any:
    """The source that follows `path` (a text log, an event file, or a folder), or None
    while it does not exist (LogNotFoundError with `strict`)."""
    if not path.exists():
        if strict:
            raise LogNotFoundError(f"{path}: no such file or directory")
        return None
    if path.is_dir():
        return FolderSource(path, format)
    if tb.is_event_file_name(path.name) or format == "tensorboard":
        return TensorBoardRun(path.parent, path.name, only=path.name)
    return TextSource(path, format, strict)
