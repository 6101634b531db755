"""Tables of metrics: Lightning `metrics.csv` and generic CSV (long or wide).

Lightning's CSVLogger writes the first. JSON lines are read by `jsonl`. These files can
hold millions of rows, so they are parsed by pyarrow (C++, multithreaded) and turned into points
column by column with numpy; Python only loops over columns and over the rare bad lines.

Cells: an empty CSV cell (or a missing / null JSON key) means "not logged"; `nan`, `inf`,
`-Infinity` ... are values and kept. A CSV row with the wrong number of cells and a JSON line that
does not parse are skipped and counted with their line number. `order` is the 1-based line
number of the row (the header is line 1 of a CSV).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .columns import (AXIS_NAMES, STEP_NAMES, WALL_NAMES, Col, add_wide, line_numbers,
                      numeric, report_rows, step_array, valid_utf8, wall_column)
from .jsonl_rows import partition, text_columns
from .textutil import head_text, parse_float, read_bytes

RUN_NAMES = ("run", "run_name", "run_id")
TAG_NAMES = ("tag", "metric", "key", "series", "name")
VALUE_NAMES = ("value", "val", "y")
#: Columns a CSV may have (a header of 400,000 short names took 1.3 GB for three rows).
MAX_COLUMNS = 25_000
_INDEX_COL = re.compile(r"^(|Unnamed: \d+)$")


# ----------------------------------------------------------------------------- sniffing

def _header_cells(head: bytes) -> tuple[list[str], list[str], str]:
    """The first two CSV rows of `head` and the delimiter (comma, or tab for TSV)."""
    import csv

    lines = head_text(head).splitlines()[:2]
    if not lines:
        return [], [], ","
    delim = "\t" if "\t" in lines[0] and "," not in lines[0] else ","
    try:
        rows = list(csv.reader(lines, delimiter=delim))
    except csv.Error:  # a cell over csv's field limit (128 KiB): not a table header
        return [], [], delim
    return rows[0], rows[1] if len(rows) > 1 else [], delim


def sniff_lightning_csv(name: str, head: bytes) -> float:
    if name != "metrics.csv":
        return 0.0
    header, _, _ = _header_cells(head)
    return 0.8 if "step" in header else 0.0


def sniff_csv(name: str, head: bytes) -> float:
    header, row, _ = _header_cells(head)
    if len(header) < 2 or head[:1] in (b"{", b"["):
        return 0.0
    low = [c.strip().lower() for c in header]
    structured = any(c in AXIS_NAMES for c in low) or (
        any(c in TAG_NAMES for c in low) and any(c in VALUE_NAMES for c in low))
    numbers = len(row) == len(header) and any(_is_number(c) for c in row)
    if name.lower().endswith((".csv", ".tsv")):
        return 0.25 if structured or numbers else 0.1
    return 0.2 if structured and numbers else 0.0


def _is_number(text: str) -> bool:
    try:
        parse_float(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- CSV loading

def _load_csv(path: Path, builder: RecordsBuilder, tail_truncated: bool = False):
    """(pyarrow Table with unique column names, 1-based line number of each row)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    data = read_bytes(path)  # (bare `\r` line ends made `\n`)
    if tail_truncated and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if cut:  # a CSVLogger row always ends with \r\n: this one was cut mid-write
            builder.skip(data.count(b"\n", 0, cut) + 1, "truncated last line",
                         data[cut:].decode("utf-8", "replace"))
            data = data[:cut]
    data = valid_utf8(data)  # pyarrow cannot report a ragged row holding bad bytes
    _, _, delim = _header_cells(data[:65536])
    end = data.find(b"\n")
    columns = (data[:end] if end >= 0 else data).count(delim.encode()) + 1
    if columns > MAX_COLUMNS:  # each column costs memory and time however few the rows
        raise ParseError(f"{path}: line 1: {columns:,} columns; losslens reads tables of at "
                         f"most {MAX_COLUMNS:,}")
    invalid: list[tuple[int, int, str]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.expected_columns, row.actual_columns, row.text))
        return "skip"

    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            # a block must hold the longest row (a header of 70,000 metric names is 2 MB;
            # with the default 1 MB pyarrow said "Empty CSV file or block")
            read_options=pcsv.ReadOptions(block_size=_block_size(data),
                                          # thousands of columns: a task each costs more
                                          # than it saves (16k columns: 3.8 s -> 1.8 s)
                                          use_threads=columns <= 2000),
            parse_options=pcsv.ParseOptions(delimiter=delim, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
                check_utf8=False),
            memory_pool=pa.system_memory_pool())  # (as in _fast_json)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParseError(f"{path}: not a readable CSV table ({reason})") from None
    table = table.rename_columns(_unique(table.column_names, builder, path))
    lines = line_numbers(data, 2, None if invalid else table.num_rows)
    if invalid:
        lines = _skip_invalid(data, lines, invalid, builder)
    if lines.shape[0] != table.num_rows:  # quoted newlines: line numbers unknown, keep row order
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    return table, lines.astype(np.int64)


