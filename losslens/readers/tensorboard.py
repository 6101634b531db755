"""TensorBoard event files (`events.out.tfevents.*`): every scalar point, read with numpy.

What is read: `simple_value` scalars (torch/tensorboardX `add_scalar`, Lightning, Megatron) and
rank-0 numeric tensors (`tensor` with `float_val`, `double_val`, int/half fields or
`tensor_content` of any numeric dtype: TF2/Keras, `tensorboard.summary`, torch
`new_style=True`). Tensor values of tags whose metadata names another plugin than `scalars`
(hparams, pr_curves...) and all non-scalar summaries (images, histograms, text, audio) are
skipped quietly, as is the `file_version` header. Every point is kept (no reservoir sample),
with its tag as written, step and wall time.

What is verified: the masked CRC32C of every record's length *and* of every record's data
(`tfrecord.py` does both on whole arrays). A record whose data CRC fails is dropped and
counted; the records after it are still read (its length was checked). A length whose CRC
fails makes the reader skip to the next position whose length CRC checks; a truncated tail
is dropped. Each is reported in `RunRecords.warnings` with record number and byte offset.

How it is fast: records of one payload length and alignment are compared word by word with
one reference record, parsed in Python. When the bytes that differ all lie in the
reference's wall-time, step and value fields (and varints keep their byte count), every
record of the group parses the same way, and those fields are gathered for the whole
group at once; otherwise the group is split on the differing bytes and each part checked
again. A folder holds one run: its event files are read in the order of the timestamp in
their names, and each file after the first starts a new segment (`headers`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ..records import MAX_SKIPPED_KEPT, RunMeta, RunRecords, SkippedLine
from . import tfrecord
from .tensorboard_layout import Layout, Malformed, Slot, parse_layout

_NAME = re.compile(r"^events\.out\.tfevents\.(\d+)")
#: Individual damage warnings kept per file; the rest are counted in one line.
MAX_WARNINGS = 20


def is_event_file_name(name: str) -> bool:
    """True for `events.out.tfevents.*` files that hold summaries (not `*.profile-empty`)."""
    return bool(_NAME.match(name)) and not name.endswith(".profile-empty")


def sniff(name: str, head: bytes) -> float:
    """1 for an event file name; 0.9 for a TFRecord whose first record is `brain.Event:`."""
    if is_event_file_name(name):
        return 1.0
    if len(head) < 16 or head[4:8] != b"\0\0\0\0":
        return 0.0
    length = int.from_bytes(head[:8], "little")
    if tfrecord.mask(tfrecord.crc32c(head[:8])) != int.from_bytes(head[8:12], "little"):
        return 0.0
    return 0.9 if b"brain.Event:" in head[12:12 + min(length, 256)] else 0.0


def _sort_key(path: Path) -> tuple:
    m = _NAME.match(path.name)
    natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]
    return (int(m.group(1)) if m else 0, natural)


def event_files(directory: Path) -> list[Path]:
    """The event files directly in `directory`, in write order (name timestamp, then name)."""
    files = [p for p in directory.iterdir() if p.is_file() and is_event_file_name(p.name)]
    return sorted(files, key=_sort_key)


# ---------------------------------------------------------------- many records, with numpy


def _varints(raw: np.ndarray) -> np.ndarray:
    """Varints from an (n, bytes) matrix whose rows all have the same byte count."""
    out = np.zeros(raw.shape[0], dtype=np.uint64)
    for j in range(raw.shape[1]):
        out |= (raw[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return out


def _values(raw: np.ndarray, slot: Slot) -> np.ndarray:
    """Slot values from an (n, slot.size) byte matrix."""
    conv = slot.conv
    if conv.startswith("varint:"):
        bits, conv = _varints(raw), conv[7:]
        if conv == "<f2":
            return bits.astype(np.uint16).view(np.float16).astype(np.float64)
        if conv == "bf16":
            return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32).astype(np.float64)
        signed = conv[1] == "i" if conv[0] == "<" else conv[0] == "i"
        return bits.view(np.int64).astype(np.float64) if signed else bits.astype(np.float64)
    if conv == "bf16":
        bits = raw.view("<u2")[:, 0].astype(np.uint32) << np.uint32(16)
        return bits.view(np.float32).astype(np.float64)
    return raw.view(conv)[:, 0].astype(np.float64)


@dataclass
class _Rows:
    """A group's records as bytes XOR the reference record's (payload and data CRC)."""

    d8: np.ndarray  # (n, words*8) uint8; payload byte i of row r is d8[r, a + i] ^ ref[i]
    a: int  # alignment of the payloads in their first word
    ref: np.ndarray  # the reference record's payload and CRC bytes
    vary: np.ndarray  # payload positions where some row differs from the reference

    def field(self, off: int, size: int) -> np.ndarray:
        """The bytes [off, off + size) of every row, as a contiguous (n, size) matrix."""
        return self.d8[:, self.a + off:self.a + off + size] ^ self.ref[off:off + size]

    def take(self, mask: np.ndarray) -> "_Rows":
        return _Rows(self.d8[mask], self.a, self.ref, self.vary)


@dataclass
class _Run:
    """What the reader accumulates for one run, across chunks and files."""

    keys: dict[tuple[str, bool], int] = field(default_factory=dict)  # (tag, tensor) → key
    plugins: dict[str, str] = field(default_factory=dict)  # tag → first plugin_name seen
    parts: list[tuple[np.ndarray, ...]] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)
    skipped_count: int = 0
    warnings: list[str] = field(default_factory=list)
    headers: list[int] = field(default_factory=list)
    records: int = 0  # records framed so far (the next record's order is records + 1)

    def key(self, slot: Slot) -> int:
        if slot.plugin is not None:
            self.plugins.setdefault(slot.tag, slot.plugin)
        k = (slot.tag, slot.tensor)
        code = self.keys.get(k)
        if code is None:
            code = self.keys[k] = len(self.keys)
        return code


class _Chunk:
    """Decodes the records of one chunk, group by group (see the module docstring)."""

    def __init__(self, chunk: tfrecord.Chunk, run: _Run) -> None:
        self.buf, self.run = chunk.buf, run
        self.p = chunk.starts + 12
        self.length = chunk.lengths
        self.words = chunk.buf[: chunk.buf.shape[0] // 8 * 8].view("<u8")
        self.counts = np.zeros(self.p.shape[0], dtype=np.int64)
        self.emitted: list[tuple[np.ndarray, int, int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.bad: list[np.ndarray] = []
        self.malformed: list[np.ndarray] = []

    def decode(self) -> None:
        import pandas as pd

        if not self.p.shape[0]:
            return
        codes, uniques = pd.factorize(self.length * 8 + (self.p & 7))
        small = np.int16 if len(uniques) < (1 << 15) else np.int64
        order = np.argsort(codes.astype(small), kind="stable")
        bounds = np.cumsum(np.bincount(codes, minlength=len(uniques)))[:-1]
        for idx in np.split(order, bounds):
            self._group(idx, checked=False)

    def _diffs(self, idx: np.ndarray, size: int) -> _Rows:
        """The group's words (payload and data CRC) XOR the first record's."""
        p = self.p[idx]
        a = int(p[0]) & 7
        nw = (a + size + 4 + 7) // 8
        q = p >> 3
        head = np.uint64((0xFFFFFFFFFFFFFFFF << (8 * a)) & 0xFFFFFFFFFFFFFFFF)
        tail = a + size + 4 - 8 * (nw - 1)
        strided = self._strided(q, nw)
        if strided is not None:  # records evenly spaced (one writer, one layout): no gathers
            d = np.empty((idx.shape[0], nw), dtype=np.uint64)
            np.bitwise_xor(strided, strided[0], out=d)
        else:
            # every word of every record at once (a Python loop over the words cost 8 s for
            # one 32 MB record), XORed in place with the first record's
            d = self.words[q[:, None] + np.arange(nw, dtype=q.dtype)[None, :]]
            d ^= d[0].copy()
        d[:, 0] &= head
        if tail < 8:
            d[:, nw - 1] &= np.uint64((1 << (8 * tail)) - 1)
        ored = np.bitwise_or.reduce(d, axis=0)
        vary = np.flatnonzero(ored.view(np.uint8)[a:a + size])
        ref = self.buf[int(p[0]):int(p[0]) + size + 4]
        return _Rows(d.view(np.uint8), a, ref, vary)

    def _strided(self, q: np.ndarray, nw: int) -> np.ndarray | None:
        """The (n, nw) words at word offsets q[i] + c as a strided view of the chunk, when the
        q are evenly spaced and the view stays inside it; else None."""
        n = q.shape[0]
        if n < 2:
            return None
        stride = int(q[1] - q[0])
        if stride <= 0 or int(q[-1]) + nw > self.words.shape[0] \
                or int(q[-1] - q[0]) != stride * (n - 1) or not (np.diff(q) == stride).all():
            return None
        from numpy.lib.stride_tricks import as_strided

        base = self.words[int(q[0]):]
        return as_strided(base, shape=(n, nw), strides=(stride * 8, 8), writeable=False)

    def _crc_ok(self, idx: np.ndarray, rows: _Rows) -> np.ndarray:
        size = int(self.length[idx[0]])
        if size <= tfrecord.GMAX:
            crc = np.full(idx.shape[0], tfrecord.crc32c(rows.ref[:size]), np.uint32)
            d16 = rows.d8.view("<u2")
            for u in np.unique((rows.vary + rows.a) >> 1).tolist():  # byte pairs
                crc ^= tfrecord.pair_table(size, 2 * u - rows.a)[d16[:, u]]
        else:
            crc = np.array([tfrecord.crc32c(self.buf[q:q + size]) for q in self.p[idx].tolist()],
                           np.uint32)
        return tfrecord.mask(crc) == rows.field(size, 4).view("<u4")[:, 0]

    def _group(self, idx: np.ndarray, checked: bool) -> None:
        size = int(self.length[idx[0]])
        if size == 0:
            self._empty(idx)
            return
        rows = self._diffs(idx, size)
        if not checked:
            ok = self._crc_ok(idx, rows)
            if not ok.all():
                self.bad.append(idx[~ok])
                if ok.any():
                    self._group(idx[ok], checked=True)
                return
        try:
            lay = parse_layout(rows.ref[:size].tobytes())
        except Malformed:
            lay = None
        allowed = np.zeros(size, dtype=bool)
        for s, e in (lay.allowed if lay else ()):
            allowed[s:e] = True
        fixed = rows.vary[~allowed[rows.vary]]
        if fixed.shape[0]:
            self._split(idx, rows.d8[:, rows.a + fixed])
        elif lay is None:
            self.malformed.append(idx)
        else:
            self._template(idx, lay, rows)

    def _empty(self, idx: np.ndarray) -> None:
        ok = tfrecord.gather_view(self.buf, self.p[idx], "<u4") == tfrecord.mask(
            tfrecord.crc32c(b""))
        if not ok.all():
            self.bad.append(idx[~ok])

    def _split(self, idx: np.ndarray, cols: np.ndarray) -> None:
        """Re-check the group in parts that agree on one byte outside the template.

        The byte split on is the one with the fewest distinct values: bytes that tell record
        layouts apart (a field key, a tag length) have few, values of another layout many.
        """
        best, best_count = None, 257
        for j in range(min(cols.shape[1], 64)):
            counts = np.bincount(cols[:, j], minlength=256)
            distinct = int(np.count_nonzero(counts))
            if 1 < distinct < best_count:
                best, best_count, best_counts = j, distinct, counts
                if distinct == 2:
                    break
        order = np.argsort(cols[:, best], kind="stable")
        bounds = np.cumsum(best_counts[best_counts > 0])[:-1]
        for part in np.split(order, bounds):
            self._group(idx[np.sort(part)], checked=True)

    def _template(self, idx: np.ndarray, lay: Layout, rows: _Rows) -> None:
        mismatch = None
        for off, nb in lay.varints:  # a varint that changed its byte count changes the parse
            if np.bitwise_or.reduce(rows.d8[:, rows.a + off:rows.a + off + nb] & 0x80, axis=None):
                raw = rows.field(off, nb)
                for j in range(nb):
                    bad = ((raw[:, j] & 0x80) != 0) != (j < nb - 1)
                    mismatch = bad if mismatch is None else mismatch | bad
        if mismatch is not None and mismatch.any():
            self._template(idx[~mismatch], lay, rows.take(~mismatch))  # never the first row
            self._group(idx[mismatch], checked=True)
            return
        n = idx.shape[0]
        wall = (rows.field(lay.wall, 8).view("<f8")[:, 0].astype(np.float64)
                if lay.wall is not None else np.zeros(n))
        step = (_varints(rows.field(*lay.step)).view(np.int64)
                if lay.step is not None else np.zeros(n, dtype=np.int64))
        self.counts[idx] = len(lay.slots)
        for j, slot in enumerate(lay.slots):
            values = _values(rows.field(slot.offset, slot.size), slot)
            self.emitted.append((idx, j, self.run.key(slot), values, step, wall))

    def points(self, first_order: int) -> tuple[np.ndarray, ...]:
        """(key, step, value, wall_time, order) of the chunk's points, in write order."""
        offs = np.cumsum(self.counts) - self.counts
        total = int(self.counts.sum())
        key = np.empty(total, np.int32)
        step = np.empty(total, np.int64)
        value = np.empty(total, np.float64)
        wall = np.empty(total, np.float64)
        spacing: dict[int, tuple[int, int] | None] = {}  # id(idx) -> (first offset, stride)
        for idx, j, k, vals, steps, walls in self.emitted:
            sp = spacing.get(id(idx), 0)
            if sp == 0:
                sp = spacing[id(idx)] = _even(offs[idx])
            if sp is not None:  # evenly spaced rows: strided slices, no index arrays
                first, stride = sp
                sl = slice(first + j, first + j + stride * (idx.shape[0] - 1) + 1, stride)
                key[sl], step[sl], value[sl], wall[sl] = k, steps, vals, walls
                continue
            at = offs[idx] + j
            key[at], step[at], value[at], wall[at] = k, steps, vals, walls
        order = np.repeat(np.arange(first_order, first_order + self.counts.shape[0]),
                          self.counts)
        return key, step, value, wall, order


