"""SpikeDetector after a lone dip: the point after a dip is judged against the level before
the dip (the previous-point predictor would take the dip itself as the level, and the way
back read as a spike that never recovered). Curves made here, every event placed and known."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector

from stream_check import streamed_equals_batch


def found(steps, values):
    return [(s["start"], s["end"], s["recovery"], s["details"]["space"])
            for s in SpikeDetector().find(np.asarray(steps), np.asarray(values))]


def plateau(seed: int, n: int = 60, level: float = 0.25, sigma: float = 0.05,
            signed: bool = False):
    """A flat loss (every 100 steps) with Gaussian noise of `sigma`: log units, or additive
    around 0 (`signed`)."""
    rng = np.random.default_rng(seed)
    z = sigma * rng.standard_normal(n)
    return np.arange(n) * 100, (z if signed else level * np.exp(z))


@pytest.mark.parametrize("seed", range(4))
def test_the_way_back_from_a_lone_dip_is_no_spike(seed):
    # a x0.37 dip at point 50 of 60 (20 scales down), then back at the plateau: the point
    # after it is x2.7 its previous point, but level with the points before the dip
    steps, v = plateau(seed)
    v[50] *= 0.37
    assert found(steps, v) == []


@pytest.mark.parametrize("seed", range(4))
def test_a_spike_right_after_a_dip_is_still_found(seed):
    # the same dip, then x3 of the plateau at point 51 (22 scales over the level before it)
    steps, v = plateau(seed)
    v[50] *= 0.37
    v[51] *= 3.0
    assert [(s, sp) for s, _, _, sp in found(steps, v)] == [(5100, "log")]


@pytest.mark.parametrize("seed", range(3))
def test_a_signed_loss_back_from_a_lone_dip_is_no_spike(seed):
    # a loss around 0 (additive): a dip of 20 noise scales at point 40 of 60, then back
    steps, v = plateau(seed, signed=True)
    v[40] -= 1.0
    assert found(steps, v) == []


def test_the_way_back_from_a_dip_streams_as_batch():
    steps, v = plateau(1, n=120)
    v[50] *= 0.37
    v[90] *= 0.37
    v[91] *= 3.0
    got = streamed_equals_batch(steps, v, seed=1, sizes=(1, 7, 30), share=0.5)
    assert [(k, s) for k, s, _, _ in got if k == "spike"] == [("spike", 9100)]
