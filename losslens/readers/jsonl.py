"""Generic JSON lines (one object per line with a step key).

(Levanter's JSON tracker lines inside a log are the `levanter` reader's.) These files can
hold millions of rows, so they are parsed by
pyarrow (C++, multithreaded) when it can, else piece by piece and line by line. A missing or
null key means "not logged", except a null that can only be a NaN (what pandas and orjson
write for one; see `nulls_as_nan`); `NaN`, `Infinity` are values and kept. A line that does not parse
is skipped and counted with its line number (`order` is the 1-based line number). Records
with no step before the first row or after the last (a script's `{"_meta": {...}}` /
`{"event": "config", ...}` first, its summary last) are the run's, not points, and train and
test rows at one step told apart by a field (`"split": "train"`) give `train/loss` and
`test/loss`: both in `jsonl_rows`.

Bounded whatever the input: lines nested deeper than `MAX_DEPTH` never reach pyarrow (whose
reader recurses: 20k levels took a minute, 40k crashed the process) nor `json.loads`; they are
skipped and counted. A wide, sparse file (new keys all through it: pyarrow's lines x keys
table would be quadratic) is told from a sample of its lines and read line by line, with a
warning (`wide_sparse`).
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..records import RecordsBuilder, RunMeta, RunRecords
from .columns import (AXIS_NAMES, STEP_NAMES, WALL_NAMES, Col, add_wide, line_numbers,
                      numeric, report_rows, step_array, valid_utf8)
from .jsonl_rows import RUN_RECORDS, note_set_aside, partition, set_aside, text_columns
from .textutil import as_float, head_text, read_bytes, split_truncated

_LEVANTER = '"tracker": "json_logger"'
_JSON_PIECE = 4 << 20  # bytes parsed at once when the whole file defeats pyarrow
_SAMPLE_LINES = 256  # lines parsed to tell a wide, sparse file (`wide_sparse`)
_SAMPLE_LINE_BYTES = 1 << 16  # longest sampled line
#: Deepest nesting of `[` / `{` a line may have (metric logs nest a few levels).
MAX_DEPTH = 64
_SCAN = 16 << 20  # bytes scanned for deep lines at once (bounded scratch memory)
_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"?')  # (an unterminated string: to the end)
_STEP_KEY = re.compile('[{,]\\s*"(?:' + "|".join(STEP_NAMES) + ')"\\s*:\\s*-?\\d')


def sniff_jsonl(name: str, head: bytes) -> float:
    text = head_text(head)
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()][:5]
    first = lines[0] if lines else ""
    if first.startswith("{") and "\n" not in text.lstrip() and len(head) >= (1 << 20):
        # one line longer than the head (10^5 keys in a record): it cannot parse here, so a
        # step key among its top-level keys decides
        return 0.3 if _STEP_KEY.search(first) else 0.0
    obj = _json_or_none(first)
    if isinstance(obj, dict) and any(k in obj for k in STEP_NAMES):
        return 0.3
    # a run record first (`{"_meta": {...}}`): a row with a step next; a first line cut or
    # damaged (a log kept by `tail -c`, a bit flip, a record nested past the parser's depth):
    # two rows with a step next
    need = 1 if isinstance(obj, dict) else 2
    rows = sum(1 for ln in lines[1:] if _is_row(_json_or_none(ln)))
    if rows >= need:
        return 0.3
    # more run records first (a config, its metadata, one record per section): a row after
    # nothing but records, within the head and `RUN_RECORDS` lines
    return 0.3 if isinstance(obj, dict) and _row_after_records(text) else 0.0


def _row_after_records(text: str) -> bool:
    """Whether the head `text` holds JSON objects with no step, then a row, in its first
    `RUN_RECORDS` + 1 non-blank lines."""
    seen = 0
    for ln in text.split("\n"):
        ln = ln.strip()
        if not ln:
            continue
        rec = _json_or_none(ln)
        if not isinstance(rec, dict):
            return False
        if _is_row(rec):
            return True
        seen += 1
        if seen > RUN_RECORDS:
            return False
    return False


def _json_or_none(line: str) -> Any:
    """The line's JSON value, None when it does not parse."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None


def _is_row(rec: Any) -> bool:
    """A record with a step, or an integer `epoch` (a per-epoch log: DETR's `log.txt`)."""
    return isinstance(rec, dict) and (any(k in rec for k in STEP_NAMES) or _int_epoch(rec))


def _int_epoch(rec: dict) -> bool:
    v = rec.get("epoch")
    return isinstance(v, int) and not isinstance(v, bool)


