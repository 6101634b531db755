"""The divergence detector's run stage: a divergence a run's train and validation losses show
together (losslens/detectors/divergence_pair.py), with exact expectations on synthetic runs,
its negatives (overfitting, a noisy flat validation loss), the streaming form on every prefix,
and `analyze` / `watch` on an HF trainer_state.json.

The case it is for (a real log, benchmarks/real/labels.json `hf-whisper-braj-lr-too-high`):
a Whisper fine-tune at lr 3e-3 whose train loss, logged every 500 steps, has five points
(1.24 -> 2.16 -> 1.79: too few for the series stage's trailing level), and whose eval loss is
best at the first evaluation and never comes back near it.
"""
from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest

from losslens.analysis import detect_run
from losslens.cli import app
from losslens.detectors import DETECTORS, detector_class
from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.stream import LiveRun
from losslens.errors import InvalidParameterError
from losslens.frame import build
from losslens.pipeline import analyze
from losslens.records import RecordsBuilder, RunRecords

CAUSAL = sorted(n for n in DETECTORS if getattr(detector_class(n), "causal", False))

#: Evaluations every 100 steps; the best is the first, and every later one is worse and rises.
VAL_STEPS = np.arange(1, 26) * 100
VAL = 2.0 * np.r_[1.0, 1.15 * np.geomspace(1.0, 1.6, 24)]
#: The train loss logged every 500 steps (HF Trainer's default), as in the real run.
TRAIN_STEPS = np.arange(1, 6) * 500


def train_rising(f: float) -> np.ndarray:
    """Five train points rising x`f` over the first after the best evaluation and staying."""
    return np.array([1.0, 1 + 0.6 * (f - 1), f, f * 1.02, f * 0.98])


#: A noisy flat validation loss (+-2 %, its lowest point mid-run) and a falling train loss.
FLAT = 2.0 * (1 + 0.02 * np.array([0, 1, -1, 0.5, -0.5, 1, 0, -1, 0.5, 1, -2, 0, 1, -0.5, 0.5,
                                   -1, 1, 0, -0.5, 0.5, 1, -1, 0, 0.5, -0.5]))


def records(**tags) -> RunRecords:
    """One run; each tag is (steps, values); points written in step order, tags interleaved."""
    rows = sorted((int(s), i, tag, float(v)) for i, (tag, (steps, values)) in
                  enumerate(tags.items()) for s, v in zip(steps, values))
    b = RecordsBuilder()
    for order, (step, _, tag, value) in enumerate(rows):
        b.add(tag, step, value, order=order)
    return b.build("r", "test", "test")


def events(**tags):
    return analyze(build([records(**tags)])).runs[0]


@pytest.mark.parametrize("f", [1.5, 1.75, 2.0])
def test_train_and_validation_worse_together_is_one_critical_divergence(f):
    ra = events(loss=(TRAIN_STEPS, train_rising(f)), eval_loss=(VAL_STEPS, VAL))
    div = [e for e in ra.events if e.kind == "divergence"]
    assert [(e.tag, e.start_step, e.end_step, e.severity) for e in div] == [
        ("eval_loss", 200, 2500, "critical")]  # onset: the first evaluation after the best
    d = div[0].details
    assert (d["best_step"], d["declared_step"], d["train_tag"], d["also"]) == (
        100, 1500, "loss", [])  # declared once three train points rest on the rise
    assert d["train_change"] == pytest.approx(1 + 0.6 * (f - 1) - 1)  # median of 3 / first
    assert d["val_change"] == pytest.approx(0.15)
    assert div[0].magnitude == pytest.approx(1.15 * 1.6)
    assert [e for e in ra.events if e.kind in ("overfitting", "spike")] == []
    # the series stage alone sees nothing in five train points: the run stage found it
    frame = build([records(loss=(TRAIN_STEPS, train_rising(f)))])
    assert DivergenceDetector().detect(frame.series("r", "loss")) == []
    (finding,) = [x for x in ra.findings if x.severity != "info"]
    assert (finding.severity, finding.title, finding.rule) == (
        "critical", "Divergence from step 200", "divergence")
    assert "eval_loss has been at least 1.15x that best at every evaluation since" in \
        finding.explanation and "not overfitting" in finding.explanation
    assert "Keep the checkpoint of the best evaluation (step 100)" in finding.advice
    assert ra.skip_plan is not None


def test_train_falling_while_validation_rises_stays_overfitting():
    ra = events(loss=(TRAIN_STEPS, 1 / train_rising(1.75)), eval_loss=(VAL_STEPS, VAL))
    assert [(e.kind, e.tag, e.start_step) for e in ra.events
            if e.kind in ("divergence", "overfitting")] == [("overfitting", "eval_loss", 100)]


def test_noisy_flat_validation_with_a_falling_train_loss_is_nothing():
    ra = events(loss=(TRAIN_STEPS, 1 / train_rising(1.75)), eval_loss=(VAL_STEPS, FLAT))
    assert ra.events == () or list(ra.events) == []
    assert list(ra.findings) == []


