"""The vectorised path of the Megatron reader: training lines of the dominant shapes, in bulk.

`megatron.py`'s per-line classifier defines what a line means; this module only takes the
training lines it can read *exactly* as the classifier would, and hands back everything else.

How: the file is cut at line ends into chunks of ~8 MB (temporaries stay small; chunks run on
a few threads, numpy and pyarrow release the GIL). In a chunk numpy finds every `\\n`, `|` and
`:`. A template is made from one training line (its head bytes — launcher prefix, timestamp
layout, "iteration " — and its keys); every line with the template's number of `|` and `:` is
then checked as a whole: head bytes equal (timestamp positions: digits), each field's colon
between its pipes, each key's length and probe bytes equal, the line ending in `|`. The value
spans of all lines and fields are cut out of the file bytes with one pyarrow `take`, trimmed
and cast to float64 at once; a line with any value pyarrow cannot read, or with `\\r` or an
ANSI escape, is left to the classifier. Lines no template takes are handed back (with their
line numbers) when they hold one of the classifier's marker words.
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
CHUNK = 1 << 23  # bytes per chunk
_SLASH_WINDOW = 24  # bytes after "iteration " searched for the `/` of `N/ M`
_BLOCK = 1 << 16  # values cast per pyarrow call (a failing block is redone value by value)


@dataclass(frozen=True)
class Template:
    """The byte layout of one training-line shape, made from a line that fits it."""

    head: np.ndarray  # bytes through "iteration "
    wild: np.ndarray  # head positions that are timestamp digits
    ts: tuple[int, ...] | None  # offsets of Y, m, d, H, M, S and the fraction's width
    pipes: int
    colons: int
    head_colons: int
    keys: tuple[str, ...]
    key_len: np.ndarray  # bytes between a field's pipe and its colon (" key")
    probe: np.ndarray  # (fields, 2) offsets after the pipe that are compared byte by byte
    want: np.ndarray  # (fields, 2) the bytes expected there


def template(line: bytes) -> Template | None:
    """The template of a training line (without its `\\n`), None if it has no simple layout."""
    text = line.decode("ascii", errors="replace")
    m = _HEAD.match(text)
    if not m or "\ufffd" in text or not text.endswith("|"):
        return None
    keys: list[str] = []
    key_bytes: list[bytes] = []
    for part in text[m.end():].split("|")[:-1]:
        key, sep, value = part.partition(":")
        if not sep or ":" in value or not key.strip() or key.strip() in keys:
            return None
        keys.append(key.strip())
        key_bytes.append(key.encode())
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
    lens = np.asarray([len(k) for k in key_bytes], np.int32)
    probe = np.stack([np.minimum(1, lens - 1), lens - 1], axis=1).astype(np.int32)
    want = np.asarray([[kb[i] for i in row] for kb, row in zip(key_bytes, probe)], np.uint8)
    return Template(np.frombuffer(line[:n_head], np.uint8).copy(), wild, ts, text.count("|"),
                    text.count(":"), text[:m.end()].count(":"), tuple(keys), lens, probe, want)


@dataclass
class Hits:
    """The training lines one template read in one chunk."""

    keys: tuple[str, ...]
    order: np.ndarray  # 1-based line numbers
    step: np.ndarray  # iteration
    wall: np.ndarray
    values: np.ndarray  # (lines, fields)
    total: int  # `M` of `N/ M` on the last line


@dataclass
class ChunkResult:
    hits: list[Hits] = field(default_factory=list)
    rest: list[tuple[int, bytes]] = field(default_factory=list)  # (line number, line) to classify
    truncated: int = 0  # line number of an unterminated last line, 0 if none
    lines: int = 0  # lines in the chunk


def scan(raw, markers: str, workers: int | None = None):
    """ChunkResults of `raw` (bytes or a map of the file), in file order."""
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
    jobs = [_Chunk(raw, arr, a, b, b == len(raw), pa, pc, markers) for a, b in bounds]
    if not jobs:
        return
    templates: list[Template] = []
    first = jobs[0].run(templates)  # the first chunk finds the templates the others start from
    workers = workers or min(4, os.cpu_count() or 1)
    if workers < 2 or len(jobs) < 3:
        results = (job.run(list(templates)) for job in jobs[1:])
        yield from _numbered([first], results)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from _numbered([first], pool.map(lambda job: job.run(list(templates)), jobs[1:]))


def _numbered(*streams):
    """Results with chunk-local line numbers turned into the file's."""
    base = 0
    for stream in streams:
        for res in stream:
            if base:
                for h in res.hits:
                    h.order += base
                res.rest = [(i + base, line) for i, line in res.rest]
                res.truncated += base if res.truncated else 0
            base += res.lines
            yield res


