"""The Frame: every point of every run as one tidy long table, with segments, roles and metadata.

Columns `run, tag, step, value, wall_time, segment`. NaN and ±inf are kept.
A segment starts where a tag's step counter goes back (resume with overlap, rollback) or
where the reader saw a run header / "loaded checkpoint" line; one step written twice in a
row is a double log, not a resume (its duplicate is visible as raw_points > points). Views:

- raw (`Frame.data`): every point of every segment, in write order within each (run, tag);
- stitched (`Frame.stitched`): one point per (run, tag, step), the last write winning, up
  to the step of the tag's last write: a restart that ends before the run it replaced does
  not get that run's abandoned tail joined after it as if it went on (those points stay in
  the raw view, and the run gets a warning). A tag whose writes go back as often as a
  shuffled file's (`reads_shuffled`) keeps every step.

Everything is vectorised: readers deliver numpy columns (`records.RunRecords`) and this
module never loops over points, so a 4M-point run builds in well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .errors import UnknownRunError
from .records import RunMeta, RunRecords, SkippedLine, code_dtype
from .roles import infer_axis, infer_role
from .textsafe import valid_unicode

COLUMNS = ("run", "tag", "step", "value", "wall_time", "segment")


@dataclass(frozen=True)
class Segment:
    """A stretch of one run written without the step counter going back."""

    index: int
    first_step: int
    last_step: int
    points: int
    reason: str  # "start", "step_back" (counter went back or repeated) or "header"
    previous_last_step: int | None  # last step written before this segment (None for the first)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "first_step": self.first_step, "last_step": self.last_step,
                "points": self.points, "reason": self.reason,
                "previous_last_step": self.previous_last_step}


@dataclass(frozen=True)
class SeriesInfo:
    """One tag of one run: its role and extent (stitched view)."""

    tag: str
    role: str
    points: int
    first_step: int | None
    last_step: int | None
    nonfinite: int
    raw_points: int
    axis: str = "iteration"  # what `step` counts: "iteration", or "samples"/"tokens"/"gigaflos"

    def to_dict(self) -> dict[str, Any]:
        return {"tag": self.tag, "role": self.role, "points": self.points,
                "first_step": self.first_step, "last_step": self.last_step,
                "nonfinite": self.nonfinite, "raw_points": self.raw_points, "axis": self.axis}


@dataclass(frozen=True)
class RunInfo:
    """Everything known about one run besides its points."""

    run: str
    source: str
    format: str
    series: tuple[SeriesInfo, ...]
    segments: tuple[Segment, ...]
    metadata: RunMeta
    skipped: tuple[SkippedLine, ...] = ()
    skipped_count: int = 0
    warnings: tuple[str, ...] = ()
    #: why this run could not be read or analysed (it has no series then); None when it was
    error: str | None = None

    @cached_property
    def roles(self) -> dict[str, str]:
        """Tag -> role (built once: a detector asks for each of the run's series, and a run
        may hold 10^5 tags)."""
        return {s.tag: s.role for s in self.series}

    @property
    def last_step(self) -> int | None:
        """The last logged step over the run's series (None when none has a step)."""
        return max((s.last_step for s in self.series if s.last_step is not None), default=None)

    def tags_with_role(self, role: str) -> list[str]:
        return [s.tag for s in self.series if s.role == role]

    @property
    def last_step(self) -> int | None:
        """The last iteration written: tags on another axis (Megatron's `lm loss vs samples`,
        whose step is consumed samples) do not count; a run logged per epoch only (Keras'
        `epoch_*` tags) gives its last epoch."""
        for axis in ("iteration", "epoch"):
            last = max((s.last_step for s in self.series
                        if s.last_step is not None and s.axis == axis), default=None)
            if last is not None:
                return last
        return None

    @property
    def notes(self) -> tuple[str, ...]:
        """Facts about the run worth a line in a report (not findings): a run that stopped
        before its planned iterations (a stalled or killed job)."""
        planned = self.metadata.train_iters
        last = max((s.last_step for s in self.series
                    if s.last_step is not None and s.axis == "iteration"), default=None)
        if planned and last is not None and 0 < last < planned:
            return (f"stopped at {last:,} of {planned:,} planned iterations",)
        return ()


@dataclass(frozen=True)
class Series:
    """The points of one (run, tag) as numpy arrays, sorted by step (stitched) or write order."""

    run: str
    tag: str
    role: str
    step: np.ndarray
    value: np.ndarray
    wall_time: np.ndarray
    segment: np.ndarray

    def __len__(self) -> int:
        return int(self.step.shape[0])


