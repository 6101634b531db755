"""The framing of a W&B `run-<id>.wandb` file, with salvage of damaged files.

wandb's `datastore.py` writes a LevelDB-style log (32 KiB blocks of CRC-checked fragments, FULL or
FIRST..MIDDLE..LAST) after a 7-byte header. `iter_payloads` yields every intact record's payload
and reports every damaged stretch to a `Damage`, which renders one-line warnings. Salvage is
bounded: after damage, the next intact record is searched over a block's reach (candidates
found with numpy, each proved by its checksum), and once `FULL_SEARCH_BYTES` of a file have been
searched that way, only at block starts (where a writer always starts a fragment), so a file
of garbage costs linear time with a small constant.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, Iterator

import numpy as np

MAGIC = b":W&B\xe1\xbe\x00"  # ":W&B", uint16 0xBEE1 little-endian, version 0
BLOCK = 32 * 1024
HEADER = 7  # record header: uint32 crc, uint16 length, uint8 type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_TYPE_CRC = {t: zlib.crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}
#: Bytes of a file searched position by position for the next intact record after damage;
#: beyond, only block starts are tried (a garbage file costs linear time, small constant).
FULL_SEARCH_BYTES = 1 << 20


class Damage:
    """Collects damaged stretches of a `.wandb` file, rendered as one-line warnings."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._places: list[list[Any]] = []  # [index, offset, why, exact, skipped up to]
        self.records_lost = 0
        self.notes: list[str] = []  # oddities that lost nothing countable

    def lost(self, index: int, offset: int, why: str, exact: bool = True,
             upto: int | None = None) -> bool:
        """A record lost: `index` is the position it had among the file's records; `upto`
        ends the unreadable bytes skipped (then more records may have been there). A stretch
        that continues the previous one extends it; returns False then (no new record)."""
        last = self._places[-1] if self._places else None
        if upto is not None and last is not None and last[4] == offset:
            last[4] = upto
            return False
        self.records_lost += 1
        self._places.append([index, offset, why, exact and upto is None, upto])
        return True

    @property
    def messages(self) -> list[str]:
        out = []
        for index, offset, why, exact, upto in self._places:
            skipped = f", {upto - offset} bytes skipped" if upto is not None else ""
            count = "1 record lost" if exact else "at least 1 record lost"
            out.append(f"{self.name}: record {index} at byte {offset}: {why}{skipped}; {count}")
        return out

    def summary(self) -> str:
        exact = all(p[3] for p in self._places)
        lost = self.records_lost if exact else f"at least {self.records_lost}"
        return (f"{self.name}: {lost} damaged record(s) lost in {len(self._places)} "
                "place(s); the intact records were read")


_LOST = -1  # pseudo record type of a damaged stretch in `_Framing`'s output
_ZEROS = bytes(HEADER)


