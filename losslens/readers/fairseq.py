"""fairseq and metaseq training logs: `train_inner` / `train` / `valid` progress records.

Each record is logged under the progress tag as logger name
(`2023-01-01 12:00:00 | INFO | train_inner | ...`, Hydra `[time][train_inner][INFO] - ...`, or
the pre-0.9 `| epoch 001: ...` prints), in JSON (`{"epoch": 1, "num_updates": "100", ...}`, values
are strings) or simple form (`epoch 001:    100 / 961 loss=9.876, ...` and
`epoch 001 | valid on 'valid' subset | loss 9.123 | ...`). The step is `num_updates`.

Tags are the JSON keys: `train_inner` keys as they are (`loss`, `gnorm`, `lr`...), summaries with
the progress tag prepended (`train_loss`, `valid_loss`, metaseq `valid/BookCorpusFair_loss`);
simple-form summaries get the same prefix so both modes give the same tags.

Losses are in bits (base 2): RunMeta.loss_units is "bits". fp16 overflow NOTE lines become
`overflow` (how many at that step) and `overflow loss_scale` (the scale set); fairseq does not
count an overflowed update, so they are placed at the update being attempted as far as the log
shows: the last logged `num_updates` + 1.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (as_float, fragments, head_text, parse_float, read_text, split_truncated,
                       strip_ansi, strip_prefix, utc_seconds)

_LOG_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,\d+)? \| ([A-Z]+) \| ([^|]+?) \| (.*)$")
_HYDRA_RE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:,\d+)?\]\[([^\]]+)\]\[[A-Z]+\] - (.*)$")
_OLD_RE = re.compile(r"^\| (.*)$")  # fairseq < 0.9 printed records with a leading "| "
_SNIFF_RE = re.compile(
    r"(?: \| (?:INFO|WARNING) \| (?:train_inner|train|valid\S*) \| |\]\[(?:train_inner|train|valid\S*)"
    r"\]\[INFO\] - |^\| )(?:\{|epoch \d{3})", re.MULTILINE)
_INTERVAL_RE = re.compile(r"^epoch (\d+): *(\d+) / (\d+|\?) +(\S.*)$")
_TQDM_RE = re.compile(r"^epoch \d+: +\d+%\|.*?\[[^\]]*?it/s, (\w+=.*)\]\s*$")
_SUMMARY_RE = re.compile(r"^epoch (\d+) \| (.*)$")
_SUBSET_RE = re.compile(r"^(?:valid|test) on '([^']+)' subset$")
_OVERFLOW_RE = re.compile(r"overflow detected.*?scale to:?\s*(\S+)", re.IGNORECASE)
_AMP_SKIP_RE = re.compile(r"AMP: skipping this batch")
_LOADED_RE = re.compile(r"loaded checkpoint (.+?) \(epoch (\d+) @ (\d+) updates\)", re.IGNORECASE)
_PROGRESS_TAGS = re.compile(r"^(?:train_inner|train|valid\S*|test\S*)$")
_AXIS_KEYS = {"epoch", "update", "num_updates"}
# config (Namespace(...) or the Hydra cfg dict) -> canonical RunMeta fields
_CFG = {
    "max_update": "train_iters", "clip_norm": "clip_grad", "weight_decay": "weight_decay",
    "adam_eps": "adam_eps", "warmup_updates": "warmup_steps",
    "save_interval_updates": "save_interval", "log_interval": "log_interval",
    "decoder_embed_dim": "hidden_size", "decoder_layers": "num_layers",
    "decoder_attention_heads": "num_heads", "tokens_per_sample": "seq_length",
    "batch_size": "micro_batch_size",
}
_INT = {"train_iters", "warmup_steps", "save_interval", "log_interval", "hidden_size",
        "num_layers", "num_heads", "seq_length", "micro_batch_size"}
_EXTRA = ("arch", "task", "criterion", "optimizer", "lr_scheduler", "max_tokens", "update_freq",
          "seed", "distributed_world_size", "memory_efficient_fp16")


def sniff(name: str, head: bytes) -> float:
    return 0.95 if _SNIFF_RE.search(head_text(head)) else 0.0


@dataclass
class _State:
    last_step: int = 0
    tqdm_step: int | None = None
    overflows: dict[int, list] = field(default_factory=dict)  # step -> [count, scale, order, wall]
    metaseq: bool = False
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    saves: SaveLines = field(default_factory=SaveLines)  # `Saved checkpoint ... (epoch E @ N updates`


def read(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(read_text(path))
    builder = RecordsBuilder()
    st = _State()
    cache: dict[str, float] = {}
    for lineno, frag in fragments(body):
        _line(builder, st, lineno, frag, cache)
    _, name, msg = _split(strip_prefix(strip_ansi(tail)).strip("\r"))
    if msg is not None and _looks_metric(name, msg.strip()):
        builder.skip(tail_line, "truncated last line", tail)
    for step, (count, scale, order, wall) in st.overflows.items():
        builder.add("overflow", step, count, wall, order)
        if scale is not None:
            builder.add("overflow loss_scale", step, scale, wall, order)
    fw = "metaseq" if st.metaseq else "fairseq"
    meta = RunMeta(framework=fw, loss_units="bits").merged(**st.meta, extra=st.extra,
                                                           **st.saves.fields())
    return [builder.build(run, str(path), "fairseq", meta)]


def _split(frag: str) -> tuple[str | None, str | None, str | None]:
    """(timestamp, logger name, message) of a line; message None when it is not a log record."""
    m = _LOG_RE.match(frag)
    if m:
        return m.group(1), m.group(3), m.group(4)
    m = _HYDRA_RE.match(frag)
    if m:
        return m.group(1), m.group(2), m.group(3)
    m = _OLD_RE.match(frag)
    if m:
        return None, None, m.group(1)
    if frag.startswith("{") and "num_updates" in frag:  # old bare JSON progress lines
        return None, None, frag
    if frag.startswith("epoch ") and "%|" in frag:  # tqdm bar on stderr, no logging prefix
        return None, None, frag
    return None, None, None


def _looks_metric(name: str | None, msg: str) -> bool:
    return bool((name and _PROGRESS_TAGS.match(name)) or msg.startswith(("{", "epoch ")))


def _line(builder: RecordsBuilder, st: _State, lineno: int, frag: str,
          cache: dict[str, float]) -> None:
    stamp, name, msg = _split(frag)
    if msg is None:
        return
    if name and name.startswith(("metaseq", "valid/")):
        st.metaseq = True
    wall = utc_seconds(stamp, cache) if stamp else float("nan")
    msg = msg.strip()
    if "Saved checkpoint" in msg:
        st.saves.feed(lineno, msg)
        return
    if msg.startswith(("Namespace(", "{'_name'")):
        if len(builder) or st.overflows:  # a second run appended to the same log
            builder.header(lineno)
        _config(msg, st)
    elif msg.startswith("{"):
        _json_record(builder, st, lineno, msg, wall)
    elif msg.startswith("epoch "):
        _simple_record(builder, st, lineno, name, msg, wall)
    elif (m := _OVERFLOW_RE.search(msg)) or _AMP_SKIP_RE.search(msg):
        _overflow(st, lineno, m.group(1) if m else None, wall)
    elif m := _LOADED_RE.search(msg):
        builder.header(lineno)
        st.last_step = int(m.group(3)) if len(m.group(3)) <= 18 else st.last_step
        st.tqdm_step = None
    elif name and _PROGRESS_TAGS.match(name) and not msg.startswith(("begin ", "end of ")):
        builder.skip(lineno, f"unrecognised {name} record", frag)


def _json_record(builder: RecordsBuilder, st: _State, lineno: int, msg: str, wall: float) -> None:
    try:
        rec = json.loads(msg)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
    except (ValueError, RecursionError):
        builder.skip(lineno, "invalid JSON record", msg)
        return
    if "_name" in rec and "common" in rec:  # a Hydra config dumped as JSON
        return
    step_key = "num_updates" if "num_updates" in rec else next(
        (k for k in rec if k.endswith("_num_updates")), None)
    step = _step(rec.get(step_key)) if step_key else None
    if step is None:
        builder.skip(lineno, "no num_updates in record", msg)
        return
    _emit(builder, st, rec, step, step_key, lineno, wall)


def _simple_record(builder: RecordsBuilder, st: _State, lineno: int, name: str | None,
                   msg: str, wall: float) -> None:
    m = _INTERVAL_RE.match(msg)
    tq = None if m else _TQDM_RE.match(msg)
    if m or tq:
        postfix = m.group(4) if m else tq.group(1)  # type: ignore[union-attr]
        pairs = [p.split("=", 1) for p in postfix.split(", ")]
        rec: dict[str, Any] = dict(p for p in pairs if len(p) == 2)
        prefix = ""
    elif s := _SUMMARY_RE.match(msg):
        rec, prefix = _summary(s.group(2), name)
    else:
        if "%|" not in msg:  # a bare tqdm redraw without postfix is not a record
            builder.skip(lineno, "unrecognised progress record", msg)
        return
    step = _step(rec.get("num_updates"))
    if step is None:
        if not tq:
            builder.skip(lineno, "no num_updates in record", msg)
        return
    if tq:  # a tqdm bar redraws the same postfix until the next log interval
        if step == st.tqdm_step:
            return
        st.tqdm_step = step
    rec = {prefix + k: v for k, v in rec.items()}
    _emit(builder, st, rec, step, prefix + "num_updates", lineno, wall)


def _summary(text: str, name: str | None) -> tuple[dict[str, Any], str]:
    """`valid on 'valid' subset | loss 9.1 | ...` -> (pairs, the tag prefix)."""
    pieces = text.split(" | ")
    tag = name if name and _PROGRESS_TAGS.match(name) else "train"
    sub = _SUBSET_RE.match(pieces[0].strip())
    if sub:
        tag, pieces = sub.group(1), pieces[1:]
    rec = {}
    for piece in pieces:
        key, _, value = piece.strip().partition(" ")
        if key and value:
            rec[key] = value
    return rec, tag + "_"


def _emit(builder: RecordsBuilder, st: _State, rec: dict[str, Any], step: int, step_key: str,
          lineno: int, wall: float) -> None:
    summary = step_key == "train_num_updates"
    bad = []  # fields that are not numbers: the line is counted as skipped, once
    for key, raw in rec.items():
        if key in _AXIS_KEYS or key == step_key:
            continue
        if summary and key == "train_wall":
            # the epoch summary's `wall` prefixed; `train_wall` is train_inner's training time
            key = "train_wall (epoch)"
        if isinstance(raw, bool) or raw is None:
            continue
        try:
            value = as_float(raw) if isinstance(raw, (int, float)) else parse_float(str(raw))
        except ValueError:
            bad.append(f"{key}={str(raw)[:40]}")
            continue
        builder.add(key, step, value, wall, lineno)
    if bad:
        builder.skip(lineno, "fields that are not numbers left out: " + ", ".join(bad[:5]))
    st.last_step = step


def _overflow(st: _State, lineno: int, scale: str | None, wall: float) -> None:
    step = st.last_step + 1
    entry = st.overflows.setdefault(step, [0, None, lineno, wall])
    entry[0] += 1
    entry[2], entry[3] = lineno, wall
    if scale is not None:
        try:
            entry[1] = parse_float(scale)
        except ValueError:
            pass


def _step(raw: Any) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        value = as_float(raw) if isinstance(raw, (int, float)) else parse_float(str(raw))
    except ValueError:
        return None
    return int(round(value)) if abs(value) < 1e18 else None  # NaN, inf, no int64 step


def _config(msg: str, st: _State) -> None:
    """Canonical fields from the `Namespace(k=v, ...)` or `{'k': v, ...}` config line.

    A later config line (a run appended to the log) overrides what it mentions.
    """
    def find(key: str) -> str | None:
        m = re.search(rf"(?:\b{key}=|'{key}': )(\{{'_name': '[^']*'|\[[^\]]*\]|'[^']*'|"
                      rf"\"[^\"]*\"|[^,)}}]+)", msg)
        if not m:
            return None
        value = m.group(1).strip()
        if value.startswith("{'_name': "):  # a Hydra config section: its name
            value = value[len("{'_name': "):]
        return value.strip("'\"")

    for key, canon in _CFG.items():
        raw = find(key)
        try:
            if raw is not None:
                num = float(raw.strip("[]").split(",")[0])
                st.meta[canon] = int(num) if canon in _INT else num
        except (ValueError, OverflowError):  # not a number, or inf for an integer setting
            pass
    lr = find("lr")
    if lr:
        try:
            st.meta["lr"] = float(lr.strip("[]").split(",")[0])
        except ValueError:
            pass
    betas = find("adam_betas")
    if betas and (b := re.findall(r"[-+0-9.eE]+", betas)) and len(b) == 2:
        try:
            st.meta["adam_beta1"], st.meta["adam_beta2"] = float(b[0]), float(b[1])
        except ValueError:  # `e`, `-`: a damaged tuple
            pass
    fp16, bf16 = find("fp16"), find("bf16")
    if "True" in (fp16, bf16) or fp16 == "False":
        st.meta["precision"] = "bf16" if bf16 == "True" else "fp16" if fp16 == "True" else "fp32"
    for key in _EXTRA:
        raw = find(key)
        if raw is not None:
            st.extra[key] = raw