@dataclass(frozen=True)
class Frame:
    """The tidy table of all runs read, plus per-run information."""

    data: pd.DataFrame  # raw view, sorted by run, tag, write order
    runs: tuple[RunInfo, ...]
    _raw_index: Mapping[tuple[str, str], tuple[int, int]] = field(repr=False, default_factory=dict)

    def run(self, name: str) -> RunInfo:
        for info in self.runs:
            if info.run == name:
                return info
        raise UnknownRunError(f"no run named {name!r} (runs: "
                              f"{', '.join(r.run for r in self.runs) or 'none'})")

    @cached_property
    def stitched(self) -> pd.DataFrame:
        """One point per (run, tag, step): the last write wins."""
        parts = [self._stitched_slice(s, e) for s, e in self._raw_index.values()]
        if not parts:
            return self.data.iloc[0:0]
        idx = np.concatenate(parts)
        return self.data.iloc[idx].reset_index(drop=True)

    @cached_property
    def _stitched_index(self) -> dict[tuple[str, str], tuple[int, int]]:
        out, pos = {}, 0
        for key, (s, e) in self._raw_index.items():
            n = self._stitched_slice(s, e).shape[0]
            out[key] = (pos, pos + n)
            pos += n
        return out

    def _stitched_slice(self, start: int, stop: int) -> np.ndarray:
        return start + stitched_positions(self._raw_columns[0][start:stop])

    def series(self, run: str, tag: str, raw: bool = False) -> Series:
        """The points of one tag; `raw=True` gives every segment in write order."""
        key = (run, tag)
        if key not in self._raw_index:
            raise UnknownRunError(f"run {run!r} has no series {tag!r}")
        if raw:
            cols, (s, e) = self._raw_columns, self._raw_index[key]
        else:
            cols, (s, e) = self._stitched_columns, self._stitched_index[key]
        role = self.run(run).roles.get(tag, "other")
        step, value, wall, segment = cols
        return Series(run, tag, role, step[s:e], value[s:e], wall[s:e], segment[s:e])

    @cached_property
    def _raw_columns(self) -> tuple[np.ndarray, ...]:
        """step, value, wall_time, segment of the raw view as arrays (taken from pandas
        once: per series it cost ~0.1 ms, a minute for a run of 10^5 tags)."""
        return tuple(self.data[c].to_numpy() for c in ("step", "value", "wall_time", "segment"))

    @cached_property
    def _stitched_columns(self) -> tuple[np.ndarray, ...]:
        return tuple(self.stitched[c].to_numpy()
                     for c in ("step", "value", "wall_time", "segment"))

    def __len__(self) -> int:
        return len(self.data)

    def to_pandas(self, wide: bool = False, raw: bool = False) -> pd.DataFrame:
        """The points as a pandas DataFrame (a copy).

        Long (default): columns run, tag, step, value, wall_time, segment, one point per
        (run, tag, step) — the stitched view; `raw=True` keeps every segment's writes.
        `wide=True`: one row per (run, step) and one column per tag (NaN where a tag has no
        point at that step), from the stitched view.
        """
        table = self.data if raw else self.stitched
        if not wide:
            out = table.copy()
            for col in ("run", "tag"):
                out[col] = out[col].astype(str)
            return out
        if raw:
            raise ValueError("to_pandas(wide=True) pivots the stitched view; raw=True has "
                             "several points per step")
        long = table[["run", "tag", "step", "value"]].copy()
        long["run"], long["tag"] = long["run"].astype(str), long["tag"].astype(str)
        wide_df = long.pivot(index=["run", "step"], columns="tag", values="value")
        wide_df.columns = [str(c) for c in wide_df.columns]
        return wide_df.reset_index()

    def __repr__(self) -> str:
        series = sum(len(r.series) for r in self.runs)
        names = ", ".join(r.run for r in self.runs[:3]) + (", ..." if len(self.runs) > 3
                                                          else "")
        return (f"<losslens.Frame: {len(self.runs)} run(s), {series} series, "
                f"{len(self):,} points: {names}>")

    def _repr_html_(self) -> str:
        from .report.notebook import frame_html

        return frame_html(self)


