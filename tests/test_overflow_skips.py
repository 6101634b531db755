"""A few NaN/inf grad norms with a finite loss are fp16 overflow skips, not a critical NaN.

HF Trainer with fp16 logs the grad norm of a step the loss scaler skipped as NaN/inf while the
loss stays finite. A grad norm NaN that persists, or one on a step where the loss is NaN too,
stays critical; and the finding names the series that is non-finite.
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


def frame_of(loss, grad):
    b = RecordsBuilder()
    steps = np.arange(1, len(loss) + 1)
    b.add_array("train/loss", steps, np.asarray(loss, float), orders=np.arange(len(loss)))
    b.add_array("train/grad_norm", steps, np.asarray(grad, float), orders=np.arange(len(loss)))
    return build([b.build("r", "test", "test")])


def curve(n=120):
    rng = np.random.default_rng(0)
    loss = 0.5 + 4.0 * np.exp(-np.arange(n) / 15.0) + rng.normal(0, 0.02, n)
    grad = 1.0 + rng.normal(0, 0.05, n)
    return loss, grad


def summary(frame):
    ra = analyze(frame).runs[0]
    return ([(e.kind, e.tag, e.start_step, e.end_step, e.severity) for e in ra.events
             if e.kind == "nonfinite"],
            [(f.severity, f.title) for f in ra.findings], ra.skip_plan)


def test_isolated_nan_grad_norms_with_a_finite_loss_are_overflow_skips():
    loss, grad = curve()
    grad[[0, 1, 5]] = np.nan  # steps 1, 2, 6
    events, findings, plan = summary(frame_of(loss, grad))
    assert events == [("nonfinite", "train/grad_norm", 1, 6, "info")]
    assert findings == [("info", "fp16 overflows / skipped iterations (1 burst(s))")]
    assert plan is None
    ra = analyze(frame_of(loss, grad)).runs[0]
    assert ra.events[0].details["overflow_skip"] is True
    assert "train/grad_norm NaN/inf only at step(s) 1-2, 6" in ra.findings[0].explanation


def test_a_persistent_nan_grad_norm_stays_critical_and_is_named():
    loss, grad = curve()
    grad[40:] = np.nan  # never finite again
    events, findings, _ = summary(frame_of(loss, grad))
    assert events == [("nonfinite", "train/grad_norm", 41, 120, "critical")]
    assert findings == [("critical", "Non-finite grad norm (NaN/inf) from step 41")]
    loss, grad = curve()
    grad[40:47] = np.nan  # a burst of 7 consecutive steps (> skip_burst 5)
    events, findings, _ = summary(frame_of(loss, grad))
    assert events == [("nonfinite", "train/grad_norm", 41, 47, "critical")]
    grad[0:3] = np.nan
    grad[40:] = np.nan
    _, findings, _ = summary(frame_of(loss, grad))
    assert findings[0] == ("critical", "The grad norm is NaN/inf from the first logged step (1)")


def test_a_nan_loss_on_the_skipped_step_is_still_a_critical_nan():
    loss, grad = curve()
    grad[[30, 60]] = np.inf
    loss[60] = np.nan
    events, findings, _ = summary(frame_of(loss, grad))
    assert ("nonfinite", "train/loss", 61, 61, "critical") in events
    assert ("nonfinite", "train/grad_norm", 31, 61, "critical") in events
    assert findings[0] == ("critical", "Non-finite loss (NaN/inf) from step 31")


@pytest.mark.skipif(not (CACHE / "hf-kgllm-fp16-warmup").exists(),
                    reason="benchmarks/real/cache not fetched")
def test_real_hf_fp16_run_with_nan_grad_norms_on_skipped_steps_is_not_critical():
    ra = analyze(read(CACHE / "hf-kgllm-fp16-warmup")).runs[0]
    assert [(e.kind, e.tag, e.start_step, e.end_step, e.severity) for e in ra.events
            if e.kind == "nonfinite"] == [
        ("nonfinite", "grad_norm", 1, 6, "info")]
    assert [(f.severity, f.title) for f in ra.findings] == [
        ("info", "fp16 overflows / skipped iterations (1 burst(s))")]
