"""MosaicML Composer (and llm-foundry, which trains with it): ConsoleLogger and FileLogger.

ConsoleLogger (`composer/loggers/console_logger.py`) prints one block per logged batch and one
at the end of each evaluation:

```
[batch=10/1000]:
	 Train time/batch: 9
	 Train loss/train/total: 7.1234
	 Train metrics/train/LanguageCrossEntropy: 7.1234
[Eval batch=10/10] Eval on eval data:
	 Eval metrics/eval/LanguageCrossEntropy: 7.2001
```

(`[epoch=1][batch=10/100]` when the duration is in epochs, `[token=...]`/`[sample=...]`
likewise). Tags are the metric names after `Train `/`Eval ` (`loss/train/total`,
`metrics/eval/LanguageCrossEntropy`, `throughput/batches_per_sec`...); floats are printed
with four decimals. The step is the number of batches done: the header's `batch=N` in batch
durations, else `time/batch` + 1 (`time/batch` is logged at the batch's start). An eval block
has no step of its own: it belongs to the last training block before it (evaluation runs after
that batch). Strings, tensors and dicts are not points.

FileLogger writes `[metric][batch=N]: name: value` lines (its `[hyperparameter]: k: v` lines
go to metadata); N is the logger's step (Composer passes the batch count).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "composer"

_TRAIN_HEAD = re.compile(r"^(?:\[epoch=(\d+)\])?\[(batch|token|sample|epoch|iteration|duration)"
                         r"=(\d+)(?:/(\d+))?\]:?\s*$")
_EVAL_HEAD = re.compile(r"^\[Eval batch=\d+/\d+\] Eval on (\S+) data:?\s*$")
_METRIC = re.compile(r"^[\t ]+(Train|Eval) (.+?): (.*?)\s*$")  # (a tab; spaces once pasted)
_METRIC_LOOKS = re.compile(r"^(?:\d+: )?[\t ]+(?:Train|Eval) ")
_FILE_METRIC = re.compile(r"^\[metric\]\[batch=(\d+)\]: (.+?): (.*?)\s*$")
_FILE_HPARAM = re.compile(r"^\[hyperparameter\]: (.+?): (.*?)\s*$")
_SNIFF_CONSOLE = re.compile(r"(?m)^(?:\d+: |\[(?:rank)?\d+\]:)?(?:\[epoch=\d+\])?"
                            r"\[(?:batch|token|sample|epoch)=\d+(?:/\d+)?\]:[ \t]*\r?\n(?:\d+:|\[(?:rank)?\d+\]:)?[\t ]+(?:Train|Eval) ")
_SNIFF_FILE = re.compile(r"(?m)^\[metric\]\[batch=\d+\]: \S")
_HPARAMS = {"max_seq_len": ("seq_length", int), "global_train_batch_size":
            ("global_batch_size", int), "device_train_microbatch_size": ("micro_batch_size", int)}


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "[" not in text:
        return 0.0
    if _SNIFF_CONSOLE.search(text):
        return 0.9
    return 0.85 if _SNIFF_FILE.search(text) else 0.0


def _number(raw: str) -> float | None:
    if not raw or raw[0] in "\"'{[T" or raw == "None":  # strings, dicts, "Tensor of shape"
        return None
    try:
        return float(raw)
    except ValueError:
        try:
            return parse_float(raw)
        except ValueError:
            return None


def read(path: Path, run: str) -> list[RunRecords]:
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b = RecordsBuilder()
    hparams: dict[str, str] = {}
    block: list[tuple[int, str, float]] = []  # (line, tag, value) of the open block
    head: tuple[str, int, int | None] | None = None  # (kind, header count, line)
    last_step: int | None = None
    total: int | None = None
    unit: str | None = None
    non_numeric = 0

    def close() -> None:
        nonlocal last_step
        if head is None or not block:
            return
        kind, count, line = head
        if kind == "eval":
            step = last_step if last_step is not None else 0
        else:
            tb = next((v for _, t, v in block if t == "time/batch"), None)
            step = count if unit == "batch" else int(tb) + 1 if tb is not None else count
            last_step = step
        for lineno, tag, value in block:
            b.add(tag, step, value, order=lineno)

    for lineno, frag in fragments(body):
        if frag[:1] in ("\t", " "):
            m = _METRIC.match(frag)
            if m and head is not None:
                value = _number(m.group(3))
                if value is None:
                    non_numeric += 1
                else:
                    block.append((lineno, m.group(2), value))
            continue
        if not frag.startswith("["):
            continue
        m = _TRAIN_HEAD.match(frag)
        if m:
            close()
            block, head = [], ("train", int(m.group(3)), lineno)
            unit = m.group(2) if m.group(1) is None else "epoch-batch"
            if m.group(4) and unit == "batch":
                total = int(m.group(4))
            continue
        m = _EVAL_HEAD.match(frag)
        if m:
            close()
            block, head = [], ("eval", 0, lineno)
            continue
        m = _FILE_METRIC.match(frag)
        if m:
            value = _number(m.group(3))
            if value is None:
                non_numeric += 1
            else:
                b.add(m.group(2), int(m.group(1)), value, order=lineno)
            continue
        m = _FILE_HPARAM.match(frag)
        if m:
            hparams[m.group(1)] = m.group(2).strip('"')
    close()
    if tail and (_METRIC_LOOKS.match(tail) or tail.startswith("[metric]")):
        b.skip(tail_line, "truncated last line", tail)
    fields: dict[str, object] = {}
    for key, (name, cast) in _HPARAMS.items():
        if key in hparams:
            try:
                fields[name] = cast(hparams[key])
            except ValueError:
                pass
    if total is not None:
        fields["train_iters"] = total
    extra = {f"hparams.{k}": v for k, v in hparams.items()}
    if non_numeric:
        extra["non_numeric_values"] = str(non_numeric)
    return [b.build(run, str(path), FORMAT, RunMeta(framework="composer", extra=extra, **fields))]
