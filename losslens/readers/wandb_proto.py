"""The protobuf wire format of W&B records: only the fields losslens needs (wandb's `wandb_internal.proto`).

A small decoder instead of the wandb package (an optional extra): `fields` splits a message
into (number, value) pairs, `decode_message` names them from a spec, `decode_history` /
`decode_updates` / `decode_item` read history rows and config/summary updates, and
`record_body` picks the Record types the reader uses. A malformed message raises `ProtoError`.
"""
from __future__ import annotations

import json
import struct
from typing import Any, Mapping

from .textutil import as_float


class ProtoError(ValueError):
    """A payload that is not a well-formed protobuf message."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtoError("varint longer than 10 bytes")


def fields(buf: bytes) -> list[tuple[int, Any]]:
    """(field number, value) pairs: int for varints, bytes for length-delimited/fixed fields.

    One-byte keys and lengths (nearly all of them) take an inlined fast path: this loop is
    where a large run file spends its time.
    """
    if not isinstance(buf, bytes):
        raise ProtoError("expected a length-delimited sub-message")
    out: list[tuple[int, Any]] = []
    pos, n = 0, len(buf)
    try:
        while pos < n:
            key = buf[pos]
            if key < 0x80:
                pos += 1
            elif buf[pos + 1] < 0x80:  # two-byte key: field numbers 16..2047 (value_json=16)
                key = (key & 0x7F) | (buf[pos + 1] << 7)
                pos += 2
            else:
                key, pos = _varint(buf, pos)
            wire = key & 7
            if wire == 2:
                size = buf[pos]
                if size < 0x80:
                    pos += 1
                else:
                    size, pos = _varint(buf, pos)
                end = pos + size
                value = buf[pos:end]
            elif wire == 0:
                value, end = _varint(buf, pos)
            elif wire == 1:
                end = pos + 8
                value = buf[pos:end]
            elif wire == 5:
                end = pos + 4
                value = buf[pos:end]
            else:
                raise ProtoError(f"unsupported wire type {wire}")
            if end > n:
                raise ProtoError("field runs past the end of the message")
            out.append((key >> 3, value))
            pos = end
    except IndexError:
        raise ProtoError("message ends inside a varint") from None
    return out


def _text(value: Any) -> str:
    if not isinstance(value, bytes):
        raise ProtoError("expected a length-delimited string")
    return value.decode("utf-8", errors="replace")


def _item_parts(buf: bytes) -> tuple[str, list[str] | None, bytes | None, Any]:
    """An item message's (key, nested_key list or None, value_json / json bytes, typed value).

    Hand-inlined: history and summary items are the bulk of a run file.
    """
    key, nested, text, typed = "", None, None, None
    for num, raw in fields(buf):
        if num == 2:
            if nested is None:
                nested = []
            nested.append(_text(raw))
        elif num == 16 or num == 8:
            if not isinstance(raw, bytes):
                raise ProtoError("expected a length-delimited value_json")
            text = raw
        elif num == 1:
            key = _text(raw)
        elif num == 6 and isinstance(raw, bytes) and len(raw) == 8:
            typed = struct.unpack("<d", raw)[0]
        elif num == 5 and isinstance(raw, int):
            typed = float((raw >> 1) ^ -(raw & 1))
    return key, nested, text, typed


def decode_item(buf: bytes) -> tuple[tuple[str, ...], Any]:
    """A HistoryItem / SummaryItem / ConfigItem: (key path, value) with the value decoded.

    `key`=1 (legacy) or repeated `nested_key`=2 (wandb-core); `value_json`=16, or the typed
    fields of newer protos (`integer`=5 zigzag, `number`=6 double, `json`=8; booleans, text and
    none are not series and decode as None).
    """
    key, nested, text, typed = _item_parts(buf)
    value = json_value(text.decode("utf-8", "replace")) if text is not None else typed
    return (tuple(nested) if nested else (key,)), value


def json_value(text: str) -> Any:
    """A `value_json` string: a float for numbers (`NaN`, `Infinity` included), a dict for
    objects, None for anything else (strings, booleans, null, lists)."""
    try:
        return float(text)  # fast path; float() also reads NaN / Infinity / -Infinity
    except ValueError:
        pass
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return as_float(value)
    return None


def decode_history(buf: bytes) -> tuple[list[tuple[tuple[str, ...], Any]], int | None]:
    """HistoryRecord: (items, step.num or None when absent)."""
    items, step = [], None
    for num, raw in fields(buf):
        if num == 1:
            items.append(decode_item(raw))
        elif num == 2:
            step = 0
            for snum, sraw in fields(raw):
                if snum == 1 and isinstance(sraw, int):
                    step = sraw - (1 << 64) if sraw >= 1 << 63 else sraw
    return items, step


def decode_updates(buf: bytes) -> tuple[list[tuple[tuple[str, ...], bytes]],
                                         list[tuple[str, ...]]]:
    """ConfigRecord / SummaryRecord: (updates as (key path, value_json bytes), removed paths).

    The JSON is left undecoded: wandb-core repeats the whole summary every step, and only the
    final value of a few keys is ever needed.
    """
    updates, removed = [], []
    for num, raw in fields(buf):
        if (num == 1 or num == 2) and isinstance(raw, bytes):
            key, nested, text, _ = _item_parts(raw)
            path = tuple(nested) if nested else (key,)
            (updates.append((path, text or b"null")) if num == 1 else removed.append(path))
    return updates, removed


def json_any(text: bytes | str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def decode_message(buf: bytes, spec: Mapping[int, str]) -> dict[str, Any]:
    """The fields named in `spec` (number -> name): `name` a string, `#name` a varint,
    `~name` a sub-message (bytes), `name[]` a repeated string. A wrong wire type raises."""
    out: dict[str, Any] = {}
    for num, raw in fields(buf):
        name = spec.get(num)
        if name is None:
            continue
        if name[0] == "#":
            if not isinstance(raw, int):
                raise ProtoError(f"field {num} ({name[1:]}) should be a varint")
            out[name[1:]] = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif name[0] == "~":
            if not isinstance(raw, bytes):
                raise ProtoError(f"field {num} ({name[1:]}) should be a sub-message")
            out[name[1:]] = raw
        elif name.endswith("[]"):
            out.setdefault(name[:-2], []).append(_text(raw))
        else:
            out[name] = _text(raw)
    return out


RUN_FIELDS = {1: "run_id", 2: "entity", 3: "project", 4: "~config", 6: "run_group",
               7: "job_type", 8: "display_name", 10: "tags[]", 14: "#starting_step",
               18: "#resumed", 22: "#forked"}
METRIC_FIELDS = {1: "name", 2: "glob_name", 4: "step_metric"}
OUTPUT_FIELDS = {1: "#output_type", 3: "line"}
EXIT_FIELDS = {1: "#exit_code"}
# Record oneof field numbers (wandb_internal.proto)
R_HISTORY, R_SUMMARY, R_OUTPUT, R_CONFIG, R_METRIC, R_OUTPUT_RAW, R_RUN, R_EXIT = (
    2, 3, 4, 5, 12, 13, 17, 18)
WANTED = frozenset({R_HISTORY, R_SUMMARY, R_OUTPUT, R_CONFIG, R_METRIC, R_OUTPUT_RAW, R_RUN,
                     R_EXIT})


def record_body(payload: bytes) -> tuple[int, bytes] | None:
    """(Record field number, sub-message bytes) of the record types losslens reads, else None."""
    for num, raw in fields(payload):
        if num in WANTED and isinstance(raw, bytes):
            return num, raw
    return None
