"""The vectorised path of the Megatron reader: training lines of the dominant shapes, in bulk.

`megatron.py`'s per-line classifier defines what a line means; this module only takes the
training lines it can read *exactly* as the classifier would, and hands back everything else.

How: the file is cut at line ends into chunks of ~2 MB (several passes run over each, so it
should stay in cache; chunks run on a few threads, numpy and pyarrow release the GIL; a first
pass counts each chunk's lines, so that every chunk knows its line numbers). In a chunk numpy
finds every `\\n` and `|`. A template is made from one training line (its head bytes —
launcher prefix, timestamp layout, "iteration " — and its keys); the lines with the template's
number of `|` are then checked as a whole, in two ways that pass exactly the same lines:

- those of the commonest length (most of a run's lines share one) against one byte layout
  (`_Lines._fixed`): the head, each key, its `:`, every pipe and the spaces around each value
  at fixed offsets, compared eight bytes at a time on a (line, word) matrix, timestamp
  positions checked for digits;
- the others pipe by pipe (`_Lines._general`): head bytes equal, every byte of each key (eight
  at a time) and the `:` after it, the line ending in `|`.

(A `:` inside a value needs no search: no value holding one reads as a number.) Integer fields
(and `N/ M`) are read eight bytes at a time as uint64 words (SWAR digit checks and conversion);
the other values are cut out of the chunk with one pyarrow `take` and cast to float64 at once
(Python's `float` for a block pyarrow refuses). A line with a value neither reads, or with `\\r`
or an ANSI escape, is left to the classifier, as are lines no template takes when they hold one
of the classifier's markers.

Where the points go: the first template's lines are written by the chunk workers straight into
a `Block`, tag by tag as the Frame keeps them, and handed to the Frame without another copy;
other templates' lines come back per chunk (`Hits`). On the machines of BASELINES.md the cost
of this path was as much first-touched memory as arithmetic, hence the care over copies.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .deepspeed import days_from_civil

_HEAD = re.compile(r"^(?:\[(?:default|rank|worker|trainer)?\d+\]:)? ?"
                   r"(?:\[(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?\] ?)?"
                   r"(?P<it>iteration +)\d+/ *\d+ \|")
MAX_TEMPLATES = 8
CHUNK = 1 << 21  # bytes per chunk (cache-sized: several passes run over each)
_SLASH_WINDOW = 24  # bytes after "iteration " searched for the `/` of `N/ M`
_BLOCK = 1 << 16  # values cast per pyarrow call (a failing block is redone value by value)
_FIXED_MIN = 64  # candidate lines from which those of one length are checked as one block


@dataclass(frozen=True)
class Template:
    """The byte layout of one training-line shape, made from a line that fits it."""

    head: np.ndarray  # bytes through "iteration "
    wild: np.ndarray  # head positions that are timestamp digits
    ts: tuple[int, ...] | None  # offsets of Y, m, d, H, M, S and the fraction's width
    pipes: int
    keys: tuple[str, ...]
    key_len: np.ndarray  # bytes between a field's pipe and its colon (" key")
    ints: np.ndarray  # fields whose value was a plain integer (read with numpy, not pyarrow)
    word_field: np.ndarray  # (words,) the field each 8-byte word of the keys belongs to
    word_off: np.ndarray  # (words,) its offset after the field's pipe
    word_want: np.ndarray  # (words,) uint64: the key bytes expected there
    word_mask: np.ndarray  # (words,) uint64: which of its bytes are key bytes
    key_bytes: tuple[bytes, ...]  # each field's bytes between its pipe and its colon


def template(line: bytes) -> Template | None:
    """The template of a training line (without its `\\n`), None if it has no simple layout."""
    text = line.decode("ascii", errors="replace")
    m = _HEAD.match(text)
    if not m or "\ufffd" in text or not text.endswith("|"):
        return None
    keys: list[str] = []
    key_bytes: list[bytes] = []
    ints: list[bool] = []
    for part in text[m.end():].split("|")[:-1]:
        key, sep, value = part.partition(":")
        if not sep or ":" in value or not key.strip() or key.strip() in keys:
            return None
        keys.append(key.strip())
        key_bytes.append(key.encode())
        ints.append(value.strip().isdigit())
    if not keys:
        return None
    n_head = m.start("it") + len("iteration ")
    wild = np.zeros(n_head, bool)
    ts = None
    if m.group("ts"):
        t0, frac = m.start("ts"), len(m.group("frac") or "")
        ts = (t0, t0 + 5, t0 + 8, t0 + 11, t0 + 14, t0 + 17, frac)
        for off, width in zip(ts[:6], (4, 2, 2, 2, 2, 2)):
            wild[off:off + width] = True
        wild[t0 + 20:t0 + 20 + frac] = True
    lens = np.asarray([len(k) for k in key_bytes], np.intp)
    words = [(f, off, kb[off:off + 8]) for f, kb in enumerate(key_bytes)
             for off in range(0, len(kb), 8)]
    word_field = np.asarray([w[0] for w in words], np.intp)
    word_off = np.asarray([1 + w[1] for w in words], np.intp)
    word_want = np.asarray([int.from_bytes(w[2], "little") for w in words], np.uint64)
    word_mask = np.asarray([(1 << (8 * len(w[2]))) - 1 for w in words], np.uint64)
    return Template(np.frombuffer(line[:n_head], np.uint8).copy(), wild, ts, text.count("|"),
                    tuple(keys), lens,
                    np.asarray(ints, bool), word_field, word_off, word_want, word_mask,
                    tuple(key_bytes))


@dataclass
class Hits:
    """The training lines one template read in one chunk (or, `in_block` lines, wrote straight
    into the Block: then the arrays are empty)."""

    keys: tuple[str, ...]
    order: np.ndarray  # 1-based line numbers
    step: np.ndarray  # iteration
    wall: np.ndarray
    values: np.ndarray  # (fields, lines)
    total: int  # `M` of `N/ M` on the last line
    last: int  # line number of the last line
    in_block: int = 0


class Block:
    """The columns of one template's lines (the first one found), written where they stay.

    Points come tag by tag, as the Frame keeps them: tag j's region starts at j * cap, cap
    being the file's line count; chunk i writes its lines packed from j * cap + (lines before
    chunk i). `compact` then closes the gaps (lines of other shapes), so that tag j's n points
    sit at [j * n, (j + 1) * n). Every point is written once where the Frame will read it and
    moved once in warm memory, where an intermediate per-chunk result would be copied into
    fresh memory (on a VM a fresh page can cost more than the bytes written to it).
    """

    def __init__(self, tpl: Template, line_base: list[int], cap: int) -> None:
        self.tpl, self.keys, self.cap, self.base = tpl, tpl.keys, cap, line_base
        size = len(tpl.keys) * cap
        self.step, self.order = _fresh(size, np.int64), _fresh(size, np.int64)
        self.value, self.wall = _fresh(size, np.float64), _fresh(size, np.float64)
        self.count = [0] * len(line_base)
        self.totals = [(0, 0)] * len(line_base)  # per chunk: (line, `M`) of its last line
        self.n = 0

    def write(self, chunk: int, order: np.ndarray, step: np.ndarray, wall: np.ndarray,
              values: np.ndarray, total: tuple[int, int]) -> None:
        a, m = self.base[chunk], order.shape[0]
        for j in range(len(self.keys)):
            o = j * self.cap + a
            self.step[o:o + m], self.value[o:o + m] = step, values[j]
            self.wall[o:o + m], self.order[o:o + m] = wall, order
        self.count[chunk], self.totals[chunk] = m, total

    def compact(self) -> int:
        """Close the gaps (every move goes down: a later source is never overwritten first);
        the number of lines written."""
        self.n = n = sum(self.count)
        cols = (self.step, self.value, self.wall, self.order)
        dst = 0
        for j in range(len(self.keys)):
            for a, m in zip(self.base, self.count):
                src = j * self.cap + a
                if m and src != dst:
                    for col in cols:  # (numpy copies an overlapping source first)
                        col[dst:dst + m] = col[src:src + m]
                dst += m
        return n

    def tag(self, j: int) -> tuple[np.ndarray, ...]:
        """Tag j's (step, value, wall, order), after `compact`."""
        a, b = j * self.n, (j + 1) * self.n
        return self.step[a:b], self.value[a:b], self.wall[a:b], self.order[a:b]


