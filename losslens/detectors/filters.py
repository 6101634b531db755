"""Rolling filters and one-dimensional segmentation without the import cost of SciPy/ruptures.

Importing `scipy.ndimage` takes ~0.3-0.8 s and `ruptures` ~1-2.5 s (it imports scipy.stats
and scipy.spatial for cost functions losslens never uses), which was most of the time of
`losslens analyze` on a small log. So:

- `expanding_median`: pandas' `expanding().median()`, bit for bit, without its per-call
  cost on the few points it is used for (a trailing median's first window).
- `median_filter`, `minimum_filter1d`, `maximum_filter1d`: the same results as
  `scipy.ndimage`'s with `mode="nearest"` (same window, same origin convention, same rank
  for even sizes), computed with numpy on a sliding window view while the view stays small
  (`SMALL` cells), and by SciPy itself beyond that — SciPy is imported only for long series
  (or by a long-lived caller such as a streaming form: then SciPy does all of them).
- `pelt` and `binseg_one`: ruptures' `Pelt(...).predict(pen)` and `Binseg(...)
  .predict(n_bkps=1)` for a cost object with `error(start, end)` (the detectors' O(1) linear
  trend cost), ported line for line (ruptures is BSD-2-Clause) so that the breakpoints are
  identical; `tests/test_filters.py` checks both against SciPy and ruptures.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager
from contextvars import ContextVar
from math import ceil, floor
from typing import Any, Iterator

import numpy as np

#: Largest sliding-window view (points x window) computed with numpy.
SMALL = 2_000_000
#: Once SciPy's ndimage is imported (by anyone), use it at every size.
SCIPY_ONCE_IMPORTED = True
#: SciPy's filters run on at most this many points a call (longer series in pieces that
#: overlap by the window, the same numbers): one C call of a long series' filter takes ~1
#: ms, and the in-process guard's time slices (losslens.guard.slices) end between calls.
CHUNK = 4096


class BadSegmentationParameters(ValueError):
    """No segmentation is possible with these parameters (ruptures' exception of that name)."""


def _windows(x: np.ndarray, size: int, origin: int) -> np.ndarray:
    """Row i = x[i - size//2 - origin : ... + size], edges repeated (mode="nearest")."""
    left = size // 2 + origin
    right = size - 1 - left
    pad = np.concatenate([np.repeat(x[:1], max(left, 0)), x, np.repeat(x[-1:], max(right, 0))])
    view = np.lib.stride_tricks.sliding_window_view(pad, size)
    if left < 0:  # an origin past the centre: start later
        view = view[-left:]
    return view[: x.shape[0]]


def _small(x: np.ndarray, size: int) -> bool:
    """Whether numpy does it: a short series, and SciPy not imported yet (once it is, its
    filters are the faster ones: ~15x at a window of 129, the same numbers)."""
    return (x.ndim == 1 and x.shape[0] > 0 and x.shape[0] * size <= SMALL and size >= 1
            and not (SCIPY_ONCE_IMPORTED and "scipy.ndimage" in sys.modules))


def _scipy(name: str, x: np.ndarray, size: int, origin: int) -> np.ndarray:
    """SciPy's filter `name` (mode="nearest"), in pieces of CHUNK points for a long `x`:
    each piece is filtered with the window ending where it reads (origin -size//2) on the
    points it needs, edges padded as "nearest" does, so every value is the whole call's."""
    from scipy import ndimage

    fn = getattr(ndimage, name)
    n = x.shape[0]
    if x.ndim != 1 or n <= CHUNK or size < 1:
        return fn(x, size=size, mode="nearest", origin=origin)
    left = size // 2 + origin
    right = size - 1 - left
    pad = np.concatenate([np.repeat(x[:1], max(left, 0)), x, np.repeat(x[-1:], max(right, 0))])
    skip = max(-left, 0)  # an origin past the centre: row i starts at pad[i + skip]
    out = np.empty(n, x.dtype)
    for a in range(0, n, CHUNK):
        b = min(n, a + CHUNK)
        piece = pad[a + skip:b + skip + size - 1]
        out[a:b] = fn(piece, size=size, mode="nearest", origin=-(size // 2))[:b - a]
    return out


def median_filter(x: np.ndarray, size: int, origin: int = 0) -> np.ndarray:
    """`scipy.ndimage.median_filter(x, size=size, mode="nearest", origin=origin)`."""
    x = np.asarray(x)
    if not _small(x, size):
        return _scipy("median_filter", x, size, origin)
    w = _windows(x, size, origin)
    return np.partition(w, size // 2, axis=1)[:, size // 2].astype(x.dtype, copy=False)


def minimum_filter1d(x: np.ndarray, size: int, origin: int = 0) -> np.ndarray:
    """`scipy.ndimage.minimum_filter1d(x, size=size, mode="nearest", origin=origin)`."""
    x = np.asarray(x)
    if not _small(x, size):
        return _scipy("minimum_filter1d", x, size, origin)
    return _windows(x, size, origin).min(axis=1)


def maximum_filter1d(x: np.ndarray, size: int, origin: int = 0) -> np.ndarray:
    """`scipy.ndimage.maximum_filter1d(x, size=size, mode="nearest", origin=origin)`."""
    x = np.asarray(x)
    if not _small(x, size):
        return _scipy("maximum_filter1d", x, size, origin)
    return _windows(x, size, origin).max(axis=1)


#: Trailing medians and minima by bottleneck's `move_median` / `move_min` (a double heap and
#: a deque in C: ~3-15x faster than SciPy's filters, pandas' rolling windows and the
#: expanding head on the few hundred points a streaming update reads, with the same numbers:
#: tests/test_filters.py compares them on random input, NaN, inf, ties and short series).
#: False: SciPy and pandas only (benchmarks/guard_update.py measures both ways).
BOTTLENECK = True


def trailing(kind: str, x: np.ndarray, window: int, masked: bool = False) -> np.ndarray | None:
    """out[i] = the median (`kind` "median") or minimum ("min") of x[max(0, i - window + 1)
    .. i] by bottleneck, None where it is not used (off, not installed, not float64, or NaN in
    `x` without `masked`). `masked`: NaN and +-inf left out (pandas' `rolling(window,
    min_periods=1)`, which reads inf as missing), NaN where none is left; else every value
    counts (SciPy's trailing filter, whose first window - 1 are the expanding ones here)."""
    if not BOTTLENECK or x.dtype != np.float64 or x.ndim != 1 or window < 1:
        return None
    try:
        import bottleneck as bn
    except ImportError:  # (a dependency; without it SciPy and pandas give the same numbers)
        return None
    n = x.shape[0]
    if n == 0:
        return x.copy()
    if masked:
        x = np.where(np.isinf(x), np.nan, x)
    elif np.isnan(x).any():
        return None
    fn = bn.move_median if kind == "median" else bn.move_min
    return fn(x, min(window, n), min_count=1)


class KeptMedians:
    """Trailing medians of arrays that grow at the end, kept between calls: a streaming form
    that runs a whole-series detector again as its series grows (divergence: its level and
    noise medians over every point) pays for the new points only. `get` answers from an
    entry whose input is, bit for bit, the start of the new input (and the same window),
    computing the new rows from the window - 1 points before them on (rows with a full
    window: the whole call's numbers); any other input is computed whole and kept. At most
    `size` entries (each holds its input and output: ~16 bytes a point)."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self.entries: list[tuple[int, np.ndarray, np.ndarray]] = []  # (window, input, out)
        self.hits = 0  # calls answered from an entry (benchmarks, tests)

    def get(self, x: np.ndarray, window: int, compute: Any) -> np.ndarray:
        """`compute(x)` (a trailing median of `window` with exact head rows), by an entry."""
        if x.dtype != np.float64 or x.ndim != 1 or not x.flags.c_contiguous:
            return compute(x)
        n, bits = x.shape[0], x.view(np.int64)
        for k, (w, old, out) in enumerate(self.entries):
            m = old.shape[0]
            if w == window and m <= n and m and np.array_equal(bits[:m], old.view(np.int64)):
                a = max(0, m - window + 1)  # (its rows from m on have full windows)
                new = out if m == n else np.concatenate([out, compute(x[a:])[m - a:]])
                del self.entries[k]
                self.entries.append((window, x.copy() if m < n else old, new))
                self.hits += 1
                return new.copy()
        new = compute(x)
        if len(self.entries) >= self.size:
            del self.entries[0]
        self.entries.append((window, x.copy(), new))
        return new.copy()


_KEPT: ContextVar[KeptMedians | None] = ContextVar("losslens_kept_medians", default=None)


def kept_medians() -> KeptMedians | None:
    """The `KeptMedians` that trailing medians use now (`keeping`), if any."""
    return _KEPT.get()


@contextmanager
def keeping(kept: KeptMedians) -> Iterator[None]:
    """Within the block, trailing medians (`spike_stats.trailing_median`) go through `kept`."""
    token = _KEPT.set(kept)
    try:
        yield
    finally:
        _KEPT.reset(token)


def median(x: np.ndarray) -> float:
    """`float(np.median(x))` of a 1-D array without NaN (the same number), by a sort: numpy's
    selection degrades on nearly constant input, such as a log's step intervals (all 1 but
    one: 1.9 ms on 16,000 of them, 28 ms on 200,000, against 0.09 and 1 ms sorted)."""
    s = np.sort(np.asarray(x))
    n = s.shape[0]
    if n == 0:
        return float(np.median(s))  # (numpy's NaN and warning)
    k = n // 2
    return float(np.mean(s[k:k + 1] if n % 2 else s[k - 1:k + 1]))


def expanding_median(x: np.ndarray) -> np.ndarray:
    """out[i] = median of x[:i + 1] (the mean of the middle two for an even count), as
    pandas' `expanding().median()` gives it, bit for bit; by insertion into a sorted list for
    a short `x` (a trailing window's first points: pandas costs ~0.2 ms a call there)."""
    h = x.shape[0]
    if h > 512 or not np.isfinite(x).all():  # (pandas leaves NaN and inf out)
        import pandas as pd

        return pd.Series(x).expanding().median().to_numpy()
    from bisect import insort

    seen: list[float] = []
    out = np.empty(h)
    for i, v in enumerate(x.tolist()):
        insort(seen, v)
        out[i] = seen[i // 2] if i % 2 == 0 else (seen[i // 2] + seen[i // 2 + 1]) / 2
    return out


# --------------------------------------------------------------------------- segmentation

def _sanity(n_samples: int, n_bkps: int, jump: int, min_size: int) -> bool:
    if n_bkps > n_samples // jump:
        return False
    return not n_bkps * ceil(min_size / jump) * jump + min_size > n_samples


def pelt(cost: Any, n_samples: int, pen: float, min_size: int, jump: int) -> list[int]:
    """Breakpoints of ruptures' Pelt for a fitted `cost` (the last one is `n_samples`)."""
    if not _sanity(n_samples, 0, jump, min_size):
        raise BadSegmentationParameters
    partitions: dict[int, dict[tuple[int, int], float]] = {0: {(0, 0): 0}}
    admissible: list[int] = []
    ind = [k for k in range(0, n_samples, jump) if k >= min_size] + [n_samples]
    for bkp in ind:
        admissible.append(floor((bkp - min_size) / jump) * jump)
        subproblems = []
        for t in admissible:
            try:
                tmp = partitions[t].copy()
            except KeyError:
                continue
            tmp.update({(t, bkp): cost.error(t, bkp) + pen})
            subproblems.append(tmp)
        partitions[bkp] = min(subproblems, key=lambda d: sum(d.values()))
        best = sum(partitions[bkp].values())
        admissible = [t for t, p in zip(admissible, subproblems) if sum(p.values()) <= best + pen]
    best_partition = partitions[n_samples]
    del best_partition[(0, 0)]
    return sorted(e for _, e in best_partition)


def binseg_one(cost: Any, n_samples: int, min_size: int, jump: int = 1) -> int:
    """The breakpoint of ruptures' `Binseg(...).predict(n_bkps=1)[0]` for a fitted `cost`."""
    if not _sanity(n_samples, 1, jump, min_size):
        raise BadSegmentationParameters
    whole = cost.error(0, n_samples)
    gains = [(whole - cost.error(0, b) - cost.error(b, n_samples), b)
             for b in range(0, n_samples, jump)
             if b >= min_size and n_samples - b >= min_size]
    if not gains or (np.isinf(whole) and whole < 0):
        return n_samples  # no split: ruptures returns [n_samples]
    return max(gains)[1]