#: A run whose steps go back this often (at least `_OUT_OF_ORDER_MIN` times, once every
#: `_OUT_OF_ORDER_EVERY` points or more often) was written out of order -- several ranks
#: appending to one file, lines shuffled -- not resumed thousands of times: no segments are
#: cut at its step-backs (the stitched view orders the points by step) and a warning says so.
_OUT_OF_ORDER_MIN = 64
_OUT_OF_ORDER_EVERY = 16


def reads_shuffled(backs: int, points: int) -> bool:
    """Whether `points` written with the step going back `backs` times read as written out
    of order (several writers to one file) rather than as resumes."""
    return backs >= _OUT_OF_ORDER_MIN and backs * _OUT_OF_ORDER_EVERY >= points


def stitched_positions(steps: np.ndarray) -> np.ndarray:
    """Positions (into `steps`, one tag's steps in write order) of the stitched view, in step
    order: the last write of each step, up to the step of the last write. A restart (the
    step going back) that ends before the run it replaced leaves that run's points beyond
    its end: an abandoned tail, not a continuation of the restart, so it is not joined after
    it (a restart from step 0 that stopped at 12,800 with the replaced run's 12,900-16,300
    appended made a level jump, a "spike that never recovered", of the seam). Writes that go
    back as often as a shuffled file's (`reads_shuffled`) keep every step."""
    n = steps.shape[0]
    if n < 2 or bool(np.all(steps[1:] > steps[:-1])):
        return np.arange(n)
    # stable sort by step keeps write order among equal steps; keep the last of each
    order = np.argsort(steps, kind="stable")
    s = steps[order]
    last = np.ones(n, bool)
    last[:-1] = s[1:] != s[:-1]
    backs = int(np.count_nonzero(steps[1:] < steps[:-1]))
    if backs and not reads_shuffled(backs, n):
        last &= s <= steps[-1]
    return order[last]


def _segment_ids(rec: RunRecords) -> tuple[np.ndarray, list[tuple[int, str]], int]:
    """Segment id per point (in write order), the boundaries (order, reason), and how many
    step-backs were not cut because the run reads as written out of order (else 0)."""
    order, codes = rec.order, rec.tag_code
    n = order.shape[0]
    # only a counter going *back* starts a segment: one step written twice in a row is a
    # double log (Lightning writes `epoch` twice at an epoch's last step; last write wins in
    # the stitched view); a resume that re-writes steps goes back
    backs = _step_backs(codes, rec.step, order)
    shuffled = 0
    if reads_shuffled(len(backs), n):
        shuffled, backs = len(backs), []
    candidates: list[tuple[int, str, int]] = [(o, "step_back", c) for o, c in backs]
    first_order = int(order.min()) if n else 0
    for h in rec.headers:
        if h > first_order:
            candidates.append((int(h), "header", -1))
    candidates.sort()
    boundaries: list[tuple[int, str]] = []
    tag_orders: dict[int, np.ndarray] = {}
    for o_, reason, code in candidates:
        if boundaries and reason == "step_back":
            prev = boundaries[-1][0]
            # a tag that has not written since the last boundary restarts with it, not anew
            if code not in tag_orders:
                tag_orders[code] = np.sort(order[codes == code])
            to = tag_orders[code]
            if np.searchsorted(to, o_, "left") == np.searchsorted(to, prev, "left"):
                continue
        if boundaries and boundaries[-1][0] == o_:
            continue
        boundaries.append((o_, reason))
    # a step_back boundary starts at its own point; a header at the point after it
    cut = np.asarray([o if r == "step_back" else o + 1 for o, r in boundaries], dtype=np.int64)
    seg = np.zeros(n, np.int32)
    if cut.shape[0]:
        for a in range(0, n, _CHUNK):  # in chunks: no int64 copy of the whole column
            seg[a:a + _CHUNK] = np.searchsorted(cut, order[a:a + _CHUNK], side="right")
    return seg, boundaries, shuffled


#: Points per chunk where a whole-column temporary would cost memory (1M: 8 MB of int64).
_CHUNK = 1 << 20
#: Up to this many tags, the raw view is gathered tag by tag (one tag's indices at a time);
#: beyond, with one permutation of every point.
_FEW_TAGS = 16


