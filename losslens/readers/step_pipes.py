"""Step-pipe lines: a training script's own `step N | name value | ...` lines.

No framework writes these; a script's `print` does, in the shape build-nanogpt and llm.c made
common (the Qwen3-from-scratch script this dialect was first taken from prints both):

```
step   47700 | loss 1.4684 | lr 1.79e-04 | grad 0.075 | 113.4k tok/s | mfu 114.07%
  [eval] step   48000 | val_loss 4.0749
[Checkpoint] saved ./checkpoints/ckpt_step0048000.pt
[Checkpoint] resumed from ./checkpoints/latest.pt at step 47700
```

A line is read when `step N` (`Step N`, `step N/M`) starts its message and a `|` follows the
counter: only a logging prefix (time stamp, level, `[tags]`, `name:`) may come before it.
Each `|`-separated part holds pairs, `name value` (`loss 1.4684`, `train loss 2.1`), `name:
value` / `name=value`, or `value unit` (`113.4k tok/s`: the tag is the unit). A number may
end in `%` (kept as printed), `ms` / `s` (kept) or a `k` / `M` / `G` / `B` multiplier
(applied: `113.4k` is 113400). Tags are the names as printed; a line whose prefix holds
`[eval]` (`[val]`, `[valid]`, `[validation]`, `[test]`) gives its names that word
(`eval/loss`) unless they already start with a validation word (`val_loss` stays). A part
that holds no pair (`(12.3 ms` after a split) is not read; a warning counts such parts.

Steps: N as printed. A step that goes back (a resume that appends to the log) starts a new
segment, as everywhere. `resumed from ... at step N` is a resume marker (a run header there).
Save lines: every framework's (`checkpoints.SaveLines`), and the script's own `[Checkpoint]
saved .../ckpt_step0048000.pt` (`pruned` ones are deletions). `Max steps : 100,000` /
`max_steps=...` gives the planned length, `Checkpoint every : 150 steps` the save interval.

Sniffed at 0.4: below every framework's own sniff (build-nanogpt's `step N | loss: X | ... |
dt: ...`, llm.c's `step 1/74 | train loss X | ...` and torchtune's `Step N | loss:X` keep
their readers) and below `epoch-lines`, above generic CSV and JSON lines.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (LEVEL, STAMP, Rows, fragments, head_text, parse_float, read_text,
                       split_truncated)

FORMAT = "step-pipes"

#: a logging prefix before `step`: stamps, levels, `[tags]`, `name:` / `name -` (8 at most;
#: each token matched one way only, atomically: linear whatever the line)
_PREFIX = (rf"(?:[\s|,:\-]*+(?>{STAMP}|{LEVEL}|\[[^\]\n]{{1,40}}\]"
           rf"|[A-Za-z_][\w.]*+(?=:|\s+-\s))){{0,8}}")
_LINE = re.compile(rf"({_PREFIX})[\s|,:\-]*[Ss](?i:tep)\s+(\d{{1,18}})(?:\s*/\s*(\d{{1,18}}))?"
                   r"\s*\|")
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?i:nan|inf(?:inity)?)(?![\w.])"
_NAME = r"[A-Za-z_][\w./\-]*+(?: [A-Za-z_][\w./\-]*+){0,2}?"
_PAIR = re.compile(
    rf"(?P<name>{_NAME})(?:\s*[:=]\s*|\s+)(?P<value>{_NUM})(?P<mult>[kKMGB](?![\w/.]))?"
    r"(?:\s?(?:%|ms|s)(?![\w/.]))?"
    rf"|(?P<value2>{_NUM})(?P<mult2>[kKMGB])?\s*(?P<unit>[A-Za-z_%][\w./\-]*%?)")
_GAP = re.compile(r"[\s,;]*+")
_MULT = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}
_EVAL_WORD = re.compile(r"\[(eval|evaluation|val|valid|validation|test)\]", re.IGNORECASE)
_VAL_NAME = re.compile(r"(?i)^(?:eval|evaluation|val|valid|validation|test|dev)(?:[\s_/\-]|$)")
_RESUME = re.compile(r"(?i)\bresum\w*\b.*?\bat step\s+(\d{1,18})")
_MAX_STEPS = re.compile(r"(?i)^\s*max[ _]steps\s*[:=]\s*([\d,]{1,24})\s*$")
_SAVE_EVERY = re.compile(r"(?i)^\s*(?:checkpoint every|ckpt[ _]interval|save[ _]interval)\s*"
                         r"[:=]\s*([\d,]{1,24})(?:\s*steps)?\s*$")
#: a step counter with a `|` after it (where a sniff looks further: found with str.find,
#: ten times faster than a regex scan of the head)
_COUNTER = re.compile(r"[Ss](?i:tep)[ \t]+\d{1,18}(?:[ \t]*/[ \t]*\d{1,18})?[ \t]*\|")
_SNIFF_CANDIDATES = 64  # step lines a sniff parses, at most
_SNIFF_PROBES = 20000  # `step` words it looks at, at most


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "|" not in text:
        return 0.0
    parsed = probes = 0
    for word in ("step", "Step", "STEP"):
        i = text.find(word)
        while i >= 0 and probes < _SNIFF_PROBES and parsed < _SNIFF_CANDIDATES:
            probes += 1
            if (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")) \
                    and _COUNTER.match(text, i):
                parsed += 1
                a = text.rfind("\n", 0, i) + 1
                b = text.find("\n", i)
                for _, frag in fragments(text[a:b if b >= 0 else len(text)]):
                    got = _parse(frag)
                    if got is not None and got[2]:
                        return 0.4
            i = text.find(word, i + 4)
    return 0.0


def _parse(frag: str) -> tuple[int, int | None, list[tuple[str, float]], list[str]] | None:
    """(step, total, pairs, parts not read) of a step line; None for any other line."""
    m = _LINE.match(frag)
    if m is None:
        return None
    qual = _EVAL_WORD.search(m.group(1))
    pairs: list[tuple[str, float]] = []
    unread: list[str] = []
    for part in frag[m.end():].split("|"):
        part = part.strip()
        if not part:
            continue
        got, pos = [], 0
        while pos < len(part):  # pairs one after another, only `[\s,;]` between them
            pos = _GAP.match(part, pos).end()
            p = _PAIR.match(part, pos)
            if p is None or p.end() == pos:
                break
            got.append(p)
            pos = p.end()
        if not got or pos < len(part):
            unread.append(part)
            continue
        for p in got:
            try:
                pairs.append(_pair(p, qual))
            except ValueError:  # pragma: no cover - _NUM only matches numbers
                unread.append(part)
    return int(m.group(2)), int(m.group(3)) if m.group(3) else None, pairs, unread


def _pair(p: re.Match, qual: re.Match | None) -> tuple[str, float]:
    if p.group("name") is not None:
        name, raw, mult = " ".join(p.group("name").split()), p.group("value"), p.group("mult")
    else:
        name, raw, mult = p.group("unit"), p.group("value2"), p.group("mult2")
    value = parse_float(raw) * (_MULT[mult] if mult else 1.0)
    if qual and not _VAL_NAME.match(name):
        name = f"{qual.group(1).lower()}/{name}"
    return name, value


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    b, rows, saves = RecordsBuilder(), Rows(), SaveLines()
    extra: dict[str, str] = {}
    last: int | None = None
    total = max_steps = save_every = None
    unread, first_unread = 0, ""
    resumes: list[str] = []
    for lineno, frag in fragments(body):
        parsed = _parse(frag) if "|" in frag else None
        if parsed is None:
            if "heckpoint" in frag:
                saves.feed(lineno, frag, last)
            m = _RESUME.search(frag) if "esum" in frag else None
            if m:
                b.header(lineno)
                resumes.append(m.group(1))
            elif last is None or max_steps is None or save_every is None:
                mm = _MAX_STEPS.match(frag)
                if mm:
                    max_steps = int(mm.group(1).replace(",", ""))
                ms = _SAVE_EVERY.match(frag)
                if ms:
                    save_every = int(ms.group(1).replace(",", ""))
            continue
        step, tot, pairs, parts = parsed
        if not pairs:
            b.skip(lineno, "step line without a `name value` pair", frag)
            continue
        if parts:
            unread += len(parts)
            first_unread = first_unread or f"line {lineno}: {parts[0][:60]!r}"
        rows.group(tuple(name for name, _ in pairs)).append(
            (lineno, step, *(v for _, v in pairs)))
        last = step
        if tot is not None:
            total = tot
    if tail.strip() and _LINE.match(next((f for _, f in fragments(tail)), "")):
        b.skip(tail_line, "truncated last line", tail)
    if unread:
        b.warn(f"{unread:,} part(s) of step lines hold no `name value` pair and were not read "
               f"(first: {first_unread})")
    rows.into(b)
    if resumes:
        extra["resumed_at_steps"] = ", ".join(resumes)
    meta = RunMeta(train_iters=max_steps or total, save_interval=save_every, extra=extra,
                   **saves.fields())
    return [b.build(run, str(path), FORMAT, meta)]
