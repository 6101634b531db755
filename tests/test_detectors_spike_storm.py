"""Blow-ups that stand apart from a noisy floor (spike_storm): a storm of one-point x1000+
blow-ups on a floor whose noise spans a decade is a storm of spikes, each its own fast event,
while heavy-tailed outlier batches (x20-x250, filling the range above the floor), a floor
flickering over decades and a jump that stays are none. Curves made here, events placed."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors import spike_storm
from losslens.detectors.divergence_fold import fold_spikes
from losslens.detectors.spike import SpikeDetector
from losslens.events import Event
from losslens.frame import Series

from stream_check import streamed_equals_batch

#: (index, points, height over the floor's median): eleven one-point blow-ups and a two-point one
#: (from point 14 on: over a floor of 5-10 points the noise scale is too uncertain to be sure)
STORM = [(14, 1, 2e4), (20, 1, 8e3), (27, 1, 9e3), (30, 2, 1e4), (39, 1, 1.3e4), (61, 1, 1.2e4),
         (65, 1, 1.4e4), (69, 1, 2e4), (89, 1, 1.6e4), (98, 1, 2.7e4), (103, 1, 2e4),
         (118, 1, 3e4)]


def storm(seed: int, n: int = 123, sigma: float = 1.0):
    """A Lightning-CSV-like train loss every 20 steps: a 3e-3 floor with log-normal noise of
    `sigma` (x2.7 a point: values from 1e-4 to 3e-2) and the STORM blow-ups on it."""
    rng = np.random.default_rng(seed)
    v = 3e-3 * np.exp(sigma * rng.normal(0, 1, n))
    for i, k, h in STORM:
        v[i:i + k] = 3e-3 * h
    return np.arange(n) * 20 + 19, v


def ser(steps, values, role="train_loss"):
    z = np.zeros(len(steps))
    return Series("r", "train_loss", role, np.asarray(steps), np.asarray(values, float), z,
                  z.astype(np.int64))


def starts(events):
    return [(e.start_step, e.end_step, e.recovery) for e in events]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_storm_of_blowups_on_a_noisy_floor_is_each_a_fast_spike(seed):
    steps, v = storm(seed)
    got = SpikeDetector().detect(ser(steps, v))
    want = [(int(steps[i]), "fast") for i, _, _ in STORM]
    # each blow-up is one event from its own point (none swallowed into a spike that began
    # on the floor before it), back at the point after it (the rule's own record) or, where
    # the statistic found it and the floor's next point was noisy, the one after that
    blow = [e for e in got if e.magnitude >= 100]
    assert [(e.start_step, e.recovery) for e in blow] == want
    assert all(e.end_step - int(steps[i + k]) in (0, 20) for e, (i, k, _) in zip(blow, STORM))
    assert all(e.details.get("blowup") or e.start_step in {w[0] for w in want}
               for e in got if e.magnitude >= 100)


def test_the_storm_streams_as_batch():
    steps, v = storm(0)
    got = streamed_equals_batch(steps, v, seed=0, sizes=(1, 3, 17), share=0.25)
    assert {s for k, s, e, r in got if k == "spike" and r == "fast"} >= {
        int(steps[i]) for i, _, _ in STORM}


@pytest.mark.parametrize("seed", range(6))
def test_heavy_tailed_outlier_batches_are_no_blowups(seed):
    # a forecaster's MSE on a 1e-6 floor (log noise 0.5) with 40 one-point outliers of
    # x20-x250 in 1500 points: the outliers fill the range above the floor, no gap of x100
    rng = np.random.default_rng(seed)
    n = 1500
    v = 1e-6 * np.exp(0.5 * rng.normal(0, 1, n))
    at = rng.choice(np.arange(50, n - 1), 40, replace=False)
    v[at] = 1e-6 * np.exp(rng.uniform(np.log(20), np.log(250), 40))
    assert spike_storm.blowups(v, 129) == []


@pytest.mark.parametrize("seed", range(4))
def test_a_floor_flickering_over_decades_has_no_blowups(seed):
    # per-step PINN terms near 0: log noise of 3 (x20 a point), every value from 1e-10 up
    rng = np.random.default_rng(seed)
    v = 1e-7 * np.exp(3.0 * rng.normal(0, 1, 2000))
    assert spike_storm.blowups(v, 129) == []


def test_a_jump_that_stays_and_a_run_of_three_are_no_blowups():
    rng = np.random.default_rng(0)
    v = 3e-3 * np.exp(rng.normal(0, 1, 300))
    v[150:] *= 1e4  # up x10^4 for good: not back
    v[60:63] = 30.0  # three points up: longer than MAX_RUN
    assert spike_storm.blowups(v, 129) == []


def test_a_blowup_needs_a_floor_before_it():
    v = np.r_[3e-3 * np.exp(np.random.default_rng(0).normal(0, 1, 3)), 30.0, 3e-3, 2e-3, 4e-3]
    assert spike_storm.blowups(v, 129) == []  # 3 points before it (MIN_FLOOR 5)


def test_a_blowup_over_a_floor_whose_noise_is_of_its_size_is_none():
    # the gap (x100 over the floor's top) must also be K floor noise scales: this floor's
    # log changes spread 4.2 (1.4826 x MAD / sqrt 2), so the gap must be 3 x (1 + 4 / 30) x 4.2
    v = np.exp(np.array([0.0, 2.5, -2.5, 1.0, -1.0, 3.0, -3.0, 0.5, -0.5, 2.0] * 4))
    v[30] = np.exp(3.0 + np.log(150))  # x150 over the floor's top (e^3): 1.2 noise scales
    v[29] = v[31] = np.exp(-3.0)
    assert spike_storm.blowups(v, 129) == []
    v2 = v.copy()
    v2[30] = np.exp(3.0 + 16.0)  # e^16 over the top: 3.8 scales
    assert [c for c, *_ in spike_storm.blowups(v2, 129)] == [30]


def _ev(kind, start, end=None, recovery=None):
    return Event(kind=kind, run="r", tag="loss", start_step=start, peak_step=start,
                 end_step=end, severity="info", recovery=recovery, recovery_steps=None,
                 magnitude=2.0, details={})


def test_a_fast_spike_inside_a_divergence_stays_its_own_event():
    div = _ev("divergence", 10, 200)
    fast, slow, none = _ev("spike", 114, 116, "fast"), _ev("spike", 120, 180, "slow"), \
        _ev("spike", 150, None, "none")
    out = fold_spikes([div, fast, slow, none])
    assert [(e.kind, e.start_step) for e in out] == [("divergence", 10), ("spike", 114)]
    assert out[0].details["spikes_within"] == 2