def _even(at: np.ndarray) -> tuple[int, int] | None:
    """(first, stride) when `at` is an arithmetic progression with a positive stride."""
    if at.shape[0] < 2:
        return (int(at[0]), 1) if at.shape[0] else None
    stride = int(at[1] - at[0])
    if stride <= 0 or int(at[-1] - at[0]) != stride * (at.shape[0] - 1) \
            or not (np.diff(at) == stride).all():
        return None
    return int(at[0]), stride


# ---------------------------------------------------------------- files and runs


def _report(run: _Run, name: str, chunk: tfrecord.Chunk, dec: _Chunk, first: int) -> None:
    """Damage of one chunk → warnings; valid-CRC records that do not parse → skipped."""
    problems = list(chunk.problems)
    for bad in dec.bad:
        for i in bad.tolist():
            problems.append((chunk.base + int(chunk.starts[i]), "data CRC mismatch", 1,
                             first + i))
    for idx in dec.malformed:
        for i in idx.tolist():
            run.skipped_count += 1
            if len(run.skipped) < MAX_SKIPPED_KEPT:
                run.skipped.append(SkippedLine(first + i, "record is not a valid Event protobuf"))
    for item in sorted(problems):
        offset, what, lost = item[:3]
        # a damaged spot between framed records is numbered as the record that would follow
        number = item[3] if len(item) > 3 else first + int(
            np.searchsorted(chunk.starts + chunk.base, offset))
        tail = f"; {lost} record(s) lost" if lost > 0 else ""
        run.warnings.append(f"{name}: record {number} at byte {offset}: {what}{tail}")