def _positions(arr: np.ndarray, byte: int) -> np.ndarray:
    return np.flatnonzero(arr == byte).astype(np.int32)


class _Chunk:
    """The lines of one chunk: which a template takes, their values, the rest."""

    def __init__(self, raw, whole: np.ndarray, pos: int, end: int, last: bool,
                 pa, pc, markers: str) -> None:
        self.raw, self.pos, self.base, self.pa, self.pc = raw, pos, 0, pa, pc
        self.arr, self.markers, self.last = whole[pos:end], markers, last

    def run(self, templates: list[Template]) -> ChunkResult:
        arr = self.arr
        nl = _positions(arr, 10)
        self.truncated = self.last and arr.shape[0] > 0 and arr[-1] != 10
        starts = np.concatenate([np.zeros(1, np.int32), nl + np.int32(1)])
        self.starts = starts if self.truncated else starts[:-1]
        self.n = self.starts.shape[0]
        self.ends = np.concatenate([nl, np.full(1, arr.shape[0], np.int32)])[:self.n]
        bounds = np.concatenate([self.starts, np.full(1, arr.shape[0], np.int32)])
        self.pipes, self.colons = _positions(arr, 124), _positions(arr, 58)
        self.n_pipes = np.diff(np.searchsorted(self.pipes, bounds))
        self.n_colons = np.diff(np.searchsorted(self.colons, bounds))
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
        out = ChunkResult(truncated=self.n if self.truncated else 0, lines=self.n)
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
        cand = np.flatnonzero(self.open & (self.n_pipes == tpl.pipes)
                              & (self.n_colons == tpl.colons))
        if cand.shape[0]:
            self.open[cand] = False
            hits = _Lines(self, tpl).read(cand)
            if hits is not None:
                self.taken[hits.order - (self.base + 1)] = True
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
        marked = pc.match_substring_regex(lines, self.markers).to_numpy(zero_copy_only=False)
        marked = marked[::2].copy()
        if self.truncated and rest[-1] == self.n - 1:
            marked[-1] = True
        return [(self.base + i + 1, self.line(i)) for i in rest[marked].tolist()]


