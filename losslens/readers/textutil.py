"""Shared helpers for text logbooks: decoding, launcher prefixes, ANSI colour, NaN spellings.

A framework's line may be wrapped by a launcher prefix (`[default7]:`,
`[rank0]:`, `[1,0]<stdout>:`, `0: `, `host: `), may carry ANSI colour, may hold several
tqdm redraws separated by `\\r`, and spells NaN/inf in a dozen ways. Text readers call
`fragments()` to get clean (line number, text) pairs and `parse_float()` for numbers.
"""
from __future__ import annotations

import calendar
import math
import os
import re
import time
from pathlib import Path
from typing import Iterator

#: a log line's time stamp (`2024-05-01 12:00:00,123`, loguru 0.8's `2024-05-01 12:00:00.123
#: +00:00`, `[12:00:00]`) and level (`INFO`,
#: `[WARNING]`): the pieces of a logging prefix the text readers let stand before a line
STAMP = (r"\[?\d{4}[-/]\d\d[-/]\d\d[ T_]\d\d:\d\d:\d\d(?:[.,]\d+)?(?: ?(?:Z|[+-]\d\d:?\d\d))?\]?"
         r"|\[?\d\d:\d\d:\d\d(?:[.,]\d+)?\]?")
LEVEL = r"\[?(?:INFO|DEBUG|WARNING|WARN|ERROR|CRITICAL|NOTICE|TRACE|SUCCESS)\]?"

ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Launcher prefixes, outermost first; applied repeatedly (a Slurm label outside torchrun's).
PREFIX_RE = re.compile(
    r"^(?:\[(?:default|rank|worker|trainer)?\d+(?:\|\d+)?\]:"  # torchrun --tee: [default7]: [rank0]:
    # [7]:, and [trainer0|0]: ({role_name}{rank}|{local_rank}, torchtune's multi-node runs)
    r"|\[\d+,\d+\]<std(?:out|err)>:"                       # mpirun --tag-output
    r"|\d+: "                                               # srun --label
    r"|[A-Za-z0-9][\w.-]*: (?=\s*(?:\[|iteration|step|iter |\{|[A-Za-z ]+[:=]))"  # pdsh host
    r")")

_SPECIAL = {
    "nan": math.nan, "+nan": math.nan, "-nan": math.nan, "nan(ind)": math.nan,
    "-nan(ind)": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
    "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf,
}


_CR_TO_LF = bytes.maketrans(b"\r", b"\n")
_CR_CHUNK = 1 << 24


def cr_lines(data: bytes | bytearray) -> bool:
    """Whether `data` ends its lines with a bare `\\r` (classic Mac OS, some captures of a
    terminal): it holds `\\r` and no `\\n` at all. tqdm's `\\r` redraws inside `\\n` lines
    are not this."""
    return b"\n" not in data and b"\r" in data


def cr_to_lf(data: bytes) -> bytes:
    """`data` with every `\\r` made `\\n` (the line ends of a `cr_lines` file)."""
    return data.translate(_CR_TO_LF)


def read_bytes(path: Path) -> bytes | bytearray:
    """The file's bytes; a file whose lines end in a bare `\\r` (`cr_lines`) comes with `\\n`
    instead, so every reader reads it like the `\\n` file. The conversion reads the file
    again, 16 MiB at a time, into one buffer of its size: one copy of the file in memory, as
    for any other."""
    data = path.read_bytes()
    if not cr_lines(data):
        return data
    del data
    with open(path, "rb") as fh:
        buf = bytearray(os.fstat(fh.fileno()).st_size)
        pos = 0
        with memoryview(buf) as view:
            while pos < len(buf):
                got = fh.readinto(view[pos:pos + _CR_CHUNK])
                if not got:  # (the file shrank since)
                    break
                view[pos:pos + got] = view[pos:pos + got].tobytes().translate(_CR_TO_LF)
                pos += got
        del buf[pos:]
        buf += fh.read().translate(_CR_TO_LF)  # (or grew)
    return buf


def read_text(path: Path) -> str:
    """The file decoded as UTF-8, bad bytes replaced (never raises on encoding), bare `\\r`
    line ends made `\\n` (`read_bytes`); an OS error is a one-line ParseError naming the file."""
    from ..errors import ParseError

    try:
        data = read_bytes(path)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return data.decode("utf-8", errors="replace")


def file_start(path: Path, size: int) -> bytes:
    """The first `size` bytes of the regular file at `path`; b"" when it cannot be read, and
    for a named pipe or device, which opening could block on."""
    try:
        if not path.is_file():
            return b""
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def head_text(head: bytes) -> str:
    """The first bytes of a file as text for sniffing (a UTF-8 byte-order mark, which
    Windows editors and PowerShell write, left out; bare `\\r` line ends made `\\n`, as
    `read_bytes` does for the whole file)."""
    if cr_lines(head):
        head = head.translate(_CR_TO_LF)
    return head.decode("utf-8", errors="replace").removeprefix("\ufeff")


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text) if "\x1b" in text else text