def _read_file(run: _Run, path: Path, chunk_bytes: int) -> None:
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror})") from None
    before, framed, unframed_start = len(run.warnings), 0, False
    with fh:
        for chunk in tfrecord.scan(fh, size, chunk_bytes):
            unframed_start |= any(off == 0 and lost == -1 for off, _, lost in chunk.problems)
            first = run.records + 1
            dec = _Chunk(chunk, run)
            dec.decode()
            run.parts.append(dec.points(first))
            _report(run, path.name, chunk, dec, first)
            run.records += chunk.starts.shape[0]
            framed += chunk.starts.shape[0]
    if size and not framed and unframed_start:
        del run.warnings[before:]
        run.warnings.append(f"{path.name}: not a TFRecord event file (no valid record "
                            f"header in {size} bytes)")
    elif len(run.warnings) - before > MAX_WARNINGS:
        extra = len(run.warnings) - before - MAX_WARNINGS
        del run.warnings[before + MAX_WARNINGS:]
        run.warnings.append(f"{path.name}: {extra} more damaged spot(s) not listed")


def _assemble(run: _Run, name: str, source: str) -> RunRecords:
    import pandas as pd

    cols = []
    parts = [list(p) for p in run.parts]
    run.parts.clear()
    for i, t in enumerate((np.int32, np.int64, np.float64, np.float64, np.int64)):
        cols.append(np.concatenate([p[i] for p in parts]) if parts else np.empty(0, t))
        for p in parts:  # free each column of the chunks once it is joined: peak ~1.2×
            p[i] = None
    key, step, value, wall, order = cols
    # tensors of tags that another plugin owns (hparams, pr_curves...) are not scalars
    tags = list(run.keys)
    keep = np.array([not t or run.plugins.get(tag) in (None, "", "scalars")
                     for tag, t in tags] or [True])
    if not keep.all():
        m = keep[key]
        key, step, value, wall, order = key[m], step[m], value[m], wall[m], order[m]
    # codes by first appearance in write order; a tag written both ways is one series
    names = [tag for tag, _ in tags]
    seen = [names[k] for k in pd.unique(key)]
    final = {t: i for i, t in enumerate(dict.fromkeys(seen))}
    lut = np.array([final.get(t, -1) for t in names] or [0], dtype=np.int32)
    return RunRecords(
        run=name, source=source, format="tensorboard", tags=tuple(final),
        tag_code=lut[key], step=step, value=value, wall_time=wall, order=order,
        headers=tuple(run.headers), metadata=RunMeta(framework="tensorboard"),
        skipped=tuple(run.skipped), skipped_count=run.skipped_count,
        warnings=tuple(run.warnings))


