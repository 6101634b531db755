"""Building blocks of the detectors' streaming forms: a growable stitched series, a
Frame-like view over live series, and the splice that keeps settled events.

A streaming form (see `losslens.detectors.stream`) keeps each tag's stitched series (sorted
by step, the last write of a step winning) in a `SeriesBuffer`, re-runs its detector's batch
code on a trailing window of it, and splices the events found there onto the events it had
before the window. These pieces are shared by every detector's streaming form.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from ..events import Event
from ..frame import Series


def index_of(steps: np.ndarray, step: float) -> int:
    """Index of the first of the sorted `steps` at `step` or after."""
    return int(np.searchsorted(steps, step))


def splice(old: list[Event], found: list[Event], cut_step: float) -> list[Event]:
    """Events before `cut_step` as they were, from it on as found now."""
    return ([e for e in old if e.start_step < cut_step]
            + [e for e in found if e.start_step >= cut_step])


class SeriesBuffer:
    """One tag's stitched points (sorted by step, the last write of a step winning), growable.

    `dirty` is the first index changed since the streams last ran (None: nothing new);
    `first_nonpos` the index of the first finite value <= 0 (None: none), kept up to date;
    `rewrites` the first index changed by each write that went back in step (in order: a
    state kept outside the streams' runs catches up with them).
    """

    def __init__(self) -> None:
        self.step = np.empty(1024, np.int64)
        self.value = np.empty(1024, np.float64)
        self.n = 0
        self.dirty: int | None = None
        self.first_nonpos: int | None = None
        self.rewrites: list[int] = []
        self._mono: tuple[int, bool, float] = (0, True, math.nan)  # skipped counters

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Points of this tag in write order (a step written again overwrites)."""
        n, k = self.n, steps.shape[0]
        if not k:
            return
        if (n == 0 or steps[0] > self.step[n - 1]) and bool(np.all(steps[1:] > steps[:-1])):
            self._reserve(n + k)
            self.step[n:n + k], self.value[n:n + k] = steps, values
            self.n, start = n + k, n
        else:
            start = self._merge(steps, values)
            self.rewrites.append(start)
        self.dirty = start if self.dirty is None else min(self.dirty, start)
        if self.first_nonpos is None or self.first_nonpos >= start:
            v = self.value[start:self.n]
            with np.errstate(invalid="ignore"):
                hit = np.flatnonzero(np.isfinite(v) & (v <= 0))
            self.first_nonpos = start + int(hit[0]) if hit.shape[0] else None
        if self._mono[0] > start:
            self._mono = (0, True, math.nan)

    def truncate(self, k: int) -> None:
        """Drop the points from index `k` on (a rewrite: what follows is added again)."""
        if k >= self.n:
            return
        self.n = k
        self.rewrites.append(k)
        self.dirty = k if self.dirty is None else min(self.dirty, k)
        if self.first_nonpos is not None and self.first_nonpos >= k:
            self.first_nonpos = None
        if self._mono[0] > k:
            self._mono = (0, True, math.nan)

    def _reserve(self, size: int) -> None:
        if size > self.step.shape[0]:
            cap = max(size, 2 * self.step.shape[0])
            for name, dt in (("step", np.int64), ("value", np.float64)):
                new = np.empty(cap, dt)
                new[:self.n] = getattr(self, name)[:self.n]
                setattr(self, name, new)

    def _merge(self, steps: np.ndarray, values: np.ndarray) -> int:
        """Points that go back in step (a resume, a rollback): overwrite or insert."""
        order = np.argsort(steps, kind="stable")
        s, v = steps[order], values[order]
        last = np.r_[s[1:] != s[:-1], True]
        s, v = s[last], v[last]
        n = self.n
        old = self.step[:n]
        pos = np.searchsorted(old, s)
        hit = (pos < n) & (old[np.minimum(pos, max(n - 1, 0))] == s) if n else pos < 0
        self.value[pos[hit]] = v[hit]
        if not hit.all():
            new_s = np.insert(old, pos[~hit], s[~hit])
            new_v = np.insert(self.value[:n], pos[~hit], v[~hit])
            self.n = 0
            self._reserve(new_s.shape[0])
            self.step[:new_s.shape[0]], self.value[:new_s.shape[0]] = new_s, new_v
            self.n = new_s.shape[0]
        return int(pos.min())

    def monotone(self) -> tuple[bool, float]:
        """(finite values never decrease, last finite value), kept up to date incrementally."""
        upto, ok, last = self._mono
        v = self.value[upto:self.n]
        v = v[np.isfinite(v)]
        if v.shape[0]:
            chain = np.r_[last, v] if math.isfinite(last) else v
            ok = ok and bool(np.all(np.diff(chain) >= 0))
            last = float(v[-1])
        self._mono = (self.n, ok, last)
        return ok, last

    def view(self, run: str, tag: str, role: str, a: int = 0) -> Series:
        """The points from index `a` on as a Series (no copy)."""
        m = self.n - a
        return Series(run, tag, role, self.step[a:self.n], self.value[a:self.n],
                      np.full(m, np.nan), np.zeros(m, np.int32))


class FrameView:
    """The little of a Frame that run-scope detectors use: `series(run, tag)`."""

    def __init__(self, series: Mapping[str, Series]) -> None:
        self._series = series

    def series(self, run: str, tag: str, raw: bool = False) -> Any:
        return self._series[tag]
