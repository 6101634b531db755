"""nanoGPT `train.py` stdout.

Two metric lines, both printed by the master process with plain `print`:

- `iter N: loss X, time Yms, mfu Z%` every `log_interval` → tags `loss` (the last micro-batch's
  loss, role train_loss), `time` (ms) and `mfu` (%; the `-100.00%` warm-up sentinel of the first
  iterations of each process is not a measurement and is left out, counted in metadata);
- `step N: train loss X, val loss Y` every `eval_interval` → tags `train loss` (an estimate over
  `eval_iters` batches of the training split; also role train_loss, on the eval grid) and
  `val loss` (role val_loss).

Forks that print the loss in another unit put its name after each loss value
(jackokeefe11/nanoGPT's `iter 10: loss 4.5735 BPC, time ...`, `step 250: train loss 2.5833 BPC,
val loss 2.7931 BPC`: bits per character, the loss / ln 2). Values are kept as printed, under the
same tags; `metadata.extra["unit/<tag>"]` names the unit, and a warning says so when the loss
tags of one file are printed in different units (or some with one and some without).

`Resuming training from ...` is a resume marker (header); the resumed job re-prints the eval line
of the checkpoint's step, which the Frame turns into a new segment. The config echo
(`Overriding config with <file>:` followed by the file, `Overriding: k = v`) and
`tokens per iteration will be: N` become RunMeta. `saving checkpoint to out` (printed after
the eval line of the step it saves) gives `metadata.checkpoints`.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import Rows, fragments, head_text, parse_float, read_text, split_truncated

FORMAT = "nanogpt"

#: a unit word a fork prints after a loss value (`4.5735 BPC`)
_UNIT = r"(?: ([A-Za-z][A-Za-z/]{0,7}))?"
_ITER = re.compile(r"iter (\d+): loss (\S+?)" + _UNIT + r", time (\S+?)ms(?:, mfu (\S+?)%)?\s*$")
_EVAL = re.compile(r"step (\d+): train loss (\S+?)" + _UNIT + r", val loss (\S+?)" + _UNIT
                   + r"\s*$")
# what a metric line of this dialect starts with, parsed or not
_LOOKS = re.compile(r"iter \d+:|step \d+: (?:train|val) loss")
_SNIFF_ITER = re.compile(r"(?m)^(?:\S*\]:)?iter \d+: loss \S+?" + _UNIT + r", time [0-9.]+ms")
_SNIFF_EVAL = re.compile(r"(?m)^(?:\S*\]:)?step \d+: train loss \S+?" + _UNIT + r", val loss ")
_ASSIGN = re.compile(r"([A-Za-z_]\w*)\s*=\s*(.+?)\s*(?:#.*)?$")
_OVERRIDE = re.compile(r"Overriding: ([A-Za-z_]\w*) = (.+?)\s*$")
_TOKENS = re.compile(r"tokens per iteration will be: ([\d,]+)")

_INT_FIELDS = {"n_layer": "num_layers", "n_head": "num_heads", "n_embd": "hidden_size",
               "block_size": "seq_length", "warmup_iters": "warmup_steps",
               "max_iters": "train_iters", "batch_size": "micro_batch_size",
               "log_interval": "log_interval"}
_FLOAT_FIELDS = {"learning_rate": "lr", "min_lr": "min_lr", "beta1": "adam_beta1",
                 "beta2": "adam_beta2", "weight_decay": "weight_decay", "grad_clip": "clip_grad"}
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    if _SNIFF_ITER.search(text):
        return 0.9
    return 0.8 if _SNIFF_EVAL.search(text) else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    text = read_text(path)
    body, tail, tail_line = split_truncated(text)
    b, st = RecordsBuilder(), _State()
    in_config = False
    for lineno, frag in fragments(body):
        if in_config:
            m = _ASSIGN.match(frag)
            if m:
                st.config[m.group(1)] = m.group(2).strip("'\"")
                continue
            in_config = frag.startswith(("#", "import ", "from ")) or not frag.strip()
            if in_config:
                continue
        if frag.startswith(("iter ", "step ")):
            if not _metric(frag, lineno, st) and _LOOKS.match(frag):
                b.skip(lineno, "nanoGPT metric line that does not parse", frag)
        elif frag.startswith("saving checkpoint"):
            st.saves.feed(lineno, frag, st.evals[-1][1] if st.evals else None)
        elif frag.startswith("Resuming training from"):
            b.header(lineno)
        elif frag.startswith("Overriding config with"):
            in_config = True
        elif frag.startswith("Overriding: "):
            m = _OVERRIDE.match(frag)
            if m:
                st.config[m.group(1)] = m.group(2).strip("'\"")
        elif frag.startswith("tokens per iteration"):
            m = _TOKENS.match(frag)
            if m:
                st.config["tokens_per_iter"] = m.group(1).replace(",", "")
    if tail and _LOOKS.match(tail.strip()):
        b.skip(tail_line, "truncated last line", tail)
    st.rows.into(b)
    meta = _meta(st.config, st.sentinels, st.units).merged(**st.saves.fields())
    mixed = _mixed_units(st.units)
    if mixed:
        b.warn(f"{path}: {mixed}")
    return [b.build(run, str(path), FORMAT, meta)]


class _State:
    def __init__(self) -> None:
        self.rows = Rows()
        self.full = self.rows.group(("loss", "time", "mfu"))
        self.no_mfu = self.rows.group(("loss", "time"))
        self.evals = self.rows.group(("train loss", "val loss"))
        self.config: dict[str, str] = {}
        self.sentinels = 0
        self.saves = SaveLines()
        #: per loss tag, the units its values were printed in ("" = none)
        self.units: dict[str, set[str]] = {}

    def unit(self, tag: str, unit: str | None) -> None:
        self.units.setdefault(tag, set()).add(unit or "")


def _num(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_float(text)


def _metric(frag: str, lineno: int, st: _State) -> bool:
    """Parse one `iter`/`step` line into st; False when it is not a metric line of ours."""
    m = _ITER.match(frag)
    try:
        if m:
            step, loss, unit, ms, mfu = m.groups()
            row = (lineno, int(step), _num(loss), _num(ms))
            st.unit("loss", unit)
            if mfu is None:
                st.no_mfu.append(row)
            elif _num(mfu) == -100.0:  # warm-up sentinel, not a measurement
                st.sentinels += 1
                st.no_mfu.append(row)
            else:
                st.full.append(row + (_num(mfu),))
            return True
        m = _EVAL.match(frag)
        if m:
            st.evals.append((lineno, int(m.group(1)), _num(m.group(2).rstrip(",")),
                             _num(m.group(4))))
            st.unit("train loss", m.group(3))
            st.unit("val loss", m.group(5))
            return True
    except ValueError:
        pass
    return False


def _mixed_units(units: dict[str, set[str]]) -> str:
    """The warning for loss tags printed in different units, else ""."""
    every = set().union(*units.values()) if units else set()
    if len(every) < 2:
        return ""
    by_unit: dict[str, list[str]] = {}
    for tag, us in units.items():
        for u in us:
            by_unit.setdefault(u, []).append(repr(tag))
    said = "; ".join(f"{', '.join(tags)} {'in ' + u if u else 'without a unit'}"
                     for u, tags in sorted(by_unit.items(), key=lambda kv: kv[0] == ""))
    return (f"loss values printed in different units ({said}): those series are on "
            "different scales (BPC is the loss in nats / ln 2)")


def _meta(config: dict[str, str], sentinels: int,
          units: dict[str, set[str]] | None = None) -> RunMeta:
    fields: dict[str, object] = {}
    for key, name in _INT_FIELDS.items():
        if key in config:
            try:
                fields[name] = int(float(config[key]))
            except (ValueError, OverflowError):  # `inf`, `nan`, not a number
                pass
    for key, name in _FLOAT_FIELDS.items():
        if key in config:
            try:
                fields[name] = float(config[key])
            except ValueError:
                pass
    if config.get("dtype") in _DTYPES:
        fields["precision"] = _DTYPES[config["dtype"]]
    extra = dict(config)
    if sentinels:
        extra["mfu_warmup_sentinels"] = str(sentinels)
    for tag, us in (units or {}).items():
        named = sorted(u for u in us if u)
        if named:
            extra[f"unit/{tag}"] = ", ".join(named)
    return RunMeta(framework="nanogpt", extra=extra, **fields)
