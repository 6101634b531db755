"""SpikeDetector near 0: a lone point on a floor (a loss that fell decades, judged additively
with each spike confirmed in log space) is the floor's flicker unless unmistakable
(spike.LONE_FLOOR). Curves made here with every event placed and known."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector

from stream_check import streamed_equals_batch


def found(steps, values):
    return [(s["start"], s["end"], s["recovery"], s["details"]["space"])
            for s in SpikeDetector().find(steps, values)]


def floor_log(seed: int, n: int = 1500, floor: float = 3e-7, sigma: float = 0.4):
    """Log values of a loss falling from 2 to `floor` (every 5 steps) with log-normal
    flicker of `sigma` (log units): the floor is reached by point ~600."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    logv = np.log(floor) + (np.log(2.0) - np.log(floor)) * np.exp(-t / 100)
    return np.arange(n) * 5, logv + sigma * rng.normal(0, 1, n)


@pytest.mark.parametrize("seed", [0, 2, 3, 4])
def test_a_lone_x30_point_on_a_floor_is_flicker_a_collapse_is_not(seed):
    # at the start of the floor (700) a lone x30 point is 8.5 scales up (40 % flicker) with
    # no tail shown yet: judged additively and confirmed in log space it was a spike; lone,
    # it must be 12 scales up. A lone x1e4 collapse (1000) and a x30 rise lasting 3 points
    # (1200) are spikes
    steps, y = floor_log(seed)
    y[700] += np.log(30)
    y[1000] += np.log(1e4)
    y[1200:1203] += np.log(30)
    assert found(steps, np.exp(y)) == [(5000, 5005, "fast", "linear"),
                                       (6000, 6015, "fast", "linear")]


def test_a_lone_point_of_a_noisy_loss_near_its_start_keeps_the_plain_threshold():
    # 40 % flicker around 1.5 is near 0 by its noise (judged additively, confirmed in log
    # space) but no floor: it never fell; a lone x30 point (8.5 scales) is a spike there
    rng = np.random.default_rng(5)
    logv = np.log(1.5) + 0.4 * rng.normal(0, 1, 800)
    logv[500] += np.log(30)
    t = np.arange(800)
    assert SpikeDetector().spaces(np.exp(logv)).split < 500
    assert found(t, np.exp(logv)) == [(500, 501, "fast", "linear")]


def test_floor_with_lone_points_streams_as_batch():
    steps, y = floor_log(3)
    y[700] += np.log(30)
    y[1000] += np.log(1e4)
    y[1200:1203] += np.log(30)
    got = streamed_equals_batch(steps, np.exp(y), seed=3, sizes=(1, 37, 250), share=0.3)
    assert [(k, s) for k, s, _, _ in got if k == "spike"] == [("spike", 5000), ("spike", 6000)]
