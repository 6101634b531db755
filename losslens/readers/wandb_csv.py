"""W&B CSV exports: the UI line-plot export (runs side by side) and pandas history exports.

Two shapes come out of W&B as CSV:

- UI panel "Export → CSV": first column the x axis (`Step`, or the chosen x metric such as
  `trainer/global_step`), then per run `"<run name> - <metric>"` with `__MIN` / `__MAX`
  companions (bucket extremes; the plain column is the series). Runs have different lengths, so
  cells are blank where a run has no point. Each W&B run becomes its own RunRecords, named by
  its W&B run name (the text before the last " - ": metric names rarely hold " - ", run names may).
- `run.history()` / `scan_history()` frames saved with pandas `to_csv()`: columns `_step`,
  `_runtime`, `_timestamp` and one per metric, an unnamed index column first unless
  `index=False`, blank cells for "not logged" (and, indistinguishably, NaN).

Generic CSVs are left to the `csv` format: this module only claims headers W&B writes.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import head_text, read_text

#: x-axis columns a UI export is known to start with.
STEP_COLUMNS = ("Step", "_step", "trainer/global_step", "train/global_step", "global_step")
#: History bookkeeping columns (the step and time stamps), never series.
BOOKKEEPING = ("_step", "_runtime", "_timestamp")
_COMPANION = re.compile(r"__(MIN|MAX)$")
_NAN_SPELLINGS = frozenset({"nan", "-nan", "+nan", "nan(ind)", "-nan(ind)"})


def _header(head: bytes) -> list[str]:
    text = head_text(head).lstrip("\ufeff")
    first = text.split("\n", 1)[0].rstrip("\r")
    try:
        return next(csv.reader([first]))
    except (StopIteration, csv.Error):
        return []


def shape(header: list[str]) -> str | None:
    """"ui" for a UI panel export, "history" for a pandas history export, else None."""
    if len(header) < 2:
        return None
    rest = header[1:]
    if header[0].strip() and all(" - " in c for c in rest):
        if header[0] in STEP_COLUMNS or any(_COMPANION.search(c) for c in rest):
            return "ui"
    if "_step" in header or "_runtime" in header or "_timestamp" in header:
        return "history"
    return None


def sniff(name: str, head: bytes) -> float:
    header = _header(head)
    kind = shape(header)
    if kind == "ui":
        return 0.9
    if kind == "history":
        stamps = "_runtime" in header or "_timestamp" in header
        return 0.9 if "_step" in header and stamps else 0.7
    return 0.0


class _Table:
    """The parsed CSV: header, well-formed rows (as columns) and their 1-based line numbers."""

    def __init__(self, path: Path) -> None:
        text = read_text(path).lstrip("\ufeff")
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise ParseError(f"{path}: not a readable CSV file ({exc})") from None
        if not rows:
            raise ParseError(f"{path}: empty file, expected a W&B CSV export header")
        self.header = rows[0]
        width = len(self.header)
        good = [i for i, r in enumerate(rows[1:]) if len(r) == width]
        #: (line, reason, text) of rows with a wrong cell count (a truncated last line...)
        self.bad = [(i + 2, f"row has {len(r)} of {width} cells"
                     + (" (truncated last line)" if i == len(rows) - 2 else ""), ",".join(r))
                    for i, r in enumerate(rows[1:]) if len(r) != width and any(r)]
        body = [rows[i + 1] for i in good]
        self.lines = np.asarray(good, dtype=np.int64) + 2
        self.columns: list[tuple[str, ...]] = (list(zip(*body)) if body
                                               else [()] * width)

    def skip_bad(self, builder: RecordsBuilder) -> None:
        for line, reason, text in self.bad:
            builder.skip(line, reason, text)


def _numbers(cells: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(present, values, bad): blank cells are absent; `bad` marks cells that are not numbers."""
    import pandas as pd

    arr = np.asarray(cells, dtype=object)
    values = pd.to_numeric(pd.Series(arr, dtype=object), errors="coerce").to_numpy(np.float64)
    nan_at = np.flatnonzero(np.isnan(values))
    present = np.ones(len(arr), dtype=bool)
    bad = np.zeros(len(arr), dtype=bool)
    # only the NaN cells need a look: blank (absent), a NaN spelling, or not a number at all
    blank = arr[nan_at] == ""
    present[nan_at[blank]] = False
    for i in nan_at[~blank]:
        text = str(arr[i]).strip()
        if not text:
            present[i] = False
        elif text.lower() not in _NAN_SPELLINGS:
            bad[i] = True
    return present, values, bad