def test_validation_back_near_its_best_or_a_train_rise_too_small_is_nothing():
    back = VAL.copy()
    back[-1] = VAL[0] * 1.05  # the last evaluation came back within eval_rise of the best
    for val, train in ((back, train_rising(1.75)), (VAL, train_rising(1.2))):
        ra = events(loss=(TRAIN_STEPS, train), eval_loss=(VAL_STEPS, val))
        assert [e for e in ra.events if e.kind == "divergence"] == []


def test_a_train_loss_that_diverges_on_its_own_is_one_divergence_on_it():
    """Dense train logging: the series stage finds the rise; the run stage does not repeat it."""
    steps = np.arange(1, 251) * 10
    train = np.r_[np.full(20, 1.0), np.geomspace(1.0, 1.9, 230)]
    ra = events(loss=(steps, train), eval_loss=(VAL_STEPS, VAL))
    div = [e for e in ra.events if e.kind == "divergence"]
    assert [(e.tag, e.details.get("train_tag")) for e in div] == [("loss", None)]


def test_parameters_are_validated():
    for field, bad in (("evals_after", 1), ("eval_rise", 1.0), ("train_rise", float("nan"))):
        with pytest.raises(InvalidParameterError, match=field):
            DivergenceDetector(**{field: bad}).validate()


# -- the streaming form: every prefix, random chunkings ---------------------------------------

def comparable(e) -> dict:
    d = e.to_dict()
    d.pop("id")
    d["details"] = {k: v for k, v in d["details"].items()
                    if k not in ("shared_with", "isolated", "all_losses")}
    return d


def prefix(rec: RunRecords, hi: int) -> RunRecords:
    keep = rec.order < hi
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep], headers=())


def part(rec: RunRecords, lo: int, hi: int) -> RunRecords:
    keep = (rec.order >= lo) & (rec.order < hi)
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep], headers=())


CASES = {
    "pair": dict(loss=(TRAIN_STEPS, train_rising(1.75)), eval_loss=(VAL_STEPS, VAL)),
    "overfitting": dict(loss=(TRAIN_STEPS, 1 / train_rising(1.75)), eval_loss=(VAL_STEPS, VAL)),
    "flat": dict(loss=(TRAIN_STEPS, 1 / train_rising(1.75)), eval_loss=(VAL_STEPS, FLAT)),
    "dense": dict(loss=(np.arange(1, 251) * 10, np.r_[np.full(20, 1.0),
                                                      np.geomspace(1.0, 1.9, 230)]),
                  eval_loss=(VAL_STEPS, VAL)),
    "two-evals": dict(loss=(TRAIN_STEPS, train_rising(2.0)), eval_loss=(VAL_STEPS, VAL),
                      **{"eval/other_loss": (VAL_STEPS + 50, VAL * 1.1)}),
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", list(CASES))
def test_stream_equals_batch_on_every_prefix(case, seed):
    rec = records(**CASES[case])
    end = int(rec.order.max()) + 1
    rnd = random.Random(seed)
    live = LiveRun("r", detectors=CAUSAL, source="test", format="test")
    lo = 0
    while lo < end:
        hi = min(end, lo + rnd.choice([1, 2, 5, 17, 60]))
        live.feed(part(rec, lo, hi))
        got = [comparable(e) for e in live.detect()]
        frame = build([prefix(rec, hi)])
        want = [comparable(e) for e in detect_run(frame, frame.runs[0], CAUSAL)]
        assert got == want, (case, seed, hi)
        lo = hi
    kinds = [(e["kind"], e["tag"]) for e in got if e["kind"] == "divergence"]
    assert kinds == {"pair": [("divergence", "eval_loss")],
                     "two-evals": [("divergence", "eval_loss")],
                     "dense": [("divergence", "loss")]}.get(case, [])


# -- analyze and watch on an HF trainer_state.json -------------------------------------------

def test_analyze_and_watch_report_the_same_divergence(runner, tmp_path):
    history = [{"step": int(s), "epoch": float(s) / 2500, "eval_loss": float(v)}
               for s, v in zip(VAL_STEPS, VAL)]
    history += [{"step": int(s), "epoch": float(s) / 2500, "loss": float(v),
                 "learning_rate": 3e-3} for s, v in zip(TRAIN_STEPS, train_rising(1.75))]
    history.sort(key=lambda h: (h["step"], "loss" in h))
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 2500, "log_history": history}))
    an = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    assert an.exit_code == 0, an.stderr
    (run,) = json.loads(an.stdout)["runs"]
    div = [e for e in run["events"] if e["kind"] == "divergence"]
    assert [(e["tag"], e["start_step"], e["severity"]) for e in div] == [
        ("eval_loss", 200, "critical")]
    wt = runner.invoke(app, ["watch", str(path), "--once", "-f", "json"])
    assert wt.exit_code == 0, wt.stderr
    last = {}
    for line in wt.stdout.splitlines():
        e = json.loads(line)
        last[e["id"]] = e
    streamed = [e for e in last.values() if e["kind"] == "divergence"]
    keys = ("kind", "tag", "start_step", "end_step", "magnitude", "details")
    assert [{k: e[k] for k in keys} for e in streamed] == [{k: e[k] for k in keys}
                                                          for e in div]
    ck = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert ck.exit_code == 1 and json.loads(ck.stdout)["runs"][0]["events"] == run["events"]
