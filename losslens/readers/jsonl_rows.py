"""JSON lines that are not all metric rows: run records around the rows, rows per split.

Two shapes of hand-written JSON-lines logs, read by the `jsonl` reader:

- **Run records around the rows.** A script writes its settings first and its results last,
  in the same file as the rows (`{"_meta": {"lr": 0.001, ...}}` ... `{"_summary":
  {"grok_step": 9300}}`; `{"event": "config", "lr": 1e-06, ...}` ... `{"event": "done"}`).
  Records with no step key before the first row that has one, or after the last (up to
  `RUN_RECORDS` at each end), that hold none of the number keys of the rows next to them,
  are the run's, not points: they are set aside, each kept whole (as compact JSON, cut at
  `KEEP_CHARS`) under `metadata.extra["run_records"]`, and a warning names their lines. A
  record with no step between rows, or one holding a row's key (`{"loss": 9}`: a row that
  lost its step), is still a skipped line, as before.
- **Rows per split.** A script that evaluates on train and test at the same step writes one
  row each, told apart by a text field: `{"step": 500, "split": "train", "loss": 0.0009}`,
  `{"step": 500, "split": "test", "loss": 5.22}`. A text field with a few short values
  (`PARTITION_MAX`) that tells apart rows sharing a step, where a metric key is logged under
  more than one of its values, partitions the rows: such a key becomes one tag per value
  (`train/loss`, `test/loss`), unless it holds the same number under every value at every
  step it shares (a learning rate: one tag, its own name). Keys logged under one value keep
  their names.
"""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import numpy as np

from ..records import RecordsBuilder
from .columns import Col

KEEP_CHARS = 2000  # characters of one set-aside record kept in the metadata
PARTITION_MAX = 8  # most distinct values a partitioning text field may have
_ROWS_SEEN = 8  # rows next to the run records whose keys are looked at
#: Leading or trailing run records looked at, at most (a config written one section a line);
#: the JSON-lines sniff looks as far (`jsonl.sniff_jsonl`).
RUN_RECORDS = 64
_NAMED = 8  # set-aside records named in the warning (the rest counted)
_LABEL = re.compile(r"[A-Za-z][\w\-]{0,23}")


def set_aside(body: bytes, has_step: Callable[[dict], bool]) -> tuple[bytes, list[tuple]]:
    """`body` with its leading and trailing run records blanked (line numbers kept), and
    those records as (line, record). A run record has no step and none of the number keys of
    the rows next to it (`{"loss": 9}` with no step is a row that lost its step: left to be
    skipped). Unchanged when no line has a step. Only the lines at the two ends are parsed."""
    found: dict[int, tuple[int, int, dict]] = {}  # start -> (end, line, record)
    for lines in (_lines_from_start(body), _lines_from_end(body)):
        ends: list[tuple[int, int, dict]] = []
        row_keys: set[str] = set()
        rows = 0
        for start, end in lines:
            raw = body[start:end].strip()
            if not raw:
                continue
            try:
                rec = json.loads(raw)
            except (ValueError, RecursionError):
                break
            if not isinstance(rec, dict):
                break
            if has_step(rec):
                row_keys |= _keys(rec)
                rows += 1
                if rows >= _ROWS_SEEN:
                    break
            elif rows or len(ends) >= RUN_RECORDS:
                break
            else:
                ends.append((start, end, rec))
        if rows:
            for start, end, rec in ends:
                if not _keys(rec) & row_keys:
                    found[start] = (end, body.count(b"\n", 0, start) + 1, rec)
    if not found:
        return body, []
    parts, pos = [], 0
    for start in sorted(found):
        parts.append(body[pos:start])
        pos = found[start][0]
    parts.append(body[pos:])
    return b"".join(parts), [(line, rec) for _, (_, line, rec) in sorted(found.items())]


def _lines_from_start(body: bytes):
    """(start, end) of the lines from the first on (end: the newline's index, or the end)."""
    pos = 0
    while pos < len(body):
        end = body.find(b"\n", pos)
        end = len(body) if end < 0 else end
        yield pos, end
        pos = end + 1


def _lines_from_end(body: bytes):
    """(start, end) of the lines from the last back."""
    end = len(body) - 1 if body.endswith(b"\n") else len(body)
    while end > 0:
        start = body.rfind(b"\n", 0, end) + 1
        yield start, end
        end = start - 1


