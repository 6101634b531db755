"""Sudden train-loss drops where a new epoch begins are the multi-epoch staircase, not grokking.

A fine-tune that sees its data again steps down at each epoch boundary; the run's `epoch`
series says where those are. A drop away from any boundary, or in a run without an epoch
series, is still the "grokking moment".
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from losslens import read
from losslens.frame import build
from losslens.pipeline import analyze
from losslens.records import RecordsBuilder

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache"


def stair(epoch_every: int | None, drop_every: int = 1000, n: int = 3000):
    """Slow descent with x0.7 steps every `drop_every` steps; an `epoch` series with a new
    epoch every `epoch_every` steps (None: no epoch series)."""
    rng = np.random.default_rng(0)
    t = np.arange(1, n + 1)
    k = (t - 1) // drop_every
    level = np.array([1.0, 0.7, 0.5, 0.38])[k] * (1 - 0.03 * ((t - 1) % drop_every) / drop_every)
    loss = (level + 1.5 * np.exp(-t / 60.0)) * np.exp(rng.normal(0, 0.01, n))
    b = RecordsBuilder()
    b.add_array("loss", t, loss, orders=np.arange(n))
    if epoch_every:
        b.add_array("epoch", t, np.round(t / epoch_every, 4), orders=np.arange(n))
    return build([b.build("r", "test", "test")])


def drops_and_findings(frame):
    ra = analyze(frame).runs[0]
    return ([(e.start_step, e.end_step, e.details["epoch_boundary"]) for e in ra.events
             if e.kind == "sudden_drop"], [(f.severity, f.title) for f in ra.findings])


def test_drops_at_epoch_boundaries_are_named_as_such_not_grokking():
    drops, findings = drops_and_findings(stair(epoch_every=1000))
    assert drops == [(992, 1013, 1000), (1991, 2012, 2000)]
    assert findings == [("info", "Loss drops at epoch boundaries (2)")]


def test_drops_without_an_epoch_series_or_off_the_boundaries_stay_grokking():
    drops, findings = drops_and_findings(stair(epoch_every=None))
    assert drops == [(992, 1013, None), (1991, 2012, None)]
    assert findings == [("info", "Grokking / sudden improvement")]
    # epochs of 1400 steps: boundaries at 1400 and 2800, none within the drops at 1000, 2000
    drops, findings = drops_and_findings(stair(epoch_every=1400))
    assert drops == [(992, 1013, None), (1991, 2012, None)]
    assert findings == [("info", "Grokking / sudden improvement")]
    # an epoch every 10 steps (full-batch training) explains no drop
    drops, findings = drops_and_findings(stair(epoch_every=10))
    assert [d[2] for d in drops] == [None, None]


@pytest.mark.skipif(not (CACHE / "hf-baize-tcm-epochs").exists(),
                    reason="benchmarks/real/cache not fetched")
def test_real_nine_epoch_lora_staircase_is_not_grokking():
    ra = analyze(read(CACHE / "hf-baize-tcm-epochs")).runs[0]
    drops = [(e.start_step, e.details["epoch_boundary"]) for e in ra.events
             if e.kind == "sudden_drop"]
    assert drops == [(1467, 1486), (2209, 2229), (2965, 2972), (3693, 3715), (4449, 4458),
                     (5191, 5201)]
    titles = [f.title for f in ra.findings]
    assert "Loss drops at epoch boundaries (6)" in titles
    assert not any("Grokking" in t for t in titles)
