"""Short runs (smoke tests, short fine-tunes): divergence within the first hundred points."""
from __future__ import annotations

import numpy as np

from losslens.detectors.divergence import DivergenceDetector
from losslens.frame import Series


def _series(values):
    steps = np.arange(1, len(values) + 1)
    n = len(values)
    return Series("r", "lm loss", "train_loss", steps, np.asarray(values, float),
                  np.full(n, np.nan), np.zeros(n, np.int32))


def test_a_62_iteration_run_that_rises_for_30_iterations_diverges():
    # blow-up at 3, slow way back down to a minimum at 31, then a steady rise (x2.1)
    down = np.linspace(48.0, 11.7, 29)
    up = np.linspace(11.7, 25.0, 31)
    values = np.r_[12.4, 12.4, down, up]
    (event,) = DivergenceDetector().detect(_series(values))
    assert event.kind == "divergence" and event.end_step == 62
    assert 31 <= event.start_step <= 40 and event.severity == "critical"


def test_a_short_run_that_settles_is_not_a_divergence():
    rng = np.random.default_rng(0)
    values = 3.0 + 8.0 * (1 + np.arange(62) / 3.0) ** -0.8 + rng.normal(0, 0.02, 62)
    assert DivergenceDetector().detect(_series(values)) == []


def test_a_jump_that_settles_higher_is_a_spike_not_a_divergence():
    # 301 points logged every 10 steps (short for a 500-step sustain span): +2.0 at 2410
    rng = np.random.default_rng(1)
    steps = np.arange(0, 3001, 10)
    values = (2.2 + 8.8 * (1 + steps / 60.0) ** -0.55) * np.exp(rng.normal(0, 0.01, 301))
    values[steps >= 2410] += 2.0
    n = steps.shape[0]
    s = Series("r", "loss", "train_loss", steps, values, np.full(n, np.nan), np.zeros(n, np.int32))
    assert DivergenceDetector().detect(s) == []


def test_resume_spike_of_absurd_size_is_inf_not_a_crash():
    # a damaged log: 1e-300 losses before the interruption, 1e300 right after the resume
    from losslens.detectors.segments import ResumeSpikeDetector
    from losslens.frame import build
    from losslens.records import RecordsBuilder

    b = RecordsBuilder()
    for i in range(1, 200):
        b.add("loss", i, 1e-300, order=i)
    b.header(500)
    for i in range(150, 260):
        b.add("loss", i, 1e300 if i < 153 else 1e-300, order=600 + i)
    frame = build([b.build("r", "x", "x")])
    (event,) = ResumeSpikeDetector().detect_run(frame, frame.runs[0])
    assert event.kind == "resume_spike" and event.magnitude == float("inf")
    assert event.to_dict()["magnitude"] == "inf"
