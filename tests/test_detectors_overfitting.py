"""The overfitting detector on runs built with the project's own record builder."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.overfitting import OverfittingDetector, kendall_tau
from losslens.errors import InvalidParameterError
from losslens.frame import build
from losslens.records import RecordsBuilder


def run(train, val, val_every=1000, train_every=50):
    b = RecordsBuilder()
    b.add_array("loss", np.arange(len(train)) * train_every + train_every, train)
    b.add_array("eval_loss", np.arange(1, len(val) + 1) * val_every, val)
    frame = build([b.build("r", "test", "test")])
    return OverfittingDetector().detect_run(frame, frame.runs[0])


def falling(n=100, start=0.6, end=1e-4):
    return np.round(np.geomspace(start, end, n), 4)


def test_validation_rising_at_each_of_five_evals_is_overfitting():
    # the HF Whisper case: eval 0.321 -> 0.420 over 5 evals while train goes to ~1e-4
    (e,) = run(falling(), [0.321, 0.3585, 0.3937, 0.4123, 0.42])
    assert (e.kind, e.tag, e.start_step, e.end_step, e.severity) == (
        "overfitting", "eval_loss", 1000, 5000, "warning")
    assert e.magnitude == pytest.approx(0.42 / 0.321)
    assert e.details["evals_after"] == 4 and e.details["tau"] == 1.0
    assert e.details["train_change"] < 0


def test_a_flat_noisy_validation_curve_is_not_overfitting():
    rng = np.random.default_rng(3)
    assert run(falling(), 0.49 + rng.normal(0, 0.004, 11)) == []


def test_validation_that_keeps_improving_is_not_overfitting():
    assert run(falling(), np.geomspace(1.6, 1.1, 12)) == []


def test_validation_and_train_rising_together_is_divergence_not_overfitting():
    train = np.concatenate([np.geomspace(3, 1, 50), np.geomspace(1, 4, 50)])
    assert run(train, [2.0, 1.2, 1.3, 1.6, 2.2, 3.0], val_every=800) == []


def test_too_few_evaluations_after_the_best_say_nothing():
    assert run(falling(), [0.5, 0.3, 0.32, 0.36], val_every=1000) == []


def test_a_climb_after_a_noisy_descent_must_clear_the_noise():
    val = [1.0, 0.8, 0.9, 0.7, 0.75, 0.6, 0.61, 0.615, 0.62]  # +3% after swings of 10-20%
    assert run(falling(), val) == []
    val[-3:] = [0.7, 0.85, 1.0]
    (e,) = run(falling(), val)
    assert e.start_step == 6000 and e.details["evals_after"] == 3


def test_kendall_tau_and_parameter_checks():
    assert kendall_tau(np.array([1.0, 2, 3, 4])) == 1.0
    assert kendall_tau(np.array([4.0, 3, 2, 1])) == -1.0
    with pytest.raises(InvalidParameterError, match="OverfittingDetector.min_after"):
        OverfittingDetector(min_after=1).validate()


def test_a_climb_after_a_steady_descent_is_judged_against_the_scatter_not_the_descent():
    # validation fell ~9 % per eval to its best, then rose 5.9 % at each of the last 3: the
    # descent's moves (0.14-0.19 per eval) are its trend, not noise (the detector used to take
    # them for noise and missed this; found on the independent synthetic family)
    val = [2.1796, 1.9922, 1.8089, 1.6213, 1.486, 1.5731, 1.6654, 1.763]
    (e,) = run(falling(), val)
    assert (e.start_step, e.end_step, e.details["evals_after"]) == (5000, 8000, 3)
    assert e.magnitude == pytest.approx(1.763 / 1.486)


def test_eval_noise_is_the_scatter_around_the_local_trend():
    from losslens.detectors.overfitting import eval_noise

    assert eval_noise(np.array([2.0, 1.8, 1.6, 1.4])) == pytest.approx(0.0, abs=1e-12)
    # a flat series alternating by 0.01: each inner point is 0.01 from its neighbours' mean
    flat = np.array([0.5, 0.51, 0.5, 0.51, 0.5])
    assert eval_noise(flat) == pytest.approx(0.01 * np.sqrt(2 / 1.5))
    assert eval_noise(np.array([1.0, 2.0])) == 0.0


def test_validation_rising_after_the_train_loss_stepped_up_for_good_is_not_overfitting():
    # a spike that never recovered right after the best evaluation (train x1.3 from step 5050
    # on, still falling slowly after it): validation worsens with the run, not from memorising
    train = np.geomspace(3, 2.5, 200)
    steps = np.arange(200) * 50 + 50
    train[steps > 5000] *= 1.3
    val = [2.0, 1.8, 1.6, 1.5, 1.4, 1.48, 1.57, 1.66, 1.76, 1.87]
    assert run(train, val) == []
    (e,) = run(np.geomspace(3, 2.5, 200), val)  # the same validation, train only falling
    assert (e.start_step, e.end_step, e.details["evals_after"]) == (5000, 10000, 5)
