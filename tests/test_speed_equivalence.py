"""Fast paths give the results of the slow ones they replace, exactly."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.changepoint import linear_cost_class, pelt


def _signal(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    x = np.sort(rng.choice(np.arange(1, 5 * n), n, replace=False)).astype(float)
    if kind == 0:  # a random walk
        y = rng.normal(size=n).cumsum() * 0.1
    elif kind == 1:  # flat stretches of small integers: many exactly equal sums (ties)
        y = np.repeat(rng.integers(0, 4, 8), n // 8 + 1)[:n].astype(float)
    else:  # a level step on a slope
        y = np.where(np.arange(n) > n // 2, 1.0, 0.0) + rng.normal(0, 0.05, n) + x * 1e-3
    return np.column_stack([x, y])


@pytest.mark.parametrize("seed", range(4))
def test_pelt_finds_what_ruptures_pelt_finds(seed):
    rpt = pytest.importorskip("ruptures")
    cost = linear_cost_class()
    rng = np.random.default_rng(seed)
    found_some = 0
    for _ in range(150):
        n = int(rng.integers(5, 600))
        sig = _signal(rng, n, int(rng.integers(0, 3)))
        jump = int(rng.choice([1, 2, 3, 5, 7]))
        min_size = max(int(rng.integers(1, max(2, n // 3))), jump)
        pen = float(rng.choice([1e-6, 0.01, 0.1, 1.0, 10.0]))
        try:
            ref = rpt.Pelt(custom_cost=cost(), min_size=min_size, jump=jump).fit(sig)\
                .predict(pen=pen)[:-1]
        except rpt.exceptions.BadSegmentationParameters:
            ref = []
        assert pelt(cost().fit(sig), n, pen, max(min_size, 3), jump) == ref, \
            (n, jump, min_size, pen)
        found_some += bool(ref)
    assert found_some > 50  # the comparison is not only of empty results


def test_vectorised_cost_is_the_scalar_cost_bit_for_bit():
    rng = np.random.default_rng(7)
    sig = _signal(rng, 300, 0)
    c = linear_cost_class()().fit(sig)
    starts = np.arange(0, 297)
    for end in (3, 50, 299, 300):
        s = starts[starts < end]
        assert c.errors(s, end).tolist() == [c.error(int(a), end) for a in s]


@pytest.mark.parametrize("seed", range(3))
def test_binseg1_finds_what_ruptures_binseg_finds(seed):
    rpt = pytest.importorskip("ruptures")
    from losslens.detectors.changepoint import binseg1

    cost = linear_cost_class()
    rng = np.random.default_rng(100 + seed)
    for _ in range(150):
        n = int(rng.integers(2, 300))
        sig = _signal(rng, n, int(rng.integers(0, 3)))
        min_size = int(rng.choice([1, 3, 5, 20]))
        jump = int(rng.choice([1, 1, 2, 5]))
        try:
            ref = rpt.Binseg(custom_cost=cost(), min_size=min_size, jump=jump).fit(sig)\
                .predict(n_bkps=1)[0]
        except rpt.exceptions.BadSegmentationParameters:
            ref = None
        assert binseg1(cost().fit(sig), n, min_size, jump) == ref, (n, min_size, jump)


def test_analysis_does_not_import_ruptures():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from losslens.synthetic import make_frame; "
            "from losslens.pipeline import analyze_frame; "
            "analyze_frame(make_frame(3000, seed=1, val_every=50)); "
            "print('ruptures' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
