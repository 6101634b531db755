"""modded-nanogpt record logs and stdout (KellerJordan/modded-nanogpt `train_gpt.py`).

The speedrun's training script prints (rank 0, `print0`) and appends to `logs/<uuid>.txt`:

- `step:N/M train_loss:X train_time:Tms step_avg:Sms` after each optimizer step (N counts the
  steps done; later versions drop `train_loss` and print only the timing);
- `step:N/M val_loss:X train_time:Tms step_avg:Sms` every `val_loss_every` steps (125 in the
  early records, 250 later) and after the last step; the optimizer-track scripts print
  `train_time:12.345s` in seconds.

Tags: `train_loss` (role train_loss), `val_loss` (role val_loss), `train_time` (ms; seconds are
converted) and `step_avg` (ms) of the training lines; a validation line's timing is left out
when the line before it was a training line at the same step (the same clock read a moment
later: the speedrun prints `step:125 val_loss` right after `step:125 train_loss`) and kept
otherwise (the optimizer track logs validation lines alone). `step_avg:nanms` of the first steps (the timer starts after the
warm-up steps) is no measurement: left out and counted in `metadata.extra`.

A record file starts with the training script's own source (`with open(sys.argv[0]) as f:
code = f.read()`, logged first), whose `print0(f"step:{step}/...")` lines hold the same
patterns: everything before the first line of 100 `=` is that source when the file starts with
Python, and it is never read as points; its `Hyperparameters` fields (`num_iterations : int =
1530`) go to metadata. After it come the environment (`Running pytorch ...`, `nvidia-smi`),
another rule, and the log; `peak memory ... MiB` goes to metadata.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import Rows, fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "modded-nanogpt"
RULE = "=" * 100

_LINE = re.compile(r"^step:(\d+)/(\d+)((?: [A-Za-z_]\w*:\S+)+)\s*$")
_LOOKS = re.compile(r"^step:\d+/")
_FIELD = re.compile(r" ([A-Za-z_]\w*):(\S+)")
_SNIFF = re.compile(r"(?m)^step:\d+/\d+ (?:train_loss|val_loss|train_time):\S+")
_SNIFF_CODE = re.compile(r"print0?\(f[\"']step:\{step(?:\+1)?\}/\{")
_PY_START = re.compile(r"^(?:import |from |#|\"\"\"|'''|with open\(sys\.argv\[0\]\))")
_HPARAM = re.compile(r"^\s+([a-z_]\w*)\s*:\s*[\w\[\], |]+?\s*=\s*([^#]+?)\s*(?:#.*)?$")
_PEAK = re.compile(r"^peak memory (?:allocated|consumption): (\d+) MiB")
_TIMING = frozenset(("train_time", "step_avg"))
_INT_FIELDS = {"num_iterations": "train_iters", "warmup_iters": "warmup_steps"}


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "step:" not in text:
        return 0.0
    if _SNIFF.search(text):
        return 0.92
    # a record file whose source part fills the head: the script's own print line
    return 0.7 if _SNIFF_CODE.search(text) and "val_loss_every" in text else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b, rows = RecordsBuilder(), Rows()
    groups: dict[tuple[str, ...], list[tuple]] = {}
    hparams: dict[str, str] = {}
    extra: dict[str, str] = {}
    in_source = _starts_with_python(body)
    total: int | None = None
    nan_avg = 0
    in_hparams = False
    last_timed: int | None = None  # step of the training line just before, if it had timing
    for lineno, frag in fragments(body):
        if in_source:
            if frag.rstrip() == RULE:
                in_source = False
                extra["script_source_lines"] = str(lineno - 1)
            elif frag.startswith("class Hyperparameters"):
                in_hparams = True
            elif in_hparams:
                m = _HPARAM.match(frag)
                if m:
                    hparams[m.group(1)] = m.group(2).strip()
                elif frag.strip() and not frag.startswith((" ", "\t", "@")):
                    in_hparams = False
            continue
        if not frag.startswith("step:"):
            m = _PEAK.match(frag)
            if m:
                extra["peak_memory_mib"] = m.group(1)
            continue
        m = _LINE.match(frag)
        if not m:
            if _LOOKS.match(frag):
                b.skip(lineno, "modded-nanogpt step line that does not parse", frag)
            continue
        try:
            step, total_i = int(m.group(1)), int(m.group(2))
            tags, values = [], []
            for key, raw in _FIELD.findall(m.group(3)):
                value, dropped = _value(key, raw)
                if dropped:
                    nan_avg += 1
                    continue
                tags.append(key)
                values.append(value)
        except ValueError:
            b.skip(lineno, "modded-nanogpt step line with a value that is not a number", frag)
            continue
        total = max(total or 0, total_i)
        if "val_loss" in tags and last_timed == step:  # the clock the train line just read
            values = [v for t, v in zip(tags, values) if t not in _TIMING]
            tags = [t for t in tags if t not in _TIMING]
        last_timed = step if "val_loss" not in tags and _TIMING.intersection(tags) else None
        key = tuple(tags)
        rows_ = groups.get(key)
        if rows_ is None:
            rows_ = groups[key] = rows.group(key)
        rows_.append((lineno, step, *values))
    if tail and _LOOKS.match(tail.strip()):
        b.skip(tail_line, "truncated last line", tail)
    rows.into(b)
    if nan_avg:
        extra["step_avg_nan_dropped"] = str(nan_avg)
    return [b.build(run, str(path), FORMAT, _meta(hparams, extra, total))]


def _starts_with_python(text: str) -> bool:
    for line in text[:4096].split("\n"):
        if line.strip():
            return bool(_PY_START.match(line))
    return False


def _value(key: str, raw: str) -> tuple[float, bool]:
    """(value, dropped): times in ms (`123ms`, `1.5s`), `nanms` dropped."""
    unit = 1.0
    if key in ("train_time", "step_avg"):
        if raw.endswith("ms"):
            raw = raw[:-2]
        elif raw.endswith("s"):
            raw, unit = raw[:-1], 1000.0
    value = parse_float(raw)  # float() first, then every NaN/inf spelling
    if key == "step_avg" and math.isnan(value):
        return value, True
    return value * unit, False


def _meta(hparams: dict[str, str], extra: dict[str, str], total: int | None) -> RunMeta:
    fields: dict[str, object] = {}
    for key, name in _INT_FIELDS.items():
        if name and key in hparams and name not in fields:
            try:
                fields[name] = int(eval_int(hparams[key]))
            except ValueError:
                pass
    if total is not None:
        fields["train_iters"] = total  # what the log lines say wins over the source
    out = {f"hparams.{k}": v for k, v in hparams.items()}
    out.update(extra)
    return RunMeta(framework="modded-nanogpt", extra=out, **fields)


def eval_int(text: str) -> int:
    """`64*1024` → 65536, `1530` → 1530 (products of integers only; anything else: ValueError)."""
    parts = text.replace("_", "").split("*")
    if not all(p.strip().isdigit() for p in parts):
        raise ValueError(text)
    out = 1
    for p in parts:
        out *= int(p)
    return out
