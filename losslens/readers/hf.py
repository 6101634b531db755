"""Hugging Face `Trainer`: `trainer_state.json` and console output.

`trainer_state.json` (format `hf-trainer-state`): every `log_history` entry is a point at its
`step`; every numeric key but `step` becomes a tag (`loss`, `grad_norm`, `learning_rate`, `epoch`,
`eval_loss`, custom keys). The end-of-training entry (`train_runtime`, `train_loss` averaged over
the run, ...) and the state's own fields (`global_step`, `logging_steps`, `save_steps`,
`best_model_checkpoint`, ...) go to metadata. A damaged file keeps the entries before the damage.

Console (format `hf-trainer`): the printed log dicts, 4.x (`{'loss': 2.3, 'grad_norm': nan,
...}`, bare nan/inf) or 5.x (`{'loss': '2.346', ...}`, floats as `.4g` strings), found anywhere in
a `\\r`/`\\n` fragment since tqdm redraws surround them. The console never prints the step, so
the k-th training dict of a run gets, in this order of preference (metadata.extra["step_source"]):
`logging_steps` from a printed TrainingArguments dump (k × logging_steps, after a first dict at
step 1 with logging_first_step, continuing after "Continuing training from global step N"); the
position of the training progress bar redrawn right after the dict (`| 120/1000 [`) or, with
none after it (the output ends there), the bar drawn on the dict's line or the line before it
(HF updates the bar, then logs): HF's global step, which also wins where the two disagree (a
resume at the default log level prints no banner and no "Continuing" line: the bar goes back,
the count of dicts would not); else k.
Eval dicts (`eval_*`, `test_*`) take the step of the latest training dict. The final
`train_runtime` dict goes to metadata. `***** Running training *****` banners are run headers.
A console with no log dict (a run shorter than its `logging_steps` prints only the final
summary) has no series; a warning says why.
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .checkpoints import SaveLines
from .textutil import (Rows, as_float, fragments, head_text, parse_float, read_text,
                       split_truncated)

_FINAL_KEYS = ("train_runtime", "train_samples_per_second", "train_steps_per_second",
               "train_loss", "total_flos", "train_tokens_per_second")
_EVAL_PREFIX = ("eval_", "test_")


def _read_text(path: Path) -> str:
    try:
        return read_text(path)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _SameStep:
    """Drops the values an eval log repeats at a step already written (`epoch`, token count).

    Eval logs sit at the step of the training log before them; a key that log (or an earlier
    eval at the same step) already wrote would otherwise look like a step going back.
    """

    def __init__(self) -> None:
        self.step: int | None = None
        self.keys: set[str] = set()
        self.repeats = 0  # eval metrics dropped this way (two evals on one step)

    def keep(self, step: int, values: dict[str, float], is_eval: bool) -> dict[str, float]:
        if step != self.step:
            self.step, self.keys = step, set()
        if is_eval and self.keys.intersection(values):
            self.repeats += sum(k.startswith(_EVAL_PREFIX) for k in self.keys.intersection(values))
            values = {k: v for k, v in values.items() if k not in self.keys}
        self.keys.update(values)
        return values


# ================================================================ trainer_state.json


def sniff_hf_trainer_state(name: str, head: bytes) -> float:
    text = head_text(head)
    if '"log_history"' not in text or not text.lstrip().startswith("{"):
        return 0.0
    return 1.0 if name == "trainer_state.json" else 0.9


def read_hf_trainer_state(path: Path, run: str) -> list[RunRecords]:
    text = _read_text(path)
    b = RecordsBuilder()
    state, history = _load_state(text, path, b)
    rows, extra = Rows(), {}
    strings: set[str] = set()
    dedupe = _SameStep()
    for index, entry in enumerate(history, 1):
        if not isinstance(entry, dict) or not _is_number(entry.get("step")) \
                or not math.isfinite(entry["step"]):
            b.skip(index, "log_history entry without an integer step", json.dumps(entry)[:200],
                   where=f"log_history[{index - 1}]")
            continue
        step = int(entry["step"])
        if "train_runtime" in entry:
            extra.update({f"final.{k}": str(v) for k, v in entry.items() if k != "step"})
            extra["final.step"] = str(step)
            continue
        values = {}
        for key, value in entry.items():
            if _is_number(value) and key != "step":
                values[key] = as_float(value)
            elif isinstance(value, str):
                strings.add(key)
        is_eval = "loss" not in entry and any(k.startswith(_EVAL_PREFIX) for k in entry)
        values = dedupe.keep(step, values, is_eval)
        rows.group(tuple(values)).append((index, step, *values.values()))
    rows.into(b)
    if strings:
        extra["non_numeric_keys"] = ",".join(sorted(strings))
    return [b.build(run, str(path), "hf-trainer-state", _state_meta(state, extra))]


def _load_state(text: str, path: Path, b: RecordsBuilder) -> tuple[dict, list]:
    """The state dict and its log_history; salvages the entries of a damaged file."""
    try:
        state = json.loads(text)
    except (ValueError, RecursionError) as exc:
        return _salvage(text, path, b, exc)
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise ParseError(f"{path}: not a trainer_state.json (no log_history list)")
    return state, state["log_history"]


def _salvage(text: str, path: Path, b: RecordsBuilder, exc: ValueError) -> tuple[dict, list]:
    start = text.find('"log_history"')
    bracket = text.find("[", start) if start >= 0 else -1
    if bracket < 0:
        raise ParseError(f"{path}: damaged JSON and no log_history found ({exc})") from None
    decoder, pos, entries = json.JSONDecoder(), bracket + 1, []
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            break
        try:
            entry, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            line = text.count("\n", 0, pos) + 1
            b.warn(f"{path}: damaged JSON at line {line}; kept the {len(entries)} "
                   "log_history entries before it")
            break
        entries.append(entry)
    return {}, entries


_STATE_INTS = {"logging_steps": "log_interval", "save_steps": "save_interval",
               "max_steps": "train_iters"}


def _state_meta(state: dict, extra: dict[str, str]) -> RunMeta:
    fields: dict[str, Any] = {}
    for key, name in _STATE_INTS.items():
        value = state.get(key)
        if _is_number(value) and math.isfinite(value) and value >= 1:
            fields[name] = int(value)
    for key, value in state.items():
        if key in ("log_history", "stateful_callbacks") or isinstance(value, (dict, list)):
            continue
        if value is not None:
            extra[key] = str(value)
    return RunMeta(framework="transformers", extra=extra, **fields)


# ================================================================ console


_STRICT = re.compile(r"\{'(?:loss|eval_\w+|test_\w+|train_runtime)': ")
# some 4.3x versions printed `'grad_norm': tensor(1.23, device='cuda:0')`
_TENSOR = re.compile(r"tensor\(([^,()]+)(?:, [^()]*)?\)")
_NUMPY = re.compile(r"(?:np|numpy)\.\w+\((.*)\)$")
_BAR = re.compile(r"\|\s*(\d{1,18})/(\d{1,18}) \[")
_ARG = re.compile(r"([A-Za-z_]\w*)=(.*?),?\s*$")
# `TrainingArguments(`, `Seq2SeqTrainingArguments(`, TRL's `SFTConfig(`; not ModelArguments
_ARGS = re.compile(r"(?:(?<!\w)|Seq2Seq)TrainingArguments\(|\b\w*Config\(")
_BANNER_FIELD = re.compile(
    r"(Num examples|Num Epochs|Instantaneous batch size per device|Total train batch size"
    r"|Gradient Accumulation steps|Total optimization steps|Number of trainable parameters)"
    r"[^=]*= ([\d,]+)")
_CONTINUING = re.compile(r"Continuing training from global step (\d{1,18})\b")
_SNIFF = re.compile(r"\{'(?:loss|eval_\w+|train_runtime)': ")


def sniff_hf_trainer(name: str, head: bytes) -> float:
    return 0.8 if _SNIFF.search(head_text(head)) else 0.0


@dataclass
class _Log:
    """One training or eval dict, before its step is known."""

    kind: str  # "train" or "eval"
    line: int
    values: dict[str, float]
    section: int
    train_index: int  # training dicts: 1-based within the section; eval: latest one (0: none)
    before: tuple[int, int] | None = None  # bar (n, total) earlier in the same fragment/line
    after: tuple[int, int] | None = None  # bar redrawn after the dict (same or next line)


@dataclass
class _Console:
    b: RecordsBuilder = field(default_factory=RecordsBuilder)
    logs: list[_Log] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)
    banner: dict[str, str] = field(default_factory=dict)
    final: dict[str, str] = field(default_factory=dict)
    bases: list[int] = field(default_factory=lambda: [0])  # per section: resumed global step
    section: int = 0
    train_count: int = 0
    in_args: bool = False
    in_banner: bool = False  # inside the `***** Running training *****` block
    last_bar: tuple[int, int, int] | None = None  # (line, n, total)
    prev_line: int = 0  # line of the fragment before the current one
    awaiting: list[_Log] = field(default_factory=list)
    saves: SaveLines = field(default_factory=SaveLines)


def read_hf_trainer(path: Path, run: str) -> list[RunRecords]:
    body, tail, tail_line = split_truncated(_read_text(path))
    st = _Console()
    for lineno, frag in fragments(body):
        _fragment(st, lineno, frag)
        st.prev_line = lineno
    if tail:
        _fragment(st, tail_line, tail, truncated=True)
    source = _assign_steps(st)
    if not len(st.b):
        why = _nothing_logged(st)
        if why:
            st.b.warn(f"{path}: {why}")
    return [st.b.build(run, str(path), "hf-trainer", _console_meta(st, source))]


def _nothing_logged(st: _Console) -> str | None:
    """Why a console with no log dict has no series (a run shorter than its logging_steps
    prints only its end-of-training summary), or None."""
    total, every = _max_steps(st), _logging_steps(st)
    if every and total and every > total:
        return (f"HF Trainer logged no loss: the run made {total:,} optimization step(s) and "
                f"logs every logging_steps={every:,}, so it printed only its end-of-training "
                f"summary; set logging_steps below {total:,} to see the loss")
    if st.final:
        return ("HF Trainer printed only its end-of-training summary (train_runtime ...), no "
                "log with a loss")
    return None


def _fragment(st: _Console, lineno: int, frag: str, truncated: bool = False) -> None:
    if st.awaiting and lineno > st.awaiting[-1].line + 1:
        st.awaiting.clear()
    if st.in_args:
        if _args_line(st, frag):
            return
    brace = frag.find("{'")
    bar_text = frag if brace < 0 else frag[:brace]
    m = _BAR.search(bar_text) if "|" in bar_text else None
    if m:
        bar = (int(m.group(1)), int(m.group(2)))
        for log in st.awaiting:
            log.after = log.after or bar
        st.awaiting.clear()
        st.last_bar = (lineno, *bar)
    if brace >= 0:
        _dict(st, lineno, frag, brace, truncated)
    elif "*****" in frag:
        st.in_banner = "***** Running training *****" in frag
        if st.in_banner:
            st.b.header(lineno)
            st.section += 1
            st.bases.append(0)
            st.train_count = 0
    elif st.in_banner and " = " in frag and _BANNER_FIELD.search(frag):
        m2 = _BANNER_FIELD.search(frag)
        st.banner[m2.group(1)] = m2.group(2).replace(",", "")
    elif "Continuing training from global step" in frag:
        m2 = _CONTINUING.search(frag)
        if m2:
            st.bases[-1] = int(m2.group(1))
    elif "Arguments(" in frag or "Config(" in frag:
        _args_open(st, frag)
    elif "checkpoint" in frag:  # `Saving model checkpoint to out/checkpoint-500`, deletions
        st.saves.feed(lineno, frag)


def _args_open(st: _Console, frag: str) -> None:
    m = _ARGS.search(frag)
    if not m:
        return
    if not frag[m.end():].strip():  # `TrainingArguments(` then one `key=value,` per line
        st.in_args = True
        return
    inside = frag[m.end():frag.rfind(")")]  # one-line repr
    for key, value in re.findall(r"(\w+)=('[^']*'|[^,]*)", inside):
        st.args[key] = value.strip("'\"")


def _args_line(st: _Console, frag: str) -> bool:
    """One `key=value,` line of a multi-line TrainingArguments dump; False ends the dump."""
    m = _ARG.match(frag.strip())
    if m:
        st.args[m.group(1)] = m.group(2).strip("'\"")
        return True
    st.in_args = False
    return frag.strip() == ")"


def _dict(st: _Console, lineno: int, frag: str, brace: int, truncated: bool) -> None:
    values = _parse_dict(frag, brace)
    broken_train = False
    if values is None:
        if not _STRICT.match(frag, brace):
            return
        reason = "truncated last line" if truncated else "HF log dict that does not parse"
        st.b.skip(lineno, reason, frag[brace:])
        # still a training log: it takes its step, so that later logs keep theirs
        broken_train, values = frag.startswith("{'loss'", brace), {}
    if "train_runtime" in values:
        st.final.update({k: _fmt(v) for k, v in values.items()})
    elif "loss" not in values and ("'eval_" in frag or "'test_" in frag) \
            and any(k.startswith(_EVAL_PREFIX) for k in values):
        st.logs.append(_Log("eval", lineno, values, st.section, st.train_count))
    elif broken_train or "loss" in values or "learning_rate" in values or "grad_norm" in values:
        st.train_count += 1
        log = _Log("train", lineno, values, st.section, st.train_count)
        if "|" in frag:
            bar = _BAR.search(frag, 0, brace)
            if bar:
                log.before = (int(bar.group(1)), int(bar.group(2)))
        # the bar drawn just before the dict (same line, or the line before it when the
        # output is not a terminal) is at the dict's step: HF updates the bar, then logs
        if log.before is None and st.last_bar and st.last_bar[0] in (lineno, st.prev_line):
            log.before = st.last_bar[1:]
        st.logs.append(log)
        st.awaiting.append(log)


def _fmt(v: float) -> str:
    return str(int(v)) if v.is_integer() else repr(v)


def _parse_dict(frag: str, brace: int) -> dict[str, float] | None:
    """Numeric items of the printed dict; None when it is cut or not a flat `'key': value` dict."""
    end = frag.find("}", brace)
    if end < 0:
        return None
    inner = frag[brace + 2:end]  # after "{'"
    if "tensor(" in inner:
        inner = _TENSOR.sub(r"\1", inner)
    out: dict[str, float] = {}
    for item in inner.split(", '"):
        key, sep, raw = item.partition("': ")
        if not sep or "'" in key:
            return None
        try:
            out[key] = float(raw)  # 4.x: a bare number, nan or inf
            continue
        except ValueError:
            pass
        raw = raw.strip()
        if raw[:1] == "'" and raw[-1:] == "'" and len(raw) > 1:
            try:  # 5.x prints floats as strings; other strings are not metrics
                out[key] = parse_float(raw[1:-1])
            except ValueError:
                pass
        elif raw not in ("True", "False", "None"):
            num = _NUMPY.match(raw)
            try:
                out[key] = parse_float(num.group(1) if num else raw)
            except ValueError:
                return None
    return out


def _arg_num(args: dict[str, str], key: str) -> float | None:
    """A finite number from the arguments dump, else None (`inf` is no setting)."""
    try:
        value = float(args[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _max_steps(st: _Console) -> int | None:
    value = _arg_num(st.args, "max_steps")
    if value is not None and value > 0:
        return int(value)
    total = st.banner.get("Total optimization steps")
    return int(total) if total else None


def _logging_steps(st: _Console) -> int | None:
    """logging_steps from the TrainingArguments dump, when logging is by steps."""
    strategy = st.args.get("logging_strategy", "steps").split(".")[-1].lower()
    value = _arg_num(st.args, "logging_steps")
    if value is None or value <= 0 or strategy != "steps":
        return None
    if value < 1:  # a fraction of max_steps
        max_steps = _max_steps(st)
        return math.ceil(max_steps * value) if max_steps else None
    return int(value)


def _bar_steps(st: _Console, trains: list[_Log]) -> dict[tuple[int, int], int] | None:
    """Steps read off the training progress bar, when every training dict has one."""
    total = _max_steps(st)
    if total is None:
        seen = Counter(b[1] for log in trains for b in (log.after, log.before) if b)
        if not seen:
            return None
        total = seen.most_common(1)[0][0]
    steps: dict[tuple[int, int], int] = {}
    last: dict[int, int] = {}
    for log in trains:
        bars = [b for b in (log.after, log.before) if b and b[1] == total]
        # (the bar going back is a resume; standing still, a bar that was not redrawn)
        if not bars or bars[0][0] == last.get(log.section):
            return None
        steps[(log.section, log.train_index)] = last[log.section] = bars[0][0]
    return steps


def _assign_steps(st: _Console) -> str:
    """Give every dict its step, add the points; returns how the steps were found."""
    trains = [log for log in st.logs if log.kind == "train"]
    every = _logging_steps(st)
    first = st.args.get("logging_first_step") == "True"
    by_bar = _bar_steps(st, trains)

    def counted(section: int, k: int) -> int:
        base = st.bases[section]
        if every:
            if base == 0 and first and every > 1:
                return 1 if k == 1 else (k - 1) * every
            return (base // every + k) * every
        return base + k

    why = ""  # why the bar and not logging_steps, when both were there
    if by_bar is not None and every:
        # HF redraws the bar at the global step right after each dict: where counting
        # logging_steps disagrees with it, the bar is right (most often a resume the log
        # does not announce: no banner, no "Continuing training" line at the default level)
        # (a dict cut by a redraw is left out: its bar may be that redraw's, and it has no
        # points of its own)
        steps = [(log, by_bar[(log.section, log.train_index)]) for log in trains if log.values]
        off = [i for i, (log, step) in enumerate(steps)
               if step != counted(log.section, log.train_index)]
        if not off:
            by_bar = None  # the same steps: say logging_steps
        elif off[0] and steps[off[0]][1] < steps[off[0] - 1][1]:
            why = f" (logging_steps={every} counted on past a resume at line " \
                  f"{steps[off[0]][0].line})"
        else:
            why = f" (logging_steps={every} disagreed from line {steps[off[0]][0].line})"

    def train_step(section: int, k: int) -> int:
        return by_bar[(section, k)] if by_bar is not None else counted(section, k)

    rows, dedupe = Rows(), _SameStep()
    for log in st.logs:
        k = log.train_index
        step = train_step(log.section, k) if k else st.bases[log.section]
        values = dedupe.keep(step, log.values, log.kind == "eval")
        rows.group(tuple(values)).append((log.line, step, *values.values()))
    rows.into(st.b)
    repeats = dedupe.repeats
    if repeats:
        st.b.warn(f"{repeats} eval values fell on the step of an earlier eval (no training "
                  "log between them); kept the first")
    if why:
        return "tqdm" + why
    if every:
        return f"logging_steps={every}" + (" with logging_first_step" if first else "")
    return "tqdm" if by_bar is not None else "log_count"


_ARG_FLOATS = {"learning_rate": "lr", "adam_epsilon": "adam_eps", "adam_beta1": "adam_beta1",
               "adam_beta2": "adam_beta2", "weight_decay": "weight_decay",
               "max_grad_norm": "clip_grad"}
_ARG_INTS = {"per_device_train_batch_size": "micro_batch_size", "save_steps": "save_interval",
             "warmup_steps": "warmup_steps", "logging_steps": "log_interval"}


def _console_meta(st: _Console, source: str) -> RunMeta:
    a = st.args
    fields: dict[str, Any] = {}
    for key, name in _ARG_FLOATS.items():
        if _arg_num(a, key) is not None:
            fields[name] = _arg_num(a, key)
    for key, name in _ARG_INTS.items():
        value = _arg_num(a, key)
        if value is not None and value >= 1:
            fields[name] = int(value)
    if a.get("bf16") == "True":
        fields["precision"] = "bf16"
    elif a.get("fp16") == "True":
        fields["precision"] = "fp16"
    elif a.get("bf16") == "False" and a.get("fp16") == "False":
        fields["precision"] = "fp32"
    if "lr_scheduler_type" in a:
        fields["lr_schedule"] = a["lr_scheduler_type"].split(".")[-1].lower()
    fields["train_iters"] = _max_steps(st)
    if st.banner.get("Total train batch size"):  # digits, or "" when the line held only commas
        fields["global_batch_size"] = int(st.banner["Total train batch size"])
    if "micro_batch_size" not in fields and st.banner.get("Instantaneous batch size per device"):
        fields["micro_batch_size"] = int(st.banner["Instantaneous batch size per device"])
    extra = dict(a)
    extra.update({f"banner.{k}": v for k, v in st.banner.items()})
    extra.update({f"final.{k}": v for k, v in st.final.items()})
    extra["step_source"] = source
    fields.update(st.saves.fields())
    return RunMeta(framework="transformers", extra=extra,
                   **{k: v for k, v in fields.items() if v is not None})