def _step_backs(codes: np.ndarray, steps: np.ndarray,
                order: np.ndarray) -> list[tuple[int, int]]:
    """(order, tag code) of every point whose step is below the step before it of its tag,
    points of a tag taken in array order."""
    if codes.shape[0] < 2:
        return []
    if _nondecreasing(codes):  # tag by tag already: no copies
        back = _windows(lambda a, b: np.flatnonzero(
            (steps[a + 1:b] < steps[a:b - 1]) & (codes[a + 1:b] == codes[a:b - 1])) + (a + 1),
            codes.shape[0], np.concatenate)
        return [(int(order[i]), int(codes[i])) for i in back]
    out: list[tuple[int, int]] = []
    if int(codes.max()) < _FEW_TAGS:
        for code in range(int(codes.max()) + 1):
            sel = np.flatnonzero(codes == code)
            st = steps[sel]
            back = sel[np.flatnonzero(st[1:] < st[:-1]) + 1]
            out += [(int(order[i]), code) for i in back]
        return out
    by_tag = np.argsort(codes, kind="stable")  # write order kept within each tag
    c, s = codes[by_tag], steps[by_tag]
    back = np.flatnonzero((s[1:] < s[:-1]) & (c[1:] == c[:-1])) + 1
    return [(int(order[by_tag[i]]), int(c[i])) for i in back]


def _windows(fn, n: int, combine):
    """`combine` of `fn(a, b)` over overlapping windows [a, b) of at most _CHUNK + 1 points
    (consecutive windows share one point), so that the temporaries of a whole-column check
    stay ~1 MB and are reused rather than faulted in afresh (page faults, not arithmetic, set
    the cost of a 9M-point column on some machines)."""
    return combine([fn(a, min(a + _CHUNK + 1, n)) for a in range(0, max(n - 1, 1), _CHUNK)])


def _nondecreasing(a: np.ndarray) -> bool:
    return a.shape[0] < 2 or _windows(lambda i, j: bool(np.all(a[i + 1:j] >= a[i:j - 1])),
                                      a.shape[0], all)


def _grouped(codes: np.ndarray, order: np.ndarray) -> bool:
    """Whether points already come tag by tag (codes ascending), each tag in write order."""
    if codes.shape[0] < 2:
        return True

    def window(a: int, b: int) -> bool:
        up, same = codes[a + 1:b] > codes[a:b - 1], codes[a + 1:b] == codes[a:b - 1]
        return bool(np.all(up | (same & (order[a + 1:b] >= order[a:b - 1]))))

    return _windows(window, codes.shape[0], all)


def _build_run(rec: RunRecords, overrides: Mapping[str, str]) -> tuple[pd.DataFrame, RunInfo]:
    seg, boundaries, shuffled = _segment_ids(rec)
    warns = rec.warnings
    if shuffled:
        warns += (f"{rec.source}: the steps go back {shuffled:,} times in {len(rec):,} points "
                  "(lines written out of order: several writers to one file?); read in step "
                  "order, not as resumes",)
    # renumber so that empty segments vanish (bincount: np.unique is slow on millions)
    if not boundaries:  # one segment: no pass over the (untouched, zero) segment column
        used = np.zeros(1 if seg.shape[0] else 0, np.int64)
    else:
        used = np.flatnonzero(np.bincount(seg)) if seg.shape[0] else np.empty(0, np.int64)
    if used.shape[0] and int(used[-1]) + 1 != used.shape[0]:
        lut = np.zeros(int(used[-1]) + 1, dtype=np.int32)
        lut[used] = np.arange(used.shape[0], dtype=np.int32)
        seg = lut[seg]
    reasons = ["start"] + [r for _, r in boundaries]
    segments = _segments(rec, seg, [reasons[int(u)] if i else "start"
                                    for i, u in enumerate(used)], _iteration_codes(rec))
    codes, step, value, wall, seg = _raw_view(rec, seg)
    df = pd.DataFrame({
        "tag": pd.Categorical.from_codes(codes, categories=list(rec.tags)) if rec.tags
        else pd.Categorical([]),
        "step": step, "value": value, "wall_time": wall, "segment": seg,
    }, copy=False)  # the columns are fresh arrays (or the reader's): no second copy
    return df, RunInfo(rec.run, rec.source, rec.format, (), tuple(segments), rec.metadata,
                       rec.skipped, rec.skipped_count, warns)


def _iteration_codes(rec: RunRecords) -> np.ndarray | None:
    """Tag codes on the iteration axis, when some tags are on another (None: all are)."""
    axes = [infer_axis(t) == "iteration" for t in rec.tags]
    if all(axes) or not any(axes):
        return None
    return np.flatnonzero(axes)