def strip_prefix(line: str) -> str:
    """Remove launcher rank/host prefixes (possibly nested) from the start of a line."""
    while True:
        m = PREFIX_RE.match(line)
        if not m or m.end() == 0:
            return line
        line = line[m.end():]


def parse_float(text: str) -> float:
    """A number as any framework prints it: `1.2E+00`, `nan`, `-nan`, `NAN`, `Infinity`, `4.194B`.

    Raises ValueError when it is not a number.
    """
    t = text.strip().rstrip(",;|%")
    try:
        return float(t)
    except ValueError:
        pass
    low = t.lower().strip("()")
    if low.endswith("z"):  # llm.c z-scores: (+nanz)
        low = low[:-1]
    if low in _SPECIAL:
        return _SPECIAL[low]
    if low and low[-1] in "kmbt" and low[:-1]:  # OLMo-core format_float suffixes
        scale = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[low[-1]]
        return float(low[:-1]) * scale
    raise ValueError(f"not a number: {text!r}")


#: Steps are stored as int64; a printed counter past this (a damaged line) is not a step.
STEP_LIMIT = 1 << 63


def fits_step(n: int | float) -> bool:
    """Whether `n` can be a step (an int64), e.g. not a 400-digit counter from spliced text."""
    return -STEP_LIMIT < n < STEP_LIMIT


def as_float(x: int | float) -> float:
    """float(x) of a JSON number; an integer beyond float64 (400 digits) is ±inf, not an error."""
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def fragments(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, cleaned fragment) for every `\\n` line and `\\r` piece of it."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if "\x1b" in line:
            line = ANSI_RE.sub("", line)
        if "\r" in line:
            for piece in line.split("\r"):
                if piece.strip():
                    yield lineno, strip_prefix(piece)
        elif line:
            yield lineno, strip_prefix(line)


_PAIR_VALUE = re.compile(r": (\S+)")


def colon_pairs(text: str) -> list[tuple[str, str]]:
    """`key: value` pairs of a line (`loss: 2.3 iter time (s): 0.51`), as (key, value) with
    the key stripped: a value is what follows `: `, its key the text since the previous value.
    Linear in the line (the regex `\\s*(.+?): (\\S+)` it replaces took minutes on a line of
    4,000 spaces)."""
    out, pos = [], 0
    for m in _PAIR_VALUE.finditer(text):
        key = text[pos:m.start()].strip()
        if key:
            out.append((key, m.group(1)))
        pos = m.end()
    return out


def numbered(pattern: "re.Pattern[str]", text: str) -> Iterator[tuple[int, "re.Match[str]"]]:
    """Each match of `pattern` in `text` with the 1-based line it starts on (counted as the
    matches go, so the whole scan stays linear in the text)."""
    lineno, last = 1, 0
    for m in pattern.finditer(text):
        lineno += text.count("\n", last, m.start())
        last = m.start()
        yield lineno, m


def split_truncated(text: str) -> tuple[str, str, int]:
    """(complete text, unterminated tail, the tail's 1-based line number).

    A writer killed mid-line leaves a last line without `\\n`; its numbers may be cut, so
    readers must not take it as a point. `tail` is "" (line 0) when the text ends cleanly.
    """
    if not text or text.endswith(("\n", "\r")):
        return text, "", 0
    cut = max(text.rfind("\n"), text.rfind("\r")) + 1
    body = text[:cut]
    return body, text[cut:], body.count("\n") + 1


