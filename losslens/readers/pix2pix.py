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
from pathlib import Path

import numpy as np

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import Rows, fragments, head_text, parse_float, read_text, split_truncated

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
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b = RecordsBuilder()
    groups: dict[tuple[str, ...], list[tuple]] = {}  # tags -> rows (line, epoch, iters, *values)
    runs: list[str] = []
    for lineno, frag in fragments(body):
        if frag.startswith("(epoch:"):
            if not _parse(frag, lineno, groups):
                b.skip(lineno, "pix2pix loss line that does not parse", frag)
        elif frag.startswith("="):
            m = _HEADER.match(frag)
            if m:
                b.header(lineno)
                runs.append(m.group(1))
    if tail.startswith("(epoch:"):
        b.skip(tail_line, "truncated last line", tail)
    blocks = {tags: np.array(rows, dtype=np.float64) for tags, rows in groups.items()}
    per_epoch, how = _images_per_epoch(list(blocks.values()), b.headers)
    table = Rows()
    for tags, arr in blocks.items():
        step = (arr[:, 1].astype(np.int64) - 1) * per_epoch + arr[:, 2].astype(np.int64)
        table.block(tags, arr[:, 0], step, arr[:, 3:])
    table.into(b)
    extra = {"step_source": f"(epoch - 1) * {per_epoch} + iters ({how})",
             "images_per_epoch": str(per_epoch), "run_headers": str(len(runs))}
    if runs:
        extra["first_run_started"], extra["last_run_started"] = runs[0], runs[-1]
    return [b.build(run, str(path), FORMAT, RunMeta(framework="pix2pix", extra=extra))]


def _parse(frag: str, lineno: int, groups: dict[tuple[str, ...], list[tuple]]) -> bool:
    m = _LINE.match(frag)
    if not m:
        return False
    epoch, iters, t, data, rest = m.groups()
    if len(epoch) > 9 or len(iters) > 9:  # (epoch - 1) * images per epoch + iters fits int64
        return False
    pairs = _PAIR.findall(rest)
    keys = ("time", "data") if data is not None else ("time",)  # old versions: no data time
    raws = (t, data) if data is not None else (t,)
    if pairs:
        names, values = zip(*pairs)
        keys, raws = keys + names, raws + values
    try:
        nums = tuple(map(float, raws))
    except ValueError:
        try:
            nums = tuple(map(parse_float, raws))
        except ValueError:
            return False
    rows = groups.get(keys)
    if rows is None:
        rows = groups[keys] = []
    rows.append((lineno, int(epoch), int(iters)) + nums)
    return True


def _images_per_epoch(blocks: list[np.ndarray], headers: list[int]) -> tuple[int, str]:
    """Images per epoch, and how it was found (see the module docstring)."""
    if not blocks:
        return 0, "no loss lines"
    rows = np.concatenate([blk[:, :3] for blk in blocks]).astype(np.int64)
    line, epoch, iters = rows[np.argsort(rows[:, 0], kind="stable")].T
    largest = int(iters.max())
    # consecutive lines of one run (no header between them)
    run_of = np.searchsorted(np.asarray(sorted(headers), dtype=np.int64), line)
    same_run = run_of[1:] == run_of[:-1]
    step_in = same_run & (epoch[1:] == epoch[:-1]) & (iters[1:] > iters[:-1])
    change = same_run & (epoch[1:] == epoch[:-1] + 1)
    if step_in.any() and change.any():
        freq = _mode(iters[1:][step_in] - iters[:-1][step_in])
        est = _mode(iters[:-1][change] + freq - iters[1:][change])
        if est >= largest:
            return est, (f"inferred at {int(change.sum())} epoch changes with print_freq {freq}")
    return largest, "largest iters seen"


def _mode(values: np.ndarray) -> int:
    """The most common value (the smallest of the ties)."""
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])
