"""Spikes on series too short for a noise scale (< spike_early.MIN_HEAD points): a point well
above both neighbours (spike_early.BUMP_RATIO, BUMP_Z)."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.spike import SpikeDetector
from losslens.frame import Series


def _val(values, every=3920):
    n = len(values)
    steps = np.arange(1, n + 1, dtype=np.int64) * every - 1
    return Series("r", "val_recon_loss", "val_loss", steps, np.asarray(values, float),
                  np.full(n, np.nan), np.zeros(n, np.int32))


def _spikes(values):
    return [(e.start_step, e.recovery) for e in SpikeDetector().detect(_val(values))
            if e.kind == "spike"]


def test_a_one_eval_validation_bump_of_five_evals_is_a_fast_spike():
    # a Lightning VAE's val_recon_loss (real log): x2.6 at its third of five evaluations
    assert _spikes([1.9995, 1.5487, 4.0257, 1.7656, 1.7556]) == [(11759, "fast")]


def test_a_bump_of_four_evals_is_judged_by_the_ratio_alone():
    # (the other step, 2.0 -> 1.8, is under the bump / BUMP_Z)
    assert _spikes([2.0, 1.8, 2.8, 1.7]) == [(11759, "fast")]
    assert _spikes([2.0, 1.8, 2.6, 1.7]) == []  # x1.44 over the point before: under BUMP_RATIO


def test_the_second_point_waits_for_the_points_after_it():
    # with one point before it, which of the two is odd is told by SIDE_POINTS after it
    # (spike_early._second), not by this rule: a x1.6 at the second of five evals is no spike
    assert _spikes([2.0, 3.2, 2.0, 1.9, 1.85]) == []


@pytest.mark.parametrize("values", [
    [2.0, 1.5, 1.3, 1.25, 1.2, 1.21],  # falling, flat
    [5.0, 1.0, 1.5, 0.9, 0.85],  # a steep first fall: x1.5 over its neighbours, but the
    # fall before it is a step of x5 (BUMP_Z x that is more than the bump)
    [1.0, 1.6, 1.0, 1.7, 0.95, 1.6, 1.0],  # noise that size all along: no point stands out
    [1.0, 0.8, 0.7, 0.75, 0.9, 1.1, 1.3],  # a U (overfitting, not a spike)
    [1.0, 1.0, 1.4, 1.4, 1.45],  # a step up that stays
    [1.0, 2.0, 3.0],  # climbing: the last point is never judged
])
def test_short_curves_without_a_standing_point_stay_quiet(values):
    assert _spikes(values) == []

