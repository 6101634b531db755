"""SpikeDetector near 0: a lone point on a floor (a loss that fell decades, judged additively
with each spike confirmed in log space) is the floor's flicker unless unmistakable
(spike.LONE_FLOOR). Curves made here with every event placed and known."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors import spike_floor
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
    # space: it never fell, but its noise is that large as a ratio too) but no floor; a lone
    # x30 point (8.5 scales) is a spike there
    rng = np.random.default_rng(5)
    logv = np.log(1.5) + 0.4 * rng.normal(0, 1, 800)
    logv[500] += np.log(30)
    t = np.arange(800)
    assert SpikeDetector().spaces(np.exp(logv)).split < 500
    assert found(t, np.exp(logv)) == [(500, 501, "fast", "linear")]


def rounded_fall(seed: int, n: int = 400, sigma: float = 0.1):
    """A loss falling from ~5 to ~1e-3 (tau = 60 points) with per-batch noise of `sigma` (log
    units), rounded to 4 decimals as HF Trainer logs it; a x2.5 spike lasting 3 points at
    point 150 (level ~0.4, 12 x below the start)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    logv = np.log(1e-3 + 5 * np.exp(-t / 60)) + sigma * rng.normal(0, 1, n)
    logv[150:153] += np.log(2.5)
    return np.arange(n) * 10, np.round(np.exp(logv), 4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_steep_noisy_fall_is_not_near_zero_before_it_fell_a_hundredfold(seed):
    # 10 % per-batch noise on a steep fall: a window's differences are mostly the fall, and
    # the switch judged it additively from points 74-110 (level ~1), where the spike drowned
    # in an additive scale made of the higher levels before; with the gate it stays in log
    # space until the level is 100 x below the highest value, and the spike is found
    steps, v = rounded_fall(seed)
    split = SpikeDetector().spaces(v).split
    assert 250 < split < 300 and split == SpikeDetector().spaces(v[:split + 1]).split
    assert found(steps, v) == [(1500, 1530, "fast", "log")]
    off = SpikeDetector(floor_fallen=0.0)
    assert 70 < off.spaces(v).split < 120
    assert off.find(steps, v) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_the_floor_gate_streams_as_batch(seed):
    steps, v = rounded_fall(seed)
    got = streamed_equals_batch(steps, v, seed=seed, sizes=(1, 17, 60), share=0.5)
    assert [(k, s) for k, s, _, _ in got if k == "spike"] == [("spike", 1500)]


def adam_like(seed: int, n: int = 1300, at: int = 1200):
    """A loss falling from 2 to a 1e-13 floor (every 10 steps, 20 % log flicker) that blows
    up x1e4 to 8e-8 over 12 points from point `at` (Adam's state: examples/adam_spike.py)
    and rings at ~1e-8 (x1e5 over the floor, x4 flicker, decaying x20) to the end."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    logv = np.log(1e-13) + (np.log(2.0) - np.log(1e-13)) * np.exp(-t / 80)
    logv += 0.2 * rng.normal(0, 1, n)
    logv[at:at + 13] = np.log(1e-13) + (np.log(8e-8) - np.log(1e-13)) * np.arange(13) / 12
    m = n - at - 13
    ring = np.log(1e-8) + 1.5 * rng.normal(0, 1, m) - np.linspace(0, 3, m)
    logv[at + 13:] = np.minimum(ring, np.log(4e-8))
    return np.arange(n) * 10, np.exp(logv)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_spike_invisible_in_loss_units_is_judged_in_log_space_alone(seed):
    # 8e-8 nats on a loss that started at 2 is under what the loss's own units resolve
    # (spike_floor.visible): the share rule (back at 10 % of its height in nats) does not
    # apply, and its ringing, x1e5 over the floor to the end, is the one spike's, not
    # restarted: one spike, not back (session 12's floor rule made 5-10 spikes of it)
    steps, v = adam_like(seed)
    assert found(steps, v) == [(12040, None, "none", "linear")]


def test_visible_is_the_float32_resolution_of_the_start_level():
    # Adam's spike (8e-8 on a start of 10) is not; a grokking slingshot (1.4e-3 on 4.7) is
    assert not spike_floor.visible(float(np.log(10.35)), 8.1e-8)
    assert spike_floor.visible(float(np.log(4.73)), 1.38e-3)
    assert not spike_floor.visible(None, 1.0) and not spike_floor.visible(0.0, 0.0)
