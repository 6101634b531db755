"""What a reader hands back for one run, before segments and roles are assigned.

Readers are many and fast paths matter (millions of points), so they deliver columns as numpy
arrays with tag *codes* (an index into `tags`), plus the file order of every point (`order`: a
line number, a record index; non-decreasing in the order the points were written). `frame.build`
turns a list of these into the tidy Frame, assigning segments from the step counter going back
and from `headers` (the orders at which a run header or a "loaded checkpoint" line appeared).

`RecordsBuilder` is the convenience for readers that parse point by point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np

#: Cap on the skipped lines kept verbatim per run; all of them are counted.
MAX_SKIPPED_KEPT = 200


def code_dtype(categories: int) -> type:
    """The smallest integer type pandas keeps Categorical codes in for this many categories
    (codes made in it go into the Frame without a conversion copy)."""
    for t in (np.int8, np.int16, np.int32):
        if categories < np.iinfo(t).max:
            return t
    return np.int64


@dataclass(frozen=True)
class SkippedLine:
    """A line (or record) that looked like a metric line but could not be parsed."""

    line: int  # 1-based line number, or record index for binary formats
    reason: str
    text: str = ""  # the offending text, cut to 200 characters
    where: str = ""  # how to find it when not by line: "log_history[3]", "record 12"

    @property
    def location(self) -> str:
        """Where it is, for messages: `line 3`, or `where` when the reader set it."""
        return self.where or f"line {self.line}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"line": self.line, "reason": self.reason, "text": self.text}
        if self.where:
            out["where"] = self.where
        return out


@dataclass(frozen=True)
class RunMeta:
    """Hyper-parameters found in the log, under canonical names diagnosis can rely on.

    Every field is None when the log does not say. `extra` keeps what else was found
    (argument dumps, configs) as strings, for the JSON report.
    """

    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    seq_length: int | None = None
    init_method_std: float | None = None
    adam_eps: float | None = None
    adam_beta1: float | None = None
    adam_beta2: float | None = None
    precision: str | None = None  # "fp16", "bf16" or "fp32"
    lr: float | None = None
    lr_schedule: str | None = None
    min_lr: float | None = None
    warmup_steps: int | None = None
    train_iters: int | None = None
    global_batch_size: int | None = None
    micro_batch_size: int | None = None
    rampup_batch_size: str | None = None
    save_interval: int | None = None
    log_interval: int | None = None
    clip_grad: float | None = None
    weight_decay: float | None = None
    loss_units: str = "nats"  # "bits" for fairseq/metaseq
    framework: str | None = None
    #: saved iterations known for the run (the log's save lines or a checkpoint folder)
    checkpoints: tuple[int, ...] | None = None
    checkpoint_source: str | None = None  # where `checkpoints` came from, in words
    checkpoint_dir: str | None = None  # the folder the log names (or that was found) for them
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A hyper-parameter that is not a finite number (a log's `inf`, `nan`) means nothing
        # diagnosis could use: the field stays None and the text is kept under `extra`.
        odd = {name: getattr(self, name) for name in self.__dataclass_fields__
               if isinstance(getattr(self, name), float) and not math.isfinite(getattr(self, name))}
        if odd:
            for name in odd:
                object.__setattr__(self, name, None)
            extra = dict(self.extra)
            for name, value in odd.items():
                extra.setdefault(name, repr(value))
            object.__setattr__(self, "extra", extra)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "extra":
                continue
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    def merged(self, **changes: Any) -> "RunMeta":
        """A copy with the non-None `changes` applied (extra dicts are merged)."""
        from dataclasses import replace

        extra = dict(self.extra)
        extra.update(changes.pop("extra", None) or {})
        changes = {k: v for k, v in changes.items() if v is not None}
        return replace(self, extra=extra, **changes)


@dataclass(frozen=True)
class RunRecords:
    """One run as read: columnar points plus what the reader learned about the run."""

    run: str
    source: str
    format: str
    tags: tuple[str, ...]
    tag_code: np.ndarray  # signed integer (int8..int32) index into tags
    step: np.ndarray  # int64
    value: np.ndarray  # float64, NaN/inf kept
    wall_time: np.ndarray  # float64 seconds since epoch, NaN when unknown
    order: np.ndarray  # int64, file order of each point (non-decreasing as written)
    headers: tuple[int, ...] = ()  # orders where a run header / resume marker appeared
    metadata: RunMeta = field(default_factory=RunMeta)
    skipped: tuple[SkippedLine, ...] = ()
    skipped_count: int = 0
    warnings: tuple[str, ...] = ()
    #: why the unit could not be read (a folder's bad file, a time-out): a run with no points
    #: that every report shows as failed; None when it was read
    error: str | None = None

    def __len__(self) -> int:
        return int(self.step.shape[0])


class RecordsBuilder:
    """Accumulates points tag by tag, for readers that parse record by record.

    >>> b = RecordsBuilder()
    >>> b.add("loss", 1, 2.5, order=10)
    >>> b.add_array("lr", [1, 2], [0.1, 0.2])
    """

    def __init__(self) -> None:
        self._tags: dict[str, int] = {}
        self._scalar: list[tuple[int, int, float, float, int]] = []
        self._arrays: list[tuple[np.ndarray, ...]] = []
        self._auto_order = 0
        self.headers: list[int] = []
        self.skipped: list[SkippedLine] = []
        self.skipped_count = 0
        self.warnings: list[str] = []

    def code(self, tag: str) -> int:
        code = self._tags.get(tag)
        if code is None:
            code = self._tags[tag] = len(self._tags)
        return code

    def add(self, tag: str, step: int, value: float, wall_time: float = np.nan,
            order: int | None = None) -> None:
        if order is None:
            order = self._auto_order
            self._auto_order += 1
        self._scalar.append((self.code(tag), int(step), float(value), float(wall_time), int(order)))

    def add_array(self, tag: str, steps: Iterable[int], values: Iterable[float],
                  wall_times: Iterable[float] | None = None,
                  orders: Iterable[int] | None = None) -> None:
        steps_a = np.asarray(steps, dtype=np.int64)
        values_a = np.asarray(values, dtype=np.float64)
        n = steps_a.shape[0]
        wall_a = (np.full(n, np.nan) if wall_times is None
                  else np.asarray(wall_times, dtype=np.float64))
        if orders is None:
            orders_a = np.arange(self._auto_order, self._auto_order + n, dtype=np.int64)
            self._auto_order += n
        else:
            orders_a = np.asarray(orders, dtype=np.int64)
        self._arrays.append((self.code(tag), steps_a, values_a, wall_a, orders_a))

    def header(self, order: int) -> None:
        """Mark a run header / resume marker at file position `order`."""
        self.headers.append(int(order))

    def skip(self, line: int, reason: str, text: str = "", where: str = "") -> None:
        """Count a line (or record: say which in `where`) that looked like a metric but did
        not parse."""
        self.skipped_count += 1
        if len(self.skipped) < MAX_SKIPPED_KEPT:
            self.skipped.append(SkippedLine(int(line), reason, text[:200], where))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def __len__(self) -> int:
        return len(self._scalar) + sum(a[1].shape[0] for a in self._arrays)

    def build(self, run: str, source: str, format: str,
              metadata: RunMeta | None = None) -> RunRecords:
        dt = code_dtype(len(self._tags))  # (the Frame's categorical keeps it: no copy)
        parts = [p[1:] for p in self._arrays]
        # an array part's codes are all its tag's: made once, in the final column
        codes = np.repeat(np.asarray([p[0] for p in self._arrays], dt),
                          [p[0].shape[0] for p in parts])
        if self._scalar:
            tags, steps, values, walls, orders = zip(*self._scalar)
            codes = np.concatenate([codes, np.asarray(tags, dt)])
            parts.append((np.asarray(steps, np.int64), np.asarray(values, np.float64),
                          np.asarray(walls, np.float64), np.asarray(orders, np.int64)))
        cols = [codes] + [_joined([p[i] for p in parts]) if parts else np.empty(0, t)
                          for i, t in enumerate((np.int64, np.float64, np.float64, np.int64))]
        return RunRecords(
            run=run, source=source, format=format, tags=tuple(self._tags),
            tag_code=cols[0], step=cols[1], value=cols[2], wall_time=cols[3], order=cols[4],
            headers=tuple(sorted(set(self.headers))), metadata=metadata or RunMeta(),
            skipped=tuple(self.skipped), skipped_count=self.skipped_count,
            warnings=tuple(self.warnings),
        )


def _joined(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays end to end; one array that owns its (writable) memory as it is, not a copy
    of it (a file of one metric and 10^7 rows: 320 MB less at the read's peak)."""
    if len(arrays) == 1 and arrays[0].flags.owndata and arrays[0].flags.writeable:
        return arrays[0]
    return np.concatenate(arrays)