def _keys(rec: dict, prefix: str = "") -> set[str]:
    """The record's number keys as the reader names its tags (`a/b` for nested objects)."""
    out: set[str] = set()
    for k, v in rec.items():
        if isinstance(v, dict):
            out |= _keys(v, f"{prefix}{k}/")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.add(f"{prefix}{k}")
    return out


def note_set_aside(builder: RecordsBuilder, path: Any, records: list[tuple]) -> dict[str, str]:
    """Warn about the set-aside records; their text for `metadata.extra`."""
    if not records:
        return {}
    names = [f"line {line} ({_what(rec)})" for line, rec in records[:_NAMED]]
    if len(records) > _NAMED:
        names.append(f"{len(records) - _NAMED} more")
    builder.warn(f"{path}: {', '.join(names)}: no step, a record of the run (settings, "
                 "summary), not points: kept in the metadata (`run_records`)")
    kept = [json.dumps(rec, separators=(",", ":"), default=str)[:KEEP_CHARS]
            for _, rec in records]
    return {"run_records": "\n".join(kept)}


def _what(rec: dict) -> str:
    keys = list(rec)
    if len(keys) == 1:
        return f"`{keys[0]}`"[:60]
    label = next((f"{k}={v}" for k, v in rec.items() if isinstance(v, str)), None)
    return f"`{label[:60]}`" if label else f"{len(keys)} keys"


def text_columns(columns: dict[str, Any]) -> dict[str, np.ndarray]:
    """The text columns (pyarrow) that could partition rows: 2 to `PARTITION_MAX` distinct
    values (counted in pyarrow, so a column of time stamps costs no Python loop), as numpy
    object arrays (None where absent)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for name, col in columns.items():
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        if 2 <= pc.count_distinct(col).as_py() <= PARTITION_MAX:
            out[name] = col.to_numpy(zero_copy_only=False)
    return out


def partition(texts: dict[str, np.ndarray], metrics: dict[str, Col], step: np.ndarray,
              step_ok: np.ndarray) -> tuple[str | None, dict[str, Col]]:
    """(the partitioning field, the metrics split by it), or (None, `metrics`) when no text
    field partitions the rows. `texts`: each text column's values (None where absent)."""
    for name, vals in sorted(texts.items()):
        split = _split(vals, metrics, step, step_ok)
        if split is not None:
            return name, split
    return None, metrics


def _split(vals: np.ndarray, metrics: dict[str, Col], step: np.ndarray,
           step_ok: np.ndarray) -> dict[str, Col] | None:
    has = step_ok & vals.astype(bool)  # (None and "" are no value)
    labels = list(dict.fromkeys(vals[has].tolist()))  # in order of first appearance
    if not 2 <= len(labels) <= PARTITION_MAX or not all(_LABEL.fullmatch(v) for v in labels):
        return None
    masks = {v: has & (vals == v) for v in labels}
    # it tells apart rows that share a step: under one value a step is (nearly) unique
    if np.unique(step[has]).shape[0] * 3 > int(has.sum()) * 2:
        return None
    if any(np.unique(step[m]).shape[0] * 10 < int(m.sum()) * 9 for m in masks.values()):
        return None
    out: dict[str, Col] = {}
    shared = False
    for key, col in metrics.items():
        under = [v for v in labels if (col.present & masks[v]).any()]
        if len(under) < 2 or _same_under(col, [masks[v] for v in under], step):
            first = masks[under[0]] if under else has
            keep = col.present & (first | ~has)
            out[key] = Col(col.values, keep, col.bad)
            continue
        shared = True
        for v in under:
            out[f"{v}/{key}"] = Col(col.values, col.present & masks[v], col.bad)
        rest = col.present & ~has
        if rest.any():  # rows without the field keep the key's own name
            out[key] = Col(col.values, rest, col.bad)
    return out if shared else None


def _same_under(col: Col, masks: list[np.ndarray], step: np.ndarray) -> bool:
    """Whether the column holds the same number under every value at each step they share."""
    ref: dict[int, float] = {}
    common = 0
    for m in masks:
        sel = np.flatnonzero(col.present & m)
        for s, x in zip(step[sel].tolist(), col.values[sel].tolist()):
            if s in ref:
                common += 1
                if not (ref[s] == x or ref[s] != ref[s] and x != x):
                    return False
            else:
                ref[s] = x
    return common > 0
