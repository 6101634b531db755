"""Sample-and-hold series: values a logger carried over, counted once by the spike statistic.

Some loggers write a metric at every row although it was measured more rarely: YOLO's
results.csv has a validation loss on every epoch's row while validation ran every second
epoch, and trainers that log the last evaluation at every step do the same. Such a series
repeats its values exactly, and the spike statistic (the median of its recent errors) reads
the repeats as a noise-free curve: its scale collapses, and every ordinary change between two
evaluations looks like a spike. Rounding also makes exact repeats (a loss printed to 4
decimals near 0 repeats 0.0003), but there the changes that do happen are a print quantum or
two; held values change by many quanta when they change at all.

Rule (causal: a point's verdict uses only the points up to it): a finite value equal to the
finite value before it is a held repeat when, over the stretch back to the CHANGES-th most
recent change (a value different from the one before; early on, back to the first change,
once there are MIN_CHANGES), at least SHARE of the steps are
repeats and the median change is at least QUANTA print quanta (a change's quantum:
10^-decimals of the more finely printed of its two values). So the first repeats of a series
are kept until it has shown the pattern, and any prefix gets the verdicts of the whole.

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
#: Median size of those changes in print quanta: a rounded loss whose repeats come from the
#: rounding moves by about one quantum; YOLO's held val losses move by 1,400-2,800.
QUANTA = 20.0
#: Decimals tried for a value's print resolution (more: printed in full, quantum ~0).
MAX_DECIMALS = 15


def decimals(x: np.ndarray) -> np.ndarray:
    """The fewest decimals (0..MAX_DECIMALS) that print each finite value of `x` exactly."""
    out = np.full(x.shape[0], MAX_DECIMALS, np.int64)
    todo = np.ones(x.shape[0], bool)
    for k in range(MAX_DECIMALS):
        idx = np.flatnonzero(todo)
        if not idx.shape[0]:
            break
        hit = idx[np.round(x[idx], k) == x[idx]]
        out[hit] = k
        todo[hit] = False
    return out


@dataclass(frozen=True)
class HeldState:
    """What the verdicts of later points need of the finite values seen: their count, the
    last one, and of the last CHANGES changes the finite index (of the later value) and the
    values before and after (their size in quanta is worked out only where a repeat needs
    it: a series without repeats costs a difference per point)."""

    count: int = 0
    last: float = float("nan")
    pos: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    before: np.ndarray = field(default_factory=lambda: np.empty(0))
    after: np.ndarray = field(default_factory=lambda: np.empty(0))


def quanta(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Each change's size in print quanta of the more finely printed of its two values."""
    dec = np.maximum(decimals(before), decimals(after))
    return np.abs(after - before) * 10.0 ** dec


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
    chain = np.r_[state.last, x] if prev else x
    base = state.count - 1 if prev else 0  # finite index of chain[0]
    dx = np.diff(chain)
    moved = np.flatnonzero(dx != 0)
    pos = np.r_[state.pos, base + moved + 1]
    before, after = np.r_[state.before, chain[moved]], np.r_[state.after, chain[moved + 1]]
    zeros = np.flatnonzero(dx == 0)
    if zeros.shape[0] and pos.shape[0] >= MIN_CHANGES:
        p = base + zeros + 1  # finite index of each repeat
        c = np.searchsorted(pos, p)  # changes before it (of those in `pos`)
        ok = c >= MIN_CHANGES
        p, c, z = p[ok], c[ok], zeros[ok]
        if p.shape[0]:
            k = np.minimum(c, CHANGES)  # the changes looked back over
            span = p - pos[c - k] + 1  # steps back to the k-th most recent change
            a = max(0, int(c.min()) - CHANGES)  # the sizes those need, from change a on
            size = quanta(before[a:int(c.max())], after[a:int(c.max())])
            med = trailing_median(size, CHANGES)[c - 1 - a]
            held = ((span - k) >= SHARE * span) & (med >= QUANTA)
            out[fin[z[held] + (0 if prev else 1)]] = True
    new = HeldState(state.count + fin.shape[0], float(x[-1]), pos[-CHANGES:],
                    before[-CHANGES:], after[-CHANGES:])
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
