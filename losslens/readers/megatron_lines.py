"""The layout checks and value reads of the Megatron fast path, one template at a time.

A `Template` is made from one training line (`template`): its head bytes (launcher prefix,
timestamp layout, "iteration "), its keys, which values were plain integers. `Lines` takes a
chunk's candidate lines of that template's pipe count and checks them as a whole, in two ways
that pass exactly the same lines: those of the commonest length against one byte layout
(`Lines._fixed`: head, keys, colons, pipes and the spaces around values at fixed offsets, on a
(line, word) matrix), the others pipe by pipe (`Lines._general`). Integer fields and `N/ M` are
read eight bytes at a time (`megatron_words`); other values are cut out with one pyarrow `take`
and cast at once. What it cannot read exactly it leaves to the per-line classifier
(`megatron.py`), whose semantics it follows. The chunks themselves are `megatron_fast`'s.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .deepspeed import days_from_civil
from .megatron_words import (D30, H80, SP, TOP, U, X0F, digits, even, movemask, nonzero,
                             parse8, rep, system_pool)

_HEAD = re.compile(r"^(?:\[(?:default|rank|worker|trainer)?\d+\]:)? ?"
                   r"(?:\[(?P<ts>\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?\] ?)?"
                   r"(?P<it>iteration +)\d+/ *\d+ \|")
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


class Lines:
    """One template's candidate lines in a chunk: layout checks, then values."""

    def __init__(self, chunk, tpl: Template) -> None:
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
            ok &= digits((words[:, j] & w) | (D30 & ~w)) == H80
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
                ok &= digits((w & wild) | (D30 & ~wild)) == H80
        # the `/` of `N/ M`: the first one in the 24 bytes after "iteration "
        mask = np.zeros(st.shape[0], np.uint64)
        for j in range(_SLASH_WINDOW // 8):
            w = w8[at + (n + 8 * j)]
            mask |= movemask(~nonzero(w ^ rep(0x2F)) & H80) << U(8 * j)
        ok &= mask != 0
        low = (mask & (~mask + U(1))).astype(np.float64)  # the lowest set bit
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
            top = TOP[np.clip(length - 8 * j, 0, 8)]
            x = (self.c.w8[end - 8 * (j + 1)] & top) | (SP & ~top)  # before: spaces
            d = digits(x)
            ok &= (d | (~nonzero(x ^ SP) & H80)) == H80
            digit_mask |= movemask(d) << U(8 * (words - 1 - j))
            parts.append(parse8(x & X0F))
        # digits, at least one, all at the end (spaces only before them)
        full = U((1 << (8 * words)) - 1)
        ok &= (digit_mask != 0) & ((digit_mask | (digit_mask - U(1))) == full)
        value = parts[0] if words == 1 else parts[1] * U(10 ** 8) + parts[0]
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
        text = pc.take(both, pa.array(even(n * k)), memory_pool=system_pool(pa))
        out = np.empty(n * k, np.float64)
        good = np.ones(n * k, bool)
        for a in range(0, n * k, _BLOCK):
            part = text.slice(a, _BLOCK)
            try:
                cast = pc.cast(part, pa.float64(), memory_pool=system_pool(pa))
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