#: The step keys of a per-epoch log, whose rows have an integer `epoch` and no step key
EPOCH_STEP = STEP_NAMES + ("epoch",)
_EPOCH_SNIFF_LINES = 64


def step_keys(body: bytes) -> tuple[str, ...]:
    """`EPOCH_STEP` when the first records have no step key but an integer `epoch` (DETR's
    `log.txt`, one record per epoch), else `STEP_NAMES`."""
    seen = 0
    for raw in body[:1 << 20].split(b"\n"):
        rec = _json_or_none(raw.strip().decode("utf-8", "replace")) if raw.strip() else None
        if not isinstance(rec, dict):
            continue
        if any(k in rec for k in STEP_NAMES):
            return STEP_NAMES
        if _int_epoch(rec):
            return EPOCH_STEP
        seen += 1
        if seen >= _EPOCH_SNIFF_LINES:
            break
    return STEP_NAMES


def read_jsonl(path: Path, run: str) -> list[RunRecords]:
    """One JSON object per line with a step key (a Levanter log named as JSON lines: its
    tracker records, through the `levanter` reader)."""
    data = valid_utf8(read_bytes(path)).removeprefix(b"\xef\xbb\xbf")  # (a UTF-8 BOM)
    if _LEVANTER.encode() in data[:1 << 20]:
        from .levanter import read as read_levanter

        return read_levanter(path, run)
    builder = RecordsBuilder()
    body = _drop_deep_lines(_cut_json_tail(data, builder), builder)
    keys = step_keys(body)
    body, records = set_aside(body, lambda rec: _line_step(rec, keys) is not None)
    kept = note_set_aside(builder, path, records)
    wide = wide_sparse(body)
    if wide is not None:  # pyarrow's table would be (lines x keys), nearly all holes
        builder.warn(f"{path}: {wide[0]:,} distinct keys in {wide[1]} sampled lines, new keys "
                     "all through the file (a wide, sparse file): read line by line")
        _slow_json(body, builder, nulls=False, step_names=keys)
        del data, body
        return [builder.build(run, str(path), "jsonl", RunMeta(extra=kept))]
    table = _fast_json(body)
    meta = llama_factory_meta(body)
    lf = meta.framework == "llama-factory"
    slots = LLAMA_FACTORY_SLOTS if lf else frozenset()
    axis = LLAMA_FACTORY_AXIS if lf else AXIS_NAMES
    if table is not None:
        field = _table_json(table, line_numbers(body, 1, table.num_rows), builder, path, slots,
                            axis=axis, step_names=keys)
        if field is not None:  # (train and test rows at one step: `value/key` tags)
            kept["rows_split_by"] = field
    else:  # some line defeats pyarrow: retry piece by piece
        start, line, nulls = 0, 1, _Keys()
        while start < len(body):
            stop = body.find(b"\n", start + _JSON_PIECE) + 1 or len(body)
            piece = body[start:stop]
            _read_json_chunk(piece, line, builder, path, slots, nulls, axis, keys)
            line += piece.count(b"\n")
            start = stop
        nulls.warn(builder)
    del data, body, table  # the text and pyarrow's table go before the columns are built
    if kept:
        meta = replace(meta, extra={**meta.extra, **kept})
    return [builder.build(run, str(path), "jsonl", meta)]


class _Keys:
    """Across the pieces of a file read piece by piece: the keys that were null wherever a
    piece had them, and those that had a value somewhere, so the "every value is null"
    warning is given once, for the whole file, as the one-table path gives it."""

    def __init__(self) -> None:
        self.null_only: set[str] = set()
        self.valued: set[str] = set()

    def warn(self, builder: RecordsBuilder) -> None:
        for name in sorted(self.null_only - self.valued):
            builder.warn(_ALL_NULL.format(name=name))


_ALL_NULL = "{name!r}: every value is null (NaN or never logged?); not read"

#: what LLaMA-Factory's LogCallback writes as null in every log that has no such value
LLAMA_FACTORY_SLOTS = frozenset({"loss", "eval_loss", "predict_loss", "reward", "accuracy", "lr",
                                 "learning_rate"})
#: LLaMA-Factory's `epoch` (fractional, 1/N per step) is a series: the epoch-staircase rule
#: tells a new epoch's drop from grokking with it; its other axis keys stay axes
LLAMA_FACTORY_AXIS = AXIS_NAMES - {"epoch"}
_TOTAL_STEPS = re.compile(rb'"current_steps"\s*:\s*\d+\s*,\s*"total_steps"\s*:\s*(\d{1,18})\b')


