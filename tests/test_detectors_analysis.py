"""losslens.analysis: every detector on every series of the right role, ids, order, folding
spikes into divergences, shared vs isolated spikes across several losses, speed."""
from __future__ import annotations

import time

import numpy as np
import pytest

from losslens.analysis import detect, detect_run
from losslens.detectors import resolve_detectors
from losslens.detectors import DETECTORS
from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.gradspike import GradSpikeDetector
from losslens.detectors.nonfinite import NonFiniteDetector
from losslens.detectors.overflow import OverflowDetector
from losslens.detectors.spike import SpikeDetector
from losslens.errors import InvalidParameterError
from losslens.frame import build
from losslens.records import RecordsBuilder
from losslens.synthetic import Spike, make_curve, make_run

CAUSAL = [SpikeDetector(), DivergenceDetector(), NonFiniteDetector(), GradSpikeDetector(),
          OverflowDetector()]


def rich_run():
    return make_run(30000, seed=3, log_every=10, noise=0.02,
                    spikes=[Spike(6000, 3.0, "fast"), Spike(11000, 2.0, "slow"),
                            Spike(21000, 4.0, "none")],
                    diverge_at=25000, diverge_over=800, nan_at=27000, grad_lag=10,
                    grad_only=[16000], overflows=[100, 101, 102, 8000, 8001])


def test_ids_order_and_kinds():
    run = rich_run()
    events = detect_run(run.frame, run.frame.runs[0], CAUSAL)
    keys = [(e.start_step, e.kind, e.tag) for e in events]
    assert keys == sorted(keys)
    assert len({e.id for e in events}) == len(events)
    per_kind: dict[str, list[str]] = {}
    for e in events:
        per_kind.setdefault(e.kind, []).append(e.id)
    for kind, ids in per_kind.items():
        assert ids == [f"{kind}-{i}" for i in range(1, len(ids) + 1)]
    spikes = [(e.start_step, e.recovery) for e in events if e.kind == "spike"]
    assert spikes == [(6000, "fast"), (11000, "slow"), (21000, "none")]
    (div,) = [e for e in events if e.kind == "divergence"]
    # the loss never came back from the spike at 21000, then rose from 25000 into NaN
    assert (div.start_step, div.end_step) == (24960, 30000)
    assert div.details["preceded_by_spike"] is True and div.details["spike_step"] == 21000
    assert div.details["nonfinite"] is True
    assert div.details["spikes_within"] == 2  # the rise read as spikes, folded in
    grads = [(e.start_step, e.details["loss_followed"]) for e in events if e.kind == "grad_spike"]
    assert grads == [(5990, True), (10990, True), (16000, False), (20990, True)]
    assert [(e.start_step, e.end_step) for e in events if e.kind == "overflow"] == [
        (100, 110), (8000, 8010)]
    assert [(e.tag, e.start_step) for e in events if e.kind == "nonfinite"] == [
        ("grad norm", 27000), ("lm loss", 27000)]


def test_every_registered_detector_runs_by_default():
    run = rich_run()
    events = detect_run(run.frame, run.frame.runs[0])
    assert {e.kind for e in events} >= {"spike", "divergence", "nonfinite", "grad_spike",
                                         "overflow"}
    assert len({e.id for e in events}) == len(events)
    assert [type(d).__name__ for d in resolve_detectors()] == [
        DETECTORS[n].partition(":")[2] for n in DETECTORS]


def test_detectors_by_name_and_unknown_names():
    run = rich_run()
    events = detect_run(run.frame, run.frame.runs[0], ["spike", SpikeDetector(threshold=50)])
    big = [e.start_step for e in events]
    assert big.count(6000) == 2  # both the default and the strict detector find the 3x spike
    with pytest.raises(InvalidParameterError, match="unknown detector 'spikes'"):
        detect_run(run.frame, run.frame.runs[0], ["spikes"])
    by_mapping = detect_run(run.frame, run.frame.runs[0], {"spike": SpikeDetector()})
    assert {e.kind for e in by_mapping} == {"spike"}


