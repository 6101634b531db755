"""Column-oriented JSON histories: one object whose keys hold equal-length lists of numbers.

This is what `json.dump(history.history, f)` writes after Keras' `model.fit` (`{"loss": [...],
"val_loss": [...], "accuracy": [...]}`, one value an epoch), and what many training scripts
save the same way (`training_history.json`, `history.json`, `metrics.json`):

```
{"epoch": [0, 100, 200], "train_loss": [4.61, 2.03, 0.91], "test_loss": [4.62, 4.40, 4.38],
 "summary": {"best_epoch": 200}}
```

Step axis: a list named `epoch` (or `step`, `global_step`, `iteration`, `iter`, `steps`,
`epochs`) of whole numbers gives every point its step; without one, the one list of the most
common length named for what it steps (`eval_epochs`, `val_steps`: whole numbers that never go
back) does, else a point's step is its position counted from 1 (Keras prints `Epoch 1/10` for
the first). Lists of another length are read on a step list of their own length named so
(`{"gini": [...], "fourier_epochs": [0, 200, ...]}`, an analysis run less often;
`metadata.extra["other_step_sources"]` names them); without one such a list is not read and a
warning names it. Values: numbers, `NaN` / `Infinity` as Python's json writes them, and `null` (pandas' NaN)
read as NaN; any other entry of a numeric list is a skipped record (`key[i]`). A nested object
whose lists have the series' length is read with `parent/child` tags; other values (a run
summary, a config, lists of text) are not series and are left out, their keys listed under
`metadata.extra["non_series_keys"]`.

The lists may sit in one object named as a wrapper (`history`, `metrics`, `logs`, `results`,
`records`) beside final-summary fields: `{"history": {"train_loss": [...], "eval_epochs": [...]},
"final_test_acc": 1.0, "final_key_frequencies": [68, 45]}`. Its lists are then the series,
tagged without the wrapper's name, and the lists beside it are summaries (not read, listed under
`non_series_keys`).

A file cut short (a run killed while writing it) keeps every list that ended before the cut,
inside a wrapper object too, with a warning naming the key cut (`history/val_loss`) and the
byte. The whole file is parsed at once, so memory is
a few times its size; deeply nested input is refused by the parser, not recursed into.

Sniffed from the file's start (`{"key": [` and a number, or `{"key": {"key": [`): `history.json`,
`training_history.json`, `train_history.json` by that alone; any other file only when one of
its lists is named like a metric (a loss, accuracy, lr or grad norm: `{"hidden_sizes": [64,
128]}`, a config, is no history).
"""
from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import NoSeriesError, ParseError
from ..records import RecordsBuilder, RunMeta, RunRecords
from ..roles import infer_role
from .textutil import head_text, read_bytes

FORMAT = "history-json"
AXIS_KEYS = ("epoch", "epochs", "step", "steps", "global_step", "iteration", "iter")
_NAMES = ("history.json", "training_history.json", "train_history.json")
#: `{` then a first key whose value is a list starting with a number (or empty, or NaN)
_KEY = r'"(?:[^"\\]|\\.){1,200}"\s*:\s*'
_HEAD = re.compile(r'\A\s*\{\s*' + _KEY + r'(\{\s*' + _KEY + r')?\[\s*'
                   r'(?:-?\d|-?Infinity|NaN|null|\])')
_LIST_KEY = re.compile(r'"((?:[^"\\]|\\.){1,200})"\s*:\s*\[')
_SNIFF_KEYS = 1000  # list keys a sniff looks at, at most
_METRIC_ROLES = frozenset({"train_loss", "val_loss", "train_acc", "val_acc", "lr", "grad_norm"})
_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_MAX_DEPTH = 64  # deepest object nesting followed


def sniff(name: str, head: bytes) -> float:
    text = head_text(head)
    m = _HEAD.match(text)
    if not m or '"log_history"' in text:
        return 0.0
    named = name.lower() in _NAMES
    if named:
        return 0.9
    if m.group(1) and _WRAPPER_HEAD.match(text) is None:
        return 0.0  # lists one level down in any other file: only in a wrapper (`history`)
    # a list named like a metric (a config's `{"hidden_sizes": [64, 128]}` is no history)
    for n, k in enumerate(_LIST_KEY.finditer(text)):
        if n >= _SNIFF_KEYS:
            break
        if infer_role(k.group(1)) in _METRIC_ROLES:
            return 0.5
    return 0.0


