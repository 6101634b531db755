"""A total training loss that rises while a part of it and the validation loss stay flat (a
term's weight on a schedule: KL annealing) is no diverging model (analysis `_flat_beside`,
diagnosis `rule_objective_change`): its divergence event is information, no skip plan."""
from __future__ import annotations

import numpy as np

from losslens.frame import build
from losslens.pipeline import analyze_frame
from losslens.records import RecordsBuilder


def run(val_rises: bool = False, with_part: bool = True, seed: int = 0):
    """A neural-HMM-like run: train_loss = nll + beta(t) x KL, beta ramping 0 -> 1 over
    2000 of 4000 steps (total 0.4 -> ~60), train_nll flat ~0.33, val_loss every 250 steps
    flat ~0.34 (or rising x3 over the ramp)."""
    rng = np.random.default_rng(seed)
    b = RecordsBuilder()
    order = 0
    for step in range(50, 4001, 50):
        nll = 0.33 * float(np.exp(rng.normal(0, 0.15)))
        beta = min(1.0, step / 2000)
        b.add("train_loss", step, nll + beta * 60.0 * float(np.exp(rng.normal(0, 0.01))),
              order=order)
        if with_part:
            b.add("train_nll", step, nll, order=order + 1)
        order += 2
        if step % 250 == 0:
            val = 0.34 * (1 + 2 * beta if val_rises else 1.0) * float(np.exp(rng.normal(0, 0.02)))
            b.add("val_loss", step, val, order=order)
            order += 1
    return analyze_frame(build([b.build("hmm", "mem", "test")])).runs[0]


def test_a_total_rising_on_a_schedule_beside_a_flat_part_and_val_is_information():
    ra = run()
    divs = [e for e in ra.events if e.kind == "divergence"]
    assert [(e.tag, e.severity) for e in divs] == [("train_loss", "info")]
    assert divs[0].details["objective"] is True
    assert divs[0].details["flat_tags"] == ["train_nll", "val_loss"]
    assert [(f.rule, f.severity) for f in ra.findings if f.rule == "objective_change"] == [
        ("objective_change", "info")]
    assert not any(f.severity != "info" for f in ra.findings)
    assert ra.skip_plan is None


def test_the_same_rise_with_validation_getting_worse_stays_a_divergence():
    ra = run(val_rises=True)
    divs = [e for e in ra.events if e.kind == "divergence" and e.tag == "train_loss"]
    assert [e.severity for e in divs] == ["critical"]
    assert "objective" not in divs[0].details
    assert any(f.rule == "divergence" and f.severity == "critical" for f in ra.findings)


def test_without_a_part_logged_the_rise_stays_a_divergence():
    ra = run(with_part=False)
    divs = [e for e in ra.events if e.kind == "divergence"]
    assert [(e.tag, e.severity) for e in divs] == [("train_loss", "critical")]
