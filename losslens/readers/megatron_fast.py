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
other templates' lines come back per chunk (`Hits`). On the benchmark machines the cost
of this path was as much first-touched memory as arithmetic, hence the care over copies.

The template and its line checks are `megatron_lines`; the SWAR helpers `megatron_words`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .megatron_lines import Hits, Lines, Template, template
from .megatron_words import system_pool

__all__ = ["CHUNK", "MAX_TEMPLATES", "Block", "ChunkResult", "Hits", "Template", "scan",
           "template"]

MAX_TEMPLATES = 8
CHUNK = 1 << 21  # bytes per chunk (cache-sized: several passes run over each)


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
    2-core benchmark VMs, writing 300 MB of them measured 0.1-0.3 s more system time.)"""
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
            hits = Lines(self, tpl).read(cand)
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
        marked = pc.match_substring_regex(lines, self.markers, memory_pool=system_pool(pa))
        marked = marked.to_numpy(zero_copy_only=False)
        marked = marked[::2].copy()
        if self.truncated and rest[-1] == self.n - 1:
            marked[-1] = True
        return [(self.base + i + 1, self.line(i)) for i in rest[marked].tolist()]
