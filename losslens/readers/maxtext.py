"""MaxText stdout (`MaxText/metric_logger.py` `log_metrics`, via max_logging / absl).

Training, one line per step:

```
completed step: 10, seconds: 1.150, TFLOP/s/device: 470.000, Tokens/s/device: 57000.000, total_weights: 8192, loss: 7.890
```

(older versions: `TFLOP/s: ...` or no throughput; newer ones add `lm_loss`, `perplexity`,
`mtp_loss`, `ce_loss`...). Evaluation, after a training step:

```
eval metrics after step: 100, loss=7.123, total_weights=5000.0, step_time_seconds=0.321
```

Tags: the training names as printed (`loss` train_loss, `seconds`, `TFLOP/s/device`...) and the
evaluation names under `eval/` (`eval/loss`, role val_loss). The step is MaxText's own step
counter as printed. Any logging prefix before `completed step:` is ignored. `Saved a checkpoint
at step N.` (older: `saved a checkpoint ...`) and `Started an asynchronous checkpoint save for
step N` name the run's checkpoints; `restoring from this run's directory step N` (a resume)
starts a new segment.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "maxtext"

_TRAIN = re.compile(r"completed step: (\d+), (.*)$")
_EVAL = re.compile(r"eval metrics after step: (\d+),\s*(.*)$")
#: (a key starts with a non-space: `\s*` and a key that could begin with spaces tried every split
#: of a run of spaces, 1,000 spaces took 14 s)
_TRAIN_PAIR = re.compile(r"\s*([^,:=\s][^,:=]*?): ([^,\s]+)\s*(?:,|$)")
_EVAL_PAIR = re.compile(r"\s*([^,:=\s][^,:=]*?)=([^,\s]+)\s*(?:,|$)")
_SNIFF = re.compile(r"completed step: \d+, (?:seconds|loss): ")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    return 0.9 if "completed step: " in text and _SNIFF.search(text) else 0.0


def _pairs(rest: str, pattern: re.Pattern) -> list[tuple[str, str]] | None:
    """The `key: value` (or `key=value`) pairs of `rest`; None when it is not only those."""
    out, pos = [], 0
    while pos < len(rest):
        m = pattern.match(rest, pos)
        if not m:
            return None
        out.append((m.group(1).strip(), m.group(2)))
        pos = m.end()
    return out


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    saves = SaveLines()
    for lineno, frag in fragments(body):
        if "step: " not in frag:
            if "heckpoint" in frag:
                saves.feed(lineno, frag)
            elif "restoring from this run's directory step" in frag:  # a resume
                b.header(lineno)
            continue
        m = _TRAIN.search(frag)
        prefix, pattern = "", _TRAIN_PAIR
        if not m:
            m = _EVAL.search(frag)
            prefix, pattern = "eval/", _EVAL_PAIR
        if not m:
            continue
        pairs = _pairs(m.group(2).rstrip(), pattern)
        if not pairs:
            b.skip(lineno, "MaxText step line that is not key/value pairs", frag)
            continue
        step = int(m.group(1))
        for key, raw in pairs:
            try:
                value = parse_float(raw)  # float() first, then every NaN/inf spelling
            except ValueError:
                b.skip(lineno, f"MaxText value of {key} is not a number", frag)
                continue
            b.add(prefix + key, step, value, order=lineno)
    if tail and ("completed step:" in tail or "eval metrics after step:" in tail):
        b.skip(tail_line, "truncated last line", tail)
    return [b.build(run, str(path), FORMAT, RunMeta(framework="maxtext", **saves.fields()))]
