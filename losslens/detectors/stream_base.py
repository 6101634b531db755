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
from ..frame import Series, reads_shuffled


def index_of(steps: np.ndarray, step: float) -> int:
    """Index of the first of the sorted `steps` at `step` or after."""
    return int(np.searchsorted(steps, step))


def splice(old: list[Event], found: list[Event], cut_step: float) -> list[Event]:
    """Events before `cut_step` as they were, from it on as found now."""
    return ([e for e in old if e.start_step < cut_step]
            + [e for e in found if e.start_step >= cut_step])


def empty(size: int, dtype: Any) -> np.ndarray:
    """`np.empty(size, dtype)`, and for an array of 4 MiB and more, in memory of its own
    mapped in 4 KiB pages: numpy asks the kernel for huge pages there (madvise), and a
    first write into a 2 MiB page that has to be found, compacted and zeroed first stalled
    an in-training update for tens of milliseconds on a busy machine (system time)."""
    dt = np.dtype(dtype)
    nbytes = int(size) * dt.itemsize
    if nbytes < 1 << 22:
        return np.empty(size, dt)
    import mmap

    return np.frombuffer(mmap.mmap(-1, nbytes), dt)


class Regrow:
    """Writes into an array that grows by doubling, without a call that copies all of it.

    Amortised doubling copies the whole array in the one call that overflows it (at a
    million points, milliseconds inside an in-training guard's update). Here the larger
    array is allocated once the old one is half full, and each write copies twice its
    length of the old array's head into it (plus 256), so that the head is all there by the
    time the old one is full: every call costs O(its points). `put` returns the array to
    use from then on (the same one, or the larger one when it switches)."""

    __slots__ = ("new", "done")
    #: False: the plain doubling, the whole array copied by the write that overflows it into
    #: numpy's allocation (the same arrays; benchmarks/guard_update.py compares the two)
    spread: bool = True

    def __init__(self) -> None:
        self.new: np.ndarray | None = None
        self.done = 0  # new[:done] equals the old array's head

    def put(self, a: np.ndarray, at: int, x: np.ndarray) -> np.ndarray:
        """Write `x` into `a` from index `at` on (what follows `at + len(x)` is of no
        account); the array that holds it all."""
        k = x.shape[0]
        end, cap, new = at + k, a.shape[0], self.new
        if end > cap:  # (a write larger than the rest, or none under way: copied whole)
            if new is None or self.done < at or end > new.shape[0]:
                new = (empty if self.spread else np.empty)(max(end, 2 * cap), a.dtype)
                new[:at] = a[:at]
            new[at:end] = x
            self.new, self.done = None, 0
            return new
        a[at:end] = x
        if new is None:
            if 2 * end <= cap or not self.spread:
                return a
            new = self.new = empty(2 * cap, a.dtype)
            self.done = 0
        done = self.done
        if at < done:
            new[at:end] = x
            done = max(done, end)
        hi = min(end, done + 2 * k + 256)
        if hi > done:
            new[done:hi] = a[done:hi]
            done = hi
        self.done = done
        return a

    def drop(self) -> None:
        """The array was rewritten elsewhere: the copy under way starts over."""
        self.new, self.done = None, 0