class Rows:
    """Points gathered a line at a time, for text logs with millions of points.

    A reader asks for the row list of a tuple of tags once (`group`) and appends one tuple per
    line: `(order, step, v1, v2, ...)`, or `(order, step, wall_time, v1, ...)` for a group made
    with `wall=True`. `into` converts every group with one numpy call and hands each tag's
    points to a RecordsBuilder in write order, whichever groups they came from.
    """

    __slots__ = ("_groups", "_blocks")

    def __init__(self) -> None:
        self._groups: dict[tuple[tuple[str, ...], bool], list[tuple]] = {}
        self._blocks: list[tuple] = []

    def block(self, tags: tuple[str, ...], order, step, values, walls=None) -> None:
        """Add columns already in numpy: `values` has one column per tag."""
        self._blocks.append((tags, order, step, values, walls))

    def group(self, tags: tuple[str, ...], wall: bool = False) -> list[tuple]:
        rows = self._groups.get((tags, wall))
        if rows is None:
            rows = self._groups[(tags, wall)] = []
        return rows

    def __len__(self) -> int:
        return (sum(len(rows) * len(tags) for (tags, _), rows in self._groups.items())
                + sum(len(b[1]) * len(b[0]) for b in self._blocks))

    def into(self, builder) -> None:
        """Hand every tag's points to `builder` (a records.RecordsBuilder)."""
        import numpy as np

        parts: dict[str, list[tuple]] = {}
        for tags, order, step, values, walls in self._blocks:
            for j, tag in enumerate(tags):
                parts.setdefault(tag, []).append((np.asarray(order, np.int64),
                                                  np.asarray(step, np.int64), values[:, j], walls))
        for (tags, wall), rows in self._groups.items():
            if not rows:
                continue
            arr = _row_array(rows, builder)
            order, step = arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64)
            walls = arr[:, 2] if wall else None
            first = 3 if wall else 2
            for j, tag in enumerate(tags):
                parts.setdefault(tag, []).append((order, step, arr[:, first + j], walls))
        for tag, chunks in parts.items():
            order = np.concatenate([c[0] for c in chunks])
            step = np.concatenate([c[1] for c in chunks])
            value = np.concatenate([c[2] for c in chunks])
            walls = None
            if any(c[3] is not None for c in chunks):
                walls = np.concatenate([c[3] if c[3] is not None else np.full(c[0].shape, np.nan)
                                        for c in chunks])
            if len(chunks) > 1:  # restore write order across groups
                idx = np.argsort(order, kind="stable")
                order, step, value = order[idx], step[idx], value[idx]
                walls = walls[idx] if walls is not None else None
            builder.add_array(tag, step, value, wall_times=walls, orders=order)


def _row_array(rows: list[tuple], builder):
    """Rows `(order, step, ...)` as a float64 matrix; rows whose step does not fit in int64
    (digits spliced into a counter) are skipped with their line number, never converted."""
    import numpy as np

    try:
        arr = np.array(rows, dtype=np.float64).reshape(len(rows), -1)
    except OverflowError:  # an integer step beyond float64
        arr = None
    if arr is not None and bool(np.all(np.abs(arr[:, 1]) < STEP_LIMIT)):
        return arr
    kept = []
    for row in rows:
        if fits_step(row[1]) and abs(float(row[1])) < STEP_LIMIT:  # 2^63 - 1 rounds up
            kept.append(row)
        else:
            builder.skip(int(row[0]), "step does not fit in 64 bits", str(row[1])[:40])
    width = len(rows[0])
    return np.array(kept, dtype=np.float64).reshape(len(kept), width)


def utc_seconds(stamp: str, cache: dict[str, float]) -> float:
    """Seconds since the epoch of a logging `YYYY-MM-DD HH:MM:SS` stamp, taken as UTC (the
    logs give no zone; metaseq logs UTC); NaN for a damaged stamp (month 13, non-ASCII
    digits). `cache` maps stamps already seen (one line in a log per second shares one)."""
    value = cache.get(stamp)
    if value is None:
        try:
            value = float(calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")))
        except ValueError:
            value = float("nan")
        cache[stamp] = value
    return value
