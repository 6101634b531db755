"""Tables of metrics: Lightning `metrics.csv`, generic CSV (long or wide) and generic JSON lines.

LOG_FORMATS.md §5 (Lightning CSVLogger), §13 (Levanter's JSON tracker lines). These files can
hold millions of rows, so they are parsed by pyarrow (C++, multithreaded) and turned into points
column by column with numpy; Python only loops over columns and over the rare bad lines.

Cells: an empty CSV cell (or a missing / null JSON key) means "not logged"; `nan`, `inf`,
`-Infinity` ... are values and kept. A CSV row with the wrong number of cells and a JSON line that
does not parse are skipped and counted with their line number. `order` is the 1-based line
number of the row (the header is line 1 of a CSV).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import as_float, head_text, parse_float, split_truncated

STEP_NAMES = ("step", "_step", "global_step", "iteration", "iter", "it")
AXIS_NAMES = frozenset(STEP_NAMES) | {"epoch"}
WALL_NAMES = ("wall_time", "walltime", "_timestamp", "timestamp")
RUN_NAMES = ("run", "run_name", "run_id")
TAG_NAMES = ("tag", "metric", "key", "series", "name")
VALUE_NAMES = ("value", "val", "y")
_LEVANTER = '"tracker": "json_logger"'
_LEVANTER_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
_INDEX_COL = re.compile(r"^(|Unnamed: \d+)$")
_JSON_PIECE = 4 << 20  # bytes parsed at once when the whole file defeats pyarrow


@dataclass
class _Col:
    """One numeric column: float64 values, which cells hold a value, which held bad text."""

    values: np.ndarray
    present: np.ndarray
    bad: np.ndarray | None = None


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
    numeric = len(row) == len(header) and any(_is_number(c) for c in row)
    if name.lower().endswith((".csv", ".tsv")):
        return 0.25 if structured or numeric else 0.1
    return 0.2 if structured and numeric else 0.0


def sniff_jsonl(name: str, head: bytes) -> float:
    text = head_text(head)
    if _LEVANTER + ', "event": "log"' in text:
        return 0.8
    first = next((ln.strip() for ln in text.split("\n") if ln.strip()), "")
    if not first.startswith("{"):
        return 0.0
    try:
        obj = json.loads(first)
    except (ValueError, RecursionError):
        return 0.0
    if isinstance(obj, dict) and any(k in obj for k in STEP_NAMES):
        return 0.3
    return 0.0


def _is_number(text: str) -> bool:
    try:
        parse_float(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- CSV loading

def _line_numbers(data: bytes, first: int, rows: int | None = None) -> np.ndarray:
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


def _load_csv(path: Path, builder: RecordsBuilder, tail_truncated: bool = False):
    """(pyarrow Table with unique column names, 1-based line number of each row)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    data = path.read_bytes()
    if tail_truncated and data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        if cut:  # a CSVLogger row always ends with \r\n: this one was cut mid-write
            builder.skip(data.count(b"\n", 0, cut) + 1, "truncated last line",
                         data[cut:].decode("utf-8", "replace"))
            data = data[:cut]
    data = _valid_utf8(data)  # pyarrow cannot report a ragged row holding bad bytes
    _, _, delim = _header_cells(data[:65536])
    invalid: list[tuple[int, int, str]] = []

    def on_invalid(row: Any) -> str:
        invalid.append((row.expected_columns, row.actual_columns, row.text))
        return "skip"

    try:
        table = pcsv.read_csv(
            pa.py_buffer(data),
            parse_options=pcsv.ParseOptions(delimiter=delim, invalid_row_handler=on_invalid),
            convert_options=pcsv.ConvertOptions(
                null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=True,
                check_utf8=False),
            memory_pool=pa.system_memory_pool())  # (as in _fast_json)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParseError(f"{path}: not a readable CSV table ({reason})") from None
    table = table.rename_columns(_unique(table.column_names, builder, path))
    lines = _line_numbers(data, 2, None if invalid else table.num_rows)
    if invalid:
        lines = _skip_invalid(data, lines, invalid, builder)
    if lines.shape[0] != table.num_rows:  # quoted newlines: line numbers unknown, keep row order
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    return table, lines.astype(np.int64)


