"""torchtitan console output.

Metric lines are logged through the root logger (`[titan] <asctime> - root - INFO - `), usually
behind torchrun's `[rank0]:` prefix and with an ANSI colour before every field:
`step: 10  loss:  8.12345  grad_norm:  1.2345  memory: 12.34GiB(25.00%)  tps: 12,345
tflops: 123.45  mfu: 12.34%` (2024 versions: `wps` instead of `tps`/`tflops`, no grad_norm).
Tags keep the console names (`loss`, `grad_norm`, `tps`, `wps`, `tflops`, `mfu` in %), with
`memory` in GiB and `memory_pct`. `mfu: N/A` (quantised training) is no measurement and is left
out. `validate step: N  loss: X ...` becomes torchtitan's own validation tag
`validation_metrics/loss` (role val_loss). The logging timestamp is the wall time (read as UTC:
the log does not say its zone). `Training starts at step N` is a run header. Save lines
(`Saving a full checkpoint at step N`; `Saving the checkpoint.` at the last step logged before
it) give `metadata.checkpoints`; `Checkpoints will be loaded from and saved to DIR` names the
folder.
"""
from __future__ import annotations

import calendar
import re
from functools import lru_cache
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (Rows, fragments, head_text, parse_float, read_text, split_truncated,
                       strip_ansi, strip_prefix)

FORMAT = "torchtitan"
VAL_TAG = "validation_metrics/loss"

_LOOKS = re.compile(r"(validate )?step:\s*(\d+)\s+loss:")
_TAIL_LOOKS = re.compile(r"(?:^|[\s\]-])(?:validate )?step:\s*\d")
_FIELD = re.compile(r"(\w+):\s*(\S+)")
_ALL_FIELDS = re.compile(r"\w+:\s*\S+(?:\s+\w+:\s*\S+)*")
_MEMORY = re.compile(r"([0-9.]+)GiB\(([0-9.]+)%\)$")
_STAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[,.](\d+))?")
_SNIFF = re.compile(r"(?m)(?:^|[\]\- ])step:\s*\d+\s+loss:\s*\S+\s+.*(?:memory:|tps:|wps:)")
_MODEL_ARG = re.compile(r"\b(dim|n_layers|n_heads|max_seq_len|norm_eps)=([0-9.e+-]+)")
_MODEL_FIELDS = {"dim": "hidden_size", "n_layers": "num_layers", "n_heads": "num_heads",
                 "max_seq_len": "seq_length"}


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if "step:" not in text:
        return 0.0
    return 0.9 if _SNIFF.search(strip_ansi(text)) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b, pts = RecordsBuilder(), Rows()
    meta: dict[str, object] = {}
    extra: dict[str, str] = {}
    saves, last = SaveLines(), None
    for lineno, frag in fragments(body):
        if "step:" in frag:
            last = _metric(lineno, frag, pts, b) or last
        elif "heckpoint" in frag and saves.feed(lineno, frag, last):
            pass
        elif "Training starts at step" in frag:
            b.header(lineno)
        elif "Loading the checkpoint from" in frag:
            where = frag.split("Loading the checkpoint from", 1)[1]
            extra["checkpoint_loaded_from"] = where.strip().rstrip(".")
        elif "ModelArgs(" in frag:
            _model_args(frag, meta, extra)
    if tail and _TAIL_LOOKS.search(strip_prefix(strip_ansi(tail))):
        b.skip(tail_line, "truncated last line", tail)
    if len(pts):
        extra["wall_time_zone"] = "log timestamps carry no zone; read as UTC"
    pts.into(b)
    return [b.build(run, str(path), FORMAT,
                    RunMeta(framework="torchtitan", extra=extra, **meta).merged(**saves.fields()))]


def _metric(lineno: int, frag: str, pts: Rows, b: RecordsBuilder) -> int | None:
    """Parse a step line into `pts`; its step when it was a training step line."""
    m = _LOOKS.search(frag)
    if not m:
        return None
    try:
        points = _fields(bool(m.group(1)), frag[m.end() - len("loss:"):])
    except ValueError:
        points = []
    if not points or len(m.group(2)) > 18:  # no fields, or digits spliced into the step
        b.skip(lineno, "torchtitan step line that does not parse", frag)
        return None
    row = (lineno, int(m.group(2)), _wall(frag[:m.start()]), *(v for _, v in points))
    pts.group(tuple(t for t, _ in points), wall=True).append(row)
    return None if m.group(1) else row[1]


def _fields(validate: bool, rest: str) -> list[tuple[str, float]]:
    """(tag, value) pairs of one metric line; [] when it is not all `key: value` pairs."""
    out: list[tuple[str, float]] = []
    if not _ALL_FIELDS.fullmatch(rest.rstrip()):
        return out
    for key, raw in _FIELD.findall(rest):
        if key == "loss":
            out.append((VAL_TAG if validate else "loss", _num(raw)))
        elif validate:
            continue  # only the validation loss is a series of interest
        elif key == "memory":
            mem = _MEMORY.match(raw)
            if not mem:
                raise ValueError(raw)
            out += [("memory", float(mem.group(1))), ("memory_pct", float(mem.group(2)))]
        elif key == "mfu" and raw.upper() == "N/A":
            continue
        else:
            out.append((key, _num(raw)))
    return out


def _num(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return parse_float(raw.replace(",", ""))  # `12,345`, `12.34%`


def _wall(prefix: str) -> float:
    m = _STAMP.search(prefix)
    if not m:
        return float("nan")
    frac = float("0." + m.group(7)) if m.group(7) else 0.0
    try:
        return _minute(m.group(0)[:16]) + int(m.group(6)) + frac
    except ValueError:  # month 13, day 0: a damaged stamp, no wall time
        return float("nan")


@lru_cache(maxsize=4096)
def _minute(stamp: str) -> int:
    """Epoch seconds of `YYYY-MM-DD HH:MM` (UTC); cached, consecutive lines share minutes."""
    y, mo, d, h, mi = int(stamp[:4]), int(stamp[5:7]), int(stamp[8:10]), int(stamp[11:13]), \
        int(stamp[14:16])
    return calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0))


def _model_args(frag: str, meta: dict[str, object], extra: dict[str, str]) -> None:
    for key, raw in _MODEL_ARG.findall(frag):
        extra[f"model.{key}"] = raw
        if key in _MODEL_FIELDS:
            try:
                meta[_MODEL_FIELDS[key]] = int(float(raw))
            except ValueError:
                pass