@dataclass
class ChunkResult:
    hits: list[Hits] = field(default_factory=list)
    rest: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, line) to classify
    truncated: int = 0  # line number of an unterminated last line, 0 if none
    lines: int = 0  # lines in the chunk


def _fresh(size: int, dtype) -> np.ndarray:
    """A writable array on an anonymous map of its own: pages come on first write and go
    back to the system with the array. (numpy asks for transparent huge pages on arrays of
    4 MB and more; where the kernel compacts memory to honour that at fault time, as on the
    2-core VMs of BASELINES.md, writing 300 MB of them measured 0.1-0.3 s more system time.)"""
    import mmap

    if size == 0:
        return np.empty(0, dtype)
    return np.frombuffer(mmap.mmap(-1, size * np.dtype(dtype).itemsize), dtype)


def scan(raw, markers: str, workers: int | None = None, block: list | None = None):
    """ChunkResults of `raw` (bytes or a map of the file), in file order.

    `block`: a list to which the Block of the first template found is appended; that
    template's lines then go there (their Hits say only how many).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = np.frombuffer(raw, np.uint8)
    bounds, pos = [], 0
    while pos < len(raw):
        end = min(pos + CHUNK, len(raw))
        if end < len(raw):
            cut = raw.rfind(b"\n", pos, end)
            end = cut + 1 if cut >= pos else (raw.find(b"\n", end) + 1 or len(raw))
        bounds.append((pos, end))
        pos = end
    if not bounds:
        return
    workers = workers or min(4, os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers) if workers > 1 and len(bounds) > 2 else None
    try:
        # lines before each chunk (its line numbers, and its place in a Block)
        lines = list((pool.map if pool else map)(
            lambda ab: int(np.count_nonzero(arr[ab[0]:ab[1]] == 10)), bounds))
        if len(raw) and raw[len(raw) - 1] != 10:
            lines[-1] += 1  # an unterminated last line
        line_base = np.concatenate([[0], np.cumsum(lines)]).tolist()
        sink: list[Block | None] = [None]

        def run(i: int, templates: list[Template]) -> ChunkResult:
            # a chunk's working arrays (~1 MB per 2 MB of text) go as soon as it is read
            a, b = bounds[i]
            return _Chunk(raw, arr, a, b, b == len(raw), pa, pc, markers, line_base[i], i,
                          sink[0]).run(templates)

        templates: list[Template] = []
        first = run(0, templates)  # the first chunk finds the templates the others start from
        if block is not None and templates:
            sink[0] = _first_block(first, templates[0], line_base)
            block.append(sink[0])
        yield first
        rest = range(1, len(bounds))
        if pool is None:
            yield from (run(i, list(templates)) for i in rest)
        else:
            yield from pool.map(lambda i: run(i, list(templates)), rest)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _first_block(first: ChunkResult, tpl: Template, line_base: list[int]) -> Block:
    """The Block of `tpl`, holding the first chunk's lines of it already."""
    blk = Block(tpl, line_base[:-1], line_base[-1])
    for h in first.hits:
        if h.keys is tpl.keys and not h.in_block:  # (the keys tuple is the template's own)
            blk.write(0, h.order, h.step, h.wall, h.values, (h.last, h.total))
            h.in_block, h.order, h.step, h.wall = h.order.shape[0], *(np.empty(0),) * 3
            h.values = np.empty((len(tpl.keys), 0))
    return blk


