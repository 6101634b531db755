"""Weights & Biases readers: offline run files, pre-0.10 history files, and the public API.

A `run-<id>.wandb` file is the complete transaction log of a run, and it is
often the only copy an offline or crashed run leaves, so it is read here without the network and
without the wandb package (an optional extra): a LevelDB-style log framing (wandb_log.py) around
protobuf `Record` messages, of which a small wire-format decoder reads only the fields losslens
needs (wandb_proto.py). Damaged files are salvaged record by record.

- `sniff_wandb` / `read_wandb`: `run-*.wandb` (wandb-core `nested_key` items and legacy `key`).
- `sniff_wandb_history` / `read_wandb_history`: `wandb-history.jsonl` (wandb < 0.10, exports).
- `read_api("wandb://entity/project/run_id")`: every row through `scan_history()` (needs wandb).

The framing and its salvage are in `wandb_log`, the protobuf decoding in `wandb_proto`.

History rows become points: tag = the key path joined with "/", step = `_step` (or the
`define_metric` step metric, e.g. HF's `train/global_step`, when the row carries it), wall time =
`_timestamp`. Non-numeric values (strings, booleans, media, lists) are not series and are passed
over quietly. The run config is mapped onto RunMeta (`config_meta`).
"""
from __future__ import annotations

import json
import math
import re
import struct
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from ..errors import InvalidParameterError, LossLensError, MissingDependencyError, ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from .textutil import as_float
from .wandb_log import MAGIC, Damage, iter_payloads
from .wandb_proto import (EXIT_FIELDS, METRIC_FIELDS, OUTPUT_FIELDS, R_CONFIG, R_EXIT, R_HISTORY,
                          R_METRIC, R_OUTPUT, R_OUTPUT_RAW, R_RUN, R_SUMMARY, RUN_FIELDS,
                          ProtoError, decode_history, decode_message, decode_updates, json_any,
                          record_body)

#: Steps are int64: a `_step` (or step metric) beyond is damage, not a step.
_STEP_LIMIT = 2 ** 63
#: History keys that are W&B bookkeeping, not series.
BOOKKEEPING = frozenset({"_step", "_runtime", "_timestamp"})
#: Caps on what goes into RunMeta.extra (configs can hold thousands of keys).
MAX_EXTRA_KEYS = 400
MAX_EXTRA_VALUE = 200
CONSOLE_HEAD_LINES = 3
#: Bounds on a run config: values visited, nesting levels, bytes of a config.yaml.
MAX_CONFIG_NODES = 100_000
MAX_CONFIG_DEPTH = 32
MAX_CONFIG_BYTES = 16 << 20


# --------------------------------------------------------------------------------------------
# Rows -> points (shared by .wandb, wandb-history.jsonl and the API)


def flatten(path: tuple[str, ...], value: Any, out: dict[str, float]) -> None:
    """Numeric leaves of a history value under their "/"-joined tag (media objects skipped)."""
    if isinstance(value, float):
        out["/".join(path)] = value
    elif isinstance(value, dict):
        if "_type" in value:  # wandb media / histogram / table objects
            return
        for k, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out["/".join(path + (str(k),))] = as_float(v)
            elif isinstance(v, dict):
                flatten(path + (str(k),), v, out)


