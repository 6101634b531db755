"""A spike's recovery judged against where the loss was heading (detectors/spike_trend.py).

Synthetic power-law curves with known injected spikes: a step-up that settles 45 % above the
trend for good comes back within its pre-spike band (or 5 % of its height) 5,000 steps later
only because the loss keeps falling (judged `slow` against the level alone): it is `none`. A
PaLM-style spike whose excess over the trend decays is `slow`; a bad batch early on, on the
steep descent, stays `fast`.
Streaming gives the same events at every checked prefix, and shifting the steps shifts them."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector
from losslens.detectors.spike_trend import MAX_FALL, trend_slope
from tests.stream_check import streamed_equals_batch

N = 16000


def curve(kind: str, seed: int = 0, start: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """10 x step^-0.3 with 1 % noise and a spike of `kind`: 'none' (at step 3000, x3, settling
    45 % above the trend for good), 'slow' (at step 6000, x3, excess decaying with tau 300
    steps) or 'fast' (x3 for 2 steps, at step 300 on the steep early part)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, N + 1, dtype=float)
    base = 10.0 * t ** -0.3
    m = np.ones(N)
    if kind == "none":
        k = t >= 3000
        m[k] = 1.45 + (3.0 - 1.45) * np.exp(-(t[k] - 3000) / 50)
    elif kind == "slow":
        k = t >= 6000
        m[k] = 1 + 2.0 * np.exp(-(t[k] - 6000) / 300)
    else:
        m[299:301] = 3.0
    values = base * m * (1 + 0.01 * rng.standard_normal(N))
    return (t + (start - 1)).astype(np.int64), values


def spikes(steps: np.ndarray, values: np.ndarray, **kw) -> list[tuple]:
    return [(s["start"], s["end"], s["recovery"])
            for s in SpikeDetector(**kw).find(steps, values)]


def test_a_step_up_that_stays_above_the_trend_never_recovers():
    steps, values = curve("none")
    got = spikes(steps, values)
    assert got == [(3000, None, "none")]
    # against the pre-spike level alone, the falling loss reads as a slow return
    plain = spikes(steps, values, trend=False)
    assert len(plain) == 1 and plain[0][0] == 3000 and plain[0][2] == "slow"
    assert 7000 < plain[0][1] < 16000


def test_a_decaying_spike_is_slow_and_back_where_the_trend_is():
    steps, values = curve("slow")
    (start, end, rec), = spikes(steps, values)
    assert (start, rec) == (6000, "slow")
    # back at the trend (excess under ~3 % of 1 % noise: 2 x e^(-d/300) <= 0.03 -> d ~ 1260)
    assert 6900 <= end <= 7500


def test_a_bad_batch_on_the_steep_early_descent_stays_fast():
    steps, values = curve("fast")
    (start, end, rec), = spikes(steps, values)
    assert (start, rec) == (300, "fast") and end <= 310


def test_the_trend_is_fitted_on_the_points_before_the_spike():
    steps, values = curve("none")
    slope, origin = trend_slope(steps, np.log(values), 2999)
    assert origin == 0.0 and abs(slope - -0.3) < 0.03
    rising = np.log(np.linspace(1.0, 2.0, 400))
    assert trend_slope(np.arange(1, 401), rising, 399)[0] == 0.0  # never projected to rise
    steep = -3.0 * np.log(np.arange(1, 401))
    assert trend_slope(np.arange(1, 401), steep, 399)[0] == MAX_FALL  # bounded


def test_shifting_the_steps_shifts_the_trend_verdict():
    for kind in ("none", "slow"):
        base = spikes(*curve(kind))
        shifted = spikes(*curve(kind, start=1 + 200000))
        assert shifted == [(s + 200000, None if e is None else e + 200000, r)
                           for s, e, r in base]


@pytest.mark.parametrize("kind", ["none", "slow"])
def test_streaming_equals_batch_for_trend_judged_returns(kind):
    steps, values = curve(kind, seed=1)
    got = streamed_equals_batch(steps, values, seed=3, sizes=(97, 211, 503), share=0.12)
    spikes_got = [g for g in got if g[0] == "spike"]
    assert spikes_got[0][1] == (3000 if kind == "none" else 6000)
    assert spikes_got[0][3] == kind
