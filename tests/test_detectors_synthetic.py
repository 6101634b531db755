"""losslens.synthetic.curves: the labelled curves the detector tests and benchmark rest on."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.synthetic import TAGS, Spike, make_curve, make_frame, make_run


def test_seeded_and_logged_every_n_steps():
    a = make_curve(1000, seed=1, log_every=10)
    b = make_curve(1000, seed=1, log_every=10)
    c = make_curve(1000, seed=2, log_every=10)
    np.testing.assert_array_equal(a[0], np.arange(10, 1001, 10))
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_decades_warmup_noise_and_rounding():
    steps, values, _ = make_curve(20000, seed=0, noise=0.0, decades=2.0, start=10.0,
                                  warmup=400, rounding=None)
    shape = 0.7 * np.exp(-1 / 400) + 0.3 * (1 - 1 / 20001) ** 1.5  # at step 1
    assert values[0] == pytest.approx(10 * 10 ** (-2 * (1 - shape)), rel=1e-9)
    assert values[-1] == pytest.approx(0.1, rel=1e-3)
    assert np.all(np.diff(values) < 0)  # noiseless: a pure descent
    _, rounded, _ = make_curve(20000, seed=0, noise=0.01, decades=2.0, rounding=3)
    np.testing.assert_array_equal(rounded, np.round(rounded, 3))


def test_spikes_are_snapped_and_labelled():
    steps, values, truth = make_curve(10000, seed=0, noise=0.0, log_every=100, spikes=[
        Spike(3050, 4.0, "fast", 150), Spike(6000, 2.0, "slow", 1000)])
    fast, slow = truth
    assert (fast.start_step, fast.peak_step, fast.end_step, fast.recovery) == (
        3100, 3100, 3300, "fast")  # 1/3 of the excess left at 3200
    assert values[steps == 3100][0] / values[steps == 3000][0] == pytest.approx(4.0, rel=0.01)
    assert (slow.start_step, slow.recovery) == (6000, "slow")
    assert 6900 <= slow.end_step <= 7000  # back at its pre-spike level: the curve descends too
    assert fast.details["injected"] == "fast" and fast.magnitude == 4.0


def test_a_settled_spike_that_the_descent_brings_back_is_slow():
    # settles 20 % higher, but the curve loses 2 decades: it gets back to the old level
    _, _, (spike,) = make_curve(40000, seed=0, noise=0.0, decades=2.0, log_every=10,
                                spikes=[Spike(8000, 3.0, "none", 100, settle=1.2)])
    assert spike.recovery == "slow" and spike.details["injected"] == "none"
    _, _, (kept,) = make_curve(40000, seed=0, noise=0.0, decades=0.05, log_every=10,
                               spikes=[Spike(8000, 3.0, "none", 100, settle=1.2)])
    assert (kept.recovery, kept.end_step) == ("none", None)


def test_divergence_and_nan_truth():
    steps, values, truth = make_curve(10000, seed=0, log_every=10, diverge_at=5000,
                                      diverge_over=1000, nan_at=8000)
    assert [(t.kind, t.start_step, t.end_step) for t in truth] == [
        ("divergence", 5000, 10000), ("nonfinite", 8000, 10000)]
    assert np.isfinite(values[steps < 8000]).all() and not np.isfinite(values[steps >= 8000]).any()
    assert np.isinf(values[steps >= 8000]).any()
    _, _, only_nan = make_curve(10000, seed=0, log_every=10, nan_at=8000)
    assert [(t.kind, t.start_step) for t in only_nan] == [("nonfinite", 8000)]


def test_sign_changing_curves():
    _, values, (spike,) = make_curve(10000, seed=0, noise=0.01, negative=True,
                                     spikes=[Spike(5000, 1.5, "fast", 50)])
    assert values.min() < 0 < values.max()
    assert spike.magnitude == 1.5


def test_make_run_tags_roles_and_truth():
    run = make_run(20000, seed=2, log_every=10, grad_lag=20, grad_only=[12000],
                   overflows=[3000, 3010], val_every=500, spikes=[Spike(5000, 3.0, "fast")])
    info = run.frame.runs[0]
    assert info.roles == {TAGS["loss"]: "train_loss", TAGS["grad"]: "grad_norm",
                          TAGS["scale"]: "loss_scale", TAGS["skipped"]: "skipped",
                          TAGS["val"]: "val_loss"}
    assert [s.points for s in info.series] == [2000, 2000, 2000, 2000, 40]
    kinds = [(t.kind, t.start_step) for t in run.truth]
    assert kinds == [("overflow", 3000), ("grad_spike", 4980), ("spike", 5000),
                     ("grad_spike", 12000)]
    scale = run.frame.series(info.run, TAGS["scale"])
    # 2^16, doubled every 1000 clean steps, halved at each overflow
    assert scale.value[0] == 65536.0 and scale.value[scale.step == 3010][0] == 2.0 ** 17
    skipped = run.frame.series(info.run, TAGS["skipped"])
    assert skipped.value.sum() == 2
    assert len(make_frame(1000, seed=1)) == 2000  # loss and grad norm, 1000 steps each
