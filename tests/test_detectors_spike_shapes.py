"""SpikeDetector on shapes of noise and spikes beyond the Gaussian plateau: AR(1)-correlated
noise (with and without a multi-point hump), heavy tails (one outlier point vs a spike that
lasts), a 15-point run, an HF-rounded staircase below 1e-3, a sustained rise of a noisy grad
norm near 0 (curves made here, every event injected and known)."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector


def found(steps, values):
    return [(s["start"], s["end"], s["recovery"]) for s in SpikeDetector().find(steps, values)]


def ar1(seed: int, n: int, phi: float, sigma: float) -> np.ndarray:
    """AR(1) noise of marginal sd `sigma` (its one-step innovations are sqrt(1 - phi^2) of it)."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    out, acc = np.empty(n), 0.0
    for i in range(n):
        acc = phi * acc + np.sqrt(1 - phi * phi) * z[i]
        out[i] = acc
    return sigma * out


def decaying(n: int) -> np.ndarray:
    t = np.arange(n)
    return np.log(1.5 + 4 * (1 + t / 100) ** -0.6)


@pytest.mark.parametrize("seed", range(5))
def test_ar1_noise_without_spikes_gives_no_event(seed):
    # phi = 0.9: excursions last tens of points and reach 3-4 marginal sd, many one-step sd
    n = 3000
    t = np.arange(n)
    assert found(t, np.exp(decaying(n) + ar1(seed, n, 0.9, 0.03))) == []
    sign_changing = 0.02 * np.sin(t / 400) + ar1(seed + 10, n, 0.9, 0.1)
    assert sign_changing.min() < 0 < sign_changing.max()
    assert found(t, sign_changing) == []


def hump(n: int) -> np.ndarray:
    """A hump: up over 5 points from 1500, flat to 1600, back to 2 % by 2400 (log units)."""
    out = np.zeros(n)
    k = np.arange(1500, 1505)
    out[k] = (k - 1499) / 5
    out[1505:1600] = 1
    d = np.arange(1600, 2400)
    out[d] = np.exp(-(d - 1600) / (800 / np.log(50)))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 7])
def test_a_hump_on_ar1_noise_is_one_slow_spike(seed):
    # x1.22 over 5 points on AR(1) noise of 2 % (10 marginal sd; each step of the rise is ~3
    # one-step sd, and the trailing level follows it): judged against the level 5 points
    # before, in units of that old level's own errors
    n = 3000
    t = np.arange(n) * 5
    noisy = decaying(n) + ar1(seed, n, 0.9, 0.02)
    assert found(t, np.exp(noisy)) == []
    (spike,) = found(t, np.exp(noisy + 0.2 * hump(n)))
    assert 7500 <= spike[0] <= 7525 and spike[2] == "slow"


@pytest.mark.parametrize("seed", [0, 4])
def test_in_heavy_tailed_noise_one_point_is_noise_and_two_are_a_spike(seed):
    # Student t(3) noise: one point +0.12 (x1.13) is what such noise does now and then; two
    # points in a row that high are not
    rng = np.random.default_rng(seed)
    n = 6000
    t = np.arange(n)
    logv = np.log(2 + 3 * (1 + t / 300) ** -0.5) + 0.01 * rng.standard_t(3, n) / np.sqrt(3)
    one, two = logv.copy(), logv.copy()
    one[4000] += 0.12
    two[4000:4002] += 0.12
    assert found(t, np.exp(one)) == []
    assert found(t, np.exp(two)) == [(4000, 4002, "fast")]


@pytest.mark.parametrize("seed", range(5))
def test_a_spike_in_a_15_point_run(seed):
    rng = np.random.default_rng(seed)
    steps = np.arange(1, 16) * 10
    values = (2 + 6 * (1 + np.arange(15) / 2.0) ** -0.7) * np.exp(rng.normal(0, 0.01, 15))
    assert found(steps, values) == []
    values[10] *= 2.0
    assert found(steps, values) == [(110, 120, "fast")]


@pytest.mark.parametrize("seed", range(5))
def test_a_rounded_staircase_below_1e3_gives_no_event(seed):
    # HF Trainer's 4 decimals: the last 300 values are 0.0002 / 0.0003 / 0.0004 (+ 0.0005)
    rng = np.random.default_rng(seed)
    n = 1200
    t = np.arange(n) * 25
    values = np.round(np.exp(np.log(3e-4 + 3 * np.exp(-t / (t[-1] * 0.07)))
                             + rng.normal(0, 0.1, n)), 4)
    assert set(np.unique(values[-300:])) <= {0.0002, 0.0003, 0.0004, 0.0005}
    assert found(t, values) == []


def test_a_sustained_rise_of_a_noisy_grad_norm_near_0_is_found():
    # a grad norm with 40 % log-normal noise (judged additively: within 5 noise scales of 0)
    # goes x4 for 12 points: no single point is far out as a ratio, the 12 together are
    rng = np.random.default_rng(3)
    n = 300
    g = np.exp(np.log(1.5) + rng.normal(0, 0.4, n))
    g[200:212] *= 4.0
    got = found(np.arange(n), g)
    assert [(a, r) for a, _, r in got] == [(200, "fast")]
    lone = np.exp(np.log(1.5) + rng.normal(0, 0.4, n))
    lone[200] *= 4.0  # one point x4 of such noise: z ~ 3.5 in log space
    assert found(np.arange(n), lone) == []