def _positions(arr: np.ndarray, byte: int) -> np.ndarray:
    return np.flatnonzero(arr == byte)  # intp: numpy gathers with other index types cast first


class _Chunk:
    """The lines of one chunk: which a template takes, their values, the rest."""

    def __init__(self, raw, whole: np.ndarray, pos: int, end: int, last: bool,
                 pa, pc, markers: str, base: int = 0, index: int = 0,
                 block: Block | None = None) -> None:
        self.raw, self.pos, self.base, self.pa, self.pc = raw, pos, base, pa, pc
        self.arr, self.markers, self.last = whole[pos:end], markers, last
        self.index, self.block = index, block  # this chunk's number; where its Block is

    def run(self, templates: list[Template]) -> ChunkResult:
        arr = self.arr
        nl = _positions(arr, 10)
        self.truncated = self.last and arr.shape[0] > 0 and arr[-1] != 10
        starts = np.concatenate([np.zeros(1, np.intp), nl + 1])
        self.starts = starts if self.truncated else starts[:-1]
        self.n = self.starts.shape[0]
        self.ends = np.concatenate([nl, np.full(1, arr.shape[0], np.intp)])[:self.n]
        bounds = np.concatenate([self.starts, np.full(1, arr.shape[0], np.intp)])
        # every 8 bytes from every offset, as uint64 (unaligned, zero-copy)
        self.w8 = np.ndarray((max(arr.shape[0] - 7, 0),), "<u8", arr, 0, (1,))
        self.pipes = _positions(arr, 124)
        self.n_pipes = np.diff(np.searchsorted(self.pipes, bounds))
        self.open = self.n_pipes > 1  # lines a template may still take
        end = self.pos + arr.shape[0]
        if self.raw.find(b"\r", self.pos, end) >= 0 or self.raw.find(b"\x1b", self.pos, end) >= 0:
            odd = _positions(arr, 13)
            odd = np.concatenate([odd, _positions(arr, 27)])
            self.open &= np.bincount(np.searchsorted(bounds, odd, "right") - 1,
                                     minlength=self.n)[:self.n] == 0
        if self.truncated:
            self.open[-1] = False
        self.taken = np.zeros(self.n, bool)
        out = ChunkResult(truncated=self.base + self.n if self.truncated else 0, lines=self.n)
        self._templates(templates, out)
        out.rest = self._rest()
        return out

    def line(self, i: int) -> bytes:
        return self.raw[self.pos + int(self.starts[i]):self.pos + int(self.ends[i])]

    def _templates(self, templates: list[Template], out: ChunkResult) -> None:
        for tpl in templates:
            self._apply(tpl, out)
        tries = 0
        while len(templates) < MAX_TEMPLATES and tries < MAX_TEMPLATES and self.open.any():
            found = None
            for i in np.flatnonzero(self.open)[:MAX_TEMPLATES].tolist():
                tries += 1
                found = template(self.line(i))
                if found is not None:
                    break
                self.open[i] = False
            if found is not None:
                templates.append(found)
                self._apply(found, out)
                self.open[i] = False  # taken, or left to the classifier

    def _apply(self, tpl: Template, out: ChunkResult) -> None:
        cand = np.flatnonzero(self.open & (self.n_pipes == tpl.pipes))
        if cand.shape[0]:
            self.open[cand] = False
            hits = _Lines(self, tpl).read(cand)
            if hits is not None:
                out.hits.append(hits)

    def _rest(self) -> list[tuple[int, bytes]]:
        """Lines no template took that hold a marker (and an unterminated last line)."""
        pa, pc = self.pa, self.pc
        rest = np.flatnonzero(~self.taken).astype(np.int32)
        if not rest.shape[0]:
            return []
        offsets = np.empty(rest.shape[0] * 2 + 1, np.int32)
        offsets[0:-1:2], offsets[1:-1:2] = self.starts[rest], self.ends[rest]
        offsets[-1] = offsets[-2]
        buf = pa.py_buffer(self.arr)
        lines = pa.Array.from_buffers(pa.binary(), offsets.shape[0] - 1,
                                      [None, pa.py_buffer(offsets), buf])
        marked = pc.match_substring_regex(lines, self.markers, memory_pool=_pool(pa))
        marked = marked.to_numpy(zero_copy_only=False)
        marked = marked[::2].copy()
        if self.truncated and rest[-1] == self.n - 1:
            marked[-1] = True
        return [(self.base + i + 1, self.line(i)) for i in rest[marked].tolist()]


