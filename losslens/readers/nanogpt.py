"""nanoGPT `train.py` stdout.

Two metric lines, both printed by the master process with plain `print`:

- `iter N: loss X, time Yms, mfu Z%` every `log_interval` → tags `loss` (the last micro-batch's
  loss, role train_loss), `time` (ms) and `mfu` (%; the `-100.00%` warm-up sentinel of the first
  iterations of each process is not a measurement and is left out, counted in metadata);
- `step N: train loss X, val loss Y` every `eval_interval` → tags `train loss` (an estimate over
  `eval_iters` batches of the training split; also role train_loss, on the eval grid) and
  `val loss` (role val_loss).

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

_ITER = re.compile(r"iter (\d+): loss (\S+), time (\S+?)ms(?:, mfu (\S+?)%)?\s*$")
_EVAL = re.compile(r"step (\d+): train loss (\S+), val loss (\S+?)\s*$")
# what a metric line of this dialect starts with, parsed or not
_LOOKS = re.compile(r"iter \d+:|step \d+: (?:train|val) loss")
_SNIFF_ITER = re.compile(r"(?m)^(?:\S*\]:)?iter \d+: loss \S+, time [0-9.]+ms")
_SNIFF_EVAL = re.compile(r"(?m)^(?:\S*\]:)?step \d+: train loss \S+, val loss ")
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
    meta = _meta(st.config, st.sentinels).merged(**st.saves.fields())
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
            step, loss, ms, mfu = m.groups()
            row = (lineno, int(step), _num(loss), _num(ms))
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
                             _num(m.group(3))))
            return True
    except ValueError:
        pass
    return False


def _meta(config: dict[str, str], sentinels: int) -> RunMeta:
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
    return RunMeta(framework="nanogpt", extra=extra, **fields)