class RowSink:
    """Turns history rows (tag -> float) into builder points, resolving the step of each.

    The step is `_step`, unless `define_metric` gave the tag a step metric (HF Trainer:
    `*` -> `train/global_step`): then it is that metric's latest value, as W&B plots it with
    `step_sync`. A step metric is an x axis, not a series, so it is not emitted as a tag.
    """

    def __init__(self, builder: RecordsBuilder) -> None:
        self.builder = builder
        self.step_metrics: dict[str, str] = {}  # metric name -> its step metric
        self.glob_metrics: list[tuple[str, str]] = []
        self.axes: set[str] = set()
        self._cache: dict[str, str | None] = {}
        self._last: dict[str, float] = {}  # latest value of each step metric
        self.tags: set[str] = set()

    def define(self, name: str, glob: str, step_metric: str) -> None:
        if not step_metric:
            return
        if name:
            self.step_metrics[name] = step_metric
        elif glob:
            self.glob_metrics.append((glob, step_metric))
        self.axes.add(step_metric)
        self._cache.clear()

    def _step_metric(self, tag: str) -> str | None:
        if tag not in self._cache:
            metric = self.step_metrics.get(tag)
            if metric is None:
                metric = next((m for g, m in self.glob_metrics if fnmatchcase(tag, g)), None)
            self._cache[tag] = metric
        return self._cache[tag]

    def row(self, values: dict[str, float], step: int | None, order: int) -> None:
        """Add one row; `step` is the history step (None: take `_step` from the row)."""
        if "_step" in values and abs(values["_step"]) < _STEP_LIMIT:  # not NaN, inf, 1e300
            step = int(values["_step"])
        if step is None or not -_STEP_LIMIT < step < _STEP_LIMIT:
            self.builder.skip(order, "history row without a step" if step is None
                              else "step does not fit in 64 bits")
            return
        wall = values.get("_timestamp", math.nan)
        add = self.builder.add
        axes = self.axes
        for axis in axes:
            if axis in values and abs(values[axis]) < _STEP_LIMIT:
                self._last[axis] = values[axis]
        for tag, value in values.items():
            if tag in BOOKKEEPING or tag in axes:
                continue
            point_step = step
            if axes:
                metric = self._step_metric(tag)
                if metric in self._last:
                    point_step = int(self._last[metric])
            self.tags.add(tag)
            add(tag, point_step, value, wall, order)


# --------------------------------------------------------------------------------------------
# Config -> RunMeta


_ALIASES: dict[str, tuple[str, ...]] = {
    "lr": ("learning_rate", "lr"),
    "min_lr": ("min_lr", "min_learning_rate"),
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_layers", "n_layer", "n_layers", "num_hidden_layers"),
    "num_heads": ("num_attention_heads", "n_head", "n_heads", "num_heads"),
    "seq_length": ("seq_length", "seq_len", "block_size", "max_seq_length", "max_seq_len",
                   "sequence_length"),
    "init_method_std": ("init_method_std", "init_std", "initializer_range"),
    "adam_eps": ("adam_eps", "adam_epsilon"),
    "adam_beta1": ("adam_beta1", "beta1"),
    "adam_beta2": ("adam_beta2", "beta2"),
    "weight_decay": ("weight_decay",),
    "clip_grad": ("clip_grad", "grad_clip", "max_grad_norm", "gradient_clip_val"),
    "warmup_steps": ("warmup_steps", "warmup_iters", "lr_warmup_iters", "lr_warmup_steps"),
    "train_iters": ("train_iters", "max_steps", "max_iters"),
    "global_batch_size": ("global_batch_size",),
    "micro_batch_size": ("micro_batch_size", "per_device_train_batch_size"),
    "save_interval": ("save_interval", "save_steps", "checkpoint_interval"),
    "log_interval": ("log_interval", "logging_steps"),
    "lr_schedule": ("lr_decay_style", "lr_scheduler_type", "lr_schedule"),
    "rampup_batch_size": ("rampup_batch_size",),
}
_INT_FIELDS = frozenset({"hidden_size", "num_layers", "num_heads", "seq_length", "warmup_steps",
                         "train_iters", "global_batch_size", "micro_batch_size", "save_interval",
                         "log_interval"})
_STR_FIELDS = frozenset({"lr_schedule", "rampup_batch_size"})
_FLOAT_FIELDS = frozenset(_ALIASES) - _INT_FIELDS - _STR_FIELDS


