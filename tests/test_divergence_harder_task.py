"""A training loss that rises while every validation loss improves over the same steps (a
curriculum that hardens the task) is no diverging model (analysis `_mark_val_improving`,
diagnosis `rule_harder_task`): information, no skip plan. With validation rising too, or
flat, it stays a divergence."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.frame import build
from losslens.pipeline import analyze_frame
from losslens.records import RecordsBuilder


def run(val: str, seed: int = 0, two_vals: bool = False):
    """A curriculum-like run: the train loss climbs x40 from step 1000 to 30000 (log-linear,
    2% noise), validation every 500 steps falls 0.03 -> 0.014 ('falls'), stays at 0.03
    ('flat'), rises x4 with the train loss ('rises') or falls then climbs back ('back')."""
    rng = np.random.default_rng(seed)
    b = RecordsBuilder()
    order = 0
    for step in range(50, 30001, 50):
        rise = np.exp(np.log(40.0) * max(0.0, step - 1000) / 29000)
        b.add("Loss", step, 0.0005 * rise * float(np.exp(rng.normal(0, 0.02))), order=order)
        order += 1
        if step % 500 == 0:
            t = step / 30000
            level = {"falls": 0.03 - 0.016 * t, "flat": 0.03,
                     "rises": 0.03 * (1 + 3 * t),
                     "back": 0.03 - 0.04 * t if t < 0.4 else 0.014 + 0.04 * (t - 0.4)}[val]
            b.add("Validation loss", step, level * float(np.exp(rng.normal(0, 0.02))),
                  order=order)
            if two_vals:
                b.add("val/other_loss", step, 0.05 * (1 + 3 * t), order=order)
            order += 1
    return analyze_frame(build([b.build("curriculum", "mem", "test")])).runs[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_train_loss_rising_while_validation_falls_is_information(seed):
    ra = run("falls", seed)
    divs = [e for e in ra.events if e.kind == "divergence"]
    assert [(e.tag, e.severity) for e in divs] == [("Loss", "info")]
    assert divs[0].details["val_improving"] is True
    assert divs[0].details["val_tags"] == ["Validation loss"]
    assert [(f.rule, f.severity) for f in ra.findings] == [("harder_task", "info")]
    assert ra.findings[0].title == "The training loss rose while validation improved (Loss)"
    assert ra.skip_plan is None


@pytest.mark.parametrize("val", ["rises", "flat", "back"])
def test_the_same_rise_with_validation_rising_flat_or_back_up_stays_a_divergence(val):
    ra = run(val)
    divs = [e for e in ra.events if e.kind == "divergence" and e.tag == "Loss"]
    assert [e.severity for e in divs] == ["critical"]
    assert "val_improving" not in divs[0].details
    assert ("divergence", "critical") in [(f.rule, f.severity) for f in ra.findings]
    assert "harder_task" not in [f.rule for f in ra.findings]
    assert ra.skip_plan is not None


def test_every_validation_loss_must_improve():
    ra = run("falls", two_vals=True)  # a second validation loss rises x4
    divs = [e for e in ra.events if e.kind == "divergence" and e.tag == "Loss"]
    assert [e.severity for e in divs] == ["critical"]
    assert "harder_task" not in [f.rule for f in ra.findings]


def test_watch_settles_it_as_analyze_does(runner, watch_events, tmp_path):
    """`watch` marks the rise over improving validation as `analyze` does (the mark reads the
    live points: `LiveRun.view`): information, not a divergence, in both."""
    import json

    from losslens.cli import app

    rng = np.random.default_rng(0)
    rows = ["step,Loss,Validation loss"]
    for step in range(50, 30001, 50):
        loss = 0.0005 * np.exp(np.log(40.0) * max(0.0, step - 1000) / 29000) \
            * float(np.exp(rng.normal(0, 0.02)))
        val = (0.03 - 0.016 * step / 30000) * float(np.exp(rng.normal(0, 0.02))) \
            if step % 500 == 0 else None
        rows.append(f"{step},{loss:.6g}," + ("" if val is None else f"{val:.6g}"))
    path = tmp_path / "metrics.csv"
    path.write_text("\n".join(rows) + "\n")
    an = json.loads(runner.invoke(app, ["analyze", str(path), "-f", "json"]).stdout)["runs"][0]
    want = [(e["kind"], e["tag"], e["severity"], e["details"].get("val_improving"))
            for e in an["events"] if e["kind"] == "divergence"]
    assert want == [("divergence", "Loss", "info", True)]
    last = watch_events(path)
    got = [(e["kind"], e["tag"], e["severity"], e["details"].get("val_improving"))
           for e in last if e["kind"] == "divergence"]
    assert got == want
