"""Megatron-LM and Megatron-DeepSpeed (BigScience, Microsoft) stdout.

Training lines (` [date time] iteration N/ M | key: value | ... |`, every era) are split on `|`
and `key: value`, never by position: every numeric field becomes a tag named by its key (`lm loss`,
`learning rate`, `grad norm`, `loss scale`, `num zeros`, `consumed samples`, MoE keys, ...) at
step N; the bracketed timestamp (2024+) is the wall time (taken as UTC). Fields cut short by
spliced text keep what parsed before the damage and the line is counted as skipped.

NaN intervals: Megatron drops a loss from the line when its interval average is NaN. When a
line has no `lm loss` and either says `number of nan iterations` > 0 or has no loss key of
any spelling (`lm-loss` included) and skipped no iteration, `lm loss` = NaN is emitted at that
iteration, so the missing loss stays visible. (A line without a loss whose iterations were
skipped by the fp16 loss-scale search, with no NaN counted, had no loss to print: no NaN.) (A line that prints `lm loss` and a non-zero NaN count keeps the printed value;
the count is its own tag.)

Validation blocks (`validation loss at iteration N ... | lm loss value: X | lm loss PPL: Y |`,
BigScience `valid loss at ...`, per-dataset `validation-{name} loss at ...`, named splits, test
sets) become `{key} validation` (`lm loss validation`, `lm loss validation-c4`, `lm loss test`)
with role val_loss, and `{key} validation ppl` etc. (role other). "At the end of training"
results are placed at the last training iteration before them.

Run headers: `successfully loaded checkpoint ... at iteration N`, `loading release checkpoint`
and every argument dump after the first (an appended log). Saved iterations
(`successfully saved checkpoint ... iteration N`, NeMo's `Successfully saved ...`, or `saving
checkpoint at iteration N` when a
log has no "successfully saved" line) go to `metadata.checkpoints`, the folder of `saving
checkpoint at iteration N to DIR` to `metadata.checkpoint_dir`.
The argument dump fills RunMeta; DeepSpeed engine lines interleaved in Megatron-DeepSpeed logs
are read by `deepspeed.DeepSpeedLines` into tags prefixed `deepspeed/` (`deepspeed/lr`,
`deepspeed/skipped`, `deepspeed/loss scale`, `deepspeed/overflow`; OVERFLOW lines sit at the
last iteration seen + 1).

Speed: the per-line classifier below defines the semantics. Logs over 1 MiB go through
`megatron_fast` for the dominant training-line shapes (templates checked byte by byte, values
read in bulk with numpy and pyarrow, on a few threads; the first template's points written in
place, tag by tag, and handed to the Frame without a copy); every other line holding a marker
word, and any line the templates refuse, goes through the classifier. Both paths give the same
records (tested on every fixture, with tiny chunks too, and on randomly damaged lines); if the
vectorised read fails the classifier reads it all.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .deepspeed import DeepSpeedLines, Points, epoch_seconds, line_time, step_int
from .textutil import ANSI_RE, STEP_LIMIT, head_text, parse_float, read_bytes, strip_prefix

FORMAT = "megatron"

_TS = r"\[(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\]"
_TRAIN = re.compile(rf"(?:{_TS}\s*)?iteration\s+(\d+)\s*/\s*(\d+)\s*\|")
_TRAIN_LOOKS = re.compile(r"iteration\s+\S+\s*/\s*\S+\s*\|")
_VALID = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(\S+) loss at ([^|]*?)\s*\|(.*)$")
_VALID_FIELD = re.compile(r"^(.+?) (value|PPL): (.+)$")
# GPT-NeoX: ` validation results at iteration 1000 | lm_loss value: 2.3E+00 | lm_loss_ppl value: ...`
_NEOX_VALID = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(validation|test) results at ([^|]*?)\s*\|(.*)$")
# values with a unit: GPT-NeoX `approx flops per GPU: 150.3TFLOPS`, `MFU: 40.00%`
_UNIT = re.compile(r"^\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*(%|[KMGTPEZ]?FLOPS)\s*$")
_FLOPS = {"": 1e-12, "K": 1e-9, "M": 1e-6, "G": 1e-3, "T": 1.0, "P": 1e3, "E": 1e6, "Z": 1e9}
_AT_ITER = re.compile(r"iteration\s+(\d+)")
_LOADED = re.compile(r"successfully loaded checkpoint from .* at iteration\s+(\d+)")
_SAVING = re.compile(r"saving checkpoint at iteration\s+(\d+)(?: to (\S+))?")
_SAVED = re.compile(r"[Ss]uccessfully saved checkpoint (?:from|at) iteration\s+(\d+)")
_ARGS_BEGIN = re.compile(r"^\s*-+ arguments -+\s*$")
_ARGS_END = re.compile(r"^\s*-+ end of arguments -+\s*$")
_ARG = re.compile(r"^\s*([A-Za-z_]\w*) \.+ (.*?)\s*$")
_SNIFF_TRAIN = re.compile(r"(?m)iteration\s+\d+\s*/\s*\d+\s*\|.*(?:consumed samples:|loss: )")
#: (`[ \t]*`, not `\s*`: from every line start `\s*` ran across the blank lines after it,
#: quadratic in a head of blank lines: 10,000 took 8 s, a megabyte hours)
_SNIFF_VALID = re.compile(r"(?m)^[ \t]*\S+ loss at [^|\n]*\|[^\n]* value: ")
#: Any line the classifier can use holds one of these (RE2 syntax; the fast path's pre-filter).
MARKERS = (r"iteration|loss at|checkpoint|arguments|step=|Attempted loss scale|steps: "
           r"|[A-Za-z0-9_] \.|\x1b|\r")
_NAN_KEY = "number of nan iterations"
_SKIP_KEY = "number of skipped iterations"
_LM = "lm loss"
_SYNTH_POS = 1000  # tag-order position of a synthesised NaN loss, after the line's own fields

_INT_ARGS = {"hidden_size": "hidden_size", "num_layers": "num_layers",
             "num_attention_heads": "num_heads", "seq_length": "seq_length",
             "global_batch_size": "global_batch_size", "micro_batch_size": "micro_batch_size",
             "save_interval": "save_interval", "log_interval": "log_interval",
             "train_iters": "train_iters",
             # GPT-NeoX's names (DeepSpeed's)
             "train_batch_size": "global_batch_size",
             "train_micro_batch_size_per_gpu": "micro_batch_size"}
_FLOAT_ARGS = {"init_method_std": "init_method_std", "adam_eps": "adam_eps",
               "adam_beta1": "adam_beta1", "adam_beta2": "adam_beta2", "lr": "lr",
               "min_lr": "min_lr", "clip_grad": "clip_grad", "weight_decay": "weight_decay"}
_STR_ARGS = {"lr_decay_style": "lr_schedule", "rampup_batch_size": "rampup_batch_size"}
_USED_ARGS = {"fp16", "bf16", "lr_warmup_iters", "lr_warmup_fraction", "lr_decay_iters",
              "precision", "warmup"}
_NEOX_PRECISION = {"bfloat16": "bf16", "fp16": "fp16", "float16": "fp16", "fp32": "fp32",
                   "float32": "fp32"}
_MDS_TAGS = {"consumed tokens", "samples per second", "TFLOPs", "actual seqlen",
             "tokens per gpu per second (tgs)", "elapsed time per iteration (s)"}


# --------------------------------------------------------------------------- sniff / read

def sniff(name: str, head: bytes) -> float:
    text = ANSI_RE.sub("", head_text(head))
    if _SNIFF_TRAIN.search(text):
        return 0.9
    if _SNIFF_VALID.search(text):
        return 0.7
    return 0.6 if "-- arguments --" in text and "end of arguments" in text else 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    return [read_file(path, run)]


def read_file(path: Path, run: str, fast: bool | None = None) -> RunRecords:
    """Read one log. `fast`: True/False forces the vectorised path on/off (None: by size)."""
    try:
        raw = _load(Path(path))
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if fast is None:
        fast = len(raw) >= (1 << 20)
    state = _State()
    if fast:
        try:
            fast = _read_fast(raw, state)
        except Exception as exc:  # noqa: BLE001 — the classifier below reads every line right
            state = _State()
            state.b.warn(f"{path}: vectorised read failed ({type(exc).__name__}: {exc}); "
                         "read line by line")
            fast = False
    if not fast:
        _read_slow(raw, state)
    return state.finish(run, str(path))


def _load(path: Path) -> bytes:
    """The file's bytes, read (not mapped: a map of a log that is truncated while it is read
    -- logrotate's copytruncate, a job restarted with `> log` -- kills the process with
    SIGBUS on the next touch of a page past the new end; a read just returns fewer bytes)."""
    return read_bytes(path)  # (bare `\r` line ends made `\n`)


def _read_slow(raw, state: "_State") -> None:
    text = str(raw[:], "utf-8", errors="replace")
    lines = text.split("\n")
    last = len(lines)
    truncated = bool(lines[-1])
    for lineno, line in enumerate(lines, 1):
        if line:
            state.raw_line(lineno, line, truncated and lineno == last)


# --------------------------------------------------------------------------- the classifier

@dataclass
class _Pending:
    line: int
    tags: list[tuple[str, float]]
    wall: float


class _State:
    """Everything learned from the lines, whichever path read them."""

    def __init__(self) -> None:
        self.pts = Points()
        self.b = RecordsBuilder()
        self.ds = DeepSpeedLines()
        self.train_lines: list[np.ndarray] = []
        self.train_steps: list[np.ndarray] = []
        self._lines: list[int] = []
        self._steps: list[int] = []
        self.total: tuple[int, int] | None = None  # (line, train_iters from `N/ M`)
        self.pending: list[_Pending] = []
        self.args: dict[str, str] = {}
        self.in_args = False
        self.arg_dumps = 0
        self.saved: list[int] = []
        self.saving: list[int] = []
        self.save_dir: str | None = None
        self.nemo_val: dict[str, float] = {}  # NeMo: the validation values shown last

    # ---- per line

    def raw_line(self, lineno: int, line: str, truncated: bool = False) -> None:
        """A physical line: split on `\\r`, ANSI and launcher prefixes removed."""
        if "\x1b" in line:
            line = ANSI_RE.sub("", line)
        pieces = line.split("\r") if "\r" in line else (line,)
        for piece in pieces:
            if piece.strip():
                frag = strip_prefix(piece)
                if truncated:
                    self._truncated(lineno, frag)
                else:
                    self.fragment(lineno, frag)

    def _truncated(self, lineno: int, frag: str) -> None:
        if _TRAIN_LOOKS.search(frag) or (" loss at " in frag and " value: " in frag) \
                or self.ds.looks(frag):
            self.b.skip(lineno, "truncated last line", frag)

    def fragment(self, lineno: int, frag: str) -> None:
        if self.in_args and self._arg(frag):
            pass
        elif "iteration" in frag and self._train(lineno, frag):
            pass
        elif " loss at " in frag and self._validation(lineno, frag):
            pass
        elif " results at " in frag and self._validation(lineno, frag, _NEOX_VALID):
            pass
        elif "checkpoint" in frag:
            self._checkpoint(lineno, frag)
        elif "arguments" in frag and _ARGS_BEGIN.match(frag):
            if self.arg_dumps:
                self.b.header(lineno)
            self.arg_dumps += 1
            self.in_args = True
        else:
            self.ds.feed(lineno, frag, self.b.skip, ppo=False)

    def _arg(self, frag: str) -> bool:
        """An argument-dump line read; False for any other line met inside the dump (an
        interleaved rank, or a dump whose end line is lost), which is then read as usual."""
        if _ARGS_END.match(frag):
            self.in_args = False
            return True
        m = _ARG.match(frag)
        if m:
            self.args[m.group(1)] = _neox_value(frag, m.group(2))
        return m is not None

    def _train(self, lineno: int, frag: str) -> bool:
        m = _TRAIN.search(frag)
        if not m:
            if _TRAIN_LOOKS.search(frag):
                self.b.skip(lineno, "Megatron iteration line without `iteration N/ M |`", frag)
                return True
            return False
        g = m.groups()
        try:
            it, total = step_int(g[7]), step_int(g[8])
        except ValueError as exc:
            self.b.skip(lineno, f"Megatron iteration line: {exc}", frag)
            return True
        wall = epoch_seconds(g[:7]) if g[0] else math.nan
        pairs, damaged = _fields(frag[m.end():])
        if "|" in frag[:m.start()]:  # GPT-NeoX: ` samples/sec: 12.3 | iteration ...`
            head, bad = _fields(frag[:m.start()])
            if bad is None:
                pairs = head + pairs
        if any(k == "global_step" for k, _ in pairs):  # NeMo's MegatronProgressBar line
            pairs = self._nemo_validation(pairs)
        self.pts.add_line(pairs, it, wall, lineno)
        keys = {k for k, _ in pairs}
        if damaged is not None:
            self.b.skip(lineno, f"unparseable text after {len(pairs)} fields of a Megatron "
                                f"iteration line: {damaged[:60]!r}", frag)
        elif not keys & {_LM, "lm_loss"} and _dropped_loss(keys, dict(pairs).get(_NAN_KEY, 0),
                                                           dict(pairs).get(_SKIP_KEY, 0)):
            self.pts.add(_LM, it, math.nan, wall, lineno, _SYNTH_POS)
        self._lines.append(lineno)
        self._steps.append(it)
        self.total = max(self.total or (0, 0), (lineno, total))
        return True

    def _nemo_validation(self, pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """NeMo's progress line repeats the last validation (`val_loss: 2.861 | val_ppl: ...`)
        on every line until the next one: a value is a point only where it changes."""
        out = []
        for key, value in pairs:
            if key.startswith("val_"):
                if self.nemo_val.get(key) == value:
                    continue
                self.nemo_val[key] = value
            out.append((key, value))
        return out

    def _validation(self, lineno: int, frag: str, pattern: re.Pattern = _VALID) -> bool:
        m = pattern.match(frag)
        if not m or " value: " not in m.group(3):
            return False
        name, where, rest = m.groups()
        dataset = _dataset(name, where)
        tags = []
        for part in rest.split("|"):
            s = part.strip()
            if not s:
                continue
            f = _VALID_FIELD.match(s)
            try:
                value = parse_float(f.group(3)) if f else None
            except ValueError:
                value = None
            if value is None:
                self.b.skip(lineno, f"unparseable validation field {s[:60]!r}", frag)
                return True
            key, suffix = f.group(1).strip(), "" if f.group(2) == "value" else " ppl"
            if key.endswith("_ppl"):  # GPT-NeoX `lm_loss_ppl value:` → `lm_loss validation ppl`
                key, suffix = key[:-4], " ppl"
            tags.append((f"{key} {dataset}{suffix}", value))
        at = _AT_ITER.search(where)
        wall = line_time(frag)
        if at:
            try:
                step = step_int(at.group(1))
            except ValueError as exc:
                self.b.skip(lineno, f"Megatron validation line: {exc}", frag)
                return True
            for i, (tag, value) in enumerate(tags):
                self.pts.add(tag, step, value, wall, lineno, i)
        else:
            self.pending.append(_Pending(lineno, tags, wall))
        return True

    def _checkpoint(self, lineno: int, frag: str) -> None:
        if _LOADED.search(frag) or "loading release checkpoint" in frag:
            self.b.header(lineno)
            return
        m = _SAVED.search(frag)
        if m:
            self.saved.append(int(m.group(1)))
            return
        m = _SAVING.search(frag)
        if m:
            self.saving.append(int(m.group(1)))
            self.save_dir = m.group(2) or self.save_dir

    # ---- vectorised path hooks

    def train_array(self, lines: np.ndarray, steps: np.ndarray, total: tuple[int, int]) -> None:
        self.train_lines.append(lines)
        self.train_steps.append(steps)
        self.total = max(self.total or (0, 0), total)

    # ---- the end

    def _known(self) -> tuple[np.ndarray, np.ndarray]:
        """(line, iteration) of every training line, in file order."""
        lines = np.concatenate(self.train_lines + [np.asarray(self._lines, np.int64)])
        steps = np.concatenate(self.train_steps + [np.asarray(self._steps, np.int64)])
        idx = np.argsort(lines, kind="stable")
        return lines[idx].astype(np.int64), steps[idx].astype(np.int64)

    def finish(self, run: str, source: str) -> RunRecords:
        # (only end-of-training results and OVERFLOW lines need the iteration lines' steps)
        known = self._known() if self.pending or self.ds.overflows else None
        for p in self.pending:  # "at the end of training": the last iteration before it
            at = int(np.searchsorted(known[0], p.line)) - 1
            if at < 0:
                self.b.skip(p.line, "end-of-training validation before any iteration line")
                continue
            for i, (tag, value) in enumerate(p.tags):
                self.pts.add(tag, int(known[1][at]), value, p.wall, p.line, i)
        self.ds.emit(self.pts, "deepspeed/", known)
        for w in self.ds.warnings():
            self.b.warn(f"{source}: {w}")
        return self.pts.records(run, source, FORMAT, self.b, self._metadata())

    def _metadata(self) -> RunMeta:
        fields, extra = _args_meta(self.args)
        if fields.get("train_iters") is None and self.total is not None:
            fields["train_iters"] = self.total[1]
        ckpts = self.saved or self.saving
        if ckpts:
            fields["checkpoints"] = tuple(sorted(set(ckpts)))
            fields["checkpoint_source"] = (
                "the log's save lines (Megatron: successfully saved checkpoint)" if self.saved
                else "the log's save lines (Megatron: saving checkpoint at iteration)")
        if self.save_dir:
            fields["checkpoint_dir"] = self.save_dir
        ds = self.ds.metadata()
        extra.update(ds.pop("extra", {}))
        for k, v in ds.items():
            fields.setdefault(k, v)
        tags = self.pts.tags
        mds = (self.args.get("deepspeed") == "True" or bool(tags & _MDS_TAGS)
               or any(t.startswith("deepspeed/") for t in tags))
        neox = "lm_loss" in tags or any(t.startswith("lm_loss ") for t in tags)
        nemo = "reduced_train_loss" in tags or "global_step" in tags
        return RunMeta(framework="nemo" if nemo else "gpt-neox" if neox else
                       "megatron-deepspeed" if mds else "megatron", extra=extra,
                       **fields)


def _fields(rest: str) -> tuple[list[tuple[str, float]], str | None]:
    """`key: value` pairs of a training line after its head; the damaged field if any."""
    pairs: list[tuple[str, float]] = []
    seen: set[str] = set()
    for part in rest.split("|"):
        s = part.strip()
        if not s:
            continue
        key, sep, value = s.partition(":")
        key = key.strip()
        if not sep or not key or key in seen:
            return pairs, s
        try:
            pairs.append((key, float(value)))
        except ValueError:
            try:
                pairs.append((key, parse_float(value)))
            except ValueError:
                u = _UNIT.match(value)
                if not u:
                    return pairs, s
                if u.group(2) == "%":
                    pairs.append((key, float(u.group(1))))
                else:  # in TFLOPS, whatever prefix the log chose
                    key = f"{key} (TFLOPS)"
                    pairs.append((key, float(u.group(1)) * _FLOPS[u.group(2)[:-5]]))
        seen.add(key)
    return pairs, None


def _dataset(name: str, where: str) -> str:
    """`validation`, `validation-{name}`, `test` or `test-{name}` for a validation heading."""
    test = name == "test" or "test set" in where or "test data" in where
    base = "test" if test else "validation"
    if name in ("validation", "valid", "test", "val"):
        return base
    if name.startswith("validation-"):
        return base + name[len("validation"):]
    return f"{base}-{name}"


def _neox_value(line: str, value: str) -> str:
    """The value of a GPT-NeoX argument line, without what NeoXArgs.print adds after it: dots
    up to column 64, then `updated` or `default` (`  lr ..... 0.0003.......updated`; a value
    reaching past column 64 gets no dots)."""
    for info in ("updated", "default"):
        if value.endswith(info):
            head = value[:-len(info)]
            if head.endswith("..") or (head and len(line.rstrip()) - len(info) >= 64):
                return head.rstrip(".") if head.endswith("..") else head
    return value


def _args_meta(args: dict[str, str]) -> tuple[dict, dict[str, str]]:
    """RunMeta fields and `extra` from a Megatron argument dump."""
    fields: dict = {}

    def num(key: str, cast):
        v = args.get(key)
        try:
            x = float(v) if v not in (None, "None") else None
        except ValueError:
            return None
        if x is None or (cast is int and not abs(x) < STEP_LIMIT):  # NaN, inf, past int64
            return None
        return cast(x)

    for key, name in _INT_ARGS.items():  # (two names for one field: the first one given)
        if fields.get(name) is None:
            fields[name] = num(key, int)
    for key, name in _FLOAT_ARGS.items():
        fields[name] = num(key, float)
    for key, name in _STR_ARGS.items():
        v = args.get(key)
        fields[name] = v if v not in (None, "None") else None
    if args.get("precision") in _NEOX_PRECISION:  # GPT-NeoX: `precision ... bfloat16`
        fields["precision"] = _NEOX_PRECISION[args["precision"]]
    elif "fp16" in args or "bf16" in args:
        fields["precision"] = ("fp16" if args.get("fp16") == "True"
                               else "bf16" if args.get("bf16") == "True" else "fp32")
    frac, decay = num("lr_warmup_fraction", float), num("lr_decay_iters", int)
    warm = num("lr_warmup_iters", int)
    both = frac * decay if frac is not None and decay is not None else math.nan
    fields["warmup_steps"] = (int(both) if abs(both) < STEP_LIMIT  # NaN fraction: not known
                              else warm if warm else None)
    neox_warm = num("warmup", float)  # GPT-NeoX: a fraction of lr_decay_iters (or train_iters)
    horizon = decay if decay is not None else fields["train_iters"]
    if fields["warmup_steps"] is None and neox_warm is not None and horizon is not None:
        both = neox_warm * horizon
        fields["warmup_steps"] = int(both) if abs(both) < STEP_LIMIT else None
    used = set(_INT_ARGS) | set(_FLOAT_ARGS) | set(_STR_ARGS) | _USED_ARGS
    extra = {k: v for k, v in args.items() if k not in used}
    return {k: v for k, v in fields.items() if v is not None}, extra


# --------------------------------------------------------------------------- vectorised path

def _read_fast(raw, state: _State) -> bool:
    """Training lines of the common shapes in bulk (megatron_fast), the rest line by line.

    False when pyarrow is missing (the caller then reads every line with the classifier).
    """
    try:
        import pyarrow.compute  # noqa: F401
    except ImportError:
        return False
    from .megatron_fast import scan

    block: list = []
    for chunk in scan(raw, MARKERS, block=block):
        for h in chunk.hits:
            if not h.in_block:
                for j, key in enumerate(h.keys):
                    state.pts.add_array(key, h.step, h.values[j], h.wall, h.order, j)
                _lines_read(h.keys, h.step, h.wall, h.order, h.values.__getitem__,
                            (h.last, h.total), state)
        for lineno, line in chunk.rest:
            state.raw_line(lineno, line.decode("utf-8", errors="replace"),
                           lineno == chunk.truncated)
    if block and block[0].compact():
        blk = block[0]
        state.pts.add_block(blk.keys, (blk.step, blk.value, blk.wall, blk.order), blk.n)
        step, _, wall, order = blk.tag(0)
        _lines_read(blk.keys, step, wall, order, lambda j: blk.tag(j)[1], max(blk.totals),
                    state)
    return True


def _is_loss_key(key: str) -> bool:
    return key.endswith((" loss", "-loss", "_loss"))


def _dropped_loss(keys: "set[str] | tuple[str, ...]", nan_count: Any, skipped: Any) -> Any:
    """Whether a training line without `lm loss` dropped a NaN loss (scalars or arrays): its
    NaN count says so, or it prints no loss of any spelling (`lm-loss` is one) and skipped no
    iteration (older Megatron-DeepSpeed drops the NaN loss and counts 0 NaN iterations). A line
    that skipped iterations (the fp16 loss-scale search) and counts no NaN had no loss to print."""
    if any(_is_loss_key(k) for k in keys):
        return np.asarray(nan_count) > 0
    return (np.asarray(nan_count) > 0) | (np.asarray(skipped) <= 0)


def _lines_read(keys: tuple[str, ...], step: np.ndarray, wall: np.ndarray, order: np.ndarray,
                values, total: tuple[int, int], state: _State) -> None:
    """What the training lines of one template (fields `keys`, `values(j)` the values of
    key j) add beside their fields' points, as `_State._train` would: the NaN loss Megatron
    dropped from them, and their (line, iteration) pairs."""
    if not set(keys) & {_LM, "lm_loss"}:
        n = step.shape[0]
        nan = values(keys.index(_NAN_KEY)) if _NAN_KEY in keys else np.zeros(n)
        skipped = values(keys.index(_SKIP_KEY)) if _SKIP_KEY in keys else np.zeros(n)
        synth = _dropped_loss(keys, nan, skipped) & np.ones(n, dtype=bool)
        sel = np.flatnonzero(synth)
        if sel.shape[0]:
            state.pts.add_array(_LM, step[sel], np.full(sel.shape[0], np.nan), wall[sel],
                                order[sel], _SYNTH_POS)
    state.train_array(order, step, total)