def flat_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Config flattened to dotted keys, config.yaml's {"value": x, "desc": ...} unwrapped and
    W&B's own `_wandb` entry dropped. Bounded: at most `MAX_CONFIG_NODES` values visited and
    `MAX_CONFIG_DEPTH` levels (a config is a few hundred keys; a shared sub-tree repeated by
    reference is not walked again and again)."""
    out: dict[str, Any] = {}
    stack = [(str(k), v, 1) for k, v in reversed(list(config.items()))
             if k != "_wandb" and k != "wandb_version"]
    budget = MAX_CONFIG_NODES
    while stack and budget > 0:
        prefix, value, depth = stack.pop()
        budget -= 1
        if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]  # config.yaml form
        if isinstance(value, dict) and value and depth < MAX_CONFIG_DEPTH:
            stack += [(f"{prefix}.{k}", v, depth + 1) for k, v in reversed(list(value.items()))]
        else:
            out[prefix] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return as_float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _precision(leaf: Mapping[str, Any]) -> str | None:
    if leaf.get("bf16") is True:
        return "bf16"
    if leaf.get("fp16") is True:
        return "fp16"
    for key in ("precision", "mixed_precision", "dtype", "params_dtype", "torch_dtype"):
        text = str(leaf.get(key, "")).lower().replace("torch.", "")
        if not text or text == "none":
            continue
        if "bf16" in text or "bfloat16" in text:
            return "bf16"
        if text in ("16", "16-mixed", "fp16", "float16", "half", "16-true"):
            return "fp16"
        if text in ("32", "32-true", "fp32", "float32", "float", "no", "64", "float64"):
            return "fp32"
    if leaf.get("bf16") is False and leaf.get("fp16") is False:
        return "fp32"
    return None


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:MAX_EXTRA_VALUE]


def config_meta(config: Mapping[str, Any]) -> RunMeta:
    """RunMeta from a W&B run config: canonical fields where the key names a known setting
    (matched on the last dotted component, shortest key first), every key in `extra`."""
    flat = flat_config(config)
    leaf: dict[str, Any] = {}
    for key in sorted(flat, key=lambda k: (k.count("."), k)):
        leaf.setdefault(key.rsplit(".", 1)[-1].lower(), flat[key])
    fields_: dict[str, Any] = {}
    for name, aliases in _ALIASES.items():
        raw = next((leaf[a] for a in aliases if a in leaf and leaf[a] is not None), None)
        if raw is None:
            continue
        if name in _STR_FIELDS:
            fields_[name] = _text_value(raw)
            continue
        num = _number(raw)
        if num is None or not math.isfinite(num):
            continue
        if name in _INT_FIELDS:
            if num == int(num) and num > 0 or (num == 0 and name == "warmup_steps"):
                fields_[name] = int(num)
        else:
            fields_[name] = num
    betas = leaf.get("betas", leaf.get("adam_betas"))
    if isinstance(betas, (list, tuple)) and len(betas) == 2:
        fields_.setdefault("adam_beta1", _number(betas[0]))
        fields_.setdefault("adam_beta2", _number(betas[1]))
    if "global_batch_size" not in fields_:
        bs, ga = _number(leaf.get("batch_size")), _number(leaf.get("gradient_accumulation_steps"))
        if bs and ga and math.isfinite(bs * ga) and bs == int(bs) and ga == int(ga):
            fields_["global_batch_size"] = int(bs * ga)
    fields_["precision"] = _precision(leaf)
    extra = {k: _text_value(v) for k, v in list(flat.items())[:MAX_EXTRA_KEYS]}
    if len(flat) > MAX_EXTRA_KEYS:
        extra["wandb.config_keys_omitted"] = str(len(flat) - MAX_EXTRA_KEYS)
    return RunMeta().merged(extra=extra, **fields_)


# --------------------------------------------------------------------------------------------
# run-*.wandb


def sniff_wandb(name: str, head: bytes) -> float:
    if head.startswith(MAGIC):
        return 1.0
    if name.endswith(".wandb"):
        return 0.5  # damaged header: read_wandb will say what is wrong
    return 0.0


class _RunState:
    """What a scan of a `.wandb` file collects besides the points."""

    def __init__(self) -> None:
        self.run: dict[str, Any] = {}
        self.config: dict[str, Any] = {}
        self.summary: dict[str, Any] = {}
        self.console: list[str] = []
        self.exit_code: int | None = None
        self.history_tags: set[str] = set()
        self.last_mirror: bytes | None = None

    def apply_config(self, buf: bytes) -> None:
        updates, removed = decode_updates(buf)
        for path, text in updates:
            self.config[".".join(path)] = json_any(text)
        for path in removed:
            self.config.pop(".".join(path), None)

    def apply_summary(self, buf: bytes) -> None:
        updates, removed = decode_updates(buf)
        for path, text in updates:
            self.summary["/".join(path)] = text
        for path in removed:
            self.summary.pop("/".join(path), None)


def _dispatch(kind: int, body: bytes, index: int, sink: RowSink, state: _RunState) -> None:
    if kind == R_HISTORY:
        items, step = decode_history(body)
        values: dict[str, float] = {}
        for path, value in items:
            if value is not None:
                flatten(path, value, values)
        sink.row(values, step, index)
    elif kind == R_SUMMARY:
        # wandb-core mirrors every history row into a summary record (with `_step`); only the
        # last of those can matter, and skipping the rest saves a third of the read time.
        if b"_step" in body:
            state.last_mirror = body
        else:
            state.apply_summary(body)
    elif kind == R_CONFIG:
        state.apply_config(body)
    elif kind in (R_OUTPUT_RAW, R_OUTPUT):
        if len(state.console) < 100_000:  # only counted and sampled; keep memory bounded
            state.console.append(decode_message(body, OUTPUT_FIELDS).get("line", ""))
    elif kind == R_METRIC:
        m = decode_message(body, METRIC_FIELDS)
        sink.define(m.get("name", ""), m.get("glob_name", ""), m.get("step_metric", ""))
    elif kind == R_RUN:
        run = decode_message(body, RUN_FIELDS)
        if "config" in run:
            state.apply_config(run.pop("config"))
        state.run.update(run)
    elif kind == R_EXIT:
        state.exit_code = decode_message(body, EXIT_FIELDS).get("exit_code", 0)


def scan(path: Path, builder: RecordsBuilder) -> _RunState:
    """Read every intact record of a `.wandb` file into `builder`; damage becomes warnings."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise ParseError(f"{path}: {len(data)} bytes, shorter than the 7-byte W&B header")
        raise ParseError(f"{path}: not a W&B run file (expected the header :W&B e1 be 00, "
                         f"found {data[:7]!r})")
    damage = Damage(str(path))
    sink, state = RowSink(builder), _RunState()
    for index, offset, payload in iter_payloads(data, damage):
        try:
            found = record_body(payload)
            if found is not None:
                _dispatch(found[0], found[1], index, sink, state)
        except (ProtoError, UnicodeDecodeError, struct.error) as exc:
            builder.skip(index, f"record at byte {offset} is not a valid Record message: {exc}")
    for message in damage.messages:
        builder.warn(message)
    if damage.records_lost:
        builder.warn(damage.summary())
    for note in damage.notes:
        builder.warn(note)

    state.history_tags = sink.tags | sink.axes
    if state.last_mirror is not None:
        try:
            state.apply_summary(state.last_mirror)
        except (ProtoError, UnicodeDecodeError):
            pass  # the summary is informational; its points came from history
    return state


