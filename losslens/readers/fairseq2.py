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
`Train/Learning Rate`...); values are read through fairseq2's formatters (`1,024`; `12s` in
seconds); `<1` (an int formatter's "below one") is no number and is counted, not read. Each
point's order is the line its value is on; a record's last piece that is not `Name: value` at
the very end of the text is not counted (the writer may still be writing that record).
`Checkpoint at step N saved.` (fairseq2/trainer.py) names the run's checkpoints; `Restoring
training from the last checkpoint at step N.` starts a new segment.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import fits_step, head_text, numbered, parse_float, read_text, split_truncated

FORMAT = "fairseq2"

#: A record: its header, its first line's text, and rich's continuation lines.
#: (the title is anchored at a word start and bounded: `\w+` tried at every position of a long
#: word was quadratic)
_RECORD = re.compile(r"(?<!\w)(\w{1,64}) Metrics \(step (\d+)\) - "
                     r"([^\n]*(?:\n(?:\[\w{0,20}\]:)? {21,}\S[^\n]*)*)")
_SAVE = re.compile(r"Checkpoint at step \d+ saved\.")
_RESUME = re.compile(r"Restoring training from the last checkpoint at step \d+")
_CONT = re.compile(r"^(?:\[\w{0,20}\]:)? {21,}")
_SNIFF = re.compile(r"\w+ Metrics \(step \d+\) - [^|\n]+: ")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    return 0.85 if " Metrics (step " in text and _SNIFF.search(text) else 0.0


def _number(raw: str) -> float | None:
    raw = raw.strip().replace(",", "")
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
    for lineno, m in numbered(_SAVE, body):
        saves.feed(lineno, m.group(0))
    for lineno, _ in numbered(_RESUME, body):  # a resume: a new segment from here
        b.header(lineno)
    extra = {"below_one_values": str(below_one)} if below_one else {}
    return [b.build(run, str(path), FORMAT,
                    RunMeta(framework="fairseq2", extra=extra, **saves.fields()))]
