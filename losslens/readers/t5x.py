"""t5x stdout: the scalar lines of CLU's `LoggingWriter` (and other trainers that use it).

t5x's `trainer.MetricsManager` writes every summary through CLU's `create_default_writer`,
which logs it with absl (`clu/metric_writers/logging_writer.py`, `write_scalars`):

```
I0612 10:01:02.123456 140245 logging_writer.py:48] [1000] collection=train accuracy=0.412345, cross_ent_loss=3.21044, learning_rate=0.01, loss=3.2251, timing/seconds=12.5, z_loss=0.0146628
I0612 10:05:07.654321 140245 logging_writer.py:48] [1000] collection=training_eval/c4_v220_span_corruption loss=3.30017, accuracy=0.40001
```

`[step]`, then ` collection=NAME` when the writer has one (t5x: `train` and
`training_eval/<task>`), then `key=value` pairs joined by `, ` (floats `.6g`, since 2023 `.6f`).
Tags: the train collection's keys as printed (`loss` train_loss, `cross_ent_loss`,
`accuracy`, `learning_rate`, `timing/...`), any other collection's under its name
(`training_eval/<task>/loss`, role val_loss). Lines that carry no scalars (`Got images: ...`,
`Histogram for ...`, `[Hyperparameters] ...`) are not points. t5x's `Saved checkpoint for step
N to DIR` lines name the run's checkpoints; `Restoring from checkpoint: ...` (a resume) starts a
new segment.

The lines are found with one regular expression over the whole text; each is split by one
more, and the rows of a (collection, keys) layout become columns with one numpy call.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (Rows, fits_step, head_text, numbered, parse_float, read_text,
                       split_truncated)

FORMAT = "t5x"

#: One scalar line, after absl's `... logging_writer.py:NN] ` (or Python logging's
#: `INFO:absl:`), or at the start of a line.
_LINE = re.compile(
    r"^(?:[^\n]*?logging_writer\.py:\d+\] |INFO:absl:)?\[(-?\d+)\]"
    r"(?: collection=([^\s\n]+))? ([^\n]*?)\r?$", re.M)
_PAIR = re.compile(r"([^=,\n][^=,\n]*)=([^,\n]*)(?:, |$)")
_NOT_SCALARS = ("Got ", "Histogram for ")
_SAVE = re.compile(r"Saved checkpoint for step \d+ to [^\n]*")
_RESTORE = re.compile(r"Restoring from checkpoint: ")  # checkpoints.py: a start or a resume
_SNIFF = re.compile(r"(?:logging_writer\.py:\d+\] |^)\[\d+\](?: collection=\S+)? [^=\s,]+=",
                    re.M)


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "]" not in text or "=" not in text:
        return 0.0
    m = _SNIFF.search(text)
    if not m:
        return 0.0
    return 0.9 if "logging_writer.py" in m.group(0) or "collection=" in text else 0.5


def _pairs(body: str) -> list[tuple[str, str]] | None:
    """The `key=value` pairs of `body`; None when it is not only those."""
    pairs = _PAIR.findall(body)
    if not pairs or len(pairs) != body.count(", ") + 1 or len(pairs) != body.count("="):
        return None
    return pairs


def _tags(coll: str | None, keys: tuple[str, ...], cache: dict) -> tuple[str, ...]:
    out = cache.get((coll, keys))
    if out is None:
        prefix = "" if coll in (None, "train") else coll + "/"
        out = cache[(coll, keys)] = tuple(prefix + k for k in keys)
    return out


def _headers(body: str, pattern: re.Pattern, b: RecordsBuilder) -> None:
    """A run header (a new segment) at each line where `pattern` is found."""
    for lineno, _ in numbered(pattern, body):
        b.header(lineno)


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    rows, tags = Rows(), {}
    collections: set[str] = set()
    for lineno, m in numbered(_LINE, body):
        text = m.group(3)
        if text.startswith(_NOT_SCALARS):
            continue
        pairs = _pairs(text)
        if not pairs:
            b.skip(lineno, "CLU scalar line that is not `key=value` pairs", m.group(0))
            continue
        step = int(m.group(1))
        if not fits_step(step):
            b.skip(lineno, "step does not fit in 64 bits", m.group(0))
            continue
        coll = m.group(2)
        if coll:
            collections.add(coll)
        try:
            values = [float(raw) for _, raw in pairs]
        except ValueError:
            values = None
        if values is not None:  # the common case: one row of a (collection, keys) table
            rows.group(_tags(coll, tuple(k for k, _ in pairs), tags)).append(
                (lineno, step, *values))
            continue
        prefix = "" if coll in (None, "train") else coll + "/"
        bad = None
        for key, raw in pairs:
            try:
                value = parse_float(raw)  # nan, inf, ...
            except ValueError:
                bad = bad or key
                continue
            b.add(prefix + key, step, value, order=lineno)
        if bad is not None:  # one damaged line counts once, whatever else it gave
            b.skip(lineno, f"CLU value of {bad} is not a number", m.group(0))
    rows.into(b)
    saves = SaveLines()
    for lineno, m in numbered(_SAVE, body):
        saves.feed(lineno, m.group(0))
    _headers(body, _RESTORE, b)
    if tail and _LINE.search(tail):
        b.skip(tail_line, "truncated last line", tail)
    t5x = "train" in collections or any(c.startswith("training_eval/") for c in collections)
    meta = RunMeta(framework="t5x" if t5x else "clu", **saves.fields())
    return [b.build(run, str(path), FORMAT, meta)]