class SeriesBuffer:
    """One tag's stitched points (sorted by step, the last write of a step winning, up to
    the step of the last write: `frame.stitched_positions`), growable.

    `n` points are the stitched series; the points written before a restart beyond the
    step it has reached (the replaced run's tail) are kept after them, up to `total`, and
    join the series again as the restart passes them (or for good when the writes go back
    as often as a shuffled file's). `dirty` is the first index changed since the streams
    last ran (None: nothing new); `first_nonpos` the index of the first finite value <= 0
    (None: none), kept up to date; `rewrites` the first index changed by each write that
    went back in step (in order: a state kept outside the streams' runs catches up with
    them).
    """

    def __init__(self) -> None:
        self.step = np.empty(1024, np.int64)
        self.value = np.empty(1024, np.float64)
        self.n = 0
        self.total = 0
        self.dirty: int | None = None
        self.first_nonpos: int | None = None
        self.rewrites: list[int] = []
        self._mono: tuple[int, bool, float] = (0, True, math.nan)  # skipped counters
        self._grow = (Regrow(), Regrow())  # (step, value)
        self._written = 0  # raw points, and how often the step went back among them
        self._backs = 0
        self._last = 0  # the step of the last write

    def add(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Points of this tag in write order (a step written again overwrites)."""
        n, k = self.n, steps.shape[0]
        if not k:
            return
        back = int(np.count_nonzero(steps[1:] < steps[:-1]))
        if self._written and steps[0] < self._last:
            back += 1
        self._written, self._backs, self._last = self._written + k, self._backs + back, \
            int(steps[-1])
        if self.total == n and (n == 0 or steps[0] > self.step[n - 1]) and not back \
                and bool(np.all(steps[1:] > steps[:-1])):
            self.step = self._grow[0].put(self.step, n, steps)
            self.value = self._grow[1].put(self.value, n, values)
            self.n = self.total = n + k
            start = n
        else:
            start = self._merge(steps, values)
            keep_all = reads_shuffled(self._backs, self._written) if self._backs else True
            self.n = self.total if keep_all else int(
                np.searchsorted(self.step[:self.total], self._last, "right"))
            if start < n:
                self.rewrites.append(start)
            else:  # only points past the series (or hidden ones it now passes): new
                start = n
        self.dirty = start if self.dirty is None else min(self.dirty, start)
        if self.first_nonpos is None or self.first_nonpos >= start:
            v = self.value[start:self.n]
            if v.shape[0] and v.min() > 0:  # (the usual case, in one call; NaN: looked at)
                self.first_nonpos = None
            else:
                with np.errstate(invalid="ignore"):
                    hit = np.flatnonzero(np.isfinite(v) & (v <= 0))
                self.first_nonpos = start + int(hit[0]) if hit.shape[0] else None
        if self._mono[0] > start:
            self._mono = (0, True, math.nan)

    def truncate(self, k: int) -> None:
        """Drop the points from index `k` on (a rewrite: what follows is added again)."""
        if k >= self.n:
            return
        self.n = self.total = k
        self._written, self._backs = k, 0
        self._last = int(self.step[k - 1]) if k else 0
        self.rewrites.append(k)
        self.dirty = k if self.dirty is None else min(self.dirty, k)
        if self.first_nonpos is not None and self.first_nonpos >= k:
            self.first_nonpos = None
        if self._mono[0] > k:
            self._mono = (0, True, math.nan)

    def _reserve(self, size: int) -> None:
        self._grow[0].drop()
        self._grow[1].drop()
        if size > self.step.shape[0]:
            cap = max(size, 2 * self.step.shape[0])
            for name, dt in (("step", np.int64), ("value", np.float64)):
                new = np.empty(cap, dt)
                new[:self.total] = getattr(self, name)[:self.total]
                setattr(self, name, new)

    def _merge(self, steps: np.ndarray, values: np.ndarray) -> int:
        """Points that go back in step (a resume, a rollback): overwrite or insert."""
        order = np.argsort(steps, kind="stable")
        s, v = steps[order], values[order]
        last = np.r_[s[1:] != s[:-1], True]
        s, v = s[last], v[last]
        n = self.total
        old = self.step[:n]
        pos = np.searchsorted(old, s)
        hit = (pos < n) & (old[np.minimum(pos, max(n - 1, 0))] == s) if n else pos < 0
        self.value[pos[hit]] = v[hit]
        self._grow[1].drop()  # (written in place: the copy under way starts over)
        if not hit.all():
            new_s = np.insert(old, pos[~hit], s[~hit])
            new_v = np.insert(self.value[:n], pos[~hit], v[~hit])
            self.n = self.total = 0
            self._reserve(new_s.shape[0])
            self.step[:new_s.shape[0]], self.value[:new_s.shape[0]] = new_s, new_v
            self.total = new_s.shape[0]
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