def llama_factory_meta(body: bytes) -> RunMeta:
    """LLaMA-Factory's `trainer_log.jsonl` (`{"current_steps": 5, "total_steps": 8712,
    "loss": ...}`, written by its LogCallback): the planned length from the last line's
    `total_steps` (so a run that stopped early says so), else nothing."""
    tail = body[-4096:]
    found = _TOTAL_STEPS.findall(tail) or _TOTAL_STEPS.findall(body[:4096])
    if not found:
        return RunMeta()
    return RunMeta(train_iters=int(found[-1]), framework="llama-factory")


def wide_sparse(body: bytes, sample: int = _SAMPLE_LINES) -> tuple[int, int] | None:
    """(distinct keys, lines) of a sample when the file is wide and sparse, else None.

    pyarrow builds a table of every line by every key: for a file that brings new keys all
    through it (a new metric name on each line) that is quadratic (20,000 such lines took
    four minutes). `sample` lines spread evenly over the file (each up to 64 KiB) are parsed;
    the file is wide and sparse when every quarter of the sample but the first brings at
    least 16 keys not seen before it and the sample's keys outnumber a line's 16 times
    (a log whose evaluation lines add a few hundred keys brings them in one quarter).
    """
    n, seen, starts = len(body), set(), set()
    new_by_quarter, keys_per_line, parsed = [0, 0, 0, 0], 0, 0
    for i in range(sample):
        pos = n * i // sample
        start = body.rfind(b"\n", 0, pos) + 1 if pos else 0
        end = body.find(b"\n", start, start + _SAMPLE_LINE_BYTES)
        if end < 0 or start in starts:
            continue
        starts.add(start)
        try:
            rec = json.loads(body[start:end])
        except (ValueError, RecursionError):
            continue
        if not isinstance(rec, dict):
            continue
        keys = {k for k, _ in _flat_items(rec)}
        parsed += 1
        keys_per_line += len(keys)
        new = keys - seen
        seen |= new
        new_by_quarter[i * 4 // sample] += len(new)
    if parsed < 32 or min(new_by_quarter[1:]) < 16 or len(seen) <= 16 * keys_per_line / parsed:
        return None
    return len(seen), parsed


def deep_lines(body: bytes, limit: int = MAX_DEPTH) -> list[tuple[int, int]]:
    """(start, end) byte spans of the lines of `body` whose brackets nest deeper than `limit`.

    Linear and in bounded memory: a line can only be that deep with more than `limit`
    opening brackets, so only such lines (counted with numpy, `_SCAN` bytes at a time) are
    measured, with their strings taken out first.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return []
    out: list[tuple[int, int]] = []
    start = 0
    while start < len(body):
        stop = body.find(b"\n", start + _SCAN) + 1 or len(body)
        arr = np.frombuffer(body, np.uint8, stop - start, start)
        nl = np.flatnonzero(arr == 10)
        starts = np.r_[0, nl + 1]
        starts = starts[starts < arr.shape[0]]
        opens = np.add.reduceat((arr == 91) | (arr == 123), starts, dtype=np.int64) \
            if starts.shape[0] else np.empty(0, np.int64)
        for i in np.flatnonzero(opens > limit):
            a = start + int(starts[i])
            b = body.find(b"\n", a, stop)
            b = stop if b < 0 else b
            if _depth(body[a:b]) > limit:
                out.append((a, b))
        start = stop
    return out


def _depth(line: bytes) -> int:
    """The deepest bracket nesting of one line, brackets inside strings not counted."""
    bare = np.frombuffer(_STRING.sub(b'""', line), np.uint8)
    step = (bare == 91).astype(np.int32) + (bare == 123) - (bare == 93) - (bare == 125)
    return int(np.cumsum(step).max(initial=0))


_QUOTED = re.compile(rb'"(?:[^"\\\n]|\\.)*"?|\'[^\'\n]*\'?')


def flow_depth(text: bytes) -> int:
    """The deepest `[` / `{` nesting of a JSON or YAML text (quoted strings not counted): a
    bound to check before handing the text to a recursive parser."""
    if text.count(b"[") + text.count(b"{") <= 64:
        return text.count(b"[") + text.count(b"{")
    bare = np.frombuffer(_QUOTED.sub(b'""', text), np.uint8)
    step = (bare == 91).astype(np.int32) + (bare == 123) - (bare == 93) - (bare == 125)
    return int(np.cumsum(step).max(initial=0))


def _drop_deep_lines(body: bytes, builder: RecordsBuilder) -> bytes:
    """The body with lines nested deeper than `MAX_DEPTH` blanked, each skipped and counted
    (pyarrow's JSON reader recurses: such a line can take minutes or crash the process)."""
    spans = deep_lines(body)
    if not spans:
        return body
    parts, pos, line = [], 0, 1
    for a, b in spans:
        line += body.count(b"\n", pos, a)
        builder.skip(line, f"nested deeper than {MAX_DEPTH} levels",
                     body[a:a + 200].decode("utf-8", "replace"))
        parts.append(body[pos:a])
        pos = b
    parts.append(body[pos:])
    return b"".join(parts)


def _read_json_chunk(body: bytes, first_line: int, builder: RecordsBuilder, path: Path,
                     slots: frozenset = frozenset(), keys: _Keys | None = None,
                     axis: frozenset = AXIS_NAMES,
                     step_names: tuple[str, ...] = STEP_NAMES) -> None:
    """pyarrow on the whole chunk; when a line defeats it, halve the chunk and retry, so only
    small pieces around bad lines are parsed line by line in Python. `slots`, `keys` and
    `axis` as in `_table_json` (the pieces' null-only keys are gathered in `keys`)."""
    keys = _Keys() if keys is None else keys
    table = _fast_json(body)
    if table is not None:
        lines = line_numbers(body, 1, table.num_rows) + (first_line - 1)
        _table_json(table, lines, builder, path, slots, keys, axis, step_names)
        return
    mid = body.find(b"\n", len(body) // 2) + 1
    if len(body) < (1 << 16) or mid <= 0 or mid >= len(body):
        _slow_json(body, builder, first_line, slots=slots, keys=keys, axis=axis,
                   step_names=step_names)
        return
    _read_json_chunk(body[:mid], first_line, builder, path, slots, keys, axis, step_names)
    _read_json_chunk(body[mid:], first_line + body.count(b"\n", 0, mid), builder, path, slots,
                     keys, axis, step_names)


def _cut_json_tail(data: bytes, builder: RecordsBuilder) -> bytes:
    """The data without an unterminated last line that does not parse (a cut write)."""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail)
        return data + b"\n"
    except (ValueError, RecursionError):
        if tail.strip():
            builder.skip(data.count(b"\n", 0, cut) + 1, "truncated last line",
                         tail.decode("utf-8", "replace"))
        return data[:cut]


def _fast_json(body: bytes):
    """pyarrow's reader: the whole file as a table, or None when any line defeats it."""
    import pyarrow as pa
    import pyarrow.json as pjson

    if not body or body.isspace():
        return None
    try:
        # the system allocator: pyarrow's default pool keeps the parser's scratch memory
        # (~1.4x the file) mapped after the table is built
        return pjson.read_json(pa.py_buffer(body),
                               parse_options=pjson.ParseOptions(newlines_in_values=False),
                               memory_pool=pa.system_memory_pool())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def _flatten(table) -> dict[str, Any]:
    """Leaf columns of a (nested) pyarrow table, nested names joined with '/'."""
    import pyarrow as pa

    out: dict[str, Any] = {}
    stack = [(name, table.column(i)) for i, name in enumerate(table.column_names)]
    while stack:
        name, col = stack.pop(0)
        if pa.types.is_struct(col.type):
            # StructArray.flatten merges the parent's nulls into each child
            parts = [chunk.flatten() for chunk in col.chunks]
            for j in range(col.type.num_fields):
                child = pa.chunked_array([p[j] for p in parts], col.type.field(j).type)
                stack.append((f"{name}/{col.type.field(j).name}", child))
        else:
            out[name] = col
    return out


def _table_json(table, lines: np.ndarray, builder: RecordsBuilder, path: Path,
                slots: frozenset = frozenset(), keys: _Keys | None = None,
                axis: frozenset = AXIS_NAMES,
                step_names: tuple[str, ...] = STEP_NAMES) -> str | None:
    """`slots`: keys a writer always writes, null when it has no value (no warning when
    every value is null). `keys`: the table is one piece of a file; its null-only keys are
    gathered there for one warning at the end instead of warned about here. `axis`: the
    keys that are an axis, not a series. Returns the text field that split the rows
    (`jsonl_rows.partition`), if one did."""
    import pyarrow as pa

    if lines.shape[0] != table.num_rows:
        lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    flat = _flatten(table)
    nums = {n: numeric(c) for n, c in flat.items()
               if pa.types.is_integer(c.type) or pa.types.is_floating(c.type)}
    n = table.num_rows
    step, step_ok = np.zeros(n, np.int64), np.zeros(n, bool)
    for cand in reversed(step_names):  # the first name present in a row wins
        col = nums.get(cand)
        if col is not None:
            s, ok = step_array(col)
            step, step_ok = np.where(ok, s, step), ok | step_ok
    wall = np.full(n, np.nan)
    for cand in reversed(WALL_NAMES):
        col = nums.get(cand)
        if col is not None:
            wall = np.where(col.present, col.values, wall)
    metrics = {k: v for k, v in nums.items()
               if k not in axis and k not in WALL_NAMES and v is not None}
    field, metrics = partition(text_columns(flat), metrics, step, step_ok)
    if keys is not None:
        keys.valued.update(n for n, c in flat.items() if not pa.types.is_null(c.type))
    if null_count(flat):
        nulls_as_nan(metrics, step, step_ok, builder)
        for name, col in flat.items():
            if pa.types.is_null(col.type) and name not in axis and name not in WALL_NAMES \
                    and name not in slots:
                if keys is not None:
                    keys.null_only.add(name)
                else:
                    builder.warn(_ALL_NULL.format(name=name))
    add_wide(builder, metrics, step, step_ok, wall, lines)
    report_rows(builder, metrics, step_ok, lines, "step")
    return field


def null_count(flat: dict[str, Any]) -> int:
    """How many cells of the (flattened) table are null or missing."""
    return sum(int(c.null_count) for c in flat.values())


def nulls_as_nan(metrics: dict[str, Col], step: np.ndarray, step_ok: np.ndarray,
                 builder: RecordsBuilder) -> None:
    """JSON null in a numeric column as NaN where it can only mean NaN (in place).

    pandas and orjson write NaN as null, and a null (or missing) key also means "not logged
    here" in a wide file (an eval row carries no train loss). A null of column C at a row is
    a NaN point when C was logged on every row from its first value up to its first null (at
    least three values: C is logged each line) and the row is one of C's lines: every
    column that accompanies each of C's values (its companions) has a value there, or, when
    C has no companions, no other column has. Other nulls stay "not logged" (a row without
    any companion is another group's line); when more of the undecided ones follow C's last
    value than ever stood together before it (the run's end unlike its middle), a warning
    says so.
    """
    n = step_ok.shape[0]
    idx = np.arange(n)
    for name, col in metrics.items():
        logged = col.present & step_ok
        if not logged.any():
            continue
        first, last = int(np.argmax(logged)), n - 1 - int(np.argmax(logged[::-1]))
        null = step_ok & ~col.present & (idx > first)
        if not null.any():
            continue
        first_null = int(np.argmax(null))
        dense = bool(logged[first:first_null][step_ok[first:first_null]].all()
                     and logged[first:first_null].sum() >= 3)
        if not dense:
            continue
        others = [c for k, c in metrics.items() if k != name]
        companions = [c for c in others if c.present[logged].all()]
        if companions:
            mine = np.logical_and.reduce([c.present for c in companions])
        elif others:
            mine = ~np.logical_or.reduce([c.present for c in others])
        else:
            mine = np.ones(n, bool)
        nan = null & mine
        if nan.any():
            col.values = np.where(nan, np.nan, col.values)
            col.present = col.present | nan
        left = null & ~mine
        if companions:  # a row without any companion is another group's line, clearly
            left &= np.logical_or.reduce([c.present for c in companions])
        unread = left & (idx > last)
        inner = _longest_run(left[first:last + 1])
        if unread.sum() > max(inner, 1):  # the end unlike the middle: say so
            a, b = int(step[unread][0]), int(step[unread][-1])
            builder.warn(f"{name!r}: {int(unread.sum())} null value(s) after its last number "
                         f"(steps {a}-{b}) read as not logged; JSON null stands for both NaN "
                         "and a value not logged")


def _longest_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _flat_items(obj: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, dict):
            yield from _flat_items(value, f"{prefix}{key}/")
        else:
            yield prefix + str(key), value


def _line_step(rec: dict, step_names: tuple[str, ...] = STEP_NAMES) -> int | None:
    for cand in step_names:
        v = rec.get(cand)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v \
                and abs(v) < 2 ** 63 and int(v) == v:
            return int(v)
    return None


def _slow_json(body: bytes, builder: RecordsBuilder, first_line: int = 1,
               nulls: bool = True, slots: frozenset = frozenset(),
               keys: _Keys | None = None, axis: frozenset = AXIS_NAMES,
               step_names: tuple[str, ...] = STEP_NAMES) -> None:
    """Line by line (json.loads accepts NaN/Infinity); bad lines are skipped and counted.
    `nulls=False` (a wide, sparse file, where telling a NaN from "not logged" would cost
    lines x keys) reads every null as not logged and says so. With `keys`, the keys that are
    null on every line that has them (and not in `slots`) are gathered there, as
    `_table_json` gathers them."""
    cols: dict[str, tuple[list, list, list, list]] = {}
    texts: list[tuple[str, int, str]] = []  # string values: bad numbers if the key is a metric
    rows: list[tuple[int, int]] = []  # (line, step) of the lines with a step
    null_seen = False
    for lineno, raw in enumerate(body.split(b"\n"), first_line):
        raw = raw.strip()
        if not raw:
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):
            builder.skip(lineno, "invalid JSON line", raw.decode("utf-8", "replace"))
            continue
        if not isinstance(rec, dict):
            builder.skip(lineno, "not a JSON object", raw.decode("utf-8", "replace"))
            continue
        step = _line_step(rec, step_names)
        _add_record(builder, cols, rec, lineno, step, skip_keys=axis, texts=texts)
        if keys is not None:
            for k, v in _flat_items(rec):
                if v is not None:
                    keys.valued.add(k)
                elif k not in slots and k not in axis and k not in WALL_NAMES:
                    keys.null_only.add(k)
        if step is not None:
            rows.append((lineno, step))
            null_seen = null_seen or any(v is None for _, v in _flat_items(rec))
    for key, lineno, text in texts:
        if key in cols:
            builder.skip(lineno, f"{key}: not a number", text)
    if null_seen and nulls:  # the same reading of JSON null as the table path's
        _slow_nulls(cols, rows, builder)
    elif null_seen:
        builder.warn("JSON null values read as not logged (in a file this sparse a null "
                     "cannot be told from a NaN)")
    for tag, (steps, values, walls, orders) in cols.items():
        builder.add_array(tag, steps, values, walls, orders)


def _slow_nulls(cols: dict[str, tuple[list, list, list, list]], rows: list[tuple[int, int]],
                builder: RecordsBuilder) -> None:
    """`nulls_as_nan` over the line-by-line columns (rows: (line, step) of lines with a
    step); the NaN points it adds go into `cols`."""
    at = {line: i for i, (line, _) in enumerate(rows)}
    n = len(rows)
    step = np.array([s for _, s in rows], np.int64)
    metrics: dict[str, Col] = {}
    for tag, (_, values, _, orders) in cols.items():
        present, vals = np.zeros(n, bool), np.full(n, np.nan)
        where = np.array([at[o] for o in orders], np.int64)
        present[where], vals[where] = True, values
        metrics[tag] = Col(vals, present)
    before = {tag: col.present.copy() for tag, col in metrics.items()}
    nulls_as_nan(metrics, step, np.ones(n, bool), builder)
    for tag, col in metrics.items():
        for i in np.flatnonzero(col.present & ~before[tag]).tolist():
            c = cols[tag]
            c[0].append(int(step[i]))
            c[1].append(float("nan"))
            c[2].append(float("nan"))
            c[3].append(rows[i][0])


def _add_record(builder: RecordsBuilder, cols: dict, rec: dict, lineno: int, step: int | None,
                wall: float | None = None, skip_keys: frozenset = AXIS_NAMES,
                texts: list | None = None) -> None:
    if wall is None:
        wall = float("nan")
        for k in WALL_NAMES:
            if k in rec and isinstance(rec[k], (int, float)):
                wall = as_float(rec[k])
                break
    items = []
    for k, v in _flat_items(rec):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if k not in skip_keys and k not in WALL_NAMES:
                items.append((k, v))
        elif isinstance(v, str) and texts is not None:
            texts.append((k, lineno, v))
    if step is None:
        if items:
            given = next((rec[k] for k in STEP_NAMES if k in rec), None)
            builder.skip(lineno, "no step key in this line" if given is None else
                         f"step {str(given)[:40]} is not an integer step (64-bit)")
        return
    for k, v in items:
        c = cols.get(k)
        if c is None:
            c = cols[k] = ([], [], [], [])
        c[0].append(step)
        c[1].append(as_float(v))
        c[2].append(wall)
        c[3].append(lineno)
