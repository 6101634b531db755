"""Epoch-pipe lines: PyTorch examples' `| epoch N | i/M batches | name value | ...` output.

pytorch/examples' word_language_model `main.py` prints (and the many scripts copied from it:
the text-classification tutorial, sampled-softmax forks, scGPT's fine-tuning):

```
| epoch   1 |   200/ 2983 batches | lr 20.0000 | ms/batch 11.61 | loss  5.53 | ppl   252.88
-----------------------------------------------------------------------------------------
| end of epoch   1 | time: 35.58s | valid loss  5.53 | valid ppl   252.86
-----------------------------------------------------------------------------------------
=========================================================================================
| End of training | test loss  5.24 | test ppl   189.51
=========================================================================================
```

A batch line's parts after the counter are pairs `name value` (`name: value`; a number may
end in `s` or `%`, kept as printed) and become tags named as printed (`loss` train_loss, `lr`
lr, `ppl` and `ms/batch` other). Its step is the global batch, `(epoch - first) × M + i`, with
`first` the first epoch's number (1, or 0 for scripts that count from 0) and M the batches an
epoch printed on the line. An `end of epoch N` line's pairs (`valid loss` val_loss, `valid
ppl`, `time`) sit at that epoch's end, `(N - first + 1) × M`; with no batch line in the file
its step is the epoch N. The `End of training` line's pairs (`test loss`) sit at the last step
written. `nan` / `inf` are NaN and inf, as printed. An epoch number that goes back (the script
run again into the same log) takes the step back: a new segment. Only a logging prefix (time stamp, level,
`name -`, `[RANK 0]:`) may come before the line's first `|`.

Parts with no pair are counted in one warning; a truncated last line is a skipped line.
Linear-time patterns (possessive names, one match per part). Sniffed at 0.5: the shape is
this script's own (`| epoch N |` and `batches |`, or `| end of epoch N |`).
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import (LEVEL, STAMP, fragments, head_text, parse_float, read_text,
                       split_truncated)

FORMAT = "epoch-pipes"

_PREFIX = (rf"(?:[\s,:\-]*+(?>{STAMP}|{LEVEL}|\[[^\]\n]{{1,40}}\]"
           rf"|[A-Za-z_][\w.]*+(?=:|\s+-\s))){{0,8}}[\s,:\-]*+")
_BATCH = re.compile(rf"{_PREFIX}\|\s*+(?i:epoch)\s++(\d{{1,9}})\s*+\|\s*+(\d{{1,12}})\s*+/\s*+"
                    r"(\d{1,12})\s++(?i:batch(?:es)?)\s*+\|")
_END = re.compile(rf"{_PREFIX}\|\s*+(?i:end of epoch)\s++(\d{{1,9}})\s*+\|")
_FINAL = re.compile(rf"{_PREFIX}\|\s*+(?i:end of training)\s*+\|")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)(?![\w.])"
_NAME = r"[A-Za-z_][\w./\-]*+(?: [A-Za-z_][\w./\-]*+){0,3}?"
_PAIR = re.compile(rf"({_NAME})(?:\s*[:=]\s*|\s+)({_NUM})(?:\s?(?:%|ms|s)(?![\w/.]))?")
_GAP = re.compile(r"[\s,;]*+")


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "|" not in text:
        return 0.0
    for word in ("batch", "end of epoch", "End of epoch"):
        i = text.find(word)
        seen = 0
        while i >= 0 and seen < 64:
            seen += 1
            a = text.rfind("\n", 0, i) + 1
            b = text.find("\n", i)
            for _, frag in fragments(text[a:b if b >= 0 else len(text)]):
                m = _BATCH.match(frag) or _END.match(frag)
                if m and _pairs(frag[m.end():])[0]:
                    return 0.5
            i = text.find(word, b if b >= 0 else len(text))
    return 0.0


def _pairs(rest: str) -> tuple[list[tuple[str, float]], list[str]]:
    """(pairs, parts with no pair) of the `|`-separated parts after a line's counter."""
    pairs: list[tuple[str, float]] = []
    unread: list[str] = []
    for part in rest.split("|"):
        part = part.strip()
        if not part:
            continue
        got, pos = [], 0
        while pos < len(part):
            pos = _GAP.match(part, pos).end()
            p = _PAIR.match(part, pos)
            if p is None or p.end() == pos:
                break
            got.append((" ".join(p.group(1).split()), parse_float(p.group(2))))
            pos = p.end()
        if got and pos >= len(part):
            pairs += got
        else:
            unread.append(part)
    return pairs, unread


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b = RecordsBuilder()
    #: (line, kind, epoch, batch, per_epoch, pairs): kind "batch", "end" or "final"
    rows: list[tuple[int, str, int, int, int, list[tuple[str, float]]]] = []
    unread, first_unread = 0, ""
    for lineno, frag in fragments(body):
        if "|" not in frag:
            continue
        m = _BATCH.match(frag)
        if m:
            kind, epoch, batch, per = "batch", int(m.group(1)), int(m.group(2)), int(m.group(3))
        else:
            m = _END.match(frag)
            if m:
                kind, epoch, batch, per = "end", int(m.group(1)), 0, 0
            else:
                m = _FINAL.match(frag)
                if m is None:
                    continue
                kind, epoch, batch, per = "final", 0, 0, 0
        pairs, parts = _pairs(frag[m.end():])
        if parts:
            unread += len(parts)
            first_unread = first_unread or f"line {lineno}: {parts[0][:60]!r}"
        if not pairs:
            b.skip(lineno, "line without a `name value` pair", frag)
            continue
        rows.append((lineno, kind, epoch, batch, per, pairs))
    if tail.strip():
        frag = next((f for _, f in fragments(tail)), "")
        if _BATCH.match(frag) or _END.match(frag) or _FINAL.match(frag):
            b.skip(tail_line, "truncated last line", tail)
    if unread:
        b.warn(f"{path}: {unread:,} part(s) of epoch lines hold no `name value` pair and were "
               f"not read (first: {first_unread})")
    how = _place(rows, b)
    return [b.build(run, str(path), FORMAT, RunMeta(extra={"step_source": how}))]


def _place(rows: list[tuple], b: RecordsBuilder) -> str:
    epochs = [r[2] for r in rows if r[1] != "final"]
    first = 0 if epochs and min(epochs) == 0 else 1
    pers = [r[4] for r in rows if r[1] == "batch"]
    per = max(set(pers), key=pers.count) if pers else 0
    last_step = 0
    for line, kind, epoch, batch, row_per, pairs in rows:
        if kind == "batch":
            step = (epoch - first) * (row_per or per) + batch
        elif kind == "end":
            step = (epoch - first + 1) * per if per else epoch
        else:
            step = last_step
        if not -(1 << 62) < step < (1 << 62):
            b.skip(line, "step does not fit in 64 bits", f"epoch {epoch}")
            continue
        last_step = step
        for name, value in pairs:
            b.add(name, step, value, order=line)
    if not per:
        return "epoch (no batch lines)"
    return f"(epoch - {first}) * {per} + batch (the batches an epoch printed)"
