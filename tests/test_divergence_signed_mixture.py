"""The divergence detector on signed losses whose trailing median is the median of a mixture
(losslens/detectors/divergence.py `spread_error`), with its own generator (not
losslens.synthetic): an RL policy loss (GRPO/PPO-like) logs ~0 at the steps where every sampled
completion got the same reward (zero advantage) and a negative value at the others; as the
policy improves, more steps log ~0 and the median climbs from negative back through 0 without
anything going wrong. A signed loss that truly climbs (a Gaussian NLL drifting up by many
noise scales, a policy loss whose magnitude blows up) is still a divergence. The real log
(benchmarks/real `hf-trainer-grpo-adq-signed`, labelled clean) is pinned at the end; skipped
without the cache.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslens.detectors.divergence import DivergenceDetector

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache"
SEEDS = range(30)


def policy_loss(seed: int, n: int = 200, blow_up: bool = False) -> np.ndarray:
    """A mixture: with probability p (0.2 -> 0.9 over the run, as rewards saturate) a KL
    term (0.002 -> 0.02, growing as the policy moves off its reference), else that less
    U(0.03, 0.15) x (1 - t) (the advantage part, shrinking as fewer groups disagree);
    One batch of generations serves 1-4 consecutive steps (near-equal losses: consecutive
    differences are calm while the median moves with the mixture's share).
    `blow_up`: from 70 % of the run every step logs a positive loss growing x1.08 a step."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / n
    zero = rng.random(n) < 0.2 + 0.7 * t
    kl = (0.002 + 0.018 * t) * rng.uniform(0.5, 1.5, n)
    y = np.where(zero, kl, kl - rng.uniform(0.03, 0.15, n) * (1.05 - t))
    # one batch of generations serves 1-4 consecutive optimiser steps (TRL's
    # steps_per_generation / num_iterations): their losses are near-equal
    src = np.repeat(np.arange(n), rng.integers(1, 5, n))[:n]
    y = y[src] * (1 + 0.02 * rng.standard_normal(n))
    if blow_up:
        k = int(0.7 * n)
        y[k:] = rng.uniform(0.05, 0.15, n - k) * 1.08 ** np.arange(n - k)
    return y


def gaussian_nll(seed: int, n: int = 400, climb_z: float = 0.0) -> np.ndarray:
    """A signed loss (Gaussian NLL: 1.0 -> -2.0, noise 0.05) that from 60 % of the run climbs
    linearly by `climb_z` noise scales to its end."""
    rng = np.random.default_rng(1000 + seed)
    t = np.arange(n)
    y = -2.0 + 3.0 * np.exp(-t / 40) + 0.05 * rng.standard_normal(n)
    k = int(0.6 * n)
    y[k:] += climb_z * 0.05 * (t[k:] - k) / (n - k)
    return y


def found(values: np.ndarray) -> list[dict]:
    steps = np.arange(1, values.shape[0] + 1)
    return DivergenceDetector().find(steps, values)


def test_policy_loss_mixture_climbing_back_through_zero_is_no_divergence():
    assert [s for s in SEEDS if found(policy_loss(s))] == []


def test_policy_loss_that_blows_up_is_a_divergence():
    hits = [found(policy_loss(s, blow_up=True)) for s in SEEDS]
    assert all(len(h) == 1 and not h[0]["details"]["recovered"] for h in hits)
    # declared once the blow-up is under way (its start is the last point near the best
    # level, which the clean climb of the mixture can put earlier)
    assert all(140 < h[0]["details"]["declared_step"] <= 190 and h[0]["start"] <= 170
               for h in hits)


def test_signed_nll_climbing_40_noise_scales_is_a_divergence_and_flat_is_not():
    assert [s for s in SEEDS if found(gaussian_nll(s))] == []
    hits = [found(gaussian_nll(s, climb_z=40.0)) for s in SEEDS]
    assert all(len(h) == 1 and 240 <= h[0]["start"] <= 330 for h in hits)


def test_real_grpo_policy_loss_is_no_divergence():
    path = CACHE / "hf-trainer-grpo-adq-signed"
    if not path.is_dir():
        pytest.skip("benchmarks/real/cache not filled (benchmarks/real/fetch.py)")
    from losslens import read
    frame = read(path)
    run = frame.runs[0]
    series = frame.series(run.run, "loss")
    assert DivergenceDetector().detect(series) == []


def test_streaming_agrees_with_batch_on_a_policy_loss():
    from stream_check import streamed_equals_batch

    values = policy_loss(0, blow_up=True)
    got = streamed_equals_batch(np.arange(1, values.shape[0] + 1), values, seed=4,
                                sizes=(1, 5, 20), share=0.3)
    assert [k for k, *_ in got].count("divergence") == 1
