"""Lone outliers that the noise keeps making are not spikes (spike_stats.outdone).

A per-batch loss with hard batches throws lone points x1.5-x5 over its level every few steps;
each one that doubled used to be a spike (DOUBLED), and a real per-step HF log had 52 such
info spikes in its first 345 steps. Where lone outliers are common, a lone point is a spike
only when it outdoes the ones seen before by LONE_MARGIN; rare lone spikes of the same height
on a quiet loss are all still spikes, and a real one-step spike far over the outliers stays.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from losslens import read
from losslens.analysis import detect_run
from losslens.detectors.stream import LiveRun
from losslens.frame import build
from losslens.pipeline import analyze
from losslens.records import RecordsBuilder

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache"


def hard_batches(seed: int, n: int = 1500, spike: int | None = 1200):
    """A loss falling 6.1 -> 0.15 with 5 % log-normal noise; 3 % of the points (hard batches)
    x1.5-x2.5; a x9 one-point spike at `spike`."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1)
    loss = (6.0 * np.exp(-t / 80.0) + 0.15) * np.exp(0.05 * rng.standard_normal(n))
    hard = rng.random(n) < 0.03
    loss[hard] *= rng.uniform(1.5, 2.5, int(hard.sum()))
    if spike:
        loss[spike - 1] *= 9.0
    b = RecordsBuilder()
    b.add_array("loss", t, loss, orders=np.arange(n))
    return b.build("r", "test", "test")


def spikes(frame):
    return [e.start_step for e in analyze(frame).runs[0].events if e.kind == "spike"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_common_lone_outliers_are_not_spikes_a_far_taller_one_is(seed):
    # (main before this rule: 36-41 spikes after step 100 on each seed)
    found = spikes(build([hard_batches(seed)]))
    assert [s for s in found if s > 100] == [1200]
    assert len(found) <= 4  # the first outliers, before any have been seen, may be spikes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rare_lone_spikes_of_one_height_on_a_quiet_loss_all_count(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    t = np.arange(1, n + 1)
    loss = (2.0 * np.exp(-t / 300) + 1.0) * np.exp(0.02 * rng.standard_normal(n))
    at = [800, 950, 1100, 1250, 1400]
    for p in at:
        loss[p - 1] *= 3.0
    b = RecordsBuilder()
    b.add_array("loss", t, loss, orders=np.arange(n))
    assert spikes(build([b.build("r", "test", "test")])) == at


def test_streaming_equals_batch_on_common_lone_outliers():
    rec = hard_batches(0, n=1400, spike=1200)
    rnd = random.Random(7)
    live = LiveRun("r", detectors=("spike",), source="test", format="test")
    lo = 0
    while lo < 1400:
        hi = min(1400, lo + rnd.choice([1, 13, 90, 400]))
        keep = (rec.order >= lo) & (rec.order < hi)
        b = RecordsBuilder()
        b.add_array("loss", rec.step[keep], rec.value[keep], orders=rec.order[keep])
        live.feed(b.build("r", "test", "test"))
        lo = hi
        got = [(e.start_step, e.end_step, e.recovery) for e in live.detect()]
        part = RecordsBuilder()
        k = rec.order < hi
        part.add_array("loss", rec.step[k], rec.value[k], orders=rec.order[k])
        frame = build([part.build("r", "test", "test")])
        want = [(e.start_step, e.end_step, e.recovery)
                for e in detect_run(frame, frame.runs[0], ("spike",))]
        assert got == want, f"after {hi}"


@pytest.mark.skipif(not (CACHE / "hf-llm-project-onestep-spike").exists(),
                    reason="benchmarks/real/cache not fetched")
def test_real_per_step_hf_loss_steep_descent_keeps_few_spikes():
    found = spikes(read(CACHE / "hf-llm-project-onestep-spike"))
    # main before: 52 info spikes in steps 7-344; now the first lone outliers, before the
    # noise has shown many, and the 2-5 point excursions (judged as before)
    assert [s for s in found if s < 345] == [7, 11, 18, 27, 64, 79, 157, 161, 173, 180,
                                             258, 329]
    assert [s for s in found if s >= 345] == [1122]
