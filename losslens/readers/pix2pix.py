"""pytorch-CycleGAN-and-pix2pix `loss_log.txt` (`util/visualizer.py`).

Every run appends a header `================ Training Loss (<ctime>) ================` and then
lines `(epoch: E, iters: I, time: T, data: D) G_GAN: x G_L1: y D_real: z D_fake: w ` where `I`
is the number of images seen *within* epoch E (`epoch_iter += batch_size`); a line is printed
whenever the process-wide image count is a multiple of `print_freq`. Every `name: value` pair
after the parenthesis becomes a tag (`G_GAN`, `D_real`, ...), as do `time` (compute seconds per
image) and `data` (data-loading seconds).

The step is a global image count that an engineer can read back: `(E - 1) × N + I`, where N,
the images per epoch, is inferred from the file. A print at the first line of epoch E+1 falls
`print_freq` images after the last one of epoch E, so `N = I_last + print_freq − I_first`
(print_freq = the most common gap within an epoch); the most common such estimate wins, and it
is never below the largest `I` seen. Without an epoch change, N is the largest `I` seen. The
value used and how it was found are in metadata.extra (`images_per_epoch`,
`step_source`). A restart that goes back in epochs therefore goes back in step (a new segment),
and every header is a run header.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "pix2pix"

_LINE = re.compile(r"\(epoch: (\d+), iters: (\d+), time: ([^,)\s]+)(?:, data: ([^)\s]+))?\)"
                   r"((?: \S+: \S+)*)\s*$")
_PAIR = re.compile(r" (\S+): (\S+)")
_HEADER = re.compile(r"=+ Training Loss \((.*)\) =+\s*$")
_SNIFF_LINE = re.compile(r"(?m)^\(epoch: \d+, iters: \d+, time: [0-9.]+(?:, data: [0-9.]+)?\) \w+: ")
_SNIFF_HEADER = re.compile(r"(?m)^=+ Training Loss \(")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if _SNIFF_LINE.search(text):
        return 0.95
    return 0.6 if _SNIFF_HEADER.search(text) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    try:
        text = read_text(path)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    body, tail, tail_line = split_truncated(text)
    b = RecordsBuilder()
    rows: list[tuple[int, int, int, list[tuple[str, float]]]] = []  # (line, epoch, iters, pts)
    runs: list[str] = []
    for lineno, frag in fragments(body):
        if frag.startswith("(epoch:"):
            row = _parse(frag)
            if row is None:
                b.skip(lineno, "pix2pix loss line that does not parse", frag)
            else:
                rows.append((lineno, *row))
        elif frag.startswith("="):
            m = _HEADER.match(frag)
            if m:
                b.header(lineno)
                runs.append(m.group(1))
    if tail.startswith("(epoch:"):
        b.skip(tail_line, "truncated last line", tail)
    per_epoch, how = _images_per_epoch(rows, b.headers)
    _emit(rows, per_epoch, b)
    extra = {"step_source": f"(epoch - 1) * {per_epoch} + iters ({how})",
             "images_per_epoch": str(per_epoch), "run_headers": str(len(runs))}
    if runs:
        extra["first_run_started"], extra["last_run_started"] = runs[0], runs[-1]
    return [b.build(run, str(path), FORMAT, RunMeta(framework="pix2pix", extra=extra))]


def _parse(frag: str) -> tuple[int, int, list[tuple[str, float]]] | None:
    m = _LINE.match(frag)
    if not m:
        return None
    try:
        pts = [("time", parse_float(m.group(3)))]
        if m.group(4) is not None:  # older versions print no data-loading time
            pts.append(("data", parse_float(m.group(4))))
        pts += [(k, parse_float(v)) for k, v in _PAIR.findall(m.group(5))]
    except ValueError:
        return None
    return int(m.group(1)), int(m.group(2)), pts


def _images_per_epoch(rows, headers: list[int]) -> tuple[int, str]:
    """Images per epoch, and how it was found (see the module docstring)."""
    if not rows:
        return 0, "no loss lines"
    largest = max(r[2] for r in rows)
    hdrs = sorted(headers)
    gaps: Counter[int] = Counter()
    changes: list[tuple[int, int]] = []
    for (l0, e0, i0, _), (l1, e1, i1, _) in zip(rows, rows[1:]):
        if _header_between(hdrs, l0, l1):
            continue
        if e1 == e0 and i1 > i0:
            gaps[i1 - i0] += 1
        elif e1 == e0 + 1:
            changes.append((i0, i1))
    if gaps and changes:
        freq = gaps.most_common(1)[0][0]
        est = Counter(i0 + freq - i1 for i0, i1 in changes).most_common(1)[0][0]
        if est >= largest:
            return est, f"inferred at {len(changes)} epoch changes with print_freq {freq}"
    return largest, "largest iters seen"


def _header_between(headers: list[int], a: int, b: int) -> bool:
    from bisect import bisect_right

    i = bisect_right(headers, a)
    return i < len(headers) and headers[i] < b


def _emit(rows, per_epoch: int, b: RecordsBuilder) -> None:
    cols: dict[str, tuple[list[int], list[float], list[int]]] = {}
    for lineno, epoch, iters, pts in rows:
        step = (epoch - 1) * per_epoch + iters
        for tag, value in pts:
            c = cols.setdefault(tag, ([], [], []))
            c[0].append(step)
            c[1].append(value)
            c[2].append(lineno)
    for tag, (steps, values, orders) in cols.items():
        b.add_array(tag, steps, values, orders=orders)
