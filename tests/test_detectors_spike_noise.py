"""SpikeDetector on noise that only looks like spikes: heavy-tailed excursions early in a run
(before a window's worth of points has shown the tail) and a loss switching between two
states it keeps returning to (curves made here, every excursion placed and known)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector

from stream_check import streamed_equals_batch


def found(steps, values):
    return [(s["start"], s["end"], s["recovery"]) for s in SpikeDetector().find(steps, values)]


def plateau(n: int = 400, sd: float = 0.02) -> np.ndarray:
    """Log values of a flat loss at 2.0 with bounded noise of about `sd` (log units) that
    never leaves +-1 sd by itself (a fixed sequence: the test needs exact z-scores)."""
    return np.log(2.0) + sd * np.sin(np.arange(n) * 2.4)


def test_early_excursions_make_a_later_lone_outlier_noise():
    # a lone point at +12 sd (150) and a spike lasting three points at +18 sd (300); with
    # two +4.5 sd points before 150 (at 60 and 100) the noise has shown a heavy tail -- two
    # such points in the first 250 are as rare for Gaussian noise as three in 1000 -- and the
    # lone point is an outlier of that tail; one such point is not evidence yet
    y = plateau()
    y[150] = np.log(2.0) + 0.25
    y[300:303] = np.log(2.0) + 0.4
    t = np.arange(y.shape[0])
    assert found(t, np.exp(y)) == [(150, 151, "fast"), (300, 303, "fast")]
    y[60] = np.log(2.0) + 5.5 * 0.02
    assert found(t, np.exp(y)) == [(150, 151, "fast"), (300, 303, "fast")]
    y[100] = np.log(2.0) + 5.5 * 0.02
    assert found(t, np.exp(y)) == [(300, 303, "fast")]


def test_a_loss_that_doubles_in_one_step_is_a_spike_whatever_the_tail():
    # the same early excursions (the tail asks a lone point for far more than 12 sd), but a
    # lone point that doubles the loss (+0.69 in log units, 35 sd) is judged by the plain
    # threshold; x1.9 (+0.64, 32 sd) is still judged by the tail
    y = plateau()
    y[60] = y[100] = np.log(2.0) + 5.5 * 0.02
    t = np.arange(y.shape[0])
    y[150] = np.log(2.0) + np.log(1.9)
    assert found(t, np.exp(y)) == []
    y[150] = np.log(2.0) + np.log(2.0)
    assert found(t, np.exp(y)) == [(150, 151, "fast")]


@pytest.mark.parametrize("name,ratio", [("cnn_scaled_input_step140", 8.88),
                                        ("cnn_shuffled_labels_step140", 3.36)])
def test_a_corrupted_batch_after_a_rough_start_is_found(name, ratio):
    """A small CNN's JSONL log (made here: 200 steps, one batch at 140 with its inputs x20 or
    its labels shuffled): four excursions of its first 60 steps made the heavy-tail rule ask
    the x8.9 jump for z 70 and the x3.4 one for z 10, so neither was reported."""
    import losslens

    path = Path(__file__).parent / "data" / "misc" / f"{name}.jsonl"
    spikes = [e for ra in losslens.analyze(path).runs for e in ra.events
              if e.kind == "spike" and e.tag == "loss"]
    assert [(e.start_step, e.recovery) for e in spikes if e.start_step > 100] == [(140, "fast")]
    (e,) = [e for e in spikes if e.start_step == 140]
    assert round(e.magnitude, 2) == ratio


def test_lone_dips_of_a_sign_changing_loss_are_tail_evidence_for_a_lone_outlier():
    # a loss around 0 with noise of ~0.1: a lone point at +9.5 scales (150) and a rise lasting
    # three points (300); two lone dips to -0.55 (~4.4 scales under, at 60 and 100) show the
    # noise's heavy tail as well as two outliers upwards would (the loss changes sign: its
    # noise is as heavy below as above); two drops that last three points do not
    t = np.arange(400)
    y = 0.1 * np.sin(t * 2.4)
    y[150], y[300:303] = 1.0, 1.8
    assert found(t, y) == [(150, 151, "fast"), (300, 303, "fast")]
    lasting = y.copy()
    lasting[60:63] = lasting[100:103] = -0.55
    assert found(t, lasting) == [(150, 151, "fast"), (300, 303, "fast")]
    y[[60, 100]] = -0.55
    assert found(t, y) == [(300, 303, "fast")]


def test_a_lone_blip_under_x1_2_is_noise_unless_far_above_the_noise():
    # noise of ~2 %: a lone x1.16 point (~6.5 scales) is a blip, a lone x1.3 one a spike;
    # on noise of ~0.2 % the same x1.16 point is 60 scales up: a spike
    t = np.arange(400)
    for lift, want in ((0.15, []), (np.log(1.3), [(250, 251, "fast")])):
        y = plateau()
        y[250] = np.log(2.0) + lift
        assert found(t, np.exp(y)) == want
    y = plateau(sd=0.002)
    y[250] = np.log(2.0) + 0.15
    assert found(t, np.exp(y)) == [(250, 251, "fast")]


def ar1(seed: int, n: int, phi: float, sd: float) -> np.ndarray:
    """AR(1) noise of marginal sd `sd`."""
    z = np.random.default_rng(seed).standard_normal(n)
    out, acc = np.empty(n), 0.0
    for i in range(n):
        acc = phi * acc + np.sqrt(1 - phi * phi) * z[i]
        out[i] = acc
    return sd * out


@pytest.mark.parametrize("seed", range(5))
def test_a_hump_on_a_steep_descent_is_judged_against_the_old_level_plus_its_drift(seed):
    # a loss falling 1 % a point (log units) with AR(1) noise (phi 0.8, 1.5 %); a x1.28 hump
    # rising over 5 points from 500: each step is ~3 one-step scales, and against the level 5
    # points before it rises 0.25 while the descent alone moves that level by 0.05 -- judged
    # against the old level plus that drift it stands out; without the hump nothing does
    n = 1200
    t = np.arange(n)
    y = np.log(5.0) - 0.01 * t + ar1(seed, n, 0.8, 0.015)
    assert found(t, np.exp(y)) == []
    hump = np.zeros(n)
    hump[500:505] = np.arange(1, 6) / 5
    hump[505:520] = 1
    k = np.arange(520, 900)
    hump[k] = np.exp(-(k - 520) / (380 / np.log(50)))
    got = found(t, np.exp(y + 0.25 * hump))
    assert len(got) == 1 and 500 <= got[0][0] <= 504


def switching(n: int = 900) -> np.ndarray:
    """A PINN term on its floor: 4.6e-5 drifting down by 1e-9 a step, from 300 on at 1.054e-4
    for 5 points of every 13 (float32 values, as a CSV logger writes them)."""
    t = np.arange(n)
    v = 4.6387e-5 - 1e-9 * t
    for a in range(300, n - 5, 13):
        v[a:a + 5] = 1.0540e-4 + 1e-9 * (t[a:a + 5] - 300)
    return v.astype(np.float32).astype(float)


def test_a_loss_switching_between_two_states_is_reported_twice_then_no_more():
    v = switching()
    t = np.arange(v.shape[0])
    got = found(t, v)
    assert [s for s, _, _ in got] == [300, 313]
    # a x20 jump between two switches is not the state it keeps returning to: still a spike
    v[801:804] = 1e-3
    assert [s for s, _, _ in found(t, v)] == [300, 313, 801]


def test_streamed_switching_equals_batch_on_every_prefix():
    values = switching()
    values[801:804] = 1e-3
    steps = np.arange(values.shape[0])
    got = streamed_equals_batch(steps, values, seed=5, sizes=(1, 7, 40, 300), share=0.3)
    assert [s for k, s, _, _ in got if k == "spike"] == [300, 313, 801]
