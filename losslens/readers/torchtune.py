"""torchtune metric loggers: DiskLogger `log_*.txt` files and StdoutLogger lines.

`torchtune/training/metric_logging.py` writes, per logged step, `log_dict`'s

```
Step 10 | loss:1.5400923490524292 lr:9.9e-05 tokens_per_second_per_gpu:101.22 grad_norm:0.98 
```

(each `name:value` followed by a space) and `log`'s single `Step 10 | loss:1.54`; the
StdoutLogger prints the same lines among the recipe's INFO lines. Tags are the names as
logged (`loss` train_loss, `lr`, `grad_norm`, `tokens_per_second_per_gpu`,
`peak_memory_alloc`...); the step is the recipe's global step. DiskLogger's `jsonl` output
(`{"step": 10, "loss": ...}`) is read by the generic `jsonl` reader.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "torchtune"

_LINE = re.compile(r"^Step (\d+) \| (.*)$")
_PAIR = re.compile(r"([^\s:]+):(\S*)")
_SNIFF = re.compile(r"(?m)^(?:\S*\]:)?Step \d+ \| [A-Za-z_][\w/.-]*:[-+0-9.eEnaif]+(?: |$)")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    return 0.85 if "Step " in text and _SNIFF.search(text) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    for lineno, frag in fragments(body):
        if not frag.startswith("Step "):
            continue
        m = _LINE.match(frag.rstrip())
        if not m:
            continue
        rest = m.group(2).strip()
        pairs = _PAIR.findall(rest)
        if not pairs or " ".join(f"{k}:{v}" for k, v in pairs) != " ".join(rest.split()):
            b.skip(lineno, "torchtune Step line that is not `name:value` pairs", frag)
            continue
        step = int(m.group(1))
        for key, raw in pairs:
            try:
                value = parse_float(raw)  # float() first, then every NaN/inf spelling
            except ValueError:
                b.skip(lineno, f"torchtune value of {key} is not a number", frag)
                continue
            b.add(key, step, value, order=lineno)
    if tail and tail.startswith("Step "):
        b.skip(tail_line, "truncated last line", tail)
    return [b.build(run, str(path), FORMAT, RunMeta(framework="torchtune"))]