def _steps(cells, lines: np.ndarray, builder: RecordsBuilder, column: str,
           path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(usable row mask, int64 steps) from the x-axis column; rows without a step are skipped."""
    present, values, bad = _numbers(cells)
    ok = present & np.isfinite(values) & (np.abs(values) < 2.0 ** 63)  # an int64 step
    for i in np.flatnonzero(~ok):
        builder.skip(int(lines[i]), f"no {column} value", str(cells[i]))
    steps = np.zeros(len(values), dtype=np.int64)
    rounded = np.round(values[ok])
    if np.any(rounded != values[ok]):
        builder.warn(f"{path}: column {column!r} holds non-integer values; rounded to steps")
    steps[ok] = rounded.astype(np.int64)
    return ok, steps


def _add_column(builder: RecordsBuilder, tag: str, cells, usable: np.ndarray,
                steps: np.ndarray, lines: np.ndarray, wall: np.ndarray) -> None:
    present, values, bad = _numbers(cells)
    keep = usable & present & ~bad
    if not keep.any():
        return  # a text / media column, or a run with no point in this metric
    if bad.any():  # a numeric column with a few broken cells
        for i in np.flatnonzero(bad & usable):
            builder.skip(int(lines[i]), f"column {tag!r}: not a number", str(cells[i]))
    builder.add_array(tag, steps[keep], values[keep], wall[keep], lines[keep])


def _split(column: str) -> tuple[str, str]:
    run, _, metric = column.rpartition(" - ")
    return run, metric


def read_ui(path: Path, table: _Table) -> list[RunRecords]:
    """One RunRecords per W&B run of a UI panel export (file-level skips go to the first)."""
    header, lines = table.header, table.lines
    runs: dict[str, list[tuple[str, int]]] = {}
    for j, col in enumerate(header[1:], 1):
        if not _COMPANION.search(col):
            run, metric = _split(col)
            runs.setdefault(run, []).append((metric, j))
    builders = [RecordsBuilder() for _ in runs]
    if not builders:
        raise ParseError(f"{path}: line 1: no '<run> - <metric>' column besides __MIN/__MAX")
    table.skip_bad(builders[0])
    usable, steps = _steps(table.columns[0], lines, builders[0], header[0], path)
    wall = np.full(len(lines), np.nan)
    out = []
    for builder, (run, metrics) in zip(builders, runs.items()):
        for metric, j in metrics:
            _add_column(builder, metric, table.columns[j], usable, steps, lines, wall)
        meta = RunMeta(extra={"wandb.display_name": run, "wandb.export_x_axis": header[0]})
        out.append(builder.build(run, str(path), "wandb-csv", meta))
    return out


def read_history(path: Path, run: str, table: _Table) -> list[RunRecords]:
    """One run from a pandas `history().to_csv()` export."""
    header, lines, columns = table.header, table.lines, table.columns
    builder = RecordsBuilder()
    table.skip_bad(builder)
    if "_step" in header:
        usable, steps = _steps(columns[header.index("_step")], lines, builder, "_step", path)
    else:
        builder.warn(f"{path}: no _step column; steps are row numbers from 0")
        usable, steps = np.ones(len(lines), bool), np.arange(len(lines), dtype=np.int64)
    wall = np.full(len(lines), np.nan)
    if "_timestamp" in header:
        present, values, _ = _numbers(columns[header.index("_timestamp")])
        wall = np.where(present, values, np.nan)
    for j, col in enumerate(header):
        if j == 0 and col in ("", "Unnamed: 0"):  # pandas index
            continue
        if col in BOOKKEEPING or col.startswith("_wandb") or not col:
            continue
        _add_column(builder, col, columns[j], usable, steps, lines, wall)
    return [builder.build(run, str(path), "wandb-csv", RunMeta())]


def read(path: Path, run: str) -> list[RunRecords]:
    path = Path(path)
    table = _Table(path)
    kind = shape(table.header)
    if kind == "ui":
        return read_ui(path, table)
    if kind == "history":
        return read_history(path, run, table)
    raise ParseError(f"{path}: line 1: not a W&B CSV export header (expected 'Step' and "
                     f"'<run> - <metric>' columns, or '_step' / '_runtime' / '_timestamp')")
