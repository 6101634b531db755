"""Numeric columns of parsed tables (pyarrow), shared by the CSV and JSON-lines readers.

A column becomes a `Col` (float64 values, which cells hold a value, which held bad text); a
step column becomes int64 steps with a mask of usable rows; `add_wide` turns metric columns
into points and `report_rows` counts the rows and cells that could not be used. Python only
loops over columns and over the rare bad cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..records import RecordsBuilder
from .textutil import parse_float

#: `current_steps` is LLaMA-Factory's `trainer_log.jsonl` (its `total_steps` is the planned length)
STEP_NAMES = ("step", "_step", "global_step", "iteration", "iter", "it", "current_steps")
AXIS_NAMES = frozenset(STEP_NAMES) | {"epoch", "total_steps"}
WALL_NAMES = ("wall_time", "walltime", "_timestamp", "timestamp")
RUN_NAMES = ("run", "run_name", "run_id")
TAG_NAMES = ("tag", "metric", "key", "series", "name")
VALUE_NAMES = ("value", "val", "y")


@dataclass
class Col:
    """One numeric column: float64 values, which cells hold a value, which held bad text."""

    values: np.ndarray
    present: np.ndarray
    bad: np.ndarray | None = None


def line_numbers(data: bytes, first: int, rows: int | None = None) -> np.ndarray:
    """1-based numbers of the non-blank lines of `data`, from line `first` on.

    With `rows`: when the file has exactly that many lines from `first` on, none is blank
    and the numbers are a plain range (saves a scan of the whole file).
    """
    if rows is not None:
        count = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
        if count - first + 1 == rows:
            return np.arange(first, first + rows, dtype=np.int64)
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == 10)
    starts = np.r_[0, nl + 1]
    ends = np.r_[nl, arr.shape[0]]
    length = ends - starts
    safe = np.minimum(starts, max(arr.shape[0] - 1, 0))
    blank = (length == 0) | ((length == 1) & (arr[safe] == 13) if arr.shape[0] else True)
    numbers = np.flatnonzero(~blank) + 1
    return numbers[numbers >= first]


def valid_utf8(data: bytes) -> bytes:
    """The bytes, with invalid UTF-8 replaced by U+FFFD (pyarrow chokes on it in names)."""
    if data.isascii():  # (no decoded copy of the whole file just to check it)
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")


def numeric(col, min_share: float = 0.5) -> Col | None:
    """A pyarrow column as numbers, or None when it is not a numeric column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        present = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), bool)
        # safe=False: an integer past 2**53 (a FLOP or token counter, a time in ns) is the
        # nearest float, as numpy would make it, not an error
        values = np.asarray(col.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False),
                            np.float64)
        return Col(values, present)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    return _numeric_text(col, min_share)


def _numeric_text(col, min_share: float) -> Col | None:
    """A text column that holds numbers (some spelled oddly, some not numbers at all)."""
    import pandas as pd

    text = col.to_pandas()
    has_text = text.notna().to_numpy()
    values = np.array(pd.to_numeric(text, errors="coerce").to_numpy(np.float64, na_value=np.nan))
    unresolved = has_text & np.isnan(values)
    if unresolved.any():
        spelled = {}
        for s in pd.unique(text[unresolved]):
            try:
                spelled[s] = parse_float(str(s))
            except ValueError:
                pass
        if spelled:
            idx = np.flatnonzero(unresolved)
            mapped = text.iloc[idx].map(spelled).to_numpy(np.float64, na_value=np.nan)
            ok = text.iloc[idx].isin(list(spelled)).to_numpy()
            values[idx[ok]] = mapped[ok]
            unresolved[idx[ok]] = False
    good = has_text & ~unresolved
    if not good.any() or good.sum() < min_share * has_text.sum():
        return None
    return Col(values, good, unresolved if unresolved.any() else None)


def wall_column(col) -> np.ndarray | None:
    """Seconds since the epoch from a numeric or timestamp column."""
    import pyarrow as pa

    if pa.types.is_timestamp(col.type):
        secs = col.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.asarray(secs, np.float64) / 1e9
    num = numeric(col, 0.9)
    if num is None:
        return None
    return np.where(num.present, num.values, np.nan)


def step_array(col: Col) -> tuple[np.ndarray, np.ndarray]:
    """(int64 steps, which rows have a usable integer step)."""
    v = col.values
    ok = col.present & np.isfinite(v) & (np.abs(v) < 2.0 ** 63)  # an int64 step
    ok &= np.floor(np.where(ok, v, 0.0)) == np.where(ok, v, 0.0)
    return np.where(ok, v, 0).astype(np.int64), ok


def add_wide(builder: RecordsBuilder, metrics: dict[str, Col], step: np.ndarray,
              step_ok: np.ndarray, wall: np.ndarray, lines: np.ndarray,
              rows: np.ndarray | None = None) -> None:
    """One tag per metric column; `rows` restricts to a run's rows."""
    sel = step_ok if rows is None else step_ok & rows
    for name, col in metrics.items():
        m = col.present & sel
        if m.all():  # (the common case: the shared columns as they are, no copies)
            builder.add_array(name, step, col.values, wall, lines)
        elif m.any():
            builder.add_array(name, step[m], col.values[m], wall[m], lines[m])


def report_rows(builder: RecordsBuilder, metrics: dict[str, Col], step_ok: np.ndarray,
                 lines: np.ndarray, step_name: str | None,
                 header_again: np.ndarray | None = None) -> None:
    """Skip rows holding values but no usable step; rows with cells that were not numbers
    (one skip a row, naming its first such column and how many more; `header_again`: rows
    that repeat the header line, as a file appended to by a restarted job has)."""
    bad_cols = [(name, col.bad) for name, col in metrics.items() if col.bad is not None]
    if bad_cols:  # (one pass a column: no rows x columns array, no per-row column scan)
        count = np.zeros(step_ok.shape[0], np.int64)
        first = np.full(step_ok.shape[0], -1, np.int64)
        for j, (_, b) in enumerate(bad_cols):
            count += b
            first[b & (first < 0)] = j
        for i in np.flatnonzero(count):
            if header_again is not None and header_again[i]:
                builder.skip(int(lines[i]), "the header line again (a file appended to by a "
                             "restarted job?)")
                continue
            more = int(count[i]) - 1
            builder.skip(int(lines[i]), f"column {bad_cols[first[i]][0]!r}: not a number"
                         + (f" (and {more} more column{'s' * (more > 1)})" if more else ""))
    if metrics:
        has_value = np.logical_or.reduce([c.present for c in metrics.values()])
        for i in np.flatnonzero(has_value & ~step_ok):
            builder.skip(int(lines[i]), f"no integer {step_name or 'step'} in this row")
