"""A one-point spike just after the knee of a short run's steep fall (spike_early MID).

At a knee the line predictors of spike_early err by more than the noise, so a x1.9 point there
sat at ~4 scales of their jumps; judged by its two neighbours it stands out as no other point of
the head does. Real case: a YOLOv5 val cls loss 0.0236 -> 0.0164 -> 0.0309 -> 0.0156 at epoch 7.
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


def knee(seed: int, spike: bool, n: int = 50):
    """A 50-epoch val loss: steep fall (tau 2.5 epochs) onto a slow one, 3 % noise; x1.9 at
    epoch 7."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = (0.047 * np.exp(-t / 2.5) + 0.014 * np.exp(-t / 60)) * np.exp(0.03 * rng.standard_normal(n))
    if spike:
        y[7] *= 1.9
    b = RecordsBuilder()
    b.add_array("val/cls_loss", t, y, orders=np.arange(n))
    return build([b.build("r", "test", "test")])


def spikes(frame):
    return [(e.tag, e.start_step, e.recovery) for e in analyze(frame).runs[0].events
            if e.kind == "spike"]


# the seeds the line predictors alone missed (main before: no spike on each)
@pytest.mark.parametrize("seed", [4, 5, 9, 10, 11, 12, 14, 17, 19])
def test_a_one_point_spike_after_the_knee_is_found(seed):
    assert spikes(knee(seed, spike=True)) == [("val/cls_loss", 7, "fast")]
    assert spikes(knee(seed, spike=False)) == []


@pytest.mark.skipif(not (CACHE / "yolov5-lego-results").exists(),
                    reason="benchmarks/real/cache not fetched")
def test_real_yolov5_val_cls_x1_9_at_epoch_7():
    found = spikes(read(CACHE / "yolov5-lego-results"))
    assert [(t.strip(), s, r) for t, s, r in found] == [("val/cls_loss", 7, "fast")]