def read(path: Path, run: str, chunk_bytes: int = 16 << 20) -> list[RunRecords]:
    """One run: an event file, or every event file directly in a folder (in write order)."""
    path = Path(path)
    files = event_files(path) if path.is_dir() else [path]
    acc = _Run()
    for i, f in enumerate(files):
        first, parts = acc.records + 1, len(acc.parts)
        _read_file(acc, f, chunk_bytes)
        if i and acc.records >= first:  # a new writer session: a new segment
            # the header is the file's first record (its file_version event); when that
            # record holds points itself, the segment starts with it
            orders = [p[4][:1] for p in acc.parts[parts:] if p[4].shape[0]]
            starts_with_points = bool(orders) and int(orders[0][0]) == first
            acc.headers.append(first - 1 if starts_with_points else first)
    records = _assemble(acc, run, str(path))
    if not len(records) and acc.warnings and any("not a TFRecord" in w for w in acc.warnings):
        raise ParseError(f"{path}: " + "; ".join(acc.warnings))
    if not len(records) and acc.records:
        what = holds_instead(files)
        if what:
            records = replace(records, warnings=(what,) + records.warnings)
    return [records]


#: Bytes of each file `holds_instead` looks at (a file of images can be large).
_INSTEAD_BYTES = 16 << 20


