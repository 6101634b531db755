"""fairseq2 metric log lines (`fairseq2.metrics` `LogMetricRecorder`).

Each recorded step is one logging line, the metrics under their display names joined by ` | `:

```
[Rank 0] 2024-05-01 10:00:00,123 INFO fairseq2.recipes.trainer - Train Metrics (step 100) - Loss: 2.345 | Learning Rate: 0.0003 | Batch Size: 1,024 | Elapsed Time: 12s | Wall Time: 1,234s
[Rank 0] 2024-05-01 10:05:00,456 INFO fairseq2.recipes.trainer - Valid Metrics (step 100) - Loss: 2.401
```

Tags are `{run}/{display name}` (`Train/Loss` train_loss, `Valid/Loss` val_loss, `Train/Learning
Rate`...); values are read through fairseq2's formatters (`1,024`; `12s` in seconds); `<1`
(an int formatter's "below one") is no number and is counted, not read.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "fairseq2"

_LINE = re.compile(r"(?:^|\s)(\w+) Metrics \(step (\d+)\) - (.*)$")
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


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    below_one = 0
    for lineno, frag in fragments(body):
        if " Metrics (step " not in frag:
            continue
        m = _LINE.search(frag)
        if not m:
            continue
        prefix, step = m.group(1), int(m.group(2))
        for part in m.group(3).split(" | "):
            name, sep, raw = part.partition(": ")
            if not sep or not name.strip():
                b.skip(lineno, "fairseq2 metric that is not `Name: value`", frag)
                break
            if raw.strip() == "<1":
                below_one += 1
                continue
            value = _number(raw)
            if value is None:
                b.skip(lineno, f"fairseq2 value of {name.strip()} is not a number", frag)
                continue
            b.add(f"{prefix}/{name.strip()}", step, value, order=lineno)
    if tail and " Metrics (step " in tail:
        b.skip(tail_line, "truncated last line", tail)
    extra = {"below_one_values": str(below_one)} if below_one else {}
    return [b.build(run, str(path), FORMAT, RunMeta(framework="fairseq2", extra=extra))]
