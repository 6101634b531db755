"""SpikeDetector on short runs: a rise over several points, and one-point spikes among the
first points (spike_early). Curves made here, every event placed and known.

- A hump that climbs x6 over four points of a 63-point run with 12 % per-batch noise: each
  step is under the one-step threshold, the HUMP predictor flags the top, and the top was
  then judged as a lone point against the previous point (which had already risen with it),
  so the spike was passed over (the independent family's short stratum lost such humps).
- spike_early: a point TALL x above the deviations of the two points before it is no knee (a
  bump of noise two points before a x3 spike read as the plateau after a crash).
Seeds below are the ones the code before these rules missed; other seeds of the same curves
are found by both or, on these tiny noisy runs, still missed (said per test)."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector

from stream_check import streamed_equals_batch


def found(steps, values):
    return [(s["start"], s["recovery"])
            for s in SpikeDetector().find(np.asarray(steps), np.asarray(values))]


def hump(seed: int, n: int = 63, at: int = 18, top: float = 6.0, rise: int = 4):
    """A steep descent to 2.5 with 12 % per-batch noise; from point `at` the loss climbs
    linearly (log) to `top` x over `rise` points, stays 3 points, then decays (tau 5)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    level = np.log(2.5 + 6.0 * np.exp(-t / 6))
    ex = np.zeros(n)
    ex[at:at + rise] = np.log(top) * (np.arange(rise) + 1) / rise
    ex[at + rise:at + rise + 3] = np.log(top)
    ex[at + rise + 3:] = np.log(top) * np.exp(-np.arange(n - at - rise - 3) / 5)
    return np.arange(n) + 1, np.exp(level + ex + rng.normal(0, 0.12, n))


def descent(seed: int, n: int = 30, at: int = 9, x: float = 3.0, bump=None):
    """A 30-point descent logged every 100 steps with 12 % per-batch noise; point `at` x `x`
    (and point bump[0] x bump[1])."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    y = np.log(0.8 + 2.5 * np.exp(-t / 4)) + rng.normal(0, 0.12, n)
    y[at] += np.log(x)
    if bump is not None:
        y[bump[0]] += np.log(bump[1])
    return np.arange(n) * 100, np.exp(y)


@pytest.mark.parametrize("seed, start", [(0, 21), (5, 21), (18, 23)])
def test_a_hump_that_climbs_over_four_points_is_a_spike(seed, start):
    # (seeds 3, 4, 6, 12, 15, 16 of this curve are still missed: steps of 2-5 noise scales)
    assert found(*hump(seed)) == [(start, "fast")]


@pytest.mark.parametrize("seed", range(12))
def test_the_same_curve_without_the_hump_has_no_spike(seed):
    assert found(*hump(seed, top=1.0)) == []


def test_a_hump_streams_as_batch():
    steps, v = hump(0)
    got = streamed_equals_batch(steps, v, seed=0, sizes=(1, 5, 20), share=0.5)
    assert [(k, s, r) for k, s, _, r in got if k == "spike"] == [("spike", 21, "fast")]


@pytest.mark.parametrize("seed, n, at, x, bump", [
    (10, 17, 5, 3.0, (3, 1.5)), (30, 17, 5, 3.0, (3, 1.5)),
    (29, 20, 6, 3.0, (4, 1.5)),
    (10, 17, 5, 4.0, (3, 1.6)), (30, 17, 5, 4.0, (3, 1.6)),
    (16, 30, 12, 2.5, None)])
def test_a_spike_two_points_after_a_bump_of_noise_is_no_knee(seed, n, at, x, bump):
    # a x3-x4 spike two points after a x1.5 bump of noise (or a x2.5 one after a random
    # one): the bump's deviation made the spike read as the plateau after a crash. On 40
    # seeds of each of the first three curves this finds 6 / 7 / 14 (4 / 5 / 12 before,
    # none lost); the others are still missed by the both-sides statistic.
    assert found(*descent(seed, n=n, at=at, x=x, bump=bump)) == [(at * 100, "fast")]


@pytest.mark.parametrize("seed", range(30))
def test_a_clean_short_descent_has_no_spike(seed):
    assert found(*descent(seed, x=1.0)) == []


def decaying(seed: int, ex=(0.40, 0.33, 0.2), n: int = 400, at: int = 200):
    """A loss falling to 4.0 logged every 5 steps with 6 % per-batch noise; from point `at`
    the log loss is up by `ex` (a x1.5 jump that decays over three points)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    y = np.log(4.0 + 2.0 * np.exp(-t / 80)) + rng.normal(0, 0.06, n)
    y[at:at + len(ex)] += ex
    return np.arange(n) * 5, np.exp(y)


@pytest.mark.parametrize("seed", [4, 7, 9, 17, 19, 24, 26, 30])
def test_two_points_up_in_a_row_are_a_spike_from_the_first(seed):
    # x1.5 then x1.4 (6.7 and 5.5 noise scales, each under the threshold alone): PAIR. On 40
    # seeds 24 are found (16 before); the rest are still missed
    assert found(*decaying(seed)) == [(1000, "fast")]


@pytest.mark.parametrize("seed", range(40))
def test_the_same_loss_without_the_jump_has_no_spike(seed):
    assert found(*decaying(seed, ex=())) == []


def test_two_points_up_stream_as_batch():
    steps, v = decaying(4)
    got = streamed_equals_batch(steps, v, seed=4, sizes=(1, 9, 40), share=0.3)
    assert [(k, s, r) for k, s, _, r in got if k == "spike"] == [("spike", 1000, "fast")]