def read(path: Path, run: str) -> list[RunRecords]:
    try:
        data = read_bytes(path)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    text = bytes(data).decode("utf-8", errors="replace").removeprefix("\ufeff")
    del data
    b = RecordsBuilder()
    top = _members(text, path, b)
    lists: dict[str, list] = {}
    other: list[str] = []
    _collect(top, "", lists, other, 0)
    numeric = {k: v for k, v in lists.items() if _numeric_list(v)}
    other += [k for k in lists if k not in numeric]
    if not numeric:
        raise NoSeriesError(f"{path}: a JSON object with no list of numbers (a column-oriented "
                            "history holds one list per metric)")
    numeric = _unwrap(numeric, other)
    axis_key = next((k for k in AXIS_KEYS if k in numeric), None)
    if axis_key is not None:
        n = len(numeric[axis_key])
    else:
        n = Counter(len(v) for v in numeric.values()).most_common(1)[0][0]
        axis_key = own_axis(numeric, n)
    steps, axis_ok = _axis(numeric.get(axis_key), n, path, b, axis_key)
    others = {}  # length -> (its own axis list's key, steps): lists of another length
    for length in sorted({len(v) for v in numeric.values()} - {n}):
        key = own_axis(numeric, length)
        if key is not None:
            others[length] = (key, np.asarray([int(x) for x in numeric[key]], np.int64))
    for key, values in numeric.items():
        if key == axis_key and axis_ok or any(key == k for k, _ in others.values()):
            continue
        at = steps
        if len(values) != n:
            if len(values) not in others:
                what = f"the axis `{axis_key}`" if axis_key else "most lists"
                b.warn(f"{path}: `{key}` has {len(values)} values, {what} {n}: not read")
                continue
            at = others[len(values)][1]
        vals, bad = _floats(values)
        for i in bad:
            b.skip(i + 1, "not a number", json.dumps(values[i])[:200], where=f"{key}[{i}]")
        keep = np.ones(len(values), bool)
        keep[bad] = False
        b.add_array(key, at[keep], vals[keep], orders=np.flatnonzero(keep))
    extra = {"step_source": axis_key if axis_ok else "position (1 = first)"}
    if others:  # lists of another length on a step list of their own length
        extra["other_step_sources"] = ",".join(f"{k} ({n_} values)"
                                               for n_, (k, _) in sorted(others.items()))
    if other:
        extra["non_series_keys"] = ",".join(sorted(other))
    return [b.build(run, str(path), FORMAT, RunMeta(extra=extra))]


#: the one object that holds a file's lists beside final-summary scalars (`{"history":
#: {"train_loss": [...], ...}, "final_test_acc": 1.0}`): its lists are read without its name
WRAPPERS = ("history", "metrics", "logs", "log", "results", "records")
_WRAPPER_HEAD = re.compile(r'\A\s*\{\s*"(?i:' + "|".join(WRAPPERS) + r')"\s*:\s*\{')
#: a step list named for what it steps (`eval_epochs`, `fourier_epochs`, `val_steps`)
_AXIS_SUFFIX = re.compile(r"(?:^|_)(?:epoch|step|iter|iteration)s?$")


def _unwrap(numeric: dict[str, list], other: list[str]) -> dict[str, list]:
    """The lists of the one object named as a wrapper (`WRAPPERS`), without its `name/`, when
    there is one such object; lists beside it are run summaries (`final_key_frequencies`),
    added to `other`. Else `numeric` unchanged."""
    tops = {k.split("/", 1)[0] for k in numeric if "/" in k}
    wraps = [t for t in tops if t.lower() in WRAPPERS]
    if len(wraps) != 1:
        return numeric
    head = wraps[0] + "/"
    other += [k for k in numeric if not k.startswith(head)]
    return {k[len(head):]: v for k, v in numeric.items() if k.startswith(head)}


def own_axis(numeric: dict[str, list], length: int) -> str | None:
    """The step list among the lists of `length` values: the one named as an axis
    (`AXIS_KEYS`) or ending in one (`eval_epochs`), whole numbers that never go back; None
    when there is no such list or more than one."""
    found = [k for k, v in numeric.items() if len(v) == length and length
             and (k in AXIS_KEYS or _AXIS_SUFFIX.search(k.rsplit("/", 1)[-1]))
             and _whole_rising(v)]
    exact = [k for k in found if k in AXIS_KEYS]
    if len(exact) == 1 or len(found) == 1:
        return (exact or found)[0]
    return None


def _whole_rising(values: list) -> bool:
    ok = all(_is_num(x) and math.isfinite(x) and float(x).is_integer() and abs(x) < 2 ** 62
             for x in values)
    return ok and all(a <= b for a, b in zip(values, values[1:]))


