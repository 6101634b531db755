"""One TensorBoard Event record parsed in Python: where its wall time, step and values lie.

The fast path (`tensorboard`) parses one reference record of each group of records with this
module and then reads the whole group at the byte offsets found here (`Layout`: the wall time,
the step varint, one `Slot` per scalar value, the byte ranges allowed to differ). What is a
scalar: `simple_value`, or a rank-0 numeric `tensor` (any dtype field or `tensor_content`)
whose metadata names no other plugin than `scalars`; histograms, images, audio are not.
`Malformed` is raised for bytes that are not a valid Event.
"""
from __future__ import annotations

from dataclasses import dataclass, field


class Malformed(Exception):
    pass


def _varint(b: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(b) or shift >= 70:
            raise Malformed
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        if c < 0x80:
            return result, i
        shift += 7


def _fields(b: bytes, start: int, end: int):
    """(field, wire type, value start, value end, varint value) for each field in b[start:end]."""
    i = start
    while i < end:
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            value, j = _varint(b, i)
            yield num, wt, i, j, value
        elif wt in (1, 5):
            j = i + (8 if wt == 1 else 4)
            yield num, wt, i, j, 0
        elif wt == 2:
            size, i = _varint(b, i)
            j = i + size
            yield num, wt, i, j, 0
        else:
            raise Malformed
        if j > end:
            raise Malformed
        i = j


# dtype enum → (itemsize in tensor_content, conversion, the typed *_val field)
_DTYPES = {1: (4, "<f4", 5), 2: (8, "<f8", 6), 3: (4, "<i4", 7), 4: (1, "u1", 7),
           5: (2, "<i2", 7), 6: (1, "i1", 7), 9: (8, "<i8", 10), 10: (1, "u1", 11),
           14: (2, "bf16", 13), 17: (2, "<u2", 7), 19: (2, "<f2", 13), 22: (4, "<u4", 16),
           23: (8, "<u8", 17)}


@dataclass(frozen=True)
class Slot:
    """Where one scalar value sits in a record, and how to read it."""

    tag: str
    offset: int
    size: int  # bytes (for a varint: its byte count in the reference record)
    conv: str  # numpy dtype string, "bf16", or "varint[:<dtype>]"
    tensor: bool
    plugin: str | None  # plugin_name of the value's metadata, None when it has none


@dataclass
class Layout:
    """The parse of one Event record: field offsets, as a template for same-shaped records."""

    wall: int | None = None
    step: tuple[int, int] | None = None  # (offset, byte count) of the varint
    slots: list[Slot] = field(default_factory=list)
    varints: list[tuple[int, int]] = field(default_factory=list)
    allowed: list[tuple[int, int]] = field(default_factory=list)  # byte ranges free to differ


def _plugin(b: bytes, start: int, end: int) -> str:
    for num, wt, s, e, _ in _fields(b, start, end):
        if num == 1 and wt == 2:
            for n2, w2, s2, e2, _ in _fields(b, s, e):
                if n2 == 1 and w2 == 2:
                    return b[s2:e2].decode("utf-8", "replace")
    return ""


def _is_scalar_shape(b: bytes, start: int, end: int) -> bool:
    for num, wt, s, e, _ in _fields(b, start, end):
        if num == 3:  # unknown_rank
            return False
        if num == 2 and wt == 2:
            size = 0
            for n2, _, _, _, v in _fields(b, s, e):
                if n2 == 1:
                    size = v
            if size != 1:
                return False
    return True


def _tensor_slot(b: bytes, start: int, end: int) -> tuple[int, int, str] | None:
    """(offset, size, conv) of a rank-0 numeric tensor's value, or None."""
    dtype, scalar, found = 0, True, {}
    for num, wt, s, e, _ in _fields(b, start, end):
        if num == 1 and wt == 0:
            dtype = _varint(b, s)[0]
        elif num == 2 and wt == 2:
            scalar = _is_scalar_shape(b, s, e)
        else:
            found.setdefault(num, []).append((wt, s, e))
    if dtype not in _DTYPES or not scalar:
        return None
    itemsize, conv, val_field = _DTYPES[dtype]
    content = [(s, e) for wt, s, e in found.get(4, []) if wt == 2 and e > s]
    if content:
        s, e = content[-1]
        return (s, itemsize, conv) if e - s == itemsize else None
    vals = found.get(val_field, [])
    if len(vals) != 1:
        return None
    wt, s, e = vals[0]
    if val_field in (5, 6):  # float_val / double_val: packed or not
        size = 4 if val_field == 5 else 8
        return (s, size, conv) if e - s == size else None
    if wt == 2:  # a packed varint field holding exactly one varint
        if _varint(b, s)[1] != e:
            return None
    return (s, e - s, "varint:" + conv)


def _value(b: bytes, start: int, end: int, lay: Layout) -> None:
    tag, kind, meta = "", None, None
    for num, wt, s, e, _ in _fields(b, start, end):
        if num == 1 and wt == 2:
            tag = b[s:e].decode("utf-8", "replace")
        elif num == 2 and wt == 5:
            kind = ("simple", s, e)
        elif num == 8 and wt == 2:
            kind = ("tensor", s, e)
        elif num in (3, 4, 5, 6):
            kind = None  # histogram, image, audio: the oneof's last field wins
        elif num == 9 and wt == 2:
            meta = (s, e)
    plugin = _plugin(b, *meta) if meta else None
    if kind is None:
        return
    if kind[0] == "simple":
        slot = Slot(tag, kind[1], 4, "<f4", False, plugin)
    else:
        found = _tensor_slot(b, kind[1], kind[2])
        if found is None:
            return
        slot = Slot(tag, found[0], found[1], found[2], True, plugin)
    lay.slots.append(slot)
    lay.allowed.append((slot.offset, slot.offset + slot.size))
    if slot.conv.startswith("varint"):
        lay.varints.append((slot.offset, slot.size))


def parse_layout(b: bytes) -> Layout:
    """Parse one Event payload; raises Malformed when it is not a valid Event."""
    lay = Layout()
    for num, wt, s, e, _ in _fields(b, 0, len(b)):
        if num == 1 and wt == 1:
            lay.wall = s
        elif num == 2 and wt == 0:
            lay.step = (s, e - s)
        elif num == 5 and wt == 2:
            for n2, w2, s2, e2, _ in _fields(b, s, e):
                if n2 == 1 and w2 == 2:
                    _value(b, s2, e2, lay)
    if lay.wall is not None:
        lay.allowed.append((lay.wall, lay.wall + 8))
    if lay.step is not None:
        lay.allowed.append((lay.step[0], lay.step[0] + lay.step[1]))
        lay.varints.append(lay.step)
    return lay
