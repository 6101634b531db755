"""A validation loss that shows, at its first evaluation since, what the training loss did (NaN
for good, a jump that never comes back) is the same incident (`echoes.mark_echoes`): one
critical finding, dated by the training loss; the validation event stays, as information,
naming the training event it repeats. A validation event with an evaluation of its own
between is its own."""
from __future__ import annotations

import json

import numpy as np
import pytest

from losslens.frame import build
from losslens.pipeline import analyze_frame
from losslens.records import RecordsBuilder

EVERY = 2000  # evaluation interval (steps); train logged every 100


def curves(kind: str, seed: int = 0):
    """Train 6.0 -> 5.0 (log decay, 1 % noise) over 20,000 steps, validation 0.2 above every
    2000. 'nan': train NaN from 10,300 on, validation NaN from its next eval (12,000);
    'jump': train x1.3 at 10,300 for good, validation x1.3 from 12,000; 'late': the train
    jump at 10,300, validation first fine at 12,000 and jumping only at 16,000."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for step in range(100, 20001, 100):
        level = 6.0 - 1.0 * np.log1p(step / 2000) / np.log1p(10)
        noise = float(np.exp(rng.normal(0, 0.01)))
        broke = step >= 10300
        t = level * noise
        if kind == "nan" and broke:
            t = float("nan")
        elif broke:
            t *= 1.3
        train.append((step, t))
        if step % EVERY == 0:
            v = (level + 0.2) * float(np.exp(rng.normal(0, 0.005)))
            if kind == "nan" and broke:
                v = float("nan")
            elif kind == "jump" and broke or kind == "late" and step >= 16000:
                v *= 1.3
            val.append((step, v))
    return train, val


def analyzed(kind: str, seed: int = 0):
    train, val = curves(kind, seed)
    b = RecordsBuilder()
    order = 0
    for step, t in train:
        b.add("train/loss", step, t, order=order)
        order += 1
        if step % EVERY == 0:
            b.add("eval/loss", step, dict(val)[step], order=order)
            order += 1
    return analyze_frame(build([b.build("echo", "mem", "test")])).runs[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_nan_from_its_next_eval_is_the_training_nan(seed):
    ra = analyzed("nan", seed)
    got = [(e.kind, e.tag, e.start_step, e.severity, e.details.get("echo_of"))
           for e in ra.events if e.kind == "nonfinite"]
    assert got == [
        ("nonfinite", "train/loss", 10300, "critical", None),
        ("nonfinite", "eval/loss", 12000, "info",
         {"kind": "nonfinite", "tag": "train/loss", "start_step": 10300})]
    nf = [f for f in ra.findings if f.severity == "critical"]
    assert [f.event_ids for f in nf] == [(ra.events[[e.kind for e in ra.events].index(
        "nonfinite")].id,)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_validation_jump_at_its_next_eval_is_the_training_jump(seed):
    ra = analyzed("jump", seed)
    train = [e for e in ra.events if e.tag == "train/loss" and e.severity != "info"]
    assert [(e.kind, e.start_step, e.recovery) for e in train] == [("spike", 10300, "none")]
    val = [e for e in ra.events if e.tag == "eval/loss" and e.kind in ("spike", "divergence")]
    assert val and all(e.start_step == 12000 and e.severity == "info"
                       and e.details["echo_of"] == {"kind": "spike", "tag": "train/loss",
                                                    "start_step": 10300} for e in val)
    assert {f.severity for f in ra.findings} == {"critical"}
    assert all(i.startswith("spike") and "train" in next(
        e.tag for e in ra.events if e.id == i) for f in ra.findings for i in f.event_ids)
    assert ra.skip_plan is not None


def test_a_validation_jump_with_an_evaluation_of_its_own_between_is_its_own():
    ra = analyzed("late")
    val = [e for e in ra.events if e.tag == "eval/loss" and e.kind in ("spike", "divergence")]
    assert val, "the late validation jump is found"
    assert all(e.start_step == 16000 and "echo_of" not in e.details for e in val)
    assert any(e.severity != "info" for e in val)


def test_watch_marks_echoes_as_analyze_does(runner, watch_events, tmp_path):
    from losslens.cli import app

    train, val = curves("nan")
    vals = dict(val)
    rows = ["step,train/loss,eval/loss"]
    for step, t in train:
        v = vals.get(step)
        rows.append(f"{step},{t:.6g}," + ("" if v is None else f"{v:.6g}"))
    path = tmp_path / "metrics.csv"
    path.write_text("\n".join(rows) + "\n")
    an = json.loads(runner.invoke(app, ["analyze", str(path), "-f", "json"]).stdout)["runs"][0]
    want = [(e["kind"], e["tag"], e["severity"], e["details"].get("echo_of"))
            for e in an["events"] if e["kind"] == "nonfinite"]
    assert want == [("nonfinite", "train/loss", "critical", None),
                    ("nonfinite", "eval/loss", "info",
                     {"kind": "nonfinite", "tag": "train/loss", "start_step": 10300})]
    last = watch_events(path)
    got = [(e["kind"], e["tag"], e["severity"], e["details"].get("echo_of"))
           for e in last if e["kind"] == "nonfinite"]
    assert got == want