def _block_size(data: bytes) -> int:
    """pyarrow's CSV block size: 1 MB, or more than the longest line."""
    if len(data) <= 1 << 20:
        return 1 << 20
    nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    longest = int(np.diff(nl, prepend=-1, append=len(data)).max()) if nl.shape[0] else len(data)
    return min(max(1 << 20, min(longest + 1024, len(data) + 1)), (1 << 31) - 1)


def _unique(names: list[str], builder: RecordsBuilder, path: Path) -> list[str]:
    """Column names without the padding around them, duplicates numbered (and warned)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        # a header padded for the eye (YOLOv8's results.csv: `           val/box_loss`)
        name = name.strip() or name
        if name in seen:
            seen[name] += 1
            new = f"{name}.{seen[name]}"
            builder.warn(f"{path}: duplicate column {name!r} read as {new!r}")
            out.append(new)
        else:
            seen[name] = 0
            out.append(name)
    return out


def _skip_invalid(data: bytes, lines: np.ndarray, invalid: list, builder: RecordsBuilder
                  ) -> np.ndarray:
    """Count the ragged rows with their line numbers; the row lines without them."""
    texts = {text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
             for _, _, text in invalid}
    where: dict[bytes, list[int]] = {}
    for i, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if raw in texts and i > 1:
            where.setdefault(raw, []).append(i)
    bad_lines = []
    for expected, actual, text in invalid:
        key = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
        found = where.get(key) or [0]
        line = found.pop(0) if len(found) > 1 or found[0] else 0
        bad_lines.append(line)
        builder.skip(line, f"expected {expected} cells, found {actual}",
                     key.decode("utf-8", "replace"))
    return lines[~np.isin(lines, bad_lines)]


def _pick_step(cols: dict[str, Any], names: list[str]) -> str | None:
    """The step column: a known name, else the first strictly increasing integer column,
    else `epoch`."""
    lower = {n.lower(): n for n in reversed(names)}
    for cand in STEP_NAMES:
        if cand in lower and _integral(cols.get(lower[cand])):
            return lower[cand]
    for n in names:
        c = cols.get(n)
        if n.lower() != "epoch" and _integral(c) and c.present.all() and c.values.shape[0] > 1 \
                and bool(np.all(np.diff(c.values) > 0)):
            return n
    if "epoch" in lower and _integral(cols.get(lower["epoch"])):
        return lower["epoch"]
    return None


def _integral(col: Col | None) -> bool:
    if col is None or not col.present.any():
        return False
    v = col.values[col.present]
    return bool(np.all(np.isfinite(v) & (np.floor(v) == v)))


# ----------------------------------------------------------------------------- Lightning

def read_lightning_csv(path: Path, run: str) -> list[RunRecords]:
    """PyTorch Lightning CSVLogger `metrics.csv`: sparse rows keyed by `step`."""
    builder = RecordsBuilder()
    table, lines = _load_csv(path, builder, tail_truncated=True)
    names = table.column_names
    if "step" not in names:
        raise ParseError(f"{path}: line 1: a Lightning metrics.csv header needs a 'step' column")
    cols = {n: numeric(table.column(i)) for i, n in enumerate(names)}
    if cols["step"] is None:
        raise ParseError(f"{path}: column 'step' holds no numbers")
    step, step_ok = step_array(cols["step"])
    metrics = _metric_columns(cols, names, {"step", "epoch"}, builder, path)
    wall = np.full(step.shape[0], np.nan)
    add_wide(builder, metrics, step, step_ok, wall, lines)
    report_rows(builder, metrics, step_ok, lines, "step")
    meta = RunMeta(framework="lightning").merged(**_hparams(path.parent / "hparams.yaml"))
    return [builder.build(_lightning_run(path, run), str(path), "lightning-csv", meta)]


def _lightning_run(path: Path, run: str) -> str:
    """`.../version_N/metrics.csv` is run `.../version_N` (the walk's relative path, or the dirs)."""
    given = Path(run)
    if given.name == "metrics.csv" and str(given.parent) not in ("", "."):
        return str(given.parent)
    parent = path.resolve().parent
    if re.match(r"^version_", parent.name) and parent.parent.name:
        return f"{parent.parent.name}/{parent.name}"
    return parent.name or run


def _hparams(path: Path) -> dict[str, Any]:
    """Top-level scalars of Lightning's `hparams.yaml` (no YAML library needed for these)."""
    if not path.is_file():
        return {}
    extra: dict[str, str] = {}
    text = path.read_bytes()[:1 << 20].decode("utf-8", "replace")
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z_][\w.-]*):[ \t]+([^#\n]*?)\s*$", line)
        if m and m.group(2) and not m.group(2).startswith(("!!", "&", "*", "|", ">")):
            extra[m.group(1)] = m.group(2).strip("'\"")
    out: dict[str, Any] = {"extra": extra}
    canon = (("lr", "lr", float), ("learning_rate", "lr", float),
             ("weight_decay", "weight_decay", float), ("warmup_steps", "warmup_steps", int),
             ("max_steps", "train_iters", int), ("hidden_size", "hidden_size", int),
             ("num_layers", "num_layers", int), ("num_heads", "num_heads", int))
    for key, field_name, kind in canon:
        if key in extra and field_name not in out:
            try:
                out[field_name] = kind(float(extra[key]))
            except (ValueError, OverflowError):  # not a number, or `.inf` for an integer
                pass
    return out


def _metric_columns(cols: dict[str, Col | None], names: list[str], exclude: set[str],
                    builder: RecordsBuilder, path: Path) -> dict[str, Col]:
    metrics = {}
    for n in names:
        if n in exclude:
            continue
        if cols.get(n) is None:
            builder.warn(f"{path}: column {n!r} holds no numbers; left out")
            continue
        metrics[n] = cols[n]
    return metrics


# ----------------------------------------------------------------------------- generic CSV

def read_csv(path: Path, run: str) -> list[RunRecords]:
    """A CSV in long form (step, tag, value) or wide form (a step column + metric columns)."""
    builder = RecordsBuilder()
    table, lines = _load_csv(path, builder)
    names = table.column_names
    extra: dict[str, str] = {}
    lower = {n.lower(): n for n in reversed(names)}
    run_col = next((lower[c] for c in RUN_NAMES if c in lower), None)
    tag_col = next((lower[c] for c in TAG_NAMES if c in lower), None)
    val_col = next((lower[c] for c in VALUE_NAMES if c in lower), None)
    cols = {n: (None if n in (run_col, tag_col) else numeric(table.column(i)))
            for i, n in enumerate(names)}
    long = tag_col is not None and cols.get(val_col) is not None
    step_col = _pick_step(cols, [n for n in names if n not in (run_col, tag_col)
                                 and not (long and n == val_col)])
    wall_col = next((lower[c] for c in WALL_NAMES if c in lower and lower[c] != step_col), None)
    step, step_ok = _steps(cols, step_col, table.num_rows, builder, path)
    wall = wall_column(table.column(wall_col)) if wall_col else None
    wall = np.full(table.num_rows, np.nan) if wall is None else wall
    if long:
        points = _long_points(table, tag_col, cols[val_col], step_ok, lines, builder)
        emit = lambda b, rows: _add_long(b, points, step, wall, lines, rows)  # noqa: E731
    else:
        skip = {step_col, wall_col, run_col} | {n for n in names if _INDEX_COL.match(n)
                                                  or n.lower() in AXIS_NAMES}
        metrics = _metric_columns(cols, names, skip, builder, path)
        report_rows(builder, metrics, step_ok, lines, step_col,
                    _header_again(table, names, step_col, step_ok))
        texts = text_columns({n: table.column(i) for i, n in enumerate(names) if n not in skip})
        field, metrics = partition(texts, metrics, step, step_ok)  # train and test rows
        if field is not None:
            extra["rows_split_by"] = field
        emit = lambda b, rows: add_wide(b, metrics, step, step_ok, wall, lines, rows)  # noqa: E731
    run_codes, run_names = _runs(table, run_col, run)
    return _split_runs(builder, emit, run_codes, run_names, path, extra)


def _header_again(table, names: list[str], step_col: str | None,
                  step_ok: np.ndarray) -> np.ndarray | None:
    """Rows whose step cell is the step column's own name (the header line repeated)."""
    if step_col is None or step_ok.all():
        return None
    col = table.column(names.index(step_col))
    out = np.zeros(len(step_ok), bool)
    for i in np.flatnonzero(~step_ok)[:100_000]:
        out[i] = str(col[int(i)].as_py()).strip() == step_col
    return out


def _steps(cols: dict[str, Col | None], step_col: str | None, n: int,
           builder: RecordsBuilder, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if step_col is None:
        builder.warn(f"{path}: no step column; the row number (from 0) is used as the step")
        return np.arange(n, dtype=np.int64), np.ones(n, bool)
    return step_array(cols[step_col])  # type: ignore[arg-type]


def _runs(table, run_col: str | None, run: str) -> tuple[np.ndarray | None, list[str]]:
    """Run code per row (None: one run) and the run names."""
    if run_col is None:
        return None, [run]
    import pandas as pd

    values = table.column(run_col).to_pandas().astype("string").fillna(run)
    codes, uniques = pd.factorize(values)
    return codes, [str(u) for u in uniques]


def _split_runs(builder: RecordsBuilder, emit, run_codes: np.ndarray | None,
                run_names: list[str], path: Path,
                extra: dict[str, str] | None = None) -> list[RunRecords]:
    if run_codes is None:
        emit(builder, None)
        return [builder.build(run_names[0], str(path), "csv", RunMeta(extra=extra or {}))]
    out = []
    for code, name in enumerate(run_names):
        b = builder if code == 0 else RecordsBuilder()  # file-level skips go with the first run
        emit(b, run_codes == code)
        out.append(b.build(name, str(path), "csv", RunMeta()))
    return out


@dataclass
class _Long:
    """A long-form table's points: tag code per row, tag names, usable rows, values."""

    codes: np.ndarray
    names: list[str]
    usable: np.ndarray
    values: np.ndarray


def _long_points(table, tag_col: str, val: Col, step_ok: np.ndarray, lines: np.ndarray,
                 builder: RecordsBuilder) -> _Long:
    import pandas as pd

    tags = table.column(tag_col).to_pandas().astype("string")
    codes, uniques = pd.factorize(tags)  # a missing tag is -1
    usable = (codes >= 0) & val.present & step_ok
    for i in np.flatnonzero(~usable):
        why = ("no tag" if codes[i] < 0 else "no integer step" if not step_ok[i]
               else "value is not a number" if val.bad is not None and val.bad[i] else "no value")
        builder.skip(int(lines[i]), why)
    return _Long(codes, [str(u) for u in uniques], usable, val.values)


def _add_long(builder: RecordsBuilder, pts: _Long, step: np.ndarray, wall: np.ndarray,
              lines: np.ndarray, rows: np.ndarray | None) -> None:
    codes, names, values = pts.codes, pts.names, pts.values
    sel = pts.usable if rows is None else pts.usable & rows
    idx = np.flatnonzero(sel)
    idx = idx[np.argsort(codes[idx], kind="stable")]
    c = codes[idx]
    bounds = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if idx.shape[0] else np.empty(0, int)
    for start, stop in zip(bounds, np.r_[bounds[1:], idx.shape[0]]):
        part = idx[start:stop]
        builder.add_array(names[int(c[start])], step[part], values[part], wall[part], lines[part])