def _valid_utf8(data: bytes) -> bytes:
    """The bytes, with invalid UTF-8 replaced by U+FFFD (pyarrow chokes on it in names)."""
    if data.isascii():  # (no decoded copy of the whole file just to check it)
        return data
    try:
        data.decode("utf-8")
        return data
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace").encode("utf-8")


def _unique(names: list[str], builder: RecordsBuilder, path: Path) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
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


def _numeric(col, min_share: float = 0.5) -> _Col | None:
    """A pyarrow column as numbers, or None when it is not a numeric column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        present = np.asarray(pc.is_valid(col).to_numpy(zero_copy_only=False), bool)
        values = np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
        return _Col(values, present)
    if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    return _numeric_text(col, min_share)


def _numeric_text(col, min_share: float) -> _Col | None:
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
    return _Col(values, good, unresolved if unresolved.any() else None)


def _wall_column(col) -> np.ndarray | None:
    """Seconds since the epoch from a numeric or timestamp column."""
    import pyarrow as pa

    if pa.types.is_timestamp(col.type):
        secs = col.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.asarray(secs, np.float64) / 1e9
    num = _numeric(col, 0.9)
    if num is None:
        return None
    return np.where(num.present, num.values, np.nan)


# ----------------------------------------------------------------------------- wide / long

def _step_array(col: _Col) -> tuple[np.ndarray, np.ndarray]:
    """(int64 steps, which rows have a usable integer step)."""
    v = col.values
    ok = col.present & np.isfinite(v) & (np.abs(v) < 2.0 ** 63)  # an int64 step
    ok &= np.floor(np.where(ok, v, 0.0)) == np.where(ok, v, 0.0)
    return np.where(ok, v, 0).astype(np.int64), ok


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


def _integral(col: _Col | None) -> bool:
    if col is None or not col.present.any():
        return False
    v = col.values[col.present]
    return bool(np.all(np.isfinite(v) & (np.floor(v) == v)))


def _add_wide(builder: RecordsBuilder, metrics: dict[str, _Col], step: np.ndarray,
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


def _report_rows(builder: RecordsBuilder, metrics: dict[str, _Col], step_ok: np.ndarray,
                 lines: np.ndarray, step_name: str | None) -> None:
    """Skip rows holding values but no usable step; cells that were not numbers."""
    for name, col in metrics.items():
        if col.bad is not None:
            for i in np.flatnonzero(col.bad):
                builder.skip(int(lines[i]), f"column {name!r}: not a number")
    if metrics:
        has_value = np.logical_or.reduce([c.present for c in metrics.values()])
        for i in np.flatnonzero(has_value & ~step_ok):
            builder.skip(int(lines[i]), f"no integer {step_name or 'step'} in this row")


# ----------------------------------------------------------------------------- Lightning

def read_lightning_csv(path: Path, run: str) -> list[RunRecords]:
    """PyTorch Lightning CSVLogger `metrics.csv`: sparse rows keyed by `step`."""
    builder = RecordsBuilder()
    table, lines = _load_csv(path, builder, tail_truncated=True)
    names = table.column_names
    if "step" not in names:
        raise ParseError(f"{path}: line 1: a Lightning metrics.csv header needs a 'step' column")
    cols = {n: _numeric(table.column(i)) for i, n in enumerate(names)}
    if cols["step"] is None:
        raise ParseError(f"{path}: column 'step' holds no numbers")
    step, step_ok = _step_array(cols["step"])
    metrics = _metric_columns(cols, names, {"step", "epoch"}, builder, path)
    wall = np.full(step.shape[0], np.nan)
    _add_wide(builder, metrics, step, step_ok, wall, lines)
    _report_rows(builder, metrics, step_ok, lines, "step")
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


def _metric_columns(cols: dict[str, _Col | None], names: list[str], exclude: set[str],
                    builder: RecordsBuilder, path: Path) -> dict[str, _Col]:
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
    lower = {n.lower(): n for n in reversed(names)}
    run_col = next((lower[c] for c in RUN_NAMES if c in lower), None)
    tag_col = next((lower[c] for c in TAG_NAMES if c in lower), None)
    val_col = next((lower[c] for c in VALUE_NAMES if c in lower), None)
    cols = {n: (None if n in (run_col, tag_col) else _numeric(table.column(i)))
            for i, n in enumerate(names)}
    long = tag_col is not None and cols.get(val_col) is not None
    step_col = _pick_step(cols, [n for n in names if n not in (run_col, tag_col)
                                 and not (long and n == val_col)])
    wall_col = next((lower[c] for c in WALL_NAMES if c in lower and lower[c] != step_col), None)
    step, step_ok = _steps(cols, step_col, table.num_rows, builder, path)
    wall = _wall_column(table.column(wall_col)) if wall_col else None
    wall = np.full(table.num_rows, np.nan) if wall is None else wall
    if long:
        points = _long_points(table, tag_col, cols[val_col], step_ok, lines, builder)
        emit = lambda b, rows: _add_long(b, points, step, wall, lines, rows)  # noqa: E731
    else:
        skip = {step_col, wall_col, run_col} | {n for n in names if _INDEX_COL.match(n)
                                                  or n.lower() in AXIS_NAMES}
        metrics = _metric_columns(cols, names, skip, builder, path)
        _report_rows(builder, metrics, step_ok, lines, step_col)
        emit = lambda b, rows: _add_wide(b, metrics, step, step_ok, wall, lines, rows)  # noqa: E731
    run_codes, run_names = _runs(table, run_col, run)
    return _split_runs(builder, emit, run_codes, run_names, path)


def _steps(cols: dict[str, _Col | None], step_col: str | None, n: int,
           builder: RecordsBuilder, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if step_col is None:
        builder.warn(f"{path}: no step column; the row number (from 0) is used as the step")
        return np.arange(n, dtype=np.int64), np.ones(n, bool)
    return _step_array(cols[step_col])  # type: ignore[arg-type]


def _runs(table, run_col: str | None, run: str) -> tuple[np.ndarray | None, list[str]]:
    """Run code per row (None: one run) and the run names."""
    if run_col is None:
        return None, [run]
    import pandas as pd

    values = table.column(run_col).to_pandas().astype("string").fillna(run)
    codes, uniques = pd.factorize(values)
    return codes, [str(u) for u in uniques]


def _split_runs(builder: RecordsBuilder, emit, run_codes: np.ndarray | None,
                run_names: list[str], path: Path) -> list[RunRecords]:
    if run_codes is None:
        emit(builder, None)
        return [builder.build(run_names[0], str(path), "csv", RunMeta())]
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


def _long_points(table, tag_col: str, val: _Col, step_ok: np.ndarray, lines: np.ndarray,
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


# ----------------------------------------------------------------------------- JSON lines

def read_jsonl(path: Path, run: str) -> list[RunRecords]:
    """One JSON object per line with a step key; Levanter's JSON tracker lines in a log."""
    data = _valid_utf8(path.read_bytes())
    if _LEVANTER.encode() in data[:1 << 20]:
        return [_read_levanter(path, run, data)]
    builder = RecordsBuilder()
    body = _cut_json_tail(data, builder)
    table = _fast_json(body)
    if table is not None:
        _table_json(table, _line_numbers(body, 1, table.num_rows), builder, path)
    else:  # some line defeats pyarrow: retry piece by piece
        start, line = 0, 1
        while start < len(body):
            stop = body.find(b"\n", start + _JSON_PIECE) + 1 or len(body)
            piece = body[start:stop]
            _read_json_chunk(piece, line, builder, path)
            line += piece.count(b"\n")
            start = stop
    del data, body, table  # the text and pyarrow's table go before the columns are built
    return [builder.build(run, str(path), "jsonl", RunMeta())]