def _segments(rec: RunRecords, seg: np.ndarray, reasons: list[str],
              iteration_codes: np.ndarray | None = None) -> list[Segment]:
    """The Segment records; `seg` holds ids 0..k-1, all used, in the reader's array order.
    With `iteration_codes`, a segment's step extent is that of those tags' points (a `vs
    samples` tag's step is no iteration)."""
    if iteration_codes is not None:
        return _segments_masked(rec, seg, reasons, np.isin(rec.tag_code, iteration_codes))
    out: list[Segment] = []
    prev_last: int | None = None
    if len(reasons) == 1 or _nondecreasing(seg):  # each segment a slice: views only
        ids = np.arange(len(reasons) + 1, dtype=seg.dtype)  # (another type: a cast copy)
        bounds = np.searchsorted(seg, ids, side="left")
        for i, reason in enumerate(reasons):
            a, b = int(bounds[i]), int(bounds[i + 1])
            st = rec.step[a:b]
            out.append(Segment(i, int(st.min()), int(st.max()), b - a, reason, prev_last))
            # "previous last step": the last step written, in write order, before this one
            if i + 1 < len(reasons):
                prev_last = int(rec.step[a + int(np.argmax(rec.order[a:b]))])
        return out
    # one stable sort by segment (not a mask per segment: a run with thousands of resumes
    # would cost segments x points)
    by_seg = np.argsort(seg, kind="stable")
    bounds = np.searchsorted(seg[by_seg], np.arange(len(reasons) + 1), side="left")
    for i, reason in enumerate(reasons):
        pos = by_seg[int(bounds[i]):int(bounds[i + 1])]
        st = rec.step[pos]
        out.append(Segment(i, int(st.min()), int(st.max()), int(pos.shape[0]), reason,
                           prev_last))
        prev_last = int(rec.step[pos[np.argmax(rec.order[pos])]])
    return out


def _segments_masked(rec: RunRecords, seg: np.ndarray, reasons: list[str],
                     keep: np.ndarray) -> list[Segment]:
    out: list[Segment] = []
    prev_last: int | None = None
    for i, reason in enumerate(reasons):
        mask = seg == i
        sel = mask & keep if (mask & keep).any() else mask
        st = rec.step[sel]
        out.append(Segment(i, int(st.min()), int(st.max()), int(mask.sum()), reason, prev_last))
        pos = np.flatnonzero(sel)
        prev_last = int(rec.step[pos[np.argmax(rec.order[pos])]])
    return out


def _raw_view(rec: RunRecords, seg: np.ndarray) -> list[np.ndarray]:
    """Tag codes, step, value, wall time and segment in the raw view's order: by tag, then
    write order (equal orders: array order). Readers that deliver it so need no copy."""
    cols = [rec.tag_code, rec.step, rec.value, rec.wall_time, seg]
    if _grouped(rec.tag_code, rec.order):
        return cols
    n, codes = rec.order.shape[0], rec.tag_code
    out = [np.empty(n, code_dtype(len(rec.tags)))] + [np.empty(n, c.dtype) for c in cols[1:]]
    if _nondecreasing(rec.order) and int(codes.max()) < _FEW_TAGS:
        pos = 0  # tag by tag: one tag's indices alive at a time, not a permutation of all
        for code in range(int(codes.max()) + 1):
            sel = np.flatnonzero(codes == code)
            m = sel.shape[0]
            out[0][pos:pos + m] = code
            for c, o in zip(cols[1:], out[1:]):
                np.take(c, sel, out=o[pos:pos + m], mode="clip")  # clip: no buffered copy
            pos += m
        return out
    perm = np.lexsort((rec.order, codes))
    for c, o in zip(cols, out):
        np.take(c, perm, out=o, mode="clip")
    return out


def _valid_text(rec: RunRecords) -> RunRecords:
    """The record with lone surrogates in its names and texts made visible (a JSON key
    `"loss\\ud800"` is a str no encoder takes: pandas, pyarrow, every output would fail)."""
    meta = rec.metadata
    texts = (rec.run, rec.source, *rec.tags, *rec.warnings, *(s.text for s in rec.skipped),
             *meta.extra.keys(), *meta.extra.values())
    texts += (rec.error,) if rec.error else ()
    if all(valid_unicode(t) is t for t in texts if isinstance(t, str)):
        return rec
    tags = [valid_unicode(t) for t in rec.tags]
    for i, t in enumerate(tags):  # (a tag spelled like another's escape stays apart)
        while tags.index(t) != i:
            t = tags[i] = t + "#"
    extra = {valid_unicode(str(k)): valid_unicode(str(v)) for k, v in meta.extra.items()}
    return replace(rec, run=valid_unicode(rec.run), source=valid_unicode(rec.source),
                   tags=tuple(tags), warnings=tuple(valid_unicode(w) for w in rec.warnings),
                   skipped=tuple(replace(s, text=valid_unicode(s.text)) for s in rec.skipped),
                   error=valid_unicode(rec.error) if rec.error else None,
                   metadata=replace(meta, extra=extra))


