"""Sample-and-hold series: values a logger carried over, counted once by the spike statistic.

Some loggers write a metric at every row although it was measured more rarely: YOLO's
results.csv has a validation loss on every epoch's row while validation ran every second
epoch, and trainers that log the last evaluation at every step do the same. Such a series
repeats its values exactly, and the spike statistic (the median of its recent errors) reads
the repeats as a noise-free curve: its scale collapses, and every ordinary change between two
evaluations looks like a spike. Rounding also makes exact repeats (a loss printed to 4
decimals near 0 repeats 0.0003; a bf16 loss repeats on its grid of 1/64 near 2, whatever
decimals it is printed with), but there the changes that do happen are a step or two of the
grid; held values change by many times their smallest change when they change at all.

Rule (causal: a point's verdict uses only the points up to it): a finite value equal to the
finite value before it is a held repeat when, over the steps back to the CHANGES-th most
recent change (a value different from the one before; early on, back to the first change,
once there are MIN_CHANGES), at least SHARE of the steps are repeats and the median size of
those changes is at least QUANTA times the grid the values lie on, estimated from above by the
smallest gap between the distinct values those changes went between and by the smallest
change so far (the values of a rounded loss all lie on its grid: both are a grid step or
more; continuous values, held or not, have gaps far smaller than their changes). So the first
repeats of a series are kept until it has shown the pattern, and any prefix gets the
verdicts of the whole.

Where the line is: the Frame keeps every point (reports, plots and JSON show them all);
the spike detector (`SpikeDetector.detect`, and its streaming form through one `HeldState`
per tag) judges the series without its held repeats. Other detectors see every point: a held
value does not move a trend, a best-so-far or a NaN count.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..frame import Series
from .spike_stats import trailing_median

#: The most recent changes the verdict looks back over (odd: a trailing median of them).
CHANGES = 15
#: ... and at least this many (a series' first changes: all of them).
MIN_CHANGES = 5
#: Share of repeats among the steps back to the CHANGES-th change that makes a series held
#: (a value carried over once between evaluations: 1/2; YOLOv8 at every second epoch: 47 %).
SHARE = 0.25
#: Median size of those changes in units of the grid the values lie on (estimated from above
#: by the smallest gap between the distinct values those changes went between and by the
#: smallest change so far: both a grid step or more for rounded values): a loss whose repeats
#: come from rounding moves by a step or two (bf16 pre-training losses: ~1); YOLOv8's held
#: validation losses by hundreds.
QUANTA = 20.0


@dataclass(frozen=True)
class HeldState:
    """What the verdicts of later points need of the finite values seen: their count, the
    last one, their smallest change, and of the last CHANGES changes the finite index (of
    the later value), size and the values before and after."""

    count: int = 0
    last: float = float("nan")
    smallest: float = float("inf")
    pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    size: np.ndarray = field(default_factory=lambda: np.empty(0))
    before: np.ndarray = field(default_factory=lambda: np.empty(0))
    after: np.ndarray = field(default_factory=lambda: np.empty(0))


def grid(before: np.ndarray, after: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Per `c`: the smallest gap between the distinct values of changes c-CHANGES .. c-1 (the
    value before the first of them and the value after each; fewer where fewer exist)."""
    idx = np.maximum(c[:, None] - CHANGES + np.arange(CHANGES)[None, :], 0)
    vals = np.sort(np.c_[before[np.maximum(c - CHANGES, 0)], after[idx]], axis=1)
    gaps = np.diff(vals, axis=1)
    gaps[gaps <= 0] = np.inf
    return gaps.min(axis=1)


def scan(values: np.ndarray, state: HeldState | None = None) -> tuple[np.ndarray, HeldState]:
    """(held-repeat mask of `values`, the state after them); `state`: that of the values
    before them (None: these are the series' first), so that chunks give the whole's mask."""
    state = state or HeldState()
    v = np.asarray(values, dtype=float)
    out = np.zeros(v.shape[0], bool)
    fin = np.flatnonzero(np.isfinite(v))
    if not fin.shape[0]:
        return out, state
    x = v[fin]
    prev = state.count > 0
    chain = np.concatenate(([state.last], x)) if prev else x
    base = state.count - 1 if prev else 0  # finite index of chain[0]
    dx = np.diff(chain)
    moved = np.flatnonzero(dx)
    h = state.pos.shape[0]
    pos = np.concatenate((state.pos, base + moved + 1))
    size = np.concatenate((state.size, np.abs(dx[moved])))
    before = np.concatenate((state.before, chain[moved]))
    after = np.concatenate((state.after, chain[moved + 1]))
    # smallest[i]: the smallest change up to change i (of those in `size`)
    smallest = size.copy()
    smallest[:h] = state.smallest
    if moved.shape[0]:
        smallest[h] = min(smallest[h], state.smallest)
        np.minimum.accumulate(smallest[h:], out=smallest[h:])
    zeros = np.flatnonzero(dx == 0) if moved.shape[0] < dx.shape[0] else moved[:0]
    if zeros.shape[0] and pos.shape[0] >= MIN_CHANGES:
        p = base + zeros + 1  # finite index of each repeat
        c = np.searchsorted(pos, p)  # changes before it (of those in `pos`)
        ok = c >= MIN_CHANGES
        p, c, z = p[ok], c[ok], zeros[ok]
        if p.shape[0]:
            k = np.minimum(c, CHANGES)  # the changes looked back over
            span = p - pos[c - k] + 1  # steps back to the k-th most recent change
            med = trailing_median(size, CHANGES)[c - 1]
            step = np.minimum(grid(before, after, c), smallest[c - 1])
            held = ((span - k) >= SHARE * span) & (med >= QUANTA * step)
            out[fin[z[held] + (0 if prev else 1)]] = True
    new = HeldState(state.count + fin.shape[0], float(x[-1]),
                    float(smallest[-1]) if smallest.shape[0] else state.smallest,
                    pos[-CHANGES:], size[-CHANGES:], before[-CHANGES:], after[-CHANGES:])
    return out, new


def judged(series: Series) -> Series:
    """`series` without its held repeats (the same object when it has none)."""
    v = series.value
    f = v[np.isfinite(v)]
    if not bool(np.any(f[1:] == f[:-1])):  # (no repeat at all: nothing held)
        return series
    held, _ = scan(v)
    if not held.any():
        return series
    keep = ~held
    return replace(series, step=series.step[keep], value=v[keep],
                   wall_time=series.wall_time[keep], segment=series.segment[keep])
