"""fairseq2 metric log lines (`fairseq2/metrics/recorders/log.py`, `LogMetricRecorder`).

Each recorded step is one logging record, the metrics under their display names joined by
` | ` (`"{title} Metrics (step N)"`, then ` - <subcategory>` when the category has one):

```
[Rank 0] 2024-05-01 10:00:00,123 INFO fairseq2.recipes.trainer - Train Metrics (step 100) - Loss: 2.345 | Learning Rate: 0.0003 | Batch Size: 1,024 | Elapsed Time: 12s | Wall Time: 1,234s
[Rank 0] 2024-05-01 10:05:00,456 INFO fairseq2.recipes.trainer - Validation Metrics (step 100) - librispeech - Loss: 2.401
```

By default fairseq2 logs through rich's `RichHandler` (`fairseq2/logging.py`), which wraps a
record at the console width (80 columns when the output is a file) and indents the rest under
the message column:

```
2024-05-01 10:00:00 INFO     fairseq2 - Train Metrics (step 100) - Loss: 2.345 |
                             Nll Loss: 2.301 | Learning Rate: 0.0003 | Gradient
                             Norm: 0.87 | Batch Size: 1,024 | Elapsed Time: 12s
```

Such continuation lines (21 or more spaces, then text) are joined back to their record (rich
breaks at a space). Tags are `{title}/{display name}` or `{title}/{subcategory}/{display
name}` (`Train/Loss` train_loss, `Valid/Loss`, `Validation/librispeech/Loss` val_loss,
`Train/Learning Rate`...). fairseq2 0.3 and 0.4 wrote the whole category as the title,
`capwords(run)`: `Valid/librispeech Metrics (step 100) - Loss: 2.401` (a validation unit with a
name; capwords capitalises each space-separated word, `Valid/dev Clean`), so the title is all
the text between the logger's ` - ` (or the line's start) and ` Metrics (step`, and that loss is
`Valid/librispeech/Loss`, a validation loss. Values are read through fairseq2's formatters
(`1,024`; `12s` in seconds; `13%`, a ratio printed as `ceil(100 * ratio)%`, read as 13; byte
sizes `12.34 GiB` read in bytes); `<1` (an int formatter's "below one") is no number and is
counted, not read; `N/A` (a record with no values) holds nothing. Each point's order is the
line its value is on; a record's last piece that is not `Name: value` at the very end of the
text is not counted (the writer may still be writing that record).
`Checkpoint at step N saved.` (fairseq2/trainer.py) names the run's checkpoints (0.3 and 0.4:
`Saving checkpoint after step N.` followed by `Checkpoint complete.`; a save that never
completed is no checkpoint); `Restoring training from the last checkpoint at step N.` (0.3 and
0.4: `Checkpoint loaded, restoring training from step N.`) starts a new segment.

The same values go to `JsonlMetricRecorder` files (`fairseq2-jsonl`), one per category under
the run's output folder, `metrics/train.jsonl`, `metrics/valid.jsonl`,
`metrics/valid/librispeech.jsonl`, one JSON object a recorded step with the values unformatted
under their display names:

```
{"Time": "2025-01-01T10:00:00.123456+00:00", "Step": 100, "Loss": 2.345, "Learning Rate": 0.0003}
```

Tags are `{category}/{display name}` (`train/Loss` train_loss, `valid/Loss` val_loss); `Time`
is each point's wall time; a record without `Step` (a recorder called without a step) has no
place on the axis and is counted; list values (a metric recorded per element) are counted, not
read. The files of one `metrics/` folder are one run (`layouts.combine`).
"""
from __future__ import annotations

import json
import re
from bisect import bisect_right
from datetime import datetime
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (as_float, fits_step, head_text, numbered, parse_float, read_text,
                       split_truncated)

FORMAT = "fairseq2"
JSONL_FORMAT = "fairseq2-jsonl"

#: A record: its header, its first line's text, and rich's continuation lines. The title (the
#: category: `Train`, `Validation`, 0.4's `Valid/librispeech`) starts at the line's start or
#: right after the logger's ` - `, holds no ` - ` and is bounded, so each line is tried at a few
#: places only and for at most 128 characters (`\w+` tried at every position of a long word was
#: quadratic).
_RECORD = re.compile(r"(?:^|(?<= - ))([A-Z](?:(?! - )[^\n|\[\]]){0,127}?) Metrics "
                     r"\(step (\d+)\) - ([^\n]*(?:\n(?:\[\w{0,20}\]:)? {21,}\S[^\n]*)*)",
                     re.M)
#: fairseq2's `format_as_byte_size`: `12.34 GiB` (two decimals, binary units).
_BYTES = re.compile(r"(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB|PiB)")
_UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}
#: 0.5 on: `Checkpoint at step N saved.`; 0.3 and 0.4: `Saving checkpoint after step N.`, then
#: (several lines later, once every part is written) `Checkpoint complete.`
_SAVE = re.compile(r"Checkpoint at step \d+ saved\.|Saving checkpoint after step (\d+)\."
                   r"|Checkpoint complete\.")
#: 0.5 on, and 0.3 / 0.4 (`Checkpoint loaded, restoring training from step N.`)
_RESUME = re.compile(r"Restoring training from the last checkpoint at step \d+"
                     r"|Checkpoint loaded, restoring training from step \d+")
_CONT = re.compile(r"^(?:\[\w{0,20}\]:)? {21,}")
_SNIFF = re.compile(r"\w+ Metrics \(step \d+\) - [^|\n]+: ")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    return 0.85 if " Metrics (step " in text and _SNIFF.search(text) else 0.0