def test_analyze_every_run():
    b1, b2 = RecordsBuilder(), RecordsBuilder()
    s1, v1, _ = make_curve(10000, seed=1, log_every=10, spikes=[Spike(5000, 2.0, "fast")])
    s2, v2, _ = make_curve(10000, seed=2, log_every=10)
    b1.add_array("train/loss", s1, v1)
    b2.add_array("train/loss", s2, v2)
    frame = build([b1.build("a", "x", "x"), b2.build("b", "x", "x")])
    result = detect(frame, CAUSAL)
    assert list(result) == ["a", "b"]
    assert [(e.id, e.run, e.start_step) for e in result["a"]] == [("spike-1", "a", 5000)]
    assert result["b"] == []


def per_dataset_frame():
    """Train loss and two validation sets: one spike hits all three, one only `pile`."""
    b = RecordsBuilder()
    s, train, _ = make_curve(20000, seed=4, noise=0.01, log_every=10,
                             spikes=[Spike(8000, 3.0, "fast", 100)])
    b.add_array("lm loss", s, train)
    for name, seed, extra in (("c4", 5, []), ("pile", 6, [Spike(14000, 2.0, "fast", 100)])):
        vs, val, _ = make_curve(20000, seed=seed, noise=0.005, log_every=100,
                                spikes=[Spike(8000, 2.0, "fast", 100), *extra])
        b.add_array(f"validation-{name} lm loss", vs, val)
    return build([b.build("run", "x", "x")])


def test_shared_and_isolated_spikes_across_losses():
    frame = per_dataset_frame()
    assert frame.runs[0].tags_with_role("val_loss") == ["validation-c4 lm loss",
                                                        "validation-pile lm loss"]
    events = detect_run(frame, frame.runs[0], [SpikeDetector()])
    got = [(e.tag, e.start_step, e.details["shared_with"], e.details["isolated"],
            e.details["all_losses"]) for e in events]
    assert got == [
        ("lm loss", 8000, ["validation-c4 lm loss", "validation-pile lm loss"], False, True),
        ("validation-c4 lm loss", 8000, ["lm loss", "validation-pile lm loss"], False, True),
        ("validation-pile lm loss", 8000, ["lm loss", "validation-c4 lm loss"], False, True),
        ("validation-pile lm loss", 14000, [], True, False),
    ]


def test_one_loss_gets_no_shared_marks():
    run = make_run(10000, seed=1, log_every=10, spikes=[Spike(5000, 2.0, "fast")])
    (event,) = detect_run(run.frame, run.frame.runs[0], [SpikeDetector()])
    assert "shared_with" not in event.details and "isolated" not in event.details


def test_four_million_point_run_in_twelve_paces(cpu_pace):
    rng = np.random.default_rng(0)
    n = 1_000_000
    steps = np.arange(1, n + 1)
    loss = np.exp(np.log(2.5) + 0.02 * rng.standard_normal(n))
    loss[[200_000, 600_000]] *= 3
    grad = np.exp(np.log(0.3) + 0.05 * rng.standard_normal(n))
    grad[[199_990, 400_000]] *= 5
    scale = np.full(n, 65536.0)
    scale[500_000:] = 32768.0
    skipped = np.zeros(n)
    skipped[[1000, 500_000]] = 1
    b = RecordsBuilder()
    for tag, v in (("lm loss", loss), ("grad norm", grad), ("loss scale", scale),
                   ("number of skipped iterations", skipped)):
        b.add_array(tag, steps, v)
    records = b.build("big", "x", "x")
    small = build([records])
    detect_run(small, small.runs[0], CAUSAL)  # imports, first calls
    frame = build([records])
    t0 = time.process_time()
    events = detect_run(frame, frame.runs[0], CAUSAL)
    cpu = time.process_time() - t0
    assert [(e.kind, e.start_step) for e in events] == [
        ("overflow", 1001), ("grad_spike", 199991), ("spike", 200001),
        ("grad_spike", 400001), ("overflow", 500001), ("spike", 600001)]
    assert cpu < 12 * cpu_pace  # 2.2-2.4 s = 5.1-5.6 paces measured (pace 0.43 s)