def _tail_warning(source: str, tails: list[tuple[str, int, int, int]]) -> tuple[str, ...]:
    """One warning for the abandoned tails of a run's tags (tag, end, points, last step)."""
    if not tails:
        return ()
    tag, end, pts, top = tails[0]
    more = f" (and {len(tails) - 1} more tag(s))" if len(tails) > 1 else ""
    return (f"{source}: {tag!r}{more} was restarted and the restart ends at step {end:,}, "
            f"before the run it replaced (up to step {top:,}): that run's {pts:,} later "
            "point(s) are kept in the raw view but not joined after the restart, so they "
            "are not judged",)


def build(records: Sequence[RunRecords], roles: Mapping[str, str] | None = None) -> Frame:
    """Assemble reader output into a Frame. `roles` maps tag → role and overrides inference."""
    overrides = dict(roles or {})
    frames, names, infos, index = [], [], [], {}
    pos = 0
    seen: dict[str, int] = {}
    for rec in records:
        rec = _valid_text(rec)
        name = rec.run
        if name in seen:  # two inputs with the same run name stay apart
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        else:
            seen[name] = 1
        if not len(rec):  # a unit that failed: a run with its error and no points
            infos.append(RunInfo(name, rec.source, rec.format, (), (), rec.metadata, rec.skipped,
                                 rec.skipped_count, rec.warnings, rec.error or "no points"))
            continue
        df, info = _build_run(rec, overrides)
        # the raw view comes tag by tag (codes ascending): each tag's rows by binary search
        tags = df["tag"].cat.codes.to_numpy()
        ntags = len(df["tag"].cat.categories)
        keys = np.arange(ntags, dtype=tags.dtype)  # (another type: a cast copy of `tags`)
        starts, ends = np.searchsorted(tags, keys, "left"), np.searchsorted(tags, keys, "right")
        present = ends > starts
        starts, ends = starts[present], ends[present]
        series, tails = [], []
        values, steps = df["value"].to_numpy(), df["step"].to_numpy()
        names_of = [str(t) for t in df["tag"].cat.categories]  # (not pandas per tag: ~0.4 ms)
        for s, e in zip(starts, ends):
            tag = names_of[int(tags[s])]
            index[(name, tag)] = (pos + int(s), pos + int(e))
            st = steps[s:e]
            kept = st[stitched_positions(st)]
            if kept.shape[0] and int(kept[-1]) < int(st.max()):  # an abandoned tail
                tails.append((tag, int(kept[-1]), int(np.count_nonzero(st > kept[-1])),
                              int(st.max())))
            role = overrides.get(tag) or infer_role(tag)
            series.append(SeriesInfo(tag, role, int(kept.shape[0]), int(kept[0]),
                                     int(kept[-1]),
                                     int((~np.isfinite(values[s:e])).sum()), int(e - s),
                                     infer_axis(tag)))
        frames.append(df)
        names.append(name)
        pos += len(df)
        infos.append(RunInfo(name, info.source, info.format, tuple(series), info.segments,
                             info.metadata, info.skipped, info.skipped_count,
                             info.warnings + _tail_warning(rec.source, tails), rec.error))
    if frames:
        from pandas.api.types import union_categoricals

        run_codes = np.repeat(np.arange(len(frames), dtype=code_dtype(len(frames))),
                              [len(f) for f in frames])
        data = pd.DataFrame({
            "run": pd.Categorical.from_codes(run_codes, categories=pd.Index(names)),
            "tag": union_categoricals([f["tag"] for f in frames]) if len(frames) > 1
            else frames[0]["tag"].array,
            **{c: np.concatenate([f[c].to_numpy() for f in frames]) if len(frames) > 1
               else frames[0][c].to_numpy() for c in ("step", "value", "wall_time", "segment")},
        }, copy=False)
        frames.clear()
    else:
        data = pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            COLUMNS, ("category", "category", "int64", "float64", "float64", "int32"))})
    return Frame(data[list(COLUMNS)], tuple(infos), index)
