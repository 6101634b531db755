"""Levanter logs: its JSON-lines tracker records, else its progress-bar lines.

Levanter's `json_logger` tracker (`levanter/tracker/json_logger.py`) logs every
`levanter.tracker.log(metrics, step=N)` call as one JSON record through Python logging, after
the prefix `levanter.utils.logging.init_logging` gives every line:

```
2025-06-01T10:00:00 - 0 - levanter.json_logger - json_logger.py:79 - INFO :: {"tracker": "json_logger", "event": "log", "step": 100, "metrics": {"train/loss": 3.21, "global_step": 100, "run_progress": 0.01}}
2025-06-01T10:00:00 - 0 - levanter.json_logger - json_logger.py:79 - INFO :: {"tracker": "json_logger", "event": "log", "step": 100, "metrics": {"throughput/duration": 1.2, "throughput/mfu": 41.5}}
2025-06-01T10:05:00 - 0 - levanter.json_logger - json_logger.py:79 - INFO :: {"tracker": "json_logger", "event": "log", "step": 1000, "metrics": {"eval/loss": 3.3, "eval/bpb": 1.1}}
```

Tags are the metric names (nested dicts joined with `/`): `train/loss` train_loss, `eval/loss`
and `eval/<dataset>/loss` val_loss, `optim/learning_rate` lr, `throughput/...`. Histograms,
strings, lists and `global_step` (the step itself) are not points; records logged with no step
(`step: null`, Levanter's data monitor) are counted in a warning. The `hparams` record gives
the run's hyper-parameters (`trainer/num_train_steps`, `optimizer/learning_rate`, ...; all of
them as text under `extra`).

Without a tracker record in the file, the train loop's progress bar is read: Levanter's
`pbar_logger` uses `tqdm_loggable`, which off a terminal logs (at most once a minute)

```
2025-06-01T10:00:00 - 0 - tqdm_loggable.tqdm_logging - tqdm_logging.py:156 - INFO :: Progress on:train 11.0it/18.0it rate:34.5s/it remaining:04:01 elapsed:17:46 postfix:loss=15.5
```

as `train/loss` at the bar's count (steps completed; the loss is the last one the bar was
given, printed with three significant digits). tqdm_loggable prints the count through tqdm's
`format_sizeof` (`1.00it`, `19.0it`, `850it`, `1.23kit`, `12.3kit`): exact below 1000, three
significant digits from there on, so those steps are rounded (a warning says so, and a line
whose rounded count repeats the one before is left out and counted); an exact count printed
twice in a row is a redraw (update() and set_postfix() both print) and its later line, with
the newest postfix, is read; a plain `100/10000` is read too. On a terminal (and in every
Levanter before tqdm_loggable, September 2024) the bar is plain tqdm, redrawn after a `\r`:

```
train:   0%|          | 2/100000 [00:46<644:59:38, 23.22s/it, loss=11.2]
```

read the same way (`train/loss` at the count, exact), in a file that has Levanter's log lines;
a count redrawn in a row is read once, from its last drawing. Levanter's `eval loss: 3.123`
lines carry no step and are not read. Checkpoints: `Saved checkpoint to DIR/step-N for step N` (temporary
ones removed again by `Removing checkpoint ...`); before March 2024 `Saved checkpoint for step
N` / `Saved checkpoint at step N to DIR. ...` (temporary ones removed by `Deleting checkpoint
NAME from DIR`); `Resuming training from step N` starts a new segment.

Records are found with one regular expression over the whole text.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Iterator

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (fits_step, head_text, numbered, parse_float, read_text, split_truncated,
                       utc_seconds)

FORMAT = "levanter"

_RECORD = re.compile(r'\{"tracker": "json_logger", "event": "(\w+)"[^\n]*')
#: (the bar's name is bounded: an unbounded lazy group made a long line of repeats quadratic)
_PROGRESS = re.compile(r"Progress on:([^\n]{0,200}?) (\d{1,30}(?:\.\d{1,30})?)([kMGTPEZY]?)"
                       r"[A-Za-z]{0,20}/(\S+) rate:\S+ remaining:\S+ elapsed:\S+ "
                       r"postfix:([^\n]*)")
_PREFIX = "kMGTPEZY"  # tqdm's format_sizeof: each a factor of 1000 (its default divisor)
_RESUME = re.compile(r"Resuming training from step \d+")  # main/train_lm.py
_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d) - ")
#: since March 2024 `Saved checkpoint to DIR for step N`; before, `Saved checkpoint for step N`
#: (save_checkpoint) and `Saved checkpoint at step N to DIR. ...` (the Checkpointer), and
#: temporary checkpoints went with `Deleting checkpoint NAME from DIR`
_SAVE = re.compile(r"(?:Saved checkpoint to \S+ for step \d+|Removing checkpoint \S+"
                   r"|Deleted old checkpoint \S+|Saved checkpoint (?:for|at) step \d+"
                   r"|Deleting checkpoint \S+ from)")
#: A plain tqdm bar with a known total and a postfix: `desc: NN%|bar| n/total [elapsed<left,
#: rate, postfix]` (every part bounded: a damaged bar cannot make the scan quadratic).
_BAR = re.compile(r"(?<![\w-])([A-Za-z_][\w-]{0,40}): {0,3}\d{1,3}%\|[^|\n\r]{0,400}\| {0,2}"
                  r"(\d{1,19})/\d{1,19} \[[^\]\n\r,]{0,40}, [^\]\n\r,]{0,40}, ([^\]\n\r]{1,400})\]")
_SNIFF = re.compile(r" - \d+ - (?:levanter\.[\w.]+|tqdm_loggable\.tqdm_logging) - \w+\.py:\d+ - "
                    r"[A-Z]+ :: ")

#: hparams keys (flattened with `/`) → RunMeta fields.
_HPARAMS = {
    "trainer/num_train_steps": ("train_iters", int),
    "trainer/train_batch_size": ("global_batch_size", int),
    "optimizer/learning_rate": ("lr", float),
    "optimizer/weight_decay": ("weight_decay", float),
    "optimizer/beta1": ("adam_beta1", float),
    "optimizer/beta2": ("adam_beta2", float),
    "optimizer/epsilon": ("adam_eps", float),
    "optimizer/max_grad_norm": ("clip_grad", float),
    "optimizer/lr_schedule": ("lr_schedule", str),
    "model/hidden_dim": ("hidden_size", int),
    "model/num_layers": ("num_layers", int),
    "model/num_heads": ("num_heads", int),
    "model/seq_len": ("seq_length", int),
}
#: At most this many hyper-parameters are kept as text (a config can have thousands).
MAX_HPARAMS = 500
#: Metric names that repeat the step itself.
_STEP_TAGS = frozenset({"global_step"})


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if '{"tracker": "json_logger", "event": "' in text:
        return 0.95
    if "Progress on:" in text and _SNIFF.search(text) and _PROGRESS.search(text):
        return 0.85
    if "%|" in text and _SNIFF.search(text) and _BAR.search(text):
        return 0.8
    return 0.0


def _flat(metrics: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            if "bucket_limits" not in value:  # a Histogram: not a point
                yield from _flat(value, name)
        else:
            yield name, value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # a 400-digit JSON integer
        return math.inf if value > 0 else -math.inf


def _stamp(body: str, start: int, cache: dict[str, float]) -> float:
    m = _STAMP.match(body, start)
    return utc_seconds(f"{m.group(1)} {m.group(2)}", cache) if m else math.nan


def _meta(hparams: Any, meta: dict[str, Any]) -> None:
    """RunMeta fields from the `hparams` record; every scalar also kept under `extra`."""
    if not isinstance(hparams, dict):
        return
    extra = meta.setdefault("extra", {})
    for key, value in _flat(hparams):
        if value is None or isinstance(value, list) or len(extra) >= MAX_HPARAMS:
            continue
        extra[key] = str(value)[:200]
        field, kind = _HPARAMS.get(key, (None, None))
        if field is None or isinstance(value, bool):
            continue
        try:
            meta[field] = kind(value)
        except (TypeError, ValueError, OverflowError):
            continue
    mp = extra.get("trainer/mp", "") + extra.get("trainer/mp/compute_dtype", "")
    for spelling, precision in (("bfloat16", "bf16"), ("float16", "fp16")):
        if spelling in mp:
            meta["precision"] = precision
            break


def _records(body: str, b: RecordsBuilder, meta: dict[str, Any]) -> int:
    """Read the tracker records; returns how many `log` records had a step."""
    stepless, read = 0, 0
    stamps: dict[str, float] = {}
    for lineno, m in numbered(_RECORD, body):
        event = m.group(1)
        if event not in ("log", "hparams"):
            continue
        try:
            rec = json.loads(m.group(0).rstrip())
        except (ValueError, RecursionError):
            b.skip(lineno, "damaged json_logger record", m.group(0))
            continue
        if not isinstance(rec, dict):
            continue
        if event == "hparams":
            _meta(rec.get("hparams"), meta)
            continue
        step, metrics = rec.get("step"), rec.get("metrics")
        if step is None:
            stepless += 1
            continue
        if not isinstance(step, int) or isinstance(step, bool) or not fits_step(step):
            b.skip(lineno, "json_logger record whose step is not an integer", m.group(0))
            continue
        if not isinstance(metrics, dict):
            b.skip(lineno, "json_logger record without a metrics object", m.group(0))
            continue
        wall = _stamp(body, body.rfind("\n", 0, m.start()) + 1, stamps)
        try:
            items = list(_flat(metrics))
        except RecursionError:  # nested past Python's limit: a damaged record
            b.skip(lineno, "damaged json_logger record", m.group(0))
            continue
        for tag, value in items:
            number = _number(value)
            if number is not None and tag not in _STEP_TAGS:
                b.add(tag, step, number, wall, order=lineno)
        read += 1
    if stepless:
        b.warn(f"{stepless} json_logger records have no step (Levanter logs some metrics "
               "that way); they are not plotted")
    return read


def _count(number: str, prefix: str) -> tuple[int, bool]:
    """A tqdm count as tqdm_loggable prints it (`19.0`, `1.23` + `k`): (count, rounded?)."""
    if not prefix and "." not in number:
        return int(number), False
    value = float(number) * 1000 ** (_PREFIX.index(prefix) + 1 if prefix else 0)
    return round(value), bool(prefix)


def _postfix(postfix: str) -> tuple[list[tuple[str, float]], bool]:
    """A bar's postfix `name=number, ...` as (name, value) pairs, and whether a part was not
    `name=number` (that part left out)."""
    pairs, bad = [], False
    for part in postfix.split(", "):
        key, sep, raw = part.partition("=")
        try:
            if not sep or not key:
                raise ValueError(part)
            pairs.append((key.strip(), parse_float(raw)))
        except ValueError:
            bad = True
    return pairs, bad


def _progress(body: str, b: RecordsBuilder) -> None:
    stamps: dict[str, float] = {}
    last: dict[str, int] = {}
    rounded = repeats = 0
    lines = [(lineno, m) for lineno, m in numbered(_PROGRESS, body)
             if m.group(5).rstrip() != "-"]
    # tqdm redraws a count when update() and set_postfix() both print (the pbar_logger calls
    # one after the other): the later line carries that step's newest postfix, the earlier
    # one is superseded (else the repeated step would read as a restart)
    parsed = [_postfix(m.group(5).rstrip()) for _, m in lines]
    after: dict[str, tuple[str, str]] = {}
    superseded = set()
    for k in range(len(lines) - 1, -1, -1):
        m = lines[k][1]
        key, count = m.group(1).strip() or "train", (m.group(2), m.group(3))
        if not m.group(3) and after.get(key) == count:
            superseded.add(k)
        if not parsed[k][1]:  # a damaged redraw supersedes nothing
            after[key] = count
        else:
            after.pop(key, None)
    for k, (lineno, m) in enumerate(lines):
        if k in superseded:
            continue
        step, approx = _count(m.group(2), m.group(3))
        if not fits_step(step):
            b.skip(lineno, "step does not fit in 64 bits", m.group(0))
            continue
        name = m.group(1).strip() or "train"
        if approx:
            rounded += 1
            if last.get(name) == step:
                repeats += 1
                continue
        last[name] = step
        wall = _stamp(body, body.rfind("\n", 0, m.start()) + 1, stamps)
        pairs, bad = parsed[k]
        for key, value in pairs:
            b.add(f"{name}/{key}", step, value, wall, order=lineno)
        if bad:  # one damaged line counts once
            b.skip(lineno, "progress-bar postfix that is not `name=number`", m.group(0))
    if rounded:
        b.warn(f"{rounded} progress lines give the step with three significant digits "
               "(tqdm prints counts from 1000 on as `1.23kit`): their steps are rounded"
               + (f"; {repeats} repeated the rounded step of the line before and were left out"
                  if repeats else ""))


def _bars(body: str, b: RecordsBuilder) -> None:
    """Plain tqdm bars (a terminal's, or Levanter's before tqdm_loggable): each count once, the
    last drawing of a count redrawn in a row (its postfix is the newest)."""
    bars = [(lineno, m) for lineno, m in numbered(_BAR, body)]
    redrawn, after = set(), {}
    for k in range(len(bars) - 1, -1, -1):  # a count drawn again next (same bar): superseded
        m = bars[k][1]
        if after.get(m.group(1)) == m.group(2):
            redrawn.add(k)
        after[m.group(1)] = m.group(2)
    for k, (lineno, m) in enumerate(bars):
        if k in redrawn:
            continue
        name, step = m.group(1), int(m.group(2))
        if not fits_step(step):
            b.skip(lineno, "step does not fit in 64 bits", m.group(0))
            continue
        pairs, bad = _postfix(m.group(3).strip())
        for key, value in pairs:
            b.add(f"{name}/{key}", step, value, order=lineno)
        if bad:
            b.skip(lineno, "progress-bar postfix that is not `name=number`", m.group(0))


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    meta: dict[str, Any] = {}
    if not _records(body, b, meta):
        _progress(body, b)
        if "%|" in body:
            _bars(body, b)
    saves = SaveLines()
    for lineno, m in numbered(_SAVE, body):
        saves.feed(lineno, m.group(0))
    for lineno, _ in numbered(_RESUME, body):  # a resume: a new segment from here
        b.header(lineno)
    if tail and ('"tracker": "json_logger"' in tail or "Progress on:" in tail):
        b.skip(tail_line, "truncated last line", tail)
    fields = {k: v for k, v in meta.items() if k != "extra"}
    return [b.build(run, str(path), FORMAT,
                    RunMeta(framework="levanter", extra=meta.get("extra") or {}, **fields,
                            **saves.fields()))]