def _members(text: str, path: Path, b: RecordsBuilder) -> list[tuple[str, Any]]:
    """The top object's (key, value) pairs; a file cut inside a value keeps the pairs before
    it, and a cut inside an object value (a `history` wrapper) keeps that object's pairs
    before the cut, as deep as `_MAX_DEPTH` (with a warning)."""
    m = _WS.match(text)
    pos = m.end()
    if text[pos:pos + 1] != "{":
        raise ParseError(f"{path}: expected a JSON object at byte {pos}")
    out, pos, cut = _pairs(text, pos + 1, 0)
    if cut is not None:
        at, where, kept, exc = cut
        if not out:
            raise ParseError(f"{path}: not a JSON object of lists ({_why(exc)} at byte "
                             f"{at})") from None
        inside = f" (in `{where}`)" if where else ""
        b.warn(f"{path}: JSON damaged or cut at byte {at}{inside}: {_why(exc)}; read the "
               f"{kept} key(s) before it")
        return out
    if text[_WS.match(text, pos).end():].strip():
        b.warn(f"{path}: text after the JSON object at byte {pos} not read")
    return out


def _pairs(text: str, pos: int, depth: int) -> tuple[list[tuple[str, Any]], int, Any]:
    """The (key, value) pairs of the object whose `{` is before `pos`, the position after its
    `}`, and None; or, where it is damaged or cut, the pairs before that and (byte, the key
    path cut, how many pairs of the innermost object were kept, the exception)."""
    out: list[tuple[str, Any]] = []
    key = None
    try:
        while True:
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] == "}":
                return out, pos + 1, None
            if out:
                if text[pos:pos + 1] != ",":
                    raise ValueError("expected , or }")
                pos = _WS.match(text, pos + 1).end()
            key, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(key, str):
                raise ValueError("expected a key")
            pos = _WS.match(text, pos).end()
            if text[pos:pos + 1] != ":":
                raise ValueError("expected :")
            pos = _WS.match(text, pos + 1).end()
            try:
                value, pos = _DECODER.raw_decode(text, pos)
            except (ValueError, RecursionError):
                if text[pos:pos + 1] != "{" or depth + 1 >= _MAX_DEPTH:
                    raise
                inner, _, cut = _pairs(text, pos + 1, depth + 1)  # (cut: not None)
                if not inner:
                    raise
                out.append((key, dict(inner)))
                at, where, kept, exc = cut
                return out, at, (at, f"{key}/{where}" if where else key, kept, exc)
            out.append((key, value))
            key = None
    except (ValueError, RecursionError) as exc:
        return out, pos, (pos, key, len(out), exc)


def _why(exc: Exception) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]


def _collect(items, prefix: str, lists: dict[str, list], other: list[str], depth: int) -> None:
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, list):
            lists[name] = value
        elif isinstance(value, dict) and depth < _MAX_DEPTH and any(
                isinstance(v, (list, dict)) for v in value.values()):
            _collect(value.items(), name + "/", lists, other, depth + 1)
        else:
            other.append(name)


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _numeric_list(values: list) -> bool:
    """A list that holds series values: mostly numbers (empty counts)."""
    if not values:
        return True
    nums = sum(1 for x in values if _is_num(x) or x is None)
    return nums >= max(1, len(values) // 2) and any(_is_num(x) for x in values)


def _floats(values: list) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (null -> NaN) and the positions of entries that are not numbers."""
    if all(_is_num(x) or x is None for x in values):
        return np.asarray([math.nan if x is None else x for x in values], np.float64), \
            np.empty(0, np.int64)
    out = np.full(len(values), math.nan)
    bad = []
    for i, x in enumerate(values):
        if _is_num(x):
            out[i] = float(x)
        elif x is not None:
            bad.append(i)
    return out, np.asarray(bad, np.int64)


def _axis(values: list | None, n: int, path: Path, b: RecordsBuilder,
          key: str | None) -> tuple[np.ndarray, bool]:
    """Every point's step: the axis list when it holds whole numbers, else positions 1..n."""
    position = np.arange(1, n + 1, dtype=np.int64)
    if values is None:
        return position, False
    ok = all(_is_num(x) and math.isfinite(x) and float(x).is_integer() and abs(x) < 2 ** 62
             for x in values)
    if ok:
        return np.asarray([int(x) for x in values], np.int64), True
    b.warn(f"{path}: `{key}` is not all whole numbers: steps are positions (1 = first) and "
           f"`{key}` is read as a series")
    return position, False
