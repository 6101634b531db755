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

The recipes' progress bar (tqdm, on stderr) is read too: after every optimizer step they call
`pbar.set_description(f"{epoch}|{global_step}|Loss: {loss}")`, so a captured console holds

```
1|25|Loss: 1.2621808052062988:  26%|██▌       | 26/101 [06:45<17:27, 13.96s/it]
```

(each redraw a `\r` piece; `.4f` in later releases): `loss` at the global step and `epoch`,
every step, behind any launcher label (`[trainer0|0]:`). A redraw repeating the point before it
is not a new point. Where the metric logger prints to the same console, its `loss` at a
logged step comes right after the bar's (the bar is drawn first): the frame keeps the last
write, the logger's full-precision value.
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
#: the recipes' tqdm description: `{epoch}|{global_step}|Loss: {loss}` then tqdm's `: `
_BAR = re.compile(r"(\d{1,9})\|(\d{1,18})\|Loss: ([^:\s]{1,40}): ")
_BAR_SNIFF = re.compile(r"(?:^|[\r\n]|\]:)\d{1,9}\|\d{1,18}\|Loss: [-+0-9.eEnaif]{1,40}: ")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "Step " in text and _SNIFF.search(text):
        return 0.85
    return 0.8 if "|Loss: " in text and _BAR_SNIFF.search(text) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    last_bar: tuple[int, float] | None = None
    for lineno, frag in fragments(body):
        if "|Loss: " in frag[:80]:
            last_bar = _bar(b, lineno, frag, last_bar)
            continue
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


def _bar(b: RecordsBuilder, lineno: int, frag: str,
         last: tuple[int, float] | None) -> tuple[int, float] | None:
    """One progress-bar redraw: its (step, loss) unless it repeats the redraw before it."""
    m = _BAR.match(frag)
    if not m:
        return last
    try:
        step, loss, epoch = int(m.group(2)), parse_float(m.group(3)), float(m.group(1))
    except ValueError:
        b.skip(lineno, "torchtune progress bar whose loss is not a number", frag[:200])
        return last
    if last is not None and last[0] == step and (last[1] == loss or loss != loss == last[1]):
        return last
    b.add("loss", step, loss, order=lineno)
    b.add("epoch", step, epoch, order=lineno)
    return step, loss