# SWAR helpers: eight bytes of a line at a time in one uint64 (little-endian: byte i of the
# text is bits 8i..8i+7), so that per-line checks are 1-D numpy operations.
_U = np.uint64


def _rep(b: int) -> np.uint64:
    return _U(int.from_bytes(bytes([b]) * 8, "little"))


_M7, _H80, _F0, _0F, _SP, _D30, _D06 = (_rep(b) for b in (0x7F, 0x80, 0xF0, 0x0F, 0x20, 0x30, 0x06))
#: _TOP[k]: the last k bytes of a word (the bytes nearest the end of a right-aligned span)
_TOP = np.array([0] + [((1 << 64) - 1) ^ ((1 << (8 * (8 - k))) - 1) for k in range(1, 9)],
                np.uint64)


def _nonzero(v: np.ndarray) -> np.ndarray:
    """0x80 in every byte of `v` that is not zero (exact: no carries between bytes)."""
    return (((v & _M7) + _M7) | v) & _H80


def _digits(v: np.ndarray) -> np.ndarray:
    """0x80 in every byte of `v` that is an ASCII digit."""
    return ~_nonzero((v & _F0) ^ _D30) & ~_nonzero(((v + _D06) & _F0) ^ _D30) & _H80


def _movemask(flags: np.ndarray) -> np.ndarray:
    """Bit i set where byte i of `flags` has 0x80."""
    return ((flags >> _U(7)) * _U(0x0102040810204080)) >> _U(56)


def _parse8(v: np.ndarray) -> np.ndarray:
    """The number written by eight digit values (0-9 per byte, first byte most significant)."""
    v = (v * _U(2561)) >> _U(8)
    v = ((v & _U(0x00FF00FF00FF00FF)) * _U(6553601)) >> _U(16)
    return ((v & _U(0x0000FFFF0000FFFF)) * _U(42949672960001)) >> _U(32)


