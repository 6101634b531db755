"""losslens.detectors.filters gives exactly what SciPy and ruptures give."""
from __future__ import annotations

import numpy as np
import pytest
import ruptures as rpt
from scipy import ndimage

from losslens.detectors import filters
from losslens.detectors.changepoint import linear_cost_class


@pytest.mark.parametrize("size", [1, 2, 4, 5, 6, 9, 129])
@pytest.mark.parametrize("n", [1, 3, 7, 300])
@pytest.mark.parametrize("numpy_path", [True, False])
def test_filters_equal_scipy(size, n, numpy_path, monkeypatch):
    """Ours equal SciPy's, on numpy's path (short series while SciPy is not imported) and on
    the SciPy path (SciPy imported: the suite has it)."""
    monkeypatch.setattr(filters, "SCIPY_ONCE_IMPORTED", not numpy_path)
    rng = np.random.default_rng(size * 1000 + n)
    x = np.round(rng.normal(size=n), 1)  # ties, as printed logs have
    for origin in sorted({0, (size - 1) // 2, -(size // 2), size // 4}):
        for ours, theirs in ((filters.median_filter, ndimage.median_filter),
                             (filters.minimum_filter1d, ndimage.minimum_filter1d),
                             (filters.maximum_filter1d, ndimage.maximum_filter1d)):
            want = theirs(x, size=size, mode="nearest", origin=origin)
            got = ours(x, size=size, origin=origin)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got, want, err_msg=f"{ours.__name__} {origin}")


def test_large_inputs_go_to_scipy():
    x = np.arange(filters.SMALL // 5 + 10, dtype=float)[::-1]
    np.testing.assert_array_equal(filters.median_filter(x, 5),
                                  ndimage.median_filter(x, size=5, mode="nearest"))


@pytest.mark.parametrize("size", [1, 2, 15, 129, 300])
def test_long_inputs_filtered_in_pieces_equal_one_scipy_call(size):
    """Beyond CHUNK points SciPy filters pieces that overlap by the window (one C call of a
    long series' filter is ~1 ms): every value as one call gives it, every origin."""
    rng = np.random.default_rng(size)
    for n in (filters.CHUNK + 1, 3 * filters.CHUNK + size // 2):
        x = np.round(rng.normal(size=n), 1)
        x[n // 3:n // 3 + 50] = 7.0  # a run of ties across no particular boundary
        for origin in sorted({0, (size - 1) // 2, -(size // 2)}):
            for ours, theirs in ((filters.median_filter, ndimage.median_filter),
                                 (filters.minimum_filter1d, ndimage.minimum_filter1d),
                                 (filters.maximum_filter1d, ndimage.maximum_filter1d)):
                np.testing.assert_array_equal(
                    ours(x, size, origin), theirs(x, size=size, mode="nearest", origin=origin),
                    err_msg=f"{ours.__name__} n={n} origin={origin}")


def _signal(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.arange(n, dtype=float) * 10
    y = np.log(2.0 + 8.0 * (1 + x / 60.0) ** -0.55) + rng.normal(0, 0.02, n)
    k = int(rng.integers(n // 4, 3 * n // 4))
    y[k:] += rng.choice([-0.3, 0.0, 0.4])
    return np.column_stack([x, y])


@pytest.mark.parametrize("seed", range(12))
def test_pelt_and_binseg_equal_ruptures(seed):
    n = [5, 9, 40, 120, 400][seed % 5]
    signal = _signal(seed, n)
    cls = linear_cost_class()
    # ruptures takes a custom cost only as a BaseCost subclass
    RC = type("RC", (cls, rpt.base.BaseCost), {})
    for pen, ms, jump in ((0.01, 3, 1), (0.1, 5, 2), (1.0, 3, 4)):
        try:
            want = rpt.Pelt(custom_cost=RC(), min_size=ms, jump=jump).fit(signal).predict(pen)
        except rpt.exceptions.BadSegmentationParameters:
            with pytest.raises(filters.BadSegmentationParameters):
                filters.pelt(cls().fit(signal), n, pen, ms, jump)
            continue
        assert filters.pelt(cls().fit(signal), n, pen, ms, jump) == want
    try:
        want = rpt.Binseg(custom_cost=RC(), min_size=3, jump=1).fit(signal).predict(n_bkps=1)[0]
    except rpt.exceptions.BadSegmentationParameters:
        with pytest.raises(filters.BadSegmentationParameters):
            filters.binseg_one(cls().fit(signal), n, 3)
        return
    assert filters.binseg_one(cls().fit(signal), n, 3) == want


def test_expanding_median_equals_pandas_bit_for_bit():
    """A trailing median's first points: the sorted-list path (short, finite) and the pandas
    path (long, or with inf/NaN, which pandas leaves out) give pandas' numbers exactly."""
    import pandas as pd

    from losslens.detectors.filters import expanding_median

    rng = np.random.default_rng(5)
    for t in range(400):
        h = int(rng.integers(1, 700))
        x = rng.normal(size=h)
        if t % 3 == 0:
            x = np.round(x, 1)  # ties
        if t % 7 == 0:
            x[rng.integers(0, h)] = np.inf
        want = pd.Series(x).expanding().median().to_numpy()
        np.testing.assert_array_equal(expanding_median(x), want)


def test_median_equals_numpys():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 101, 1000):
        for x in (rng.normal(size=n), rng.integers(0, 3, n), np.r_[np.ones(n - 1, int), 2]):
            got = filters.median(x)
            assert type(got) is float and got == float(np.median(x)), (n, x[:5])


def _reference(fn, monkeypatch, *args, **kwargs):
    """`fn` with bottleneck off (SciPy's filters, pandas' rolling windows)."""
    monkeypatch.setattr(filters, "BOTTLENECK", False)
    try:
        return fn(*args, **kwargs)
    finally:
        monkeypatch.setattr(filters, "BOTTLENECK", True)


@pytest.mark.parametrize("seed", range(6))
def test_trailing_by_bottleneck_equal_scipy_and_pandas_bit_for_bit(seed, monkeypatch):
    """The spike statistic's trailing medians and minima by bottleneck are SciPy's and
    pandas' numbers bit for bit: plain (the expanding head included), with leading NaN,
    masked (NaN and inf left out, as pandas' rolling does), on ties, short series and
    windows longer than the series; and the baselines built from them."""
    import bottleneck  # noqa: F401  (a dependency: the fast path must be the one tested)

    from losslens.detectors import spike_stats as ss

    rng = np.random.default_rng(seed)
    for trial in range(120):
        n = int(rng.integers(1, 700))
        w = int(rng.choice([1, 3, 15, 31, 129, 263]))
        x = rng.normal(size=n) if trial % 3 else np.round(rng.normal(size=n), 1)
        if trial % 5 == 0:
            x = np.exp(x)
        for fn in (ss.trailing_median, ss.trailing_min):
            np.testing.assert_array_equal(fn(x, w), _reference(fn, monkeypatch, x, w))
        lead = x.copy()
        lead[:int(rng.integers(0, n + 1))] = np.nan
        np.testing.assert_array_equal(ss.finite_trailing_median(lead, w),
                                      _reference(ss.finite_trailing_median, monkeypatch,
                                                 lead, w))
        holes = x.copy()
        for _ in range(int(rng.integers(1, 4))):
            a = int(rng.integers(0, n))
            holes[a:a + int(rng.integers(1, 40))] = np.nan
        if n > 6 and trial % 4 == 0:
            holes[int(rng.integers(0, n))] = np.inf
            holes[int(rng.integers(0, n))] = -np.inf
        for fn in (ss.masked_trailing_median, ss.finite_trailing_median):
            np.testing.assert_array_equal(fn(holes, w), _reference(fn, monkeypatch, holes, w))
        v = np.exp(rng.normal(size=n)) if trial % 2 else np.round(np.exp(rng.normal(size=n)), 2)
        masked = v.copy()
        masked[int(rng.integers(0, n)):][:int(rng.integers(0, 30))] = np.nan
        for log in (True, False):
            for args in ((v, min(w, 129), log), (masked, min(w, 129), log, True)):
                got = ss.baseline(*args, level_window=15)
                want = _reference(ss.baseline, monkeypatch, *args, level_window=15)
                for f in ("y", "level", "scale", "count"):
                    np.testing.assert_array_equal(getattr(got, f), getattr(want, f), err_msg=f)


def test_trailing_by_bottleneck_is_used_and_leaves_nan_input_alone():
    x = np.array([3.0, 1.0, 2.0, 5.0, 4.0])
    np.testing.assert_array_equal(filters.trailing("median", x, 3), [3.0, 2.0, 2.0, 2.0, 4.0])
    np.testing.assert_array_equal(filters.trailing("min", x, 2), [3.0, 1.0, 1.0, 2.0, 4.0])
    assert filters.trailing("median", np.array([1.0, np.nan]), 3) is None  # SciPy's then
    np.testing.assert_array_equal(
        filters.trailing("median", np.array([1.0, np.nan, np.inf, 4.0]), 3, masked=True),
        [1.0, 1.0, 1.0, 4.0])
    assert filters.trailing("median", np.arange(4), 3) is None  # (not float64)


def test_kept_medians_of_a_growing_series_are_the_whole_calls():
    """`KeptMedians` (a streaming form's trailing medians of a series that grows at the
    end): bit for bit what a whole call gives, for growth by any amount, a window that
    changes, an input whose earlier points changed (computed afresh), -0.0 against 0.0
    (not the same bits: afresh), and through `keeping` into `trailing_median`."""
    from losslens.detectors import spike_stats as ss

    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=3000), 2)
    x[100] = 0.0
    kept = filters.KeptMedians(size=3)
    whole = ss.trailing_median
    n = 1
    with filters.keeping(kept):
        while n < 3000:
            w = 129 if n > 400 else 15
            got = ss.trailing_median(x[:n], w)
            np.testing.assert_array_equal(got, _whole(x[:n], w))
            got[:] = 7.0  # (a caller may write into what it got: the kept copy stays)
            n += int(rng.integers(1, 200))
        assert kept.hits > 5 and len(kept.entries) <= 3
        y = x.copy()
        y[50] += 1.0  # the start changed: not an extension
        np.testing.assert_array_equal(ss.trailing_median(y, 129), _whole(y, 129))
        z = x.copy()
        z[100] = -0.0
        np.testing.assert_array_equal(ss.trailing_median(z, 129), _whole(z, 129))
        hits = kept.hits
        np.testing.assert_array_equal(ss.trailing_median(x, 129), _whole(x, 129))
        assert kept.hits == hits + 1  # (x itself was kept at its full length)
    assert filters.kept_medians() is None and whole is ss.trailing_median


def _whole(x, w):
    from losslens.detectors import spike_stats as ss

    assert filters.kept_medians() is not None
    token = filters._KEPT.set(None)
    try:
        return ss.trailing_median(x, w)
    finally:
        filters._KEPT.reset(token)