def _run_extra(state: _RunState) -> dict[str, str]:
    extra: dict[str, str] = {}
    for key in ("run_id", "display_name", "project", "entity", "run_group", "job_type"):
        if state.run.get(key):
            extra[f"wandb.{key}"] = state.run[key]
    if state.run.get("tags"):
        extra["wandb.tags"] = ",".join(state.run["tags"])[:MAX_EXTRA_VALUE]
    if state.run.get("resumed"):
        extra["wandb.resumed"] = "true"
    if state.run.get("starting_step"):
        extra["wandb.starting_step"] = str(state.run["starting_step"])
    if state.exit_code is not None:
        extra["wandb.exit_code"] = str(state.exit_code)
    prefixes = {t.split("/", 1)[0] for t in state.history_tags}
    kept = [(k, v) for k, v in state.summary.items()  # only what history does not already hold
            if k not in state.history_tags and k not in prefixes and not k.startswith("_")]
    for key, text in kept[:50]:
        extra[f"wandb.summary.{key}"] = _text_value(json_any(text))
    if state.console:
        lines = "".join(state.console).splitlines()
        extra["wandb.console_lines"] = str(len(lines))
        extra["wandb.console_head"] = "\n".join(lines[:CONSOLE_HEAD_LINES])[:MAX_EXTRA_VALUE]
    return extra