def _pool(pa):
    """The allocator for pyarrow's short-lived results: the system one (its freed blocks are
    reused by the next chunk; mimalloc's purging re-faulted ~100 MB per 1M lines)."""
    return pa.system_memory_pool()


_EVEN = np.arange(0, 1 << 21, 2, dtype=np.int32)


def _even(n: int) -> np.ndarray:
    """0, 2, 4, ... (n of them); a slice of a cached array (pyarrow wraps it without a copy,
    while converting a fresh np.arange measured ~50 ns a value)."""
    global _EVEN
    if n > _EVEN.shape[0]:
        _EVEN = np.arange(0, 2 * n, 2, dtype=np.int32)
    return _EVEN[:n]


class _Lines:
    """One template's candidate lines in a chunk: layout checks, then values."""

    def __init__(self, chunk: _Chunk, tpl: Template) -> None:
        self.c, self.tpl, self.arr = chunk, tpl, chunk.arr
        n = tpl.head.shape[0]
        self.n8 = -(-n // 8) * 8
        head = np.zeros(self.n8, np.uint8)
        head[:n] = tpl.head
        fixed = np.zeros(self.n8, np.uint8)
        fixed[:n] = np.where(tpl.wild, 0, 0xFF)
        wild = np.zeros(self.n8, np.uint8)
        wild[:n] = np.where(tpl.wild, 0xFF, 0)
        self.head_w, self.fixed_w, self.wild_w = (a.view("<u8") for a in (head, fixed, wild))

    def read(self, idx: np.ndarray) -> Hits | None:
        """The lines of `idx` (chunk line indices) this template takes: those of one length
        as one block (`_fixed`), the others pipe by pipe (`_general`)."""
        c, tpl, k = self.c, self.tpl, len(self.tpl.keys)
        # (one length only: for a log of three lengths, two more layouts measured slower
        # than `_general`, the merge into line order costing more than they save)
        fixed, idx = self._fixed(idx)
        general = self._general(idx) if idx.shape[0] else None
        parts = [v for v in (self._values(*g) for g in (fixed, general) if g is not None)
                 if v is not None]
        if not parts:
            return None
        if len(parts) == 1:
            idx, step, wall, values, total = parts[0]
        else:  # both: back into line order
            idx = np.concatenate([p[0] for p in parts])
            by_line = np.argsort(idx, kind="stable")
            idx = idx[by_line]
            step, wall = (np.concatenate([p[i] for p in parts])[by_line] for i in (1, 2))
            values = np.concatenate([p[3] for p in parts], axis=1)[:, by_line]
            total = max(p[4] for p in parts)
        c.taken[idx] = True
        order = idx.astype(np.int64) + (c.base + 1)
        last = int(order[-1])
        if c.block is not None and c.block.tpl is tpl:
            c.block.write(c.index, order, step, wall, values, (last, total[1]))
            empty = np.empty(0)
            return Hits(tpl.keys, empty, empty, empty, np.empty((k, 0)), total[1], last,
                        order.shape[0])
        return Hits(tpl.keys, order, step, wall, values, total[1], last)

    def _fixed(self, idx: np.ndarray):
        """Lines of the commonest length laid out as one of them: checked against
        its byte layout at once ((line, word) matrix, 8 bytes a word), not pipe by pipe. The
        layout is made from the template's head and keys at that line's pipe positions, so
        a line passes only where `_general` would pass it; every other line is left to
        `_general`. Returns the passing lines' geometry (or None) and the lines left."""
        c, tpl = self.c, self.tpl
        if idx.shape[0] < _FIXED_MIN:
            return None, idx
        st, length = c.starts[idx], c.ends[idx] - c.starts[idx]
        lo, hi = int(length.min()), int(length.max())
        width = lo + int(np.argmax(np.bincount(length - lo))) if hi - lo < 4096 \
            else int(length[idx.shape[0] // 2])  # the commonest length (or the middle one's)
        group = np.flatnonzero((length == width) & (st + -(-width // 8) * 8 <= c.arr.shape[0]))
        if group.shape[0] < _FIXED_MIN:
            return None, idx
        lay = self._layout(c.line(int(idx[group[0]])))
        if lay is None:
            return None, idx
        want, mask, wild, pipes_rel, slash_rel = lay
        st_g = st[group]
        rows = np.lib.stride_tricks.sliding_window_view(self.arr, want.shape[0] * 8)[st_g]
        words = rows.view("<u8")  # (line, word)
        # column by column (a word of every line at a time: no (line, word) temporaries)
        bad = np.zeros(rows.shape[0], np.uint64)
        for j in np.flatnonzero(mask).tolist():
            bad |= (words[:, j] ^ want[j]) & mask[j]
        ok = bad == 0
        for j in np.flatnonzero(wild).tolist():  # timestamp positions: digits
            w = wild[j]
            ok &= _digits((words[:, j] & w) | (_D30 & ~w)) == _H80
        sel = np.flatnonzero(ok)
        if not sel.shape[0]:
            return None, idx
        left = np.ones(idx.shape[0], bool)
        left[group[sel]] = False
        st_f = st_g[sel]
        ts = tpl.ts
        stamp = rows[sel, ts[0]:ts[0] + 20 + ts[6]] if ts is not None else None
        pipes = st_f[None, :] + pipes_rel[:, None]
        colons = pipes[:-1] + 1 + tpl.key_len[:, None]
        # (spaces checked: the spans need no look at the bytes around them)
        spans = (colons + 2, pipes[1:] - 1, pipes[0] - 1)
        return (idx[group[sel]], st_f, stamp, st_f + slash_rel, pipes, colons, spans), idx[left]

    def _layout(self, line: bytes):
        """The byte layout of a line of this template shaped as `line`: (want, mask, wild) as
        uint64 words, pipe offsets, the offset of the `/` of `N/ M`; None if `line` cannot
        be laid out so (its pipes are not the template's, a key would not fit)."""
        tpl, n = self.tpl, self.tpl.head.shape[0]
        raw = np.frombuffer(line, np.uint8)
        pipes = np.flatnonzero(raw == 124)
        slash = line.find(b"/", n, n + _SLASH_WINDOW)
        if pipes.shape[0] != tpl.pipes or pipes[-1] != len(line) - 1 or not n <= slash < pipes[0]:
            return None
        size = -(-len(line) // 8) * 8
        want, mask, wild = (np.zeros(size, np.uint8) for _ in range(3))
        want[:n], mask[:n], wild[:n] = tpl.head, np.where(tpl.wild, 0, 0xFF), \
            np.where(tpl.wild, 0xFF, 0)
        want[pipes], mask[pipes] = 124, 0xFF
        want[slash], mask[slash] = 47, 0xFF
        # the spaces around each value too (a line without them is left to `_general`), so
        # that value spans are fixed offsets: [colon + 2, pipe - 1)
        spaces = [slash + 1, int(pipes[0]) - 1]
        for f, key in enumerate(tpl.key_bytes):
            a, colon = int(pipes[f]) + 1, int(pipes[f]) + 1 + len(key)
            if colon + 2 >= pipes[f + 1]:
                return None
            want[a:colon], mask[a:colon] = np.frombuffer(key, np.uint8), 0xFF
            want[colon], mask[colon] = 58, 0xFF
            spaces += [colon + 1, int(pipes[f + 1]) - 1]
        if spaces[0] >= spaces[1] or any(line[i] != 32 for i in spaces[1:]):
            return None
        want[spaces[1:]], mask[spaces[1:]] = 32, 0xFF
        return want.view("<u8") & mask.view("<u8"), mask.view("<u8"), wild.view("<u8"), pipes, \
            slash

    def _general(self, idx: np.ndarray):
        """The geometry of the lines of `idx` that fit the template, pipe by pipe: (lines,
        starts, timestamp bytes, `/` positions, pipes (field + 1, line), colons); None if
        none fits."""
        c, tpl, arr = self.c, self.tpl, self.arr
        st = c.starts[idx]
        stamp, slash, ok = self._head(st)
        k = len(tpl.keys)
        # (field, line) matrices: reductions over the first axis are fast in numpy
        p0 = np.searchsorted(c.pipes, st)
        pipes = c.pipes[p0[None, :] + np.arange(k + 1)[:, None]]
        ok &= (pipes[-1] == c.ends[idx] - 1) & (slash < pipes[0])
        # each key's colon right after its bytes (checked below), before the next pipe
        colons = pipes[:-1] + 1 + tpl.key_len[:, None]
        lay = (colons < pipes[1:]) & (arr[np.minimum(colons, arr.shape[0] - 1)] == 58)
        ok &= np.logical_and.reduce(lay, axis=0)
        # every key byte, eight at a time (a word past the chunk's end is clipped: it fails)
        at = pipes[tpl.word_field] + tpl.word_off[:, None]
        np.minimum(at, c.w8.shape[0] - 1, out=at)
        diff = (c.w8[at] ^ tpl.word_want[:, None]) & tpl.word_mask[:, None]
        ok &= ~np.logical_or.reduce(diff != 0, axis=0)
        sel = np.flatnonzero(ok)
        if not sel.shape[0]:
            return None
        if sel.shape[0] < ok.shape[0]:  # (most often every candidate fits: no gathers)
            idx, st, slash = idx[sel], st[sel], slash[sel]
            stamp = stamp[sel] if stamp is not None else None
            pipes, colons = pipes[:, sel], colons[:, sel]
        return idx, st, stamp, slash, pipes, colons

    def _values(self, idx, st, stamp, slash, pipes, colons, spans=None):
        """(lines, iteration, wall, values (field, line), (last line, its `M`)) of the lines
        whose every value reads; None if none does. `spans`: (value starts, value ends, end
        of `M`) when known."""
        tpl, arr, k = self.tpl, self.arr, len(self.tpl.keys)
        # spans: iteration and train_iters (digits after "iteration " / the slash, up to the
        # slash / the head's pipe); values between ": " and " |" (one space each side dropped)
        if spans is None:
            spans = (colons + 1 + (arr[colons + 1] == 32),
                     pipes[1:] - (arr[pipes[1:] - 1] == 32),
                     pipes[0] - (arr[pipes[0] - 1] == 32))
        vs, ve, m_end = spans
        ints = np.flatnonzero(tpl.ints)
        starts = np.concatenate([(st + tpl.head.shape[0])[None], (slash + 1)[None],
                                 vs[ints]])
        ends = np.concatenate([slash[None], m_end[None], ve[ints]])
        n = idx.shape[0]
        whole, ok_i = self._int_rows(starts, ends)
        ok = np.logical_and.reduce(ok_i, axis=0)
        values = np.empty((k, n), np.float64)
        values[ints] = whole[2:]
        ok &= np.logical_and.reduce(whole[2:] < 2 ** 53, axis=0)
        floats = np.flatnonzero(~tpl.ints)
        if floats.shape[0]:
            v, ok_v = self._floats(vs[floats], ve[floats])
            values[floats] = v
            ok &= ok_v
        keep = np.flatnonzero(ok)
        if not keep.shape[0]:
            return None
        if keep.shape[0] < n:
            idx, stamp, whole, values = idx[keep], stamp[keep] if stamp is not None else None, \
                whole[:, keep], values[:, keep]
        return (idx, whole[0].copy(), self._walls(stamp, keep.shape[0]), values,
                (int(idx[-1]), int(whole[1, -1])))

    def _head(self, st: np.ndarray):
        """Whether each head fits the template, where its `/` is, its timestamp bytes."""
        n, w8 = self.tpl.head.shape[0], self.c.w8
        last = max(self.n8 - 8, n + _SLASH_WINDOW - 8)  # offset of the last word read
        ok = st.astype(np.int64) + last < w8.shape[0]
        at = np.where(ok, st, 0)
        for j in range(self.n8 // 8):
            w, wild = w8[at + 8 * j], self.wild_w[j]
            ok &= ((w ^ self.head_w[j]) & self.fixed_w[j]) == 0
            if wild:
                ok &= _digits((w & wild) | (_D30 & ~wild)) == _H80
        # the `/` of `N/ M`: the first one in the 24 bytes after "iteration "
        mask = np.zeros(st.shape[0], np.uint64)
        for j in range(_SLASH_WINDOW // 8):
            w = w8[at + (n + 8 * j)]
            mask |= _movemask(~_nonzero(w ^ _rep(0x2F)) & _H80) << _U(8 * j)
        ok &= mask != 0
        low = (mask & (~mask + _U(1))).astype(np.float64)  # the lowest set bit
        first = np.log2(np.where(ok, low, 1.0)).astype(np.intp)
        ts = self.tpl.ts
        stamp = None
        if ts is not None:
            stamp = np.lib.stride_tricks.sliding_window_view(self.arr, 20 + ts[6])[at + ts[0]]
        return stamp, st + n + first, ok

    def _int_rows(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_ints` of (field, line) spans, fields of one width class (≤ 8 bytes, 9-16: one
        or two words a value) read together: a field printed `{:12d}` is always 12 wide."""
        value, ok = np.empty(s.shape, np.int64), np.empty(s.shape, bool)
        width = (e - s) <= 8
        short = np.logical_and.reduce(width, axis=1)
        long = ~np.logical_or.reduce(width, axis=1)
        for rows in (np.flatnonzero(short), np.flatnonzero(long),
                     np.flatnonzero(~short & ~long)):
            if rows.shape[0]:
                v, g = self._ints(s[rows].reshape(-1), e[rows].reshape(-1))
                value[rows], ok[rows] = v.reshape(rows.shape[0], -1), g.reshape(rows.shape[0], -1)
        return value, ok

    def _ints(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Right-aligned integers in byte spans [s, e): spaces then digits (`\\s*(\\d+)`)."""
        length = (e - s).astype(np.int64, copy=False)
        ok = (length >= 1) & (length <= 16) & (e >= 16) \
            & (e.astype(np.int64, copy=False) - 8 < self.c.w8.shape[0])
        end = np.where(ok, e, 16)
        short = length <= 8  # one word is enough (most fields)
        n_short = int(np.count_nonzero(short))
        if n_short in (0, s.shape[0]):  # one width for all: no gathers
            value, good = self._words_int(end, length, 1 if n_short else 2)
            return value, ok & good
        value = np.zeros(s.shape[0], np.int64)
        for rows, words in ((np.flatnonzero(short), 1), (np.flatnonzero(~short), 2)):
            if rows.shape[0]:
                value[rows], good = self._words_int(end[rows], length[rows], words)
                ok[rows] &= good
        return value, ok

    def _words_int(self, end: np.ndarray, length: np.ndarray, words: int):
        """The integer right-aligned before `end` in the last `words` uint64 words."""
        digit_mask = np.zeros(end.shape[0], np.uint64)
        ok = np.ones(end.shape[0], bool)
        parts = []
        for j in range(words):  # j = 0 is the word nearest the end
            top = _TOP[np.clip(length - 8 * j, 0, 8)]
            x = (self.c.w8[end - 8 * (j + 1)] & top) | (_SP & ~top)  # before: spaces
            d = _digits(x)
            ok &= (d | (~_nonzero(x ^ _SP) & _H80)) == _H80
            digit_mask |= _movemask(d) << _U(8 * (words - 1 - j))
            parts.append(_parse8(x & _0F))
        # digits, at least one, all at the end (spaces only before them)
        full = _U((1 << (8 * words)) - 1)
        ok &= (digit_mask != 0) & ((digit_mask | (digit_mask - _U(1))) == full)
        value = parts[0] if words == 1 else parts[1] * _U(10 ** 8) + parts[0]
        return value.astype(np.int64), ok

    def _floats(self, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numbers in byte spans [s, e) of shape (fields, lines), read by pyarrow at once."""
        pa, pc = self.c.pa, self.c.pc
        k, n = s.shape
        ok = np.logical_and.reduce(e >= s, axis=0)
        # spans in file order (line by line) so that the offsets never go back
        flat = np.empty(n * k * 2 + 1, np.int32)
        flat[0:-1:2], flat[1:-1:2] = s.T.reshape(-1), np.maximum(e, s).T.reshape(-1)
        flat[-1] = flat[-2]
        both = pa.Array.from_buffers(pa.string(), 2 * n * k,
                                     [None, pa.py_buffer(flat), pa.py_buffer(self.arr)])
        # spans and the gaps between them alternate; keep the spans
        text = pc.take(both, pa.array(_even(n * k)), memory_pool=_pool(pa))
        out = np.empty(n * k, np.float64)
        good = np.ones(n * k, bool)
        for a in range(0, n * k, _BLOCK):
            part = text.slice(a, _BLOCK)
            try:
                cast = pc.cast(part, pa.float64(), memory_pool=_pool(pa))
                out[a:a + len(part)] = cast.to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                for i, t in enumerate(part.view(pa.binary()).to_pylist(), a):
                    try:
                        out[i] = float(t)
                    except ValueError:
                        good[i] = False
        return (out.reshape(n, k).T,
                ok & np.logical_and.reduce(good.reshape(n, k).T, axis=0))

    def _walls(self, stamp: np.ndarray | None, n: int) -> np.ndarray:
        """Seconds since the epoch from the timestamp digits (as deepspeed.epoch_seconds)."""
        ts = self.tpl.ts
        if stamp is None or ts is None:
            return np.full(n, np.nan)

        digits = stamp.astype(np.int32) - 48  # one conversion; Horner per field on columns

        def num(off: int, width: int) -> np.ndarray:
            acc = digits[:, off].astype(np.int64)
            for j in range(off + 1, off + width):
                acc = acc * 10 + digits[:, j]
            return acc

        y, mo, d, h, mi, s = (num(o - ts[0], w) for o, w in zip(ts[:6], (4, 2, 2, 2, 2, 2)))
        wall = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s).astype(np.float64)
        if ts[6]:
            wall = wall + num(20, ts[6]).astype(np.float64) / 10.0 ** ts[6]
        return wall
