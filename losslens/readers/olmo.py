"""OLMo (v1) and OLMo-core console logs: multi-line `[step=N/M,epoch=E]` metric blocks.

One log record per logged step: a header line (after the tab-separated
or rich TTY logging prefix) ending in `[step=N/M,epoch=E(,eta=...)]`, then one `    name=value`
line per metric. Eval results come as blocks too: OLMo v1 under the evaluator's label with full
`eval/{label}/...` names, OLMo-core after `Finished {name} evals in ... Metrics:` with names
relative to the evaluator (recorded as `eval/{name}/{metric}`, which is the tag we emit). Tags
are the metric names as printed (`train/CE loss`, `optim/total grad norm`, `throughput/total
tokens`...).

Eval blocks carry no step. OLMo v1 prints step N's block before running evals at step N, so
they belong to the last step header. OLMo-core runs evals in step N's `post_step`, before
step N's metrics block (or progress marker) is printed, so they belong to the next step
header (at least the last one + 1); when metrics are collected for several steps at once, that
header can be a few steps early.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (fragments, head_text, parse_float, read_text, split_truncated,
                       strip_ansi, strip_prefix, utc_seconds)

_STEP_RE = re.compile(
    r"\[step=(\d+)/(\d+|\?\?\?)(?:,epoch=(\d+))?(?:,eta=[^\]]*)?\]\s*$")
_SNIFF_BLOCK_RE = re.compile(
    r"\[step=\d+/(?:\d+|\?\?\?)(?:,epoch=\d+)?(?:,eta=[^\]\n]*)?\][ \t]*\r?\n"
    r"(?:\[\w+\]:|\d+: )?    [^=\n]+=")
_SNIFF_MARK_RE = re.compile(r"\[step=\d+/(?:\d+|\?\?\?),epoch=\d+(?:,eta=[^\]\n]*)?\][ \t]*\r?$",
                            re.MULTILINE)
_CORE_HINT_RE = re.compile(r"olmo_core|,eta=|/\?\?\?,|train/CE loss|Finished \S+ evals in")
# non-TTY: time<TAB>host:local_rank<TAB>logger:line<TAB>LEVEL<TAB>message
_TSV_RE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)?\t([^\t]*)\t[^\t]*\t[A-Z]+\t(.*)$")
# TTY (rich): [time] LEVEL    [logger:line, rank=N] message
_RICH_RE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] [A-Z]+\s+\[[^\]]*?(?:, rank=(\d+))?\] (.*)$")
_METRIC_RE = re.compile(r"^    ([^=\s][^=]*?)=(.*)$")
_EVAL_CORE_RE = re.compile(r"^Finished (.+?) evals in [\d.]+ seconds\. Metrics:")
_RESUME_RE = re.compile(r"Loading checkpoint from ")
# OLMo v1 logs its TrainConfig dataclass repr on one line
_CFG_FIELDS = {
    "d_model": "hidden_size", "n_layers": "num_layers", "n_heads": "num_heads",
    "max_sequence_length": "seq_length", "init_std": "init_method_std",
    "learning_rate": "lr", "weight_decay": "weight_decay", "eps": "adam_eps",
    "global_train_batch_size": "global_batch_size", "max_grad_norm": "clip_grad",
    "save_interval": "save_interval", "t_warmup": "warmup_steps",
    "device_train_microbatch_size": "micro_batch_size", "console_log_interval": "log_interval",
}
_SUFFIX_EXP = {"K": 3, "M": 6, "B": 9, "T": 12, "P": 15, "E": 18}
_INT_FIELDS = {"hidden_size", "num_layers", "num_heads", "seq_length", "global_batch_size",
               "save_interval", "warmup_steps", "micro_batch_size", "log_interval"}


def _sniff_family(head: bytes) -> tuple[float, bool]:
    """(score for the OLMo family, whether it looks like OLMo-core)."""
    text = strip_ansi(head_text(head))
    if _SNIFF_BLOCK_RE.search(text):
        score = 0.95
    elif _SNIFF_MARK_RE.search(text):
        score = 0.6  # OLMo-core progress markers only (no metric step yet)
    else:
        return 0.0, False
    return score, bool(_CORE_HINT_RE.search(text))


def sniff_olmo(name: str, head: bytes) -> float:
    score, core = _sniff_family(head)
    return score - 0.05 if core else score


def sniff_olmo_core(name: str, head: bytes) -> float:
    score, core = _sniff_family(head)
    return score if core else max(0.0, score - 0.05)


def read_olmo(path: Path, run: str) -> list[RunRecords]:
    return [_read(path, run, "olmo")]


def read_olmo_core(path: Path, run: str) -> list[RunRecords]:
    return [_read(path, run, "olmo-core")]


@dataclass
class _State:
    """Where the parser is: the current block and what it has learned so far."""

    step: int = 0
    kind: str = ""  # "step", "eval", "label" or "" (outside a metric block)
    prefix: str = ""  # prepended to metric names (OLMo-core eval blocks)
    wall: float = float("nan")
    source: str | None = None  # the rank the block came from
    metric_source: str | None = None  # the rank whose blocks we keep
    other_rank_blocks: int = 0
    prefixed: bool = False  # the log's records carry the logging prefix (TSV or rich)
    pending: list = field(default_factory=list)  # OLMo-core eval points awaiting their step
    max_steps: int | None = None
    meta: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    saves: SaveLines = field(default_factory=SaveLines)  # `Checkpoint saved to .../step1000`


def _read(path: Path, run: str, fmt: str) -> RunRecords:
    body, tail, tail_line = split_truncated(read_text(path))
    builder = RecordsBuilder()
    st = _State()
    cache: dict[str, float] = {}
    for lineno, frag in fragments(body):
        m = _METRIC_RE.match(frag)
        if m:
            if st.kind:
                _metric(builder, st, lineno, frag, m.group(1), m.group(2))
            continue
        if "heckpoint" in frag:
            st.saves.feed(lineno, frag, st.step)
        _message(builder, st, lineno, frag, cache)
    if st.kind and _METRIC_RE.match(strip_prefix(strip_ansi(tail))):
        builder.skip(tail_line, "truncated last line", tail)
    _flush_evals(builder, st, st.step + 1)
    if st.other_rank_blocks:
        builder.warn(f"{path}: {st.other_rank_blocks} metric blocks from other ranks ignored "
                     f"(kept rank {st.metric_source})")
    meta = RunMeta(framework=fmt, train_iters=st.max_steps).merged(**st.meta, extra=st.extra,
                                                                   **st.saves.fields())
    return builder.build(run, str(path), fmt, meta)


def _message(builder: RecordsBuilder, st: _State, lineno: int, frag: str,
             cache: dict[str, float]) -> None:
    """A line that is not a `    name=value` line: a new log record (or noise)."""
    m = _TSV_RE.match(frag)
    if m:
        stamp, source, msg = m.group(1), m.group(2), m.group(3)
    else:
        m = _RICH_RE.match(frag)
        stamp, source, msg = (m.group(1), m.group(2), m.group(3)) if m else (None, None, frag)
    if m is None and st.prefixed:
        return  # stderr noise between the log records of a prefixed log: the block goes on
    st.prefixed = st.prefixed or m is not None
    st.wall = utc_seconds(stamp, cache) if stamp else float("nan")
    st.source, st.kind, st.prefix = source, "", ""
    msg = msg.strip()
    step = _STEP_RE.search(msg)
    if step and len(step.group(1)) > 18:  # digits spliced into the counter: no int64 step
        builder.skip(lineno, "step does not fit in 64 bits; its metric lines are skipped", frag)
        st.kind = "void"
        return
    if step:
        _flush_evals(builder, st, max(int(step.group(1)), st.step + 1))
        st.step, st.kind = int(step.group(1)), "step"
        if step.group(2).isdigit() and len(step.group(2)) <= 18:
            st.max_steps = int(step.group(2))
        return
    ev = _EVAL_CORE_RE.match(msg)
    if ev:
        st.kind, st.prefix = "eval", f"eval/{ev.group(1)}/"
    elif _RESUME_RE.search(msg):
        builder.header(lineno)
    elif msg.startswith("TrainConfig("):
        if len(builder):  # a second run appended to the same log
            builder.header(lineno)
        _config(msg, st)
    elif msg and not msg.startswith("["):
        st.kind = "label"  # OLMo v1 eval block under the evaluator's label, or other metrics


def _metric(builder: RecordsBuilder, st: _State, lineno: int, frag: str, name: str,
            raw: str) -> None:
    if st.kind == "void":
        builder.skip(lineno, "in a block whose step line did not parse", frag)
        return
    if st.metric_source is None:
        st.metric_source = st.source
    elif st.source is not None and st.source != st.metric_source:
        st.other_rank_blocks += 1
        st.kind = ""  # ignore the rest of this block
        return
    try:
        value = _number(raw)
    except ValueError:
        # a label block may be any indented text, but `group/metric=` is a metric line
        if st.kind != "label" or "/" in name:
            builder.skip(lineno, f"{name}: not a number", frag)
        return
    if st.kind == "eval":
        st.pending.append((st.prefix + name.strip(), value, st.wall, lineno))
    else:
        builder.add(st.prefix + name.strip(), st.step, value, st.wall, lineno)


def _flush_evals(builder: RecordsBuilder, st: _State, step: int) -> None:
    for tag, value, wall, lineno in st.pending:
        builder.add(tag, step, value, wall, lineno)
    st.pending.clear()


def _number(raw: str) -> float:
    """`12,345`, `6.00E-05`, `nan`, and OLMo-core's scaled `4.194B` (B/T/P/E = 1e9..1e18)."""
    text = raw.strip().replace(",", "")
    exp = _SUFFIX_EXP.get(text[-1:]) if len(text) > 1 else None
    if exp is not None and text[-2:-1].isdigit():
        return float(f"{text[:-1]}e{exp}")  # decimal parse: 8.389B is exactly 8389000000.0
    return parse_float(text)


def _config(msg: str, st: _State) -> None:
    """Canonical hyper-parameters from OLMo v1's one-line TrainConfig repr."""
    for key, canon in _CFG_FIELDS.items():
        m = re.search(rf"\b{key}=([-+0-9.eE]+)[,)]", msg)
        if m and canon not in st.meta:
            try:
                num = float(m.group(1))
                st.meta[canon] = int(num) if canon in _INT_FIELDS else num
            except (ValueError, OverflowError):  # `e`, `1e999`: a damaged value, no setting
                pass
    betas = re.search(r"\bbetas=\(([-0-9.eE]+), ([-0-9.eE]+)\)", msg)
    try:
        if betas:
            beta1, beta2 = float(betas.group(1)), float(betas.group(2))
            st.meta["adam_beta1"], st.meta["adam_beta2"] = beta1, beta2
    except ValueError:
        pass
    prec = re.search(r"\bprecision='?(?:amp_)?(bf16|fp16|fp32)", msg)
    if prec:
        st.meta["precision"] = prec.group(1)
    for key in ("run_name", "seed", "max_duration", "precision"):
        m = re.search(rf"\b{key}=('[^']*'|[^,)]+)", msg)
        if m:
            st.extra[key] = m.group(1).strip("'")