def read_wandb(path: Path, run: str) -> list[RunRecords]:
    """One run from an offline `run-<id>.wandb` file (no network, no wandb package)."""
    path = Path(path)
    builder = RecordsBuilder()
    state = scan(path, builder)
    meta = config_meta(state.config)
    meta = meta.merged(extra=_run_extra(state))
    return [builder.build(run, str(path), "wandb", meta)]


def console_text(path: Path) -> str:
    """The console output (`output_raw` / `output` records) captured in a `.wandb` file, so
    that a text reader can be run over it."""
    data = Path(path).read_bytes()
    if not data.startswith(MAGIC):
        raise ParseError(f"{path}: not a W&B run file (expected the header :W&B e1 be 00)")
    parts = []
    for _, _, payload in iter_payloads(data, Damage(str(path))):
        try:
            found = record_body(payload)
            if found and found[0] in (R_OUTPUT_RAW, R_OUTPUT):
                parts.append(decode_message(found[1], OUTPUT_FIELDS).get("line", ""))
        except (ProtoError, UnicodeDecodeError):
            continue
    return "".join(parts)


# --------------------------------------------------------------------------------------------
# wandb-history.jsonl (wandb < 0.10, or exported history)

_HISTORY_KEYS_RE = re.compile(rb'"_step"\s*:')


def sniff_wandb_history(name: str, head: bytes) -> float:
    text = head.lstrip()
    if not text.startswith(b"{") or name == "wandb-summary.json":  # last values, not history
        return 0.0
    first = text.split(b"\n", 1)[0]
    if name == "wandb-history.jsonl":
        return 1.0
    if _HISTORY_KEYS_RE.search(first) and (b'"_runtime"' in first or b'"_timestamp"' in first):
        return 0.9
    return 0.0


def _history_rows(text: str, builder: RecordsBuilder) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = text.split("\n")
    last = len(lines) - 1 if lines and lines[-1].strip() else len(lines) - 2
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            why = ("truncated last line" if lineno - 1 == last and not text.endswith("\n")
                   else "not a JSON object")
            builder.skip(lineno, why, line)
            continue
        if not isinstance(row, dict):
            builder.skip(lineno, "not a JSON object", line)
            continue
        yield lineno, row