def concat_records(parts: "list[RunRecords]") -> RunRecords:
    """One run from several written one after the other (a resumed W&B run's run dirs).

    Parts keep their order; each later part starts with a header, so the Frame makes a segment
    there when the steps overlap; tags are united; the first part names the run.
    """
    first = parts[0]
    tags: dict[str, int] = {}
    cols: list[tuple[np.ndarray, ...]] = []
    headers: list[int] = []
    offset = 0
    for i, part in enumerate(parts):
        remap = np.asarray([tags.setdefault(t, len(tags)) for t in part.tags] or [0], np.int32)
        order = part.order - (int(part.order.min()) if len(part) else 0) + offset
        if i and len(part):
            headers.append(offset - 1)
        headers.extend(h - int(part.order.min()) + offset for h in part.headers if len(part))
        cols.append((remap[part.tag_code] if len(part) else part.tag_code, part.step,
                     part.value, part.wall_time, order))
        offset = int(order.max()) + 2 if len(part) else offset
    merged = [np.concatenate([c[k] for c in cols]) for k in range(5)]
    extra = dict(first.metadata.extra)
    extra["resumed_parts"] = ", ".join(p.source for p in parts)
    from dataclasses import replace

    return RunRecords(
        run=first.run, source=first.source, format=first.format, tags=tuple(tags),
        tag_code=merged[0].astype(np.int32), step=merged[1], value=merged[2],
        wall_time=merged[3], order=merged[4], headers=tuple(sorted(set(headers))),
        metadata=replace(parts[-1].metadata, extra=extra),
        skipped=tuple(s for p in parts for s in p.skipped)[:MAX_SKIPPED_KEPT],
        skipped_count=sum(p.skipped_count for p in parts),
        warnings=tuple(w for p in parts for w in p.warnings))


def read_as(rec: RunRecords, tmp: str, path: str, leading: tuple[str, ...] = (),
            trailing: tuple[str, ...] = ()) -> RunRecords:
    """A run read from a temporary copy of a log (`tmp`: decompressed, or past a NUL prefix)
    under the log's own name `path` (its source, warnings and error), with the copy's own
    `leading` / `trailing` warnings."""
    warnings = leading + tuple(w.replace(tmp, path) for w in rec.warnings) + trailing
    return replace(rec, source=path if rec.source == tmp else rec.source.replace(tmp, path),
                   warnings=warnings,
                   error=rec.error.replace(tmp, path) if rec.error else rec.error)
