"""A short run that climbs from its first points and never comes back diverges from the start.

Its best level is reached within the first median windows, where the only noise to measure is
the climb itself: that noise neither raises the bar the rise must clear nor widens the band
that places the onset (the first rising point).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslens import read
from losslens.detectors.divergence import DivergenceDetector
from losslens.pipeline import analyze

LOGS = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "logs"


def climb(n: int, seed: int) -> np.ndarray:
    """x30 over n points, steep first (lr too high), 5 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    return np.exp(np.log(30) * np.sqrt(np.arange(n) / (n - 1)) + rng.normal(0, 0.05, n))


@pytest.mark.parametrize("n", [10, 14, 20])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_short_run_climbing_x30_from_its_start_diverges_at_its_second_point(n, seed):
    st = np.arange(1, n + 1) * 10
    found = DivergenceDetector().find(st, climb(n, seed))
    assert [(d["start"], d["end"], d["details"]["recovered"]) for d in found] == [
        (20, n * 10, False)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_short_noisy_flat_and_falling_runs_do_not_diverge(seed):
    rng = np.random.default_rng(seed)
    st = np.arange(1, 11) * 10
    assert DivergenceDetector().find(st, np.exp(rng.normal(0, 0.3, 10))) == []
    assert DivergenceDetector().find(st, 3.0 * np.exp(-np.arange(10) / 3) + 0.5) == []


def test_real_qlora_run_at_a_too_high_lr_diverges_from_its_second_log():
    ra = analyze(read(LOGS / "hf-qlora-lr-divergence")).runs[0]
    assert [(e.kind, e.start_step, e.end_step, e.severity) for e in ra.events] == [
        ("divergence", 20, 100, "critical")]
    assert [(f.severity, f.title) for f in ra.findings][0] == (
        "critical", "Divergence from step 20")