class _Lines:
    """One template's candidate lines in a chunk: layout checks, then values."""

    def __init__(self, chunk: _Chunk, tpl: Template) -> None:
        self.c, self.tpl, self.arr = chunk, tpl, chunk.arr

    def read(self, idx: np.ndarray) -> Hits | None:
        c, tpl = self.c, self.tpl
        st = c.starts[idx]
        g, slash, ok = self._head(st)
        k = len(tpl.keys)
        pipes = c.pipes[np.searchsorted(c.pipes, st)[:, None] + np.arange(k + 1, dtype=np.int32)]
        c0 = np.searchsorted(c.colons, st).astype(np.int32) + np.int32(tpl.head_colons)
        colons = c.colons[c0[:, None] + np.arange(k, dtype=np.int32)]
        ok &= (pipes[:, -1] == c.ends[idx] - 1) & (slash < pipes[:, 0])
        ok &= np.all((colons > pipes[:, :-1]) & (colons < pipes[:, 1:]), axis=1)
        ok &= np.all(colons - pipes[:, :-1] - 1 == tpl.key_len, axis=1)
        at = pipes[:, :-1, None] + 1 + tpl.probe
        at[~ok] = 0
        ok &= np.all(self.arr[at] == tpl.want, axis=(1, 2))
        sel = np.flatnonzero(ok)
        if not sel.shape[0]:
            return None
        idx, st, g, slash = idx[sel], st[sel], g[sel], slash[sel]
        pipes, colons = pipes[sel], colons[sel]
        # the spans in file order per line: iteration, train_iters, then every value
        spans = np.empty((sel.shape[0], k + 2, 2), np.int32)
        spans[:, 0, 0], spans[:, 0, 1] = st + np.int32(tpl.head.shape[0]), slash
        spans[:, 1, 0], spans[:, 1, 1] = slash + np.int32(1), pipes[:, 0]
        spans[:, 2:, 0], spans[:, 2:, 1] = colons + np.int32(1), pipes[:, 1:]
        values, ok = self._numbers(spans)
        keep = np.flatnonzero(ok)
        if not keep.shape[0]:
            return None
        values = values[keep]
        return Hits(tpl.keys, idx[keep].astype(np.int64) + (c.base + 1),
                    values[:, 0].astype(np.int64), self._walls(g[keep]), values[:, 2:],
                    int(values[-1, 1]))

    def _head(self, st: np.ndarray):
        """Head bytes of each line, where its `/` is, and whether the head fits the template."""
        tpl = self.tpl
        n = tpl.head.shape[0]
        width = n + _SLASH_WINDOW
        fits = st.astype(np.int64) + width <= self.arr.shape[0]
        if self.arr.shape[0] < width:
            return (np.zeros((st.shape[0], n), np.uint8), st, np.zeros(st.shape[0], bool))
        g = np.lib.stride_tricks.sliding_window_view(self.arr, width)[np.where(fits, st, 0)]
        head = g[:, :n]
        digit = (head - np.uint8(48)) < 10
        ok = fits & np.all(np.where(tpl.wild, digit, head == tpl.head), axis=1)
        is_slash = g[:, n:] == 47
        ok &= is_slash.any(axis=1)
        slash = st + (n + np.argmax(is_slash, axis=1)).astype(np.int32)
        return head, slash, ok

    def _numbers(self, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every span read at once: (lines, 2 + fields) floats and which lines read cleanly."""
        pa, pc = self.c.pa, self.c.pc
        n, k = spans.shape[0], spans.shape[1]
        flat = np.empty(n * k * 2 + 1, np.int32)
        flat[:-1] = spans.reshape(-1)
        flat[-1] = flat[-2]
        both = pa.Array.from_buffers(pa.string(), 2 * n * k,
                                     [None, pa.py_buffer(flat), pa.py_buffer(self.arr)])
        # spans and the gaps between them alternate; keep the spans
        text = pc.ascii_trim_whitespace(both.take(pa.array(np.arange(0, 2 * n * k, 2,
                                                                     dtype=np.int32))))
        out = np.empty(n * k, np.float64)
        good = np.ones(n * k, bool)
        for a in range(0, n * k, _BLOCK):
            part = text.slice(a, _BLOCK)
            try:
                out[a:a + len(part)] = pc.cast(part, pa.float64()).to_numpy(zero_copy_only=False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                for i, t in enumerate(part.view(pa.binary()).to_pylist(), a):
                    try:
                        out[i] = float(t)
                    except ValueError:
                        good[i] = False
        out, good = out.reshape(n, k), good.reshape(n, k)
        # iteration and train_iters must be plain digits, as the classifier's regex wants
        lead = (np.arange(n, dtype=np.int32)[:, None] * k + np.arange(2, dtype=np.int32))
        digits = pc.ascii_is_decimal(text.take(pa.array(lead.reshape(-1))))
        digits = digits.to_numpy(zero_copy_only=False).reshape(n, 2)
        ok = good.all(axis=1) & digits.all(axis=1) & (out[:, :2] < 2.0 ** 53).all(axis=1)
        return out, ok

    def _walls(self, g: np.ndarray) -> np.ndarray:
        """Seconds since the epoch from the timestamp digits (as deepspeed.epoch_seconds)."""
        ts = self.tpl.ts
        if ts is None:
            return np.full(g.shape[0], np.nan)

        def num(off: int, width: int) -> np.ndarray:
            digits = g[:, off:off + width].astype(np.int64) - 48
            return digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))

        y, mo, d, h, mi, s = (num(o, w) for o, w in zip(ts[:6], (4, 2, 2, 2, 2, 2)))
        wall = (days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s).astype(np.float64)
        if ts[6]:
            wall = wall + num(ts[0] + 20, ts[6]).astype(np.float64) / 10.0 ** ts[6]
        return wall