def _read_json_chunk(body: bytes, first_line: int, builder: RecordsBuilder, path: Path) -> None:
    """pyarrow on the whole chunk; when a line defeats it, halve the chunk and retry, so only
    small pieces around bad lines are parsed line by line in Python."""
    table = _fast_json(body)
    if table is not None:
        lines = _line_numbers(body, 1, table.num_rows) + (first_line - 1)
        _table_json(table, lines, builder, path)
        return
    mid = body.find(b"\n", len(body) // 2) + 1
    if len(body) < (1 << 16) or mid <= 0 or mid >= len(body):
        _slow_json(body, builder, first_line)
        return
    _read_json_chunk(body[:mid], first_line, builder, path)
    _read_json_chunk(body[mid:], first_line + body.count(b"\n", 0, mid), builder, path)


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


def _table_json(table, lines: np.ndarray, builder: RecordsBuilder, path: Path) -> None:
    import pyarrow as pa

    if lines.shape[0] != table.num_rows:
        lines = np.arange(1, table.num_rows + 1, dtype=np.int64)
    flat = _flatten(table)
    numeric = {n: _numeric(c) for n, c in flat.items()
               if pa.types.is_integer(c.type) or pa.types.is_floating(c.type)}
    n = table.num_rows
    step, step_ok = np.zeros(n, np.int64), np.zeros(n, bool)
    for cand in reversed(STEP_NAMES):  # the first name present in a row wins
        col = numeric.get(cand)
        if col is not None:
            s, ok = _step_array(col)
            step, step_ok = np.where(ok, s, step), ok | step_ok
    wall = np.full(n, np.nan)
    for cand in reversed(WALL_NAMES):
        col = numeric.get(cand)
        if col is not None:
            wall = np.where(col.present, col.values, wall)
    metrics = {k: v for k, v in numeric.items()
               if k not in AXIS_NAMES and k not in WALL_NAMES and v is not None}
    _add_wide(builder, metrics, step, step_ok, wall, lines)
    _report_rows(builder, metrics, step_ok, lines, "step")


def _flat_items(obj: dict, prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in obj.items():
        if isinstance(value, dict):
            yield from _flat_items(value, f"{prefix}{key}/")
        else:
            yield prefix + str(key), value


def _line_step(rec: dict) -> int | None:
    for cand in STEP_NAMES:
        v = rec.get(cand)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v \
                and abs(v) < 2 ** 63 and int(v) == v:
            return int(v)
    return None


def _slow_json(body: bytes, builder: RecordsBuilder, first_line: int = 1) -> None:
    """Line by line (json.loads accepts NaN/Infinity); bad lines are skipped and counted."""
    cols: dict[str, tuple[list, list, list, list]] = {}
    texts: list[tuple[str, int, str]] = []  # string values: bad numbers if the key is a metric
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
        _add_record(builder, cols, rec, lineno, _line_step(rec), texts=texts)
    for key, lineno, text in texts:
        if key in cols:
            builder.skip(lineno, f"{key}: not a number", text)
    for tag, (steps, values, walls, orders) in cols.items():
        builder.add_array(tag, steps, values, walls, orders)


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
            builder.skip(lineno, "no step key in this line")
        return
    for k, v in items:
        c = cols.get(k)
        if c is None:
            c = cols[k] = ([], [], [], [])
        c[0].append(step)
        c[1].append(as_float(v))
        c[2].append(wall)
        c[3].append(lineno)


def _read_levanter(path: Path, run: str, data: bytes) -> RunRecords:
    """Levanter's `json_logger` tracker: `{"tracker": ..., "event": "log", "step", "metrics"}`."""
    import calendar
    import time

    builder = RecordsBuilder()
    body, tail, tail_line = split_truncated(data.decode("utf-8", "replace"))
    if _LEVANTER in tail:
        builder.skip(tail_line, "truncated last line", tail)
    cols: dict[str, tuple[list, list, list, list]] = {}
    extra: dict[str, str] = {}
    for lineno, line in enumerate(body.split("\n"), 1):
        if _LEVANTER not in line:
            continue
        start = line.find('{"tracker": "json_logger"')  # find, not a regex: linear on long lines
        text = line[start:].rstrip() if start >= 0 else ""
        try:
            rec = json.loads(text) if text.endswith("}") else None
        except (ValueError, RecursionError):
            rec = None
        if not isinstance(rec, dict):
            builder.skip(lineno, "invalid JSON tracker line", line)
            continue
        if rec.get("event") == "hparams" and isinstance(rec.get("hparams"), dict):
            extra.update((k, str(v)) for k, v in _flat_items(rec["hparams"]))
        if rec.get("event") != "log" or not isinstance(rec.get("metrics"), dict):
            continue
        t = _LEVANTER_TIME.match(line)
        try:
            wall = (float(calendar.timegm(time.strptime(t.group(1), "%Y-%m-%dT%H:%M:%S")))
                    if t else float("nan"))
        except ValueError:  # month 13, non-ASCII digits: a damaged stamp, no wall time
            wall = float("nan")
        _add_record(builder, cols, rec["metrics"], lineno, _line_step(rec), wall,
                    frozenset({"global_step"}))
    for tag, (steps, values, walls, orders) in cols.items():
        builder.add_array(tag, steps, values, walls, orders)
    return builder.build(run, str(path), "jsonl", RunMeta(framework="levanter", extra=extra))
