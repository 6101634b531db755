"""The divergence detector on a loss on a floor decades under its start with slingshot-like
collapses (losslens/detectors/divergence_floor.py `floor_episode`), with its own generator (not
losslens.synthetic): a grokking run's train loss at 1e-5 that jumps to 0.2-5 every so often
and decays back to ~1e-3 within a few dozen points (then slowly further) keeps its trailing
median far over its best for the rest of the run, but it is near 0 against its 4.6 start:
those are spikes. A jump back to ~1.5 that stays, or a climb from the floor band back to
0.5 that goes on to the end, is a divergence, starting at the jump or at the climb. Real logs
(benchmarks/real `history-grok-thilak-slingshots`, `csv-grok-depth2-adamw-slingshots-then-
collapse`) pinned at the end; skipped without the cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslens.detectors.divergence import DivergenceDetector

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache"
SEEDS = range(12)
N, EVERY = 500, 100


def slingshot_run(seed: int, after: str = "none") -> np.ndarray:
    """4.6 falling log-linearly to 1e-5 by point 100, then 6-10 slingshots at points 130-380:
    a jump to U(0.2, 5) decaying with a time constant of 2-5 points to ~1e-3, then slowly
    (60 points) back toward the floor; log-normal noise 0.1. `after`: "jump" from point 420
    a band of 1-2.5 to the end (a jump that stays); "climb" from point 400 a log-linear
    climb from the band it is in to 0.5 at the end."""
    rng = np.random.default_rng(seed)
    t = np.arange(N, dtype=float)
    y = np.where(t < 100, np.exp(np.log(4.6) + (np.log(1e-5) - np.log(4.6)) * t / 100), 1e-5)
    for t0 in np.sort(rng.choice(np.arange(130, 381), rng.integers(6, 11), replace=False)):
        d = t - t0
        peak, tau = rng.uniform(0.2, 5.0), rng.uniform(2, 5)
        y += np.where(d >= 0, peak * np.exp(-d / tau) + 1e-3 * np.exp(-d / 60), 0.0)
    if after == "jump":
        y[420:] = rng.uniform(1.0, 2.5, N - 420)
    elif after == "climb":
        y[400:] = np.exp(np.linspace(np.log(y[400]), np.log(0.5), N - 400))
    return y * np.exp(rng.normal(0, 0.1, N))


def found(values: np.ndarray) -> list[dict]:
    return DivergenceDetector().find((np.arange(N) + 1) * EVERY, values)


def test_slingshots_off_a_floor_that_come_back_near_0_are_no_divergence():
    assert [s for s in SEEDS if found(slingshot_run(s))] == []


def test_a_jump_back_to_the_start_that_stays_after_slingshots_diverges_at_the_jump():
    for s in SEEDS:
        (d,) = found(slingshot_run(s, "jump"))
        assert d["start"] == 421 * EVERY and not d["details"]["recovered"], s


def test_a_climb_from_the_floor_band_after_slingshots_diverges_from_the_climb():
    for s in SEEDS:
        (d,) = found(slingshot_run(s, "climb"))
        assert 400 * EVERY <= d["start"] <= 440 * EVERY and not d["details"]["recovered"], s


@pytest.mark.parametrize("name,start", [("history-grok-thilak-slingshots", (38700, 38900)),
                                        ("csv-grok-depth2-adamw-slingshots-then-collapse",
                                         (45400, 45600))])
def test_real_grokking_slingshots_then_divergence(name, start):
    path = CACHE / name
    if not path.is_dir():
        pytest.skip("benchmarks/real/cache not filled (benchmarks/real/fetch.py)")
    from losslens import read
    frame = read(path)
    run = frame.runs[0]
    events = DivergenceDetector().detect(frame.series(run.run, "train_loss"))
    assert [start[0] <= e.start_step <= start[1] for e in events] == [True]


def test_streaming_agrees_with_batch_over_slingshots_then_a_jump():
    from stream_check import streamed_equals_batch

    values = slingshot_run(0, "jump")
    got = streamed_equals_batch((np.arange(N) + 1) * EVERY, values, seed=3, sizes=(1, 9, 40),
                                share=0.1)
    assert [(k, s) for k, s, _, _ in got if k == "divergence"] == [("divergence", 421 * EVERY)]