def _number(raw: str) -> float | None:
    raw = raw.strip().replace(",", "")
    size = _BYTES.fullmatch(raw)
    if size:
        return float(size.group(1)) * _UNIT[size.group(2)]
    if raw.endswith("s") and raw[:-1].replace(".", "", 1).isdigit():
        raw = raw[:-1]
    try:
        return float(raw)
    except ValueError:
        try:
            return parse_float(raw)
        except ValueError:
            return None


def _joined(text: str, first_line: int) -> tuple[str, list[int], list[int]]:
    """The record's text with rich's wrapping undone, each piece's start offset, its line."""
    parts, starts, lines, pos = [], [], [], 0
    for i, piece in enumerate(text.split("\n")):
        piece = (_CONT.sub("", piece) if i else piece).rstrip()
        parts.append(piece)
        starts.append(pos)
        lines.append(first_line + i)
        pos += len(piece) + 1
    return " ".join(parts), starts, lines


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    below_one = 0
    at_end = len(body.rstrip("\r\n"))
    for lineno, m in numbered(_RECORD, body):
        title, step = m.group(1), int(m.group(2))
        if not fits_step(step):
            b.skip(lineno, "step does not fit in 64 bits", m.group(0))
            continue
        text, starts, lines = _joined(m.group(3), lineno)
        head, sep, _ = text.partition(" - ")
        if sep and ": " not in head:  # `Validation Metrics (step N) - librispeech - Loss: ...`
            prefix, pos = f"{title}/{head.strip()}/", len(head) + len(sep)
        else:
            prefix, pos = f"{title}/", 0
        if text[pos:].strip() == "N/A":  # LogMetricRecorder's record without values
            continue
        pieces = text[pos:].split(" | ")
        for k, part in enumerate(pieces):
            end, pos = pos + len(part), pos + len(part) + 3
            where = lines[bisect_right(starts, max(end - 1, 0)) - 1]
            name, sep, raw = part.partition(": ")
            if not sep or not name.strip():
                if not (k == len(pieces) - 1 and m.end() >= at_end):
                    b.skip(where, "fairseq2 metric that is not `Name: value`", m.group(0))
                break
            if raw.strip() == "<1":
                below_one += 1
                continue
            value = _number(raw)
            if value is None:
                b.skip(where, f"fairseq2 value of {name.strip()} is not a number", m.group(0))
                continue
            b.add(f"{prefix}{name.strip()}", step, value, order=where)
    if tail and " Metrics (step " in tail:
        b.skip(tail_line, "truncated last line", tail)
    saves = SaveLines()
    pending = None  # 0.3 / 0.4: the step a save started at, saved once it is complete
    for lineno, m in numbered(_SAVE, body):
        if m.group(1):
            pending = int(m.group(1))
        elif m.group(0) == "Checkpoint complete.":
            if pending is not None:
                saves.feed(lineno, f"Checkpoint at step {pending} saved.")
            pending = None
        else:
            saves.feed(lineno, m.group(0))
    for lineno, _ in numbered(_RESUME, body):  # a resume: a new segment from here
        b.header(lineno)
    extra = {"below_one_values": str(below_one)} if below_one else {}
    return [b.build(run, str(path), FORMAT,
                    RunMeta(framework="fairseq2", extra=extra, **saves.fields()))]


# ------------------------------------------------------------------ JsonlMetricRecorder files

_JSONL_HEAD = re.compile(r'\{"Time": "[^"\n]{10,40}"(?:, "Step": -?\d+)?[,}]')


def sniff_fairseq2_jsonl(name: str, head: bytes) -> float:
    if not name.endswith(".jsonl"):
        return 0.0
    first = next((ln for ln in head_text(head).split("\n") if ln.strip()), "")
    return 0.9 if _JSONL_HEAD.match(first.strip()) else 0.0


def category_of(path: Path) -> str:
    """A JSONL metric file's category: its path under the nearest `metrics/` folder, without
    `.jsonl` (`out/metrics/valid/librispeech.jsonl` -> `valid/librispeech`); the file's stem
    when it is not under one."""
    parts = path.with_suffix("").parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "metrics":
            return "/".join(parts[i + 1:])
    return path.stem


def _wall(raw: object) -> float:
    if not isinstance(raw, str):
        return float("nan")
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError:
        return float("nan")


def read_fairseq2_jsonl(path: Path, run: str) -> list[RunRecords]:
    from .jsonl import MAX_DEPTH, deep_lines

    body, tail, tail_line = split_truncated(read_text(path))
    prefix = category_of(path) + "/"
    raw = body.encode()
    deep = {raw.count(b"\n", 0, a) + 1 for a, _ in deep_lines(raw, MAX_DEPTH)}
    del raw
    b = RecordsBuilder()
    lists = 0
    for lineno, line in enumerate(body.split("\n"), 1):
        if not line.strip():
            continue
        if lineno in deep:
            b.skip(lineno, f"nested deeper than {MAX_DEPTH} levels", line)
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            b.skip(lineno, "not a JSON object", line)
            continue
        if not isinstance(rec, dict):
            b.skip(lineno, "not a JSON object", line)
            continue
        step = rec.get("Step")
        if not isinstance(step, int) or isinstance(step, bool) or not fits_step(step):
            b.skip(lineno, "fairseq2 record without a step", line)
            continue
        wall = _wall(rec.get("Time"))
        for name, value in rec.items():
            if name in ("Time", "Step"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if isinstance(value, list):
                    lists += 1
                else:
                    b.skip(lineno, f"fairseq2 value of {name} is not a number", line)
                continue
            b.add(prefix + name, step, as_float(value), wall, order=lineno)
    if tail.strip():
        b.skip(tail_line, "truncated last line", tail)
    extra = {"list_values": str(lists)} if lists else {}
    return [b.build(run, str(path), JSONL_FORMAT, RunMeta(framework="fairseq2", extra=extra))]
