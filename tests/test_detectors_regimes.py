"""Regime and resume detectors on labelled scenarios: changepoint, grokking, sudden_drop,
rollback, resume_spike, repeat_data (exact expectations, tolerances stated per test)."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.changepoint import ChangepointDetector
from losslens.detectors.overfitting import OverfittingDetector
from losslens.detectors.grokking import GrokkingDetector, SuddenDropDetector
from losslens.detectors.segments import (RepeatDataDetector, ResumeSpikeDetector,
                                         RollbackDetector)
from losslens.errors import InvalidParameterError
from losslens.frame import Series, build
from losslens.records import RecordsBuilder
from losslens.synthetic import scenarios as sc

SEGMENT_DETECTORS = (RollbackDetector(), ResumeSpikeDetector(), RepeatDataDetector())


def run_events(scenario: sc.Scenario, *detectors) -> list:
    frame, out = scenario.frame, []
    for info in frame.runs:
        for det in detectors:
            if det.scope == "run":
                out.extend(det.detect_run(frame, info))
            else:
                for s in info.series:
                    if s.role in det.roles:
                        out.extend(det.detect(frame.series(info.run, s.tag)))
    return out


def loss_series(steps, values, tag: str = "lm loss") -> Series:
    steps = np.asarray(steps, dtype=np.int64)
    n = steps.shape[0]
    return Series("r", tag, "train_loss", steps, np.asarray(values, dtype=float),
                  np.full(n, np.nan), np.zeros(n, np.int32))


def matched(events, scenario, kind):
    tp, fp, fn = sc.score(events, scenario, kind)
    return tp, fp, fn


# --- changepoint ----------------------------------------------------------------------------

@pytest.mark.parametrize("n,iv,noise,seed", [(2000, 10, 0.02, 0), (2000, 10, 0.05, 1),
                                             (20000, 1, 0.005, 2), (500, 50, 0.02, 3),
                                             (300, 100, 0.01, 4), (200_000, 1, 0.02, 5)])
def test_clean_power_law_is_not_chopped(n, iv, noise, seed):
    s = sc.clean_curve(seed, n, iv, noise)
    assert run_events(s, ChangepointDetector()) == []


@pytest.mark.parametrize("t0", [50, 2000])
def test_clean_power_law_with_another_knee_is_not_chopped(t0):
    # the knee of the curve far from where the scenarios put it (1% of the run)
    rng = np.random.default_rng(t0)
    t = np.arange(1, 50_001)
    y = (2 + 9 * (1 + t / t0) ** -0.5) * np.exp(0.01 * rng.standard_normal(t.shape[0]))
    assert ChangepointDetector().detect(loss_series(t, y)) == []


def test_lr_step_drops_are_found_with_level_and_slope():
    s = sc.regime_curve("lr_drop", 1, 2000, 10, 0.02)
    events = run_events(s, ChangepointDetector())
    assert matched(events, s, "changepoint") == (2, 0, 0)  # within 1% of the run (200 steps)
    assert [e.start_step for e in events] == [10050, 15060]
    assert [e.details["pattern"] for e in events] == ["level_drop", "level_drop"]
    # the loss drops 12% then 8%; magnitude is the relative level change at the step
    assert events[0].magnitude == pytest.approx(-0.12, abs=0.03)
    assert events[1].magnitude == pytest.approx(-0.08, abs=0.03)
    for e in events:
        before, after = e.details["before"], e.details["after"]
        assert before["level"] > after["level"] > 2.0
        assert before["slope"] < 0 and after["slope"] < 0  # per 1k steps, still descending
        assert e.severity == "info" and e.details["log_scale"] is True


def test_plateau_start_and_end():
    s = sc.regime_curve("plateau", 1, 2000, 10, 0.02)
    events = run_events(s, ChangepointDetector())
    assert matched(events, s, "changepoint") == (2, 0, 0)  # corners: within 4% (800 steps)
    assert [e.details["pattern"] for e in events] == ["plateau_start", "plateau_end"]
    assert abs(events[0].details["after"]["slope"]) < abs(events[0].details["before"]["slope"]) / 3


@pytest.mark.parametrize("seed,pattern", [(0, "level_drop"), (2, "level_jump")])
def test_level_shift_up_or_down(seed, pattern):
    s = sc.regime_curve("level_shift", seed, 2000, 10, 0.02)
    assert s.params["shift"] == (-0.07 if pattern == "level_drop" else 0.07)
    events = run_events(s, ChangepointDetector())
    assert matched(events, s, "changepoint") == (1, 0, 0)
    assert events[0].details["pattern"] == pattern
    assert abs(events[0].magnitude) == pytest.approx(0.0725, abs=0.02)  # exp(0.07) - 1


def test_one_million_points_one_drop():
    n = 1_000_000
    rng = np.random.default_rng(7)
    t = np.arange(1, n + 1)
    y = sc.power_law(t, n) * np.where(t >= 600_000, 0.9, 1.0) * np.exp(
        0.02 * rng.standard_normal(n))
    (event,) = ChangepointDetector().detect(loss_series(t, y))
    assert abs(event.start_step - 600_000) <= 50  # refined at full resolution
    assert event.details["pattern"] == "level_drop"


def test_steps_come_from_the_input_not_ruptures_indices():
    # irregular steps and a jump at index 150: the event is at steps[150]; ruptures' trailing
    # n_samples sentinel never becomes an event
    rng = np.random.default_rng(3)
    steps = np.cumsum(rng.integers(3, 9, 300)) + 1000
    y = sc.power_law(steps - 1000, 2000) * np.where(np.arange(300) >= 150, 1.1, 1.0)
    y = y * np.exp(0.005 * rng.standard_normal(300))
    (event,) = ChangepointDetector().detect(loss_series(steps, y))
    assert event.start_step == steps[150]
    assert event.start_step != steps[-1]


@pytest.mark.parametrize("pattern", ["lr_drop", "plateau", "level_shift"])
def test_step_offset_shifts_changepoints(pattern):
    det = ChangepointDetector()
    base = run_events(sc.regime_curve(pattern, 1, 2000, 10, 0.02), det)
    moved = run_events(sc.regime_curve(pattern, 1, 2000, 10, 0.02, step_offset=250_000), det)
    assert base and [e.start_step - 250_000 for e in moved] == [e.start_step for e in base]
    assert [e.details["pattern"] for e in moved] == [e.details["pattern"] for e in base]


def test_nan_points_are_ignored_not_reported():
    s = sc.regime_curve("level_shift", 0, 2000, 10, 0.02)
    ser = s.frame.series(s.frame.runs[0].run, "lm loss")
    holed = ser.value.copy()
    holed[::97] = np.nan
    holed[500] = np.inf
    found = ChangepointDetector().detect(loss_series(ser.step, holed))
    assert [e.start_step for e in found] == [e.start_step for e in
                                              ChangepointDetector().detect(ser)]


def test_spikes_do_not_become_regimes():
    rng = np.random.default_rng(11)
    t = np.arange(1, 5001) * 10
    y = sc.power_law(t, 50_000) * np.exp(0.02 * rng.standard_normal(5000))
    y[[1200, 2400, 3600]] *= 3.0  # one-point spikes, the spike detector's business
    assert ChangepointDetector().detect(loss_series(t, y)) == []


# --- grokking -------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", ["loss", "acc"])
@pytest.mark.parametrize("seed", [0, 1])
def test_grokking_found_with_memorisation_and_delay(metric, seed):
    s = sc.grokking_pair("grokking", seed, 400, 50, 0.02, metric)
    events = run_events(s, GrokkingDetector())
    assert matched(events, s, "grokking") == (1, 0, 0)
    (e,) = events
    truth = s.truth[0]
    assert e.tag == ("val/loss" if metric == "loss" else "val/acc")
    assert abs(e.end_step - truth.end_step) <= truth.tolerance
    d = e.details
    assert d["memorized_step"] <= 0.12 * 20_000 < e.start_step  # train saturates in ~6-9%
    assert d["delay_steps"] == e.start_step - d["memorized_step"]
    assert d["train_tag"] == ("train/loss" if metric == "loss" else "train/acc")
    assert e.severity == "info" and e.magnitude > 0.9


@pytest.mark.parametrize("metric", ["loss", "acc"])
def test_overfitting_is_not_grokking(metric):
    s = sc.grokking_pair("overfitting", 2, 400, 50, 0.02, metric)
    assert run_events(s, GrokkingDetector()) == []
    events = run_events(s, OverfittingDetector())
    (e,) = events
    assert (e.kind, e.severity, e.details["metric"]) == (
        "overfitting", "warning", "loss" if metric == "loss" else "accuracy")
    assert matched(events, s, "overfitting") == (1, 0, 0)  # at the validation minimum
    assert e.magnitude >= 1.1  # ends at least 10% worse than its best


@pytest.mark.parametrize("metric", ["loss", "acc"])
def test_clean_pair_gives_nothing(metric):
    s = sc.grokking_pair("clean", 3, 400, 50, 0.02, metric)
    assert run_events(s, GrokkingDetector()) == []


def test_grokking_needs_both_series():
    s = sc.grokking_pair("grokking", 0)
    val = s.frame.series(s.frame.runs[0].run, "val/loss")
    b = RecordsBuilder()
    b.add_array("val/loss", val.step, val.value)
    frame = build([b.build("r", "t", "t")])
    assert GrokkingDetector().detect_run(frame, frame.runs[0]) == []


def test_grokking_cut_before_the_improvement_reads_as_overfitting():
    # the documented false positive: the run stopped while validation was still getting worse
    # (validation worse at each evaluation while train stays memorised is all one can see)
    s = sc.grokking_pair("grokking", 0, 400, 50, 0.02)
    run = s.frame.runs[0].run
    b = RecordsBuilder()
    for tag in ("train/loss", "val/loss"):
        ser = s.frame.series(run, tag)
        keep = ser.step <= 6000
        b.add_array(tag, ser.step[keep], ser.value[keep])
    frame = build([b.build("cut", "t", "t")])
    assert GrokkingDetector().detect_run(frame, frame.runs[0]) == []
    (e,) = OverfittingDetector().detect_run(frame, frame.runs[0])
    assert e.kind == "overfitting" and e.tag == "val/loss"


def test_grokking_step_offset_shifts_the_event():
    a = run_events(sc.grokking_pair("grokking", 1), GrokkingDetector())
    b = run_events(sc.grokking_pair("grokking", 1, step_offset=70_000), GrokkingDetector())
    assert [(e.start_step + 70_000, e.end_step + 70_000, e.details["delay_steps"]) for e in a] \
        == [(e.start_step, e.end_step, e.details["delay_steps"]) for e in b]


# --- sudden drop ----------------------------------------------------------------------------

@pytest.mark.parametrize("lr_drop", [False, True])
@pytest.mark.parametrize("n,iv,noise,seed", [(2000, 10, 0.02, 0), (20000, 1, 0.05, 1),
                                             (300, 100, 0.01, 2)])
def test_sudden_drop_after_a_slow_stretch(lr_drop, n, iv, noise, seed):
    s = sc.sudden_drop_curve(seed, n, iv, noise, lr_drop)
    events = run_events(s, SuddenDropDetector())
    assert matched(events, s, "sudden_drop") == (1, 0, 0)  # within 1% of the run
    (e,) = events
    assert e.details["lr_drop"] is lr_drop
    assert e.end_step - e.start_step <= 0.03 * n * iv
    assert 0.1 < e.details["drop"] == e.magnitude < 0.25  # injected 12-20%
    assert e.details["slow_since"] < e.start_step


def test_no_sudden_drop_on_clean_curves_or_the_first_descent():
    for seed, (n, iv, noise) in enumerate([(2000, 10, 0.02), (20000, 1, 0.05),
                                           (500, 50, 0.01)]):
        assert run_events(sc.clean_curve(seed, n, iv, noise), SuddenDropDetector()) == []
    # an initial plateau at ln(vocab), then the first descent: not a grokking moment
    rng = np.random.default_rng(0)
    t = np.arange(1, 2001) * 10
    y = np.where(t < 2000, 10.8, 2 + 8.8 * (1 + np.maximum(t - 2000, 0) / 200.0) ** -0.5)
    y = y * np.exp(0.01 * rng.standard_normal(2000))
    assert SuddenDropDetector().detect(loss_series(t, y)) == []


def test_spike_recovery_is_not_a_sudden_drop():
    rng = np.random.default_rng(5)
    t = np.arange(1, 2001) * 10
    y = sc.power_law(t, 20_000) * np.where((t >= 9000) & (t < 12_000), 1.4, 1.0)
    y = y * np.exp(0.01 * rng.standard_normal(2000))
    assert SuddenDropDetector().detect(loss_series(t, y)) == []


# --- rollback / resume spike / repeat data --------------------------------------------------

def test_clean_resume_is_a_rollback_only():
    s = sc.resumed_run("clean_resume", 0)
    events = run_events(s, *SEGMENT_DETECTORS)
    assert [e.kind for e in events] == ["rollback"]
    (e,) = events
    seg = s.frame.runs[0].segments[1]
    assert (e.start_step, e.details["from_step"]) == (seg.first_step, seg.previous_last_step)
    assert e.details["replayed_steps"] == seg.previous_last_step - seg.first_step + 1
    assert (e.severity, e.tag, e.details["segment"], e.details["reason"]) == (
        "info", "lm loss", 1, "header")
    assert e.details["times_trained"] == 2 and e.details["from_scratch"] is False


def test_resume_without_overlap_is_nothing():
    s = sc.resumed_run("continue", 0)
    assert len(s.frame.runs[0].segments) == 2
    assert run_events(s, *SEGMENT_DETECTORS) == []


def test_steps_trained_three_times_make_a_warning():
    b = RecordsBuilder()
    order = 0
    for first, last in ((10, 1000), (510, 1200), (310, 2000)):  # 510-1000 trained 3 times
        steps = np.arange(first, last + 1, 10)
        b.add_array("lm loss", steps, np.full(steps.shape[0], 2.0),
                    orders=order + np.arange(steps.shape[0]))
        order += steps.shape[0] + 1
    frame = build([b.build("r", "t", "t")])
    events = RollbackDetector().detect_run(frame, frame.runs[0])
    assert [(e.start_step, e.details["from_step"], e.details["times_trained"], e.severity)
            for e in events] == [(310, 1200, 3, "warning"), (510, 1000, 2, "info")]


def test_rollback_is_causal():
    s = sc.resumed_run("spike_every_resume", 1)
    info = s.frame.runs[0]
    full = RollbackDetector().detect_run(s.frame, info)
    assert len(full) == 3
    raw = s.frame.series(info.run, "lm loss", raw=True)
    for cut in (len(raw) // 3, len(raw) // 2, len(raw) - 1):
        b = RecordsBuilder()
        b.add_array("lm loss", raw.step[:cut], raw.value[:cut], orders=np.arange(cut) * 2)
        prefix = build([b.build(info.run, "t", "t")])
        seen = RollbackDetector().detect_run(prefix, prefix.runs[0])
        last = int(raw.step[cut - 1])
        expect = [(e.start_step, e.details["from_step"]) for e in full
                  if e.details["segment"] < len(prefix.runs[0].segments)]
        assert [(e.start_step, e.details["from_step"]) for e in seen] == expect
        assert all(e.start_step <= last for e in seen)


def test_resume_spike():
    s = sc.resumed_run("resume_spike", 0)
    events = run_events(s, ResumeSpikeDetector())
    assert matched(events, s, "resume_spike") == (1, 0, 0)
    (e,) = events
    seg = s.frame.runs[0].segments[1]
    assert (e.start_step, e.details["segment"], e.details["every_resume"], e.severity) == (
        seg.first_step, 1, False, "warning")
    assert e.start_step <= e.peak_step <= e.end_step <= e.start_step + 100
    assert e.magnitude == pytest.approx(1.5, abs=0.15)  # peak / loss before, injected +50%


def test_spike_at_every_resume():
    s = sc.resumed_run("spike_every_resume", 2)
    events = run_events(s, ResumeSpikeDetector())
    assert matched(events, s, "resume_spike") == (3, 0, 0)
    assert [e.details["every_resume"] for e in events] == [True, True, True]
    assert [e.details["segment"] for e in events] == [1, 2, 3]


@pytest.mark.parametrize("pattern", ["clean_resume", "rollback_plain", "rollback_repeat",
                                     "continue"])
def test_no_resume_spike_without_one(pattern):
    assert run_events(sc.resumed_run(pattern, 4), ResumeSpikeDetector()) == []


def test_repeat_data_after_a_rollback():
    s = sc.resumed_run("rollback_repeat", 1)
    events = run_events(s, RepeatDataDetector())
    assert matched(events, s, "repeat_data") == (1, 0, 0)
    (e,) = events
    seg = s.frame.runs[0].segments[1]
    assert (e.start_step, e.end_step) == (seg.first_step, seg.previous_last_step + 10)
    assert e.details["mean_gap"] == pytest.approx(np.expm1(-0.06), abs=0.01)
    assert e.details["jump"] == pytest.approx(np.expm1(0.06), abs=0.03)
    assert e.details["from_step"] == seg.previous_last_step and e.severity == "warning"


@pytest.mark.parametrize("pattern", ["clean_resume", "rollback_plain", "resume_spike",
                                     "continue"])
def test_no_repeat_data_without_replayed_data(pattern):
    assert run_events(sc.resumed_run(pattern, 5), RepeatDataDetector()) == []


@pytest.mark.parametrize("pattern", ["rollback_repeat", "spike_every_resume"])
def test_step_offset_shifts_resume_events(pattern):
    def key(events, off):
        return [(e.kind, e.start_step - off, None if e.end_step is None else e.end_step - off)
                for e in events]

    a = run_events(sc.resumed_run(pattern, 3), *SEGMENT_DETECTORS)
    b = run_events(sc.resumed_run(pattern, 3, step_offset=123_456), *SEGMENT_DETECTORS)
    assert a and key(a, 0) == key(b, 123_456)


@pytest.mark.parametrize("iv,noise", [(1, 0.05), (10, 0.02), (50, 0.005)])
@pytest.mark.parametrize("pattern", sc.RESUME_PATTERNS)
def test_resume_scenarios_exactly(pattern, iv, noise):
    s = sc.resumed_run(pattern, 6, 1000 if iv == 50 else 3000, iv, noise)
    events = run_events(s, *SEGMENT_DETECTORS)
    for kind in ("rollback", "resume_spike", "repeat_data"):
        n_true = sum(t.kind == kind for t in s.truth)
        assert matched(events, s, kind) == (n_true, 0, 0), kind


# --- scenarios ------------------------------------------------------------------------------

def test_scenarios_are_deterministic_and_segmented():
    a, b = sc.resumed_run("rollback_repeat", 9), sc.resumed_run("rollback_repeat", 9)
    assert a.frame.data.equals(b.frame.data) and a.truth == b.truth
    (first, second) = a.frame.runs[0].segments
    assert (first.reason, second.reason) == ("start", "header")
    assert second.first_step <= second.previous_last_step  # overlap: a rollback
    assert {s.tag: s.role for s in a.frame.runs[0].series} == {"lm loss": "train_loss",
                                                                "lr": "lr"}


# --- parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("det,message", [
    (ChangepointDetector(penalty=0), "ChangepointDetector.penalty = 0 is out of range; "
                                     "allowed: > 0"),
    (ChangepointDetector(skip_start=1.0), "ChangepointDetector.skip_start = 1.0 is out of "
                                          "range; allowed: [0, 1)"),
    (GrokkingDetector(saturation=1.2), "GrokkingDetector.saturation = 1.2 is out of range; "
                                       "allowed: [0.5, 1)"),
    (SuddenDropDetector(rate_ratio=0.5), "SuddenDropDetector.rate_ratio = 0.5 is out of "
                                         "range; allowed: >= 1"),
    (RollbackDetector(warn_times=1), "RollbackDetector.warn_times = 1 is out of range; "
                                     "allowed: >= 2"),
    (ResumeSpikeDetector(window=0), "ResumeSpikeDetector.window = 0 is out of range; "
                                    "allowed: >= 1"),
    (RepeatDataDetector(min_below=0.2), "RepeatDataDetector.min_below = 0.2 is out of range; "
                                        "allowed: [0.5, 1]"),
])
def test_bad_parameters_name_the_field(det, message):
    s = sc.resumed_run("rollback_repeat", 0)
    with pytest.raises(InvalidParameterError) as err:
        if det.scope == "run":
            det.detect_run(s.frame, s.frame.runs[0])
        else:
            det.detect(s.frame.series(s.frame.runs[0].run, "lm loss"))
    assert str(err.value) == message