def _row_values(row: Mapping[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            values[key] = as_float(value)
        elif isinstance(value, dict):
            flatten((key,), value, values)
    return values


def _sibling_config(path: Path, builder: RecordsBuilder) -> dict[str, Any]:
    """config.yaml next to a pre-0.10 wandb-history.jsonl ({key: {desc, value}}).

    Loaded with PyYAML's safe loader, but the node graph is measured before it is built: an
    alias bomb (a few hundred bytes whose aliases expand to billions of values) or a file
    over `MAX_CONFIG_BYTES` is left out with a warning, as is a file that is not YAML."""
    cfg = path.with_name("config.yaml")
    if not cfg.is_file():
        return {}
    try:
        import yaml
    except ImportError:  # the config is optional
        return {}
    try:
        with open(cfg, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ValueError(f"over {MAX_CONFIG_BYTES >> 20} MB")
        from .jsonl import flow_depth

        if flow_depth(raw) > MAX_CONFIG_DEPTH:  # (PyYAML recurses per level: 50k levels of
            raise ValueError(f"nested deeper than {MAX_CONFIG_DEPTH} levels")  # [ took 12 s)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(raw.decode("utf-8", "replace"))
        try:
            node = loader.get_single_node()
            if node is None:
                return {}
            size = _expanded_size(node)
            if size > MAX_CONFIG_NODES:
                raise ValueError(f"its aliases expand to over {MAX_CONFIG_NODES:,} values")
            loaded = loader.construct_document(node)
        finally:
            loader.dispose()
    except (yaml.YAMLError, ValueError, RecursionError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        builder.warn(f"{cfg}: run config left out ({reason[:200]})")
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _expanded_size(root: Any) -> int:
    """How many nodes a YAML node graph has once every alias is expanded (each shared node
    measured once; the count stops growing past `MAX_CONFIG_NODES`)."""
    import yaml

    size: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in size:
            continue
        if isinstance(node, yaml.MappingNode):
            kids = [x for pair in node.value for x in pair]
        elif isinstance(node, yaml.SequenceNode):
            kids = list(node.value)
        else:
            size[id(node)] = 1
            continue
        if children_done:
            size[id(node)] = min(1 + sum(size.get(id(k), 0) for k in kids),
                                 MAX_CONFIG_NODES + 1)
        else:
            stack.append((node, True))
            stack += [(k, False) for k in kids if id(k) not in size]
    return size[id(root)]


def read_wandb_history(path: Path, run: str) -> list[RunRecords]:
    """One run from `wandb-history.jsonl`: one JSON object per `log()` call."""
    from .textutil import read_text

    path = Path(path)
    builder = RecordsBuilder()
    sink = RowSink(builder)
    for lineno, row in _history_rows(read_text(path), builder):
        sink.row(_row_values(row), None, lineno)
    meta = config_meta(_sibling_config(path, builder))
    return [builder.build(run, str(path), "wandb-history", meta)]


# --------------------------------------------------------------------------------------------
# wandb:// addresses (public API)


def parse_address(address: str) -> str:
    """`wandb://entity/project/run_id` (or `.../runs/run_id`) -> "entity/project/run_id"."""
    rest = address[len("wandb://"):] if address.startswith("wandb://") else ""
    parts = [p for p in rest.strip("/").split("/")]
    if len(parts) == 4 and parts[2] == "runs":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3 or not all(parts):
        raise InvalidParameterError(
            f"{address}: expected a W&B run address wandb://entity/project/run_id")
    return "/".join(parts)


def read_api(address: str, api_factory: Callable[[], Any] | None = None) -> list[RunRecords]:
    """Every history row of a W&B run through the public API (`scan_history`, not the
    500-row sample of `history()`). Needs the wandb package and network access."""
    run_path = parse_address(address)
    if api_factory is None:
        try:
            import wandb
        except ImportError:
            raise MissingDependencyError(
                f"{address}: reading runs from the W&B server needs the wandb package: "
                "pip install 'losslens[wandb]'") from None
        api_factory = wandb.Api
    try:
        api_run = api_factory().run(run_path)
        builder = RecordsBuilder()
        sink = RowSink(builder)
        for order, row in enumerate(api_run.scan_history(), 1):
            sink.row(_row_values(row), None, order)
        config = dict(api_run.config or {})
        name = getattr(api_run, "name", None) or run_path
    except LossLensError:
        raise
    except Exception as exc:  # the API raises its own errors (auth, network, not found)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LossLensError(f"{address}: W&B API error: {first}") from None
    meta = config_meta(config).merged(extra={"wandb.run_path": run_path})
    return [builder.build(name, address, "wandb", meta)]
