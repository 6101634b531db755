"""DivergenceDetector and NonFiniteDetector behaviour on labelled synthetic curves."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.nonfinite import NonFiniteDetector
from losslens.errors import InvalidParameterError
from losslens.frame import Series
from losslens.synthetic import Spike, make_curve


def ser(steps, values, tag: str = "lm loss", role: str = "train_loss") -> Series:
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=float)
    n = steps.shape[0]
    return Series("run", tag, role, steps, values, np.full(n, np.nan), np.zeros(n, np.int32))


def divergences(steps, values, **params):
    return DivergenceDetector(**params).detect(ser(steps, values))


@pytest.mark.parametrize("log_every", [1, 10, 100])
@pytest.mark.parametrize("noise", [0.005, 0.03])
@pytest.mark.parametrize("seed", range(3))
def test_clean_curves_do_not_diverge(seed, noise, log_every):
    steps, values, _ = make_curve(30000, seed=seed, noise=noise, log_every=log_every)
    assert divergences(steps, values) == []


@pytest.mark.parametrize("log_every, start, declared", [(1, 12020, 12681), (10, 12010, 12780),
                                                        (100, 12100, 15200)])
def test_divergence_without_a_spike(log_every, start, declared):
    steps, values, truth = make_curve(20000, seed=3, noise=0.02, log_every=log_every,
                                      diverge_at=12000, diverge_over=1000)
    (event,) = divergences(steps, values)
    assert (event.kind, event.severity, event.peak_step) == ("divergence", "critical", None)
    assert (event.start_step, event.end_step) == (start, 20000)
    d = event.details
    assert d["declared_step"] == declared
    assert d["preceded_by_spike"] is False and d["recovered"] is False
    assert d["best_level"] == pytest.approx(values[steps < 12000].min(), rel=0.1)
    assert event.magnitude > 10  # the loss grew 10x every 1000 steps up to 20x
    assert [t.kind for t in truth] == ["divergence"]


def test_divergence_after_a_spike_starts_where_the_rise_does():
    steps, values, _ = make_curve(20000, seed=3, noise=0.02, log_every=10, diverge_at=12000,
                                  diverge_over=1000, spikes=[Spike(11000, 3.0, "none", 50)])
    (event,) = divergences(steps, values)
    assert event.details["preceded_by_spike"] is True
    assert event.details["spike_step"] == 11000
    assert event.start_step == 12000


def test_nan_that_stays_is_a_divergence_from_the_rise_into_it():
    steps, values, _ = make_curve(20000, seed=3, noise=0.02, log_every=10, diverge_at=12000,
                                  diverge_over=400, nan_at=12500)
    (event,) = divergences(steps, values)
    assert (event.start_step, event.end_step) == (12010, 20000)
    assert event.details["nonfinite"] is True
    assert event.details["first_nonfinite_step"] == 12500


def test_nan_without_a_rise_is_no_divergence():
    # NaN out of a flat stretch: the nonfinite detector reports it; no rise, no divergence
    steps, values, _ = make_curve(20000, seed=4, noise=0.02, log_every=10, nan_at=15000)
    assert divergences(steps, values) == []
    plateau = np.r_[np.geomspace(3.0, 1.0, 300), np.full(200, 1.0), np.full(50, np.nan)]
    assert divergences(np.arange(550) * 10, plateau) == []


def test_isolated_nan_points_are_not_a_divergence():
    steps, values, _ = make_curve(20000, seed=4, noise=0.02, log_every=10)
    values = values.copy()
    values[[500, 501, 900, 1500]] = np.nan
    assert divergences(steps, values) == []
    values[:] = np.nan
    assert divergences(steps, values) == []  # broken from the start: nonfinite says it


@pytest.mark.parametrize("spike", [Spike(8000, 20.0, "slow", 3000), Spike(8000, 6.0, "slow", 3000),
                                   Spike(8000, 2.0, "none", 100), Spike(8000, 20.0, "fast", 100)])
@pytest.mark.parametrize("log_every", [1, 10])
def test_spikes_are_not_divergences(spike, log_every):
    steps, values, _ = make_curve(20000, seed=5, noise=0.02, log_every=log_every,
                                  spikes=[spike])
    assert divergences(steps, values) == []


def test_a_loss_stuck_far_above_its_best_is_a_divergence():
    steps, values, _ = make_curve(20000, seed=5, noise=0.02, log_every=10, spikes=[
        Spike(8000, 8.0, "none", 100, settle=5.0)])
    (event,) = divergences(steps, values)
    assert event.start_step == 8000 and event.details["recovered"] is False
    assert event.magnitude == pytest.approx(5.0, rel=0.1)


def test_a_rise_that_comes_back_is_reported_as_recovered():
    steps, values, _ = make_curve(20000, seed=6, noise=0.02, log_every=10, diverge_at=10000,
                                  diverge_over=1000)
    values = values.copy()
    back = steps >= 11500
    values[back] = values[steps < 10000][-1]  # the loss is suddenly back to its best
    (event,) = divergences(steps, values)
    assert event.details["recovered"] is True
    assert event.start_step == 10020 and 11500 <= event.end_step <= 11600


def test_sign_changing_divergence():
    steps, values, _ = make_curve(20000, seed=7, noise=0.02, log_every=10, negative=True,
                                  diverge_at=15000, diverge_over=1000)
    (event,) = divergences(steps, values)
    assert event.details["space"] == "linear"
    assert 15000 <= event.start_step <= 15100
    steps, values, _ = make_curve(20000, seed=7, noise=0.02, log_every=10, negative=True)
    assert divergences(steps, values) == []


def test_causal_declaration_on_a_prefix():
    steps, values, _ = make_curve(20000, seed=3, noise=0.02, log_every=10, diverge_at=12000,
                                  diverge_over=1000)
    (full,) = divergences(steps, values)
    declared = full.details["declared_step"]
    before = steps <= declared - 10
    assert divergences(steps[before], values[before]) == []
    upto = steps <= declared
    (prefix,) = divergences(steps[upto], values[upto])
    assert prefix.start_step == full.start_step
    assert prefix.details["declared_step"] == declared


@pytest.mark.parametrize("field, value", [("window", 2), ("rise_ratio", 1.0), ("rise_z", 0),
                                          ("min_growth", 0.5), ("stuck_ratio", "4"),
                                          ("sustain_points", 0), ("sustain_steps", -1),
                                          ("nan_points", 0), ("spike_within", -1)])
def test_divergence_invalid_parameters(field, value):
    with pytest.raises(InvalidParameterError, match=f"DivergenceDetector.{field} must be"):
        DivergenceDetector(**{field: value}).detect(ser([1, 2], [1.0, 2.0]))


# -- nonfinite ---------------------------------------------------------------------------

def test_nonfinite_bursts():
    steps = np.arange(1, 5001) * 10
    values = np.full(5000, 2.0)
    values[[100, 101, 150]] = [np.nan, np.inf, -np.inf]  # one burst (within 1000 steps)
    values[3000:] = np.nan  # NaN to the end
    values[3010] = np.inf
    first, last = NonFiniteDetector().detect(ser(steps, values))
    assert (first.start_step, first.end_step, first.severity) == (1010, 1510, "critical")
    # one event, two bursts (1010-1020 and 1510), each listed
    assert first.details == {"count": 3, "points": 3, "source": "value", "nan": 1, "posinf": 1,
                             "neginf": 1, "finite_after": True, "burst_count": 2,
                             "bursts": [[1010, 1020], [1510, 1510]],
                             "role": "train_loss", "overflow_skip": False}
    assert (last.start_step, last.end_step) == (30010, 50000)
    assert last.details["count"] == 2000 and last.details["finite_after"] is False
    assert last.details["posinf"] == 1
    assert (last.details["burst_count"], last.details["bursts"]) == (1, [[30010, 50000]])
    split = NonFiniteDetector(merge_within=100).detect(ser(steps, values))
    assert [(e.start_step, e.end_step) for e in split] == [(1010, 1020), (1510, 1510),
                                                           (30010, 50000)]


def test_nonfinite_lists_at_most_max_bursts():
    from losslens.detectors.nonfinite import MAX_BURSTS

    steps = np.arange(1, 1001)
    values = np.full(1000, 2.0)
    values[::10] = np.nan  # 100 one-point bursts, 10 steps apart: one event
    (e,) = NonFiniteDetector().detect(ser(steps, values))
    assert (e.start_step, e.end_step, e.details["burst_count"]) == (1, 991, 100)
    assert e.details["bursts"] == [[1 + 10 * k, 1 + 10 * k] for k in range(MAX_BURSTS)]


def test_nan_iteration_counters():
    steps = np.arange(1, 201) * 100
    counts = np.zeros(200)
    counts[[50, 51, 120]] = [1, 3, 2]
    det = NonFiniteDetector()
    a, b = det.detect(ser(steps, counts, tag="number of nan iterations", role="skipped"))
    assert (a.start_step, a.end_step, a.details["count"]) == (5100, 5200, 4)
    assert (b.start_step, b.end_step, b.details["count"]) == (12100, 12100, 2)
    assert a.details["source"] == "counter"
    assert a.details["bursts"] == [[5100, 5200]] and b.details["bursts"] == [[12100, 12100]]
    # other counters of the role are not about NaN
    assert det.detect(ser(steps, counts, tag="number of skipped iterations", role="skipped")) == []


def test_nonfinite_invalid_parameter():
    with pytest.raises(InvalidParameterError, match="NonFiniteDetector.merge_within must be"):
        NonFiniteDetector(merge_within=-1).detect(ser([1], [np.nan]))


def test_a_signed_loss_rising_30_noise_scales_is_declared_while_it_rises():
    # a loss around 0 (policy losses) rising 0.9 over its last 800 points, noise 0.03: the
    # rise must clear 6 noise scales of the best level, then grow a quarter of that again
    # (as in log space: x1.1 after x1.5) for a span (declared at 1755 with 12 noise scales)
    rng = np.random.default_rng(5)
    t = np.arange(2000)
    y = 0.03 * rng.standard_normal(2000) + np.where(t >= 1200, 0.9 * (t - 1200) / 800, 0.0)
    (e,) = divergences(t, y)
    assert (e.start_step, e.end_step, e.details["declared_step"]) == (1253, 1999, 1586)
    assert e.details["space"] == "linear"
    # a level shift of half that height (15 noise scales) that stays flat is no divergence
    y2 = 0.03 * rng.standard_normal(2000) + np.where(t >= 1000, 0.45, 0.0)
    assert divergences(t, y2) == []


def test_nan_after_a_plateau_whose_last_point_is_a_blip_is_no_divergence():
    # noise 5 % in log space; the last finite point is 3 of those above the plateau
    rng = np.random.default_rng(7)
    p = np.exp(0.05 * rng.standard_normal(600))
    p[499], p[500:] = np.exp(0.15), np.nan
    assert divergences(np.arange(600) * 10, p) == []


def test_a_blow_up_into_nan_is_a_divergence():
    rng = np.random.default_rng(7)
    rng.standard_normal(600)
    b = np.r_[2.0 * np.exp(0.01 * rng.standard_normal(300)), 9.0, np.full(5, np.nan)]
    (e,) = divergences(np.arange(306), b)
    assert (e.start_step, e.end_step) == (300, 305)
    assert e.details["nonfinite"] is True and e.details["first_nonfinite_step"] == 301


def test_a_17_point_run_rising_x7_over_its_last_8_points_diverges():
    values = np.r_[np.geomspace(8, 5.5, 9), 5.5 * np.geomspace(1.3, 7, 8)]
    (e,) = divergences(np.arange(1, 18) * 10, values)
    # declared at 140: its 3-point median has risen at every point since 100 (a span of 4
    # points; a ramp, no one point made 60 % of the climb) and by more than x1.5
    assert (e.start_step, e.end_step, e.details["declared_step"]) == (100, 170, 140)
    assert e.magnitude == pytest.approx(5.252, abs=1e-3)


def test_a_loud_stretch_that_set_the_best_level_does_not_make_a_quiet_one_diverge():
    # log-normal flicker over a 1e-7 floor: loud (sigma 0.9) for 3000 points, then quiet
    # (0.1) and creeping up x1.12 (under the x1.5 a divergence needs). The loud stretch's
    # trailing medians dipped ~0.6 below its true level: measured against that best, the
    # quiet level "rose" x1.9. The rise must clear the wander where the best was reached too.
    rng = np.random.default_rng(2)
    sigma = np.r_[np.full(3000, 0.9), np.full(3000, 0.1)]
    creep = np.r_[np.zeros(3000), np.linspace(0, np.log(1.12), 3000)]
    v = 1e-7 * np.exp(creep + sigma * rng.standard_normal(6000))
    assert divergences(np.arange(6000), v) == []


def test_a_rise_into_nan_starts_at_its_own_trough_not_at_an_earlier_step_up():
    # the loss settled x1.24 higher at 4900 (a spike that never recovered), sat there, then
    # from 7200 grew exponentially (1 % excess, e-fold per 100 steps) into NaN at 7800. The
    # rise began from the trough before it, not from the run's best level before the step
    rng = np.random.default_rng(4)
    t = np.arange(8700)
    lvl = np.log(4.6) + 0.8 * np.exp(-t / 1500) + np.where(t >= 4900, np.log(1.24), 0.0)
    lvl += np.where(t >= 7200, np.log1p(0.01 * np.exp((t - 7200) / 100.0)).clip(0, 1.0), 0.0)
    v = np.exp(lvl + 0.02 * rng.standard_normal(8700))
    v[7800:] = np.nan
    (e,) = divergences(t, v)
    assert (e.start_step, e.end_step, e.details["first_nonfinite_step"]) == (7500, 8699, 7800)


def test_a_loss_climbing_25_percent_then_nan_diverged():
    # flat at 2.0 (noise 1 %), then up 25 % over 300 points, then NaN to the end: under the
    # x1.5 a finite divergence needs, but a climb into NaN is one (a flat NaN is not: above)
    rng = np.random.default_rng(9)
    t = np.arange(3000)
    lvl = np.log(2.0) + np.where(t >= 2000, np.log(1.25) * (t - 2000) / 300, 0.0)
    v = np.exp(lvl + 0.01 * rng.standard_normal(3000))
    v[2300:] = np.nan
    (e,) = divergences(t, v)
    assert e.details["nonfinite"] is True and e.details["first_nonfinite_step"] == 2300
    assert (e.start_step, e.end_step) == (2046, 2999)


# -- plateau vs rise, level wander, NaN bursts (out-of-family cases) ------------------------

def test_a_noisy_step_up_that_settles_is_no_divergence():
    # per-batch noise (15 %), the loss steps up x3.5 at 335 and sits there: a spike that never
    # recovered, not a rise. The trailing median's climb through the step is not growth.
    rng = np.random.default_rng(1)
    t = np.arange(1000)
    lvl = np.log(1.4 + 3 * np.exp(-t / 80)) + np.where(t >= 335, np.log(3.5), 0.0)
    v = np.exp(lvl + 0.15 * rng.standard_normal(1000))
    assert divergences(t, v) == []
    # the same run rising on after the step (x1.6 over its last 600 points) diverges
    rise = np.where(t >= 400, np.log(1.6) * (t - 400) / 600, 0.0)
    (e,) = divergences(t, np.exp(lvl + rise + 0.15 * rng.standard_normal(1000)))
    assert e.details["recovered"] is False


def test_a_slow_spike_that_sits_high_then_comes_back_is_no_divergence():
    # x7 for 60 logged points (sustained past the span), then back within 1,000 steps
    rng = np.random.default_rng(2)
    t = np.arange(1500) * 10
    bump = np.where((t >= 5800) & (t < 6400), np.log(7.0), 0.0)
    bump += np.where(t >= 6400, np.log(7.0) * np.exp(-(t - 6400) / 250.0), 0.0)
    v = np.exp(np.log(2.3) + bump + 0.1 * rng.standard_normal(1500))
    assert divergences(t, v) == []


def test_a_signed_loss_with_ar1_wander_stepping_up_is_no_divergence():
    # AR(1) noise (phi 0.9): consecutive differences see a third of its spread, and the
    # trailing median wanders by about its whole sigma; a step of 9 sigma that settles is
    # not a divergence, a climb of 25 sigma is
    rng = np.random.default_rng(3)
    n, sigma, phi = 2400, 0.1, 0.9
    z = rng.standard_normal(n)
    ar = np.zeros(n)
    for i in range(1, n):
        ar[i] = phi * ar[i - 1] + np.sqrt(1 - phi * phi) * z[i]
    t = np.arange(n)
    step = np.where(t >= 750, 9 * sigma, 0.0)
    assert divergences(t, step + sigma * ar - 0.05) == []
    climb = np.where(t >= 1600, 25 * sigma * (t - 1600) / 800, 0.0)
    (e,) = divergences(t, sigma * ar + climb - 0.05)
    assert 1500 <= e.start_step <= 1800 and e.details["space"] == "linear"


def test_a_nan_burst_that_training_goes_on_after_is_no_divergence():
    # the loss stepped up x1.2 for good at 3000, then a 3-point NaN burst at 6000 and the
    # run goes on where it was: nonfinite reports the burst; nothing diverged
    rng = np.random.default_rng(4)
    t = np.arange(8000)
    v = np.exp(np.log(3.0) + np.where(t >= 3000, np.log(1.2), 0.0)
               + 0.01 * rng.standard_normal(8000))
    v[6000:6003] = np.nan
    assert divergences(t, v) == []
    # NaN to the end after the same step: the loss sat settled x1.2 up for 3,000 steps (over
    # 4 sustain spans), so no rise into the NaN either
    v[6000:] = np.nan
    assert divergences(t, v) == []


def test_a_rise_after_a_long_settled_step_up_starts_at_its_own_trough():
    # x1.12 step up at 95,000 (logged every 100), flat for 300 points, then a climb x3 from
    # 125,700: the divergence starts at the climb, not at the step
    rng = np.random.default_rng(5)
    t = np.arange(1, 1842) * 100
    lvl = np.log(4.3) + np.where(t >= 95000, np.log(1.12), 0.0)
    lvl += np.where(t >= 125700, np.minimum(np.log(3.0), np.log(3.0) * (t - 125700) / 3000), 0)
    v = np.exp(lvl + 0.005 * rng.standard_normal(t.shape[0]))
    (e,) = divergences(t, v)
    assert 125000 <= e.start_step <= 126000


def test_a_short_run_that_steps_up_and_sits_is_no_divergence():
    # the 17-point run jumping x3 in one point and staying (under stuck_ratio): a step's
    # trailing median climbs for a window; the level must rise a span and half a window on
    values = np.r_[np.geomspace(8, 5.5, 9), np.full(8, 5.5 * 3)]
    values *= np.exp(0.01 * np.sin(np.arange(17)))
    assert divergences(np.arange(1, 18) * 10, values) == []


# -- back to the initial loss, blow-ups over a few logged points, small rises into NaN ----

def _pretraining_with(t, factor, rng, floor=4.1):
    """A pre-training loss from ~11 (the uniform-prediction loss of a 50k vocabulary) down
    to `floor`, times `factor` (log-space noise 0.5 %)."""
    lvl = np.log(floor + (11.0 - floor) * np.exp(-t / 3000.0))
    return np.exp(lvl + np.log(factor) + 0.005 * rng.standard_normal(t.shape[0]))


def test_a_loss_that_climbs_back_to_its_initial_level_and_sits_there_diverged():
    # from 4.1 the loss climbs over five logged points (the largest 54 % of the climb) to
    # 11.1, where it started, and sits there for 4,600 steps: x2.7, under stuck_ratio, but a
    # model back at the loss it started from has lost what it learned (a dead run)
    rng = np.random.default_rng(1)
    t = np.arange(0, 47250, 50)
    ramp = np.exp(np.interp(t, [42400, 42450, 42500, 42550, 42600, 42650],
                            np.log([1, 1.02, 1.1, 1.47, 2.5, 2.72])))
    (e,) = divergences(t, _pretraining_with(t, ramp, rng))
    assert (e.start_step, e.end_step, e.details["declared_step"]) == (42450, 47200, 44100)
    assert e.details["recovered"] is False
    # one logged jump to the same level is a step up for good (the spike detector's "none")
    jump = np.where(t >= 42550, 2.72, 1.0)
    assert divergences(t, _pretraining_with(t, jump, rng)) == []
    # and so is the same climb from a best of 2.0: x2.7 is still far under where it started
    assert divergences(t, _pretraining_with(t, ramp, rng, floor=2.0)) == []


def test_a_blow_up_logged_as_a_few_rising_points_into_nan_diverged():
    # flat at 3.41 (noise 0.2 %, logged every 100), then 9 points climbing exponentially to
    # x1.35 and NaN to the end: too few to move a 21-point median, but each point rose
    rng = np.random.default_rng(2)
    t = np.arange(1, 927) * 100
    v = 3.41 * np.exp(0.002 * rng.standard_normal(926))
    v[697:706] *= [1.005, 1.015, 1.027, 1.041, 1.061, 1.092, 1.141, 1.22, 1.347]
    v[706:] = np.nan
    (e,) = divergences(t, v)
    assert (e.start_step, e.end_step, e.details["first_nonfinite_step"]) == (69900, 92600, 70700)


def test_a_12_percent_rise_into_nan_diverged_but_ar1_wander_into_nan_did_not():
    # a quiet loss (0.4 %) up x1.12 over 1,400 steps, then NaN to the end
    rng = np.random.default_rng(3)
    t = np.arange(1336) * 10
    lvl = np.log(4.75) + np.where(t >= 8200, np.log(1.12) * np.minimum(1, (t - 8200) / 1400), 0)
    v = np.exp(lvl + 0.004 * rng.standard_normal(1336))
    v[965:] = np.nan
    (e,) = divergences(t, v)
    assert (e.start_step, e.details["first_nonfinite_step"]) == (8400, 9650)
    # a plateau with AR(1) noise (phi 0.9, 5 %), logged every 500: the median of its last
    # five points wandered x1.16 over the best, within the level's own wander; then NaN
    rng = np.random.default_rng(9)
    z, ar = rng.standard_normal(130), np.zeros(130)
    for i in range(1, 130):
        ar[i] = 0.9 * ar[i - 1] + np.sqrt(1 - 0.81) * z[i]
    v = 2.8 * np.exp(0.05 * ar)
    v[116:] = np.nan
    assert divergences(np.arange(1, 131) * 500, v) == []


def test_a_signed_loss_climbing_17_noise_scales_over_its_last_900_points_diverges():
    # a policy loss around 0 (Student-t noise, scale 0.15), climbing linearly to 2.6 over
    # its last 900 points: past 6 noise scales for a span while still growing (a step up
    # for good of 6-15 noise scales settles and does not grow: the AR(1) test above); at
    # 12 noise scales it crossed too late to hold a span before the run ended
    rng = np.random.default_rng(12)
    t = np.arange(1900)
    v = 0.15 * rng.standard_t(3, 1900) + np.where(t >= 1000, 2.6 * (t - 1000) / 900, 0.0)
    (e,) = divergences(t, v)
    assert e.details["space"] == "linear" and e.details["recovered"] is False
    assert (e.start_step, e.details["declared_step"]) == (1303, 1628)


def test_nonfinite_consecutive_points_are_one_event_whatever_their_step_gap():
    # a validation loss logged once an epoch (every 2983 steps, far over merge_within) that is
    # NaN from its first evaluation on: one stretch, one event (not one per evaluation)
    steps = np.arange(1, 7) * 2983
    (e,) = NonFiniteDetector().detect(ser(steps, np.full(6, np.nan), tag="valid loss",
                                          role="val_loss"))
    assert (e.start_step, e.end_step, e.details["points"], e.details["finite_after"]) == (
        2983, 17898, 6, False)
    assert e.details["bursts"] == [[2983, 17898]] and e.details["burst_count"] == 1
    # a finite evaluation between two far NaN ones still splits them
    values = np.array([np.nan, np.nan, 2.0, 2.0, np.nan, np.nan])
    a, b = NonFiniteDetector().detect(ser(steps, values, tag="valid loss", role="val_loss"))
    assert [(a.start_step, a.end_step), (b.start_step, b.end_step)] == [(2983, 5966),
                                                                         (14915, 17898)]
    assert (a.details["finite_after"], b.details["finite_after"]) == (True, False)
    # nan-iteration counters above zero on consecutive far-apart lines: one event too
    counts = np.array([0, 2, 1, 0, 0, 3])
    a, b = NonFiniteDetector().detect(ser(steps, counts, tag="number of nan iterations",
                                          role="skipped"))
    assert [(a.start_step, a.end_step, a.details["count"]), (b.start_step, b.end_step)] == [
        (5966, 8949, 3), (17898, 17898)]