def holds_instead(files: list[Path]) -> str:
    """What event files without a single scalar hold, by summary kind (`no scalars, only text
    summaries: 2 tags (args/text_summary, model_config/text_summary)`), from their first
    `_INSTEAD_BYTES`: an HF or axolotl launch that stopped before its first log writes only its
    arguments as text, which is worth saying rather than "no points". "" when nothing is
    summarised."""
    from tensorboard.compat.proto import event_pb2
    from google.protobuf.message import DecodeError

    kinds: dict[str, dict[str, None]] = {}
    for f in files:
        try:
            size = min(f.stat().st_size, _INSTEAD_BYTES)
            fh = open(f, "rb")
        except OSError:
            continue
        with fh:
            for chunk in tfrecord.scan(fh, size):
                for start, length in zip(chunk.starts.tolist(), chunk.lengths.tolist()):
                    try:
                        event = event_pb2.Event.FromString(
                            chunk.buf[start + 12:start + 12 + length].tobytes())
                    except DecodeError:
                        continue
                    for v in event.summary.value:
                        kind = v.metadata.plugin_data.plugin_name or v.WhichOneof("value") \
                            or "empty"
                        kinds.setdefault(kind, {})[v.tag] = None
    if not kinds:
        return ""
    parts = []
    for kind, tags in kinds.items():
        names = list(tags)
        shown = ", ".join(names[:5]) + (f", {len(names) - 5} more" if len(names) > 5 else "")
        parts.append(f"{kind} summaries: {len(names)} tag{'s' if len(names) > 1 else ''} "
                     f"({shown})")
    return "no scalars, only " + "; ".join(parts)


class RecordDecoder:
    """Event records decoded as they are framed, file after file: the reader's decoding for
    a follower that reads a growing event file a few records at a time (`losslens watch`).

    `decode(chunk)` decodes the complete records of a `tfrecord.scan` chunk; `take(...)`
    hands over the points decoded since the last `take` as one RunRecords (orders count the
    records framed so far, from 1; `headers` are the orders of the run headers among them).
    """

    def __init__(self) -> None:
        self._run = _Run()

    @property
    def records(self) -> int:
        """Records framed so far."""
        return self._run.records

    def decode(self, chunk: tfrecord.Chunk) -> int | None:
        """Decode one chunk's records; the order of its first point (None: no point)."""
        n = int(chunk.starts.shape[0])
        if not n:
            return None
        dec = _Chunk(chunk, self._run)
        dec.decode()
        pts = dec.points(self._run.records + 1)
        self._run.parts.append(pts)
        self._run.records += n
        return int(pts[4][0]) if pts[4].shape[0] else None

    def pending(self) -> bool:
        """Whether points were decoded since the last `take`."""
        return bool(self._run.parts)

    def take(self, run: str, source: str, headers: list[int]) -> RunRecords:
        self._run.headers = list(headers)
        return _assemble(self._run, run, source)