class _Framing:
    """The physical records of a `.wandb` file, with salvage.

    A record is intact when its type is known and its checksum holds. After a damaged
    stretch, reading resumes at the next offset where an intact record starts (the checksum
    proves it), searched over at most one block. Block boundaries are tracked from the
    fragments themselves (a FIRST or MIDDLE fragment always ends one), so a stretch of bytes
    missing from the middle of a file costs only the records it held.
    """

    def __init__(self, data: bytes) -> None:
        self.data, self.n = data, len(data)
        self.shift = 0  # block boundaries are at offsets = shift (mod BLOCK)
        self.zero_tail = 0  # length of an all-zero end of file
        self.zero_from = self._zero_start()  # where the all-zero end of the file starts
        self.searched = 0  # bytes searched position by position so far

    def _zero_start(self) -> int:
        """Offset of the all-zero end of the data (n when the last byte is not zero); found
        once, a block at a time from the end (no copy of the file)."""
        data, end = self.data, self.n
        while end > 0:
            start = max(0, end - BLOCK)
            chunk = np.frombuffer(data, np.uint8, end - start, start)
            nz = np.flatnonzero(chunk)
            if nz.shape[0]:
                return start + int(nz[-1]) + 1
            end = start
        return 0

    def left(self, pos: int) -> int:
        return BLOCK - (pos - self.shift) % BLOCK

    def record_end(self, pos: int) -> int:
        """End offset of an intact physical record starting at `pos`, or -1."""
        if self.n - pos < HEADER:
            return -1
        crc, length, rtype = struct.unpack_from("<IHB", self.data, pos)
        end = pos + HEADER + length
        if rtype not in _TYPE_CRC or end > self.n or length > BLOCK - HEADER:
            return -1
        return end if zlib.crc32(self.data[pos + HEADER:end], _TYPE_CRC[rtype]) == crc else -1

    def resync(self, pos: int, hint: int | None) -> int:
        """Where to go on after a damaged record at `pos`: `hint` (its end by its own length
        field) if an intact record, a block trailer or the end of the file is there, else the
        next intact record within a block's reach, else a block further on."""
        if hint is not None and (hint >= self.n or self.left(hint) < HEADER
                                 or self.record_end(hint) > 0):
            return hint
        stop = min(pos + BLOCK, self.n - HEADER)
        if self.searched < FULL_SEARCH_BYTES:
            self.searched += max(stop - pos, 0)
            for p in self._candidates(pos + 1, stop + 1):
                if self.record_end(p) > 0:
                    return p
            return pos + BLOCK
        # past the search budget: only block starts (a writer always starts a fragment there)
        p = pos + self.left(pos)
        while p < stop + 1:
            if self.record_end(p) > 0:
                return p
            p += BLOCK
        return p

    def _candidates(self, start: int, stop: int) -> list[int]:
        """Offsets in [start, stop) whose header could start an intact record: a known type,
        a length within a block and the file (numpy: no Python loop over positions)."""
        if stop <= start:
            return []
        arr = np.frombuffer(self.data, np.uint8, min(stop + HEADER, self.n) - start, start)
        m = min(stop - start, arr.shape[0] - HEADER + 1)
        if m <= 0:
            return []
        rtype = arr[6:6 + m]
        length = arr[4:4 + m].astype(np.int64) | (arr[5:5 + m].astype(np.int64) << 8)
        at = np.arange(start, start + m, dtype=np.int64)
        ok = (rtype >= 1) & (rtype <= 4) & (length <= BLOCK - HEADER) \
            & (at + HEADER + length <= self.n)
        return (np.flatnonzero(ok) + start).tolist()

    def diagnose(self, pos: int) -> tuple[str, int | None, bool]:
        """Why the record at `pos` is not intact: (reason, its end if plausible, truncated?)."""
        if self.data[pos:pos + HEADER] == _ZEROS:
            return "zero-filled gap", None, False
        if self.n - pos < HEADER:
            return "file ends inside a record header", None, True
        crc, length, rtype = struct.unpack_from("<IHB", self.data, pos)
        if rtype not in _TYPE_CRC or HEADER + length > self.left(pos):
            return f"bad record header (type {rtype}, length {length})", None, False
        if pos + HEADER + length > self.n:
            return (f"file ends inside the record ({self.n - pos - HEADER} of {length} bytes)",
                    None, True)
        return "bad checksum", pos + HEADER + length, False

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        """(offset, type, data) of each intact physical record; damage comes as
        (offset, _LOST, (reason, exactly one record lost?, end of the bytes skipped or None)).
        A truncated tail ends it."""
        data, n, pos = self.data, self.n, len(MAGIC)
        while pos < n:
            end = self.record_end(pos)
            if end > 0:
                rtype = data[pos + HEADER - 1]
                yield pos, rtype, data[pos + HEADER:end]
                if rtype == FIRST or rtype == MIDDLE:  # these fill their block to its end
                    self.shift = end % BLOCK
                pos = end
                continue
            left = self.left(pos)
            if left < HEADER and data[pos:pos + left] == bytes(left):  # block trailer
                pos += left
                continue
            if pos >= self.zero_from:
                self.zero_tail = n - pos  # preallocated, or zero-filled after a crash
                return
            why, hint, short = self.diagnose(pos)
            resume = self.resync(pos, hint)
            if resume >= n:
                tail = "; truncated tail" if short else "" if resume == hint else ", nothing after it"
                yield pos, _LOST, (why + tail, resume == hint or short, None)
                return
            yield pos, _LOST, (why, True, None) if resume == hint else (why, False, resume)
            pos = resume


def iter_payloads(data: bytes, damage: Damage) -> Iterator[tuple[int, int, bytes]]:
    """(record index from 1, byte offset of its first fragment, payload) for every intact record.

    FIRST/MIDDLE/LAST fragments are joined. Every lost record gets one `damage` entry and an
    index of its own, so record indexes stay positions in the file.
    """
    index = 0
    pending: list[bytes] | None = None  # fragments of a FIRST..LAST record being assembled
    pending_at = 0
    in_damage = False  # continuations of a record already counted as lost are dropped quietly
    framing = _Framing(data)
    for pos, rtype, chunk in framing:
        if rtype == _LOST:
            index += damage.lost(index + 1, pos, *chunk)
            pending, in_damage = None, True
        elif rtype == FULL or rtype == FIRST:
            in_damage = False
            if pending is not None:
                index += 1
                damage.lost(index, pending_at, "record start without its end")
            pending = None
            if rtype == FULL:
                index += 1
                yield index, pos, chunk  # type: ignore[misc]
            else:
                pending, pending_at = [chunk], pos  # type: ignore[list-item]
        elif pending is None:
            if not in_damage:
                index += 1
                damage.lost(index, pos, "record continuation without its start")
                in_damage = True
        else:
            pending.append(chunk)  # type: ignore[arg-type]
            if rtype == LAST:
                index += 1
                yield index, pending_at, b"".join(pending)
                pending = None
    if pending is not None:
        index += 1
        damage.lost(index, pending_at, "file ends inside a record split over blocks")
    if framing.zero_tail:
        damage.notes.append(f"{damage.name}: the last {framing.zero_tail} bytes are zeros "
                            "(preallocated, or a write cut off by a crash); nothing in them")
