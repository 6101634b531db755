"""A validation loss the trainer wrote as NaN because it did not compute it (YOLO fills its
`val/*_loss` columns with nan then) is information, not a broken run; a NaN training loss from
the start, and a validation loss that turns NaN after being finite, stay critical."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from losslens import read
from losslens.cli import app
from losslens.detectors.stream import LiveRun
from losslens.pipeline import analyze, settle_events

HEAD = ("                  epoch,         train/box_loss,         train/cls_loss,"
        "         val/box_loss,         val/cls_loss,     metrics/mAP50(B)\n")


def _results(tmp_path: Path, train: np.ndarray, val: np.ndarray) -> Path:
    """A YOLOv8 results.csv of len(train) epochs (box and cls losses alike)."""
    rows = "".join(f"{i + 1:>23},{t:>23.5f},{1.2 * t:>23.5f},{v:>23.5f},{1.1 * v:>23.5f},"
                   f"{0.01 * i:>23.5f}\n"
                   for i, (t, v) in enumerate(zip(train, val)))
    out = tmp_path / "train" / "results.csv"
    out.parent.mkdir()
    out.write_text(HEAD + rows)
    return out


TRAIN = 3.7 * np.exp(-np.arange(60) / 30) + 0.8


def _run(tmp_path, train, val):
    (ra,) = analyze(read(_results(tmp_path, train, val))).runs
    nf = [(e.tag, e.start_step, e.end_step, e.severity) for e in ra.events
          if e.kind == "nonfinite"]
    return ra, nf, [(f.severity, f.rule) for f in ra.findings]


def test_a_val_loss_nan_at_every_epoch_with_train_finite_is_info(tmp_path, runner):
    ra, nf, findings = _run(tmp_path, TRAIN, np.full(60, np.nan))
    assert nf == [("val/box_loss", 1, 60, "info"), ("val/cls_loss", 1, 60, "info")]
    assert findings == [("info", "val_not_computed")]
    assert ra.findings[0].title == ("The validation loss was not computed (NaN) at steps 1-60 "
                                    "(val/box_loss, val/cls_loss)")
    assert ra.skip_plan is None and ra.plan_warnings == ()
    res = runner.invoke(app, ["check", str(tmp_path / "train" / "results.csv"), "-f", "json"])
    assert res.exit_code == 0, res.stdout
    (run,) = json.loads(res.stdout)["runs"]
    assert all(c["passed"] for c in run["checks"])


def test_a_val_loss_nan_for_the_first_epochs_then_finite_is_info(tmp_path):
    val = np.r_[np.full(10, np.nan), 2.0 + np.exp(-np.arange(50) / 20)]
    _, nf, findings = _run(tmp_path, TRAIN, val)
    assert nf == [("val/box_loss", 1, 10, "info"), ("val/cls_loss", 1, 10, "info")]
    assert findings == [("info", "val_not_computed")]


def test_a_nan_train_loss_from_the_start_stays_critical_val_nan_with_it(tmp_path):
    """The validation NaN beside it is no "not computed": it is the same incident, seen at the
    validation loss' first evaluation (`echoes.mark_echoes`): `info`, naming the train loss's
    event; the finding, critical, cites the training losses."""
    ra, nf, findings = _run(tmp_path, np.full(60, np.nan), np.full(60, np.nan))
    assert sorted(nf) == [("train/box_loss", 1, 60, "critical"),
                          ("train/cls_loss", 1, 60, "critical"),
                          ("val/box_loss", 1, 60, "info"), ("val/cls_loss", 1, 60, "info")]
    echo = {e.tag: e.details.get("echo_of") for e in ra.events if e.kind == "nonfinite"}
    assert {t: (o or {}).get("kind") for t, o in echo.items() if t.startswith("val/")} == {
        "val/box_loss": "nonfinite", "val/cls_loss": "nonfinite"}
    assert not any(e.details.get("not_computed") for e in ra.events)
    assert findings == [("critical", "broken_from_start")]


def test_a_val_loss_turning_nan_after_being_finite_stays_critical(tmp_path):
    val = np.r_[2.0 + np.exp(-np.arange(40) / 20), np.full(20, np.nan)]
    ra, nf, findings = _run(tmp_path, TRAIN, val)
    assert nf == [("val/box_loss", 41, 60, "critical"), ("val/cls_loss", 41, 60, "critical")]
    assert ("critical", "nonfinite") in findings
    assert ("info", "val_not_computed") not in findings


def test_watch_gives_the_val_not_computed_event_analyzes_severity():
    steps = np.arange(1, 61)
    roles = {"train/box_loss": "train_loss", "val/box_loss": "val_loss"}
    live = LiveRun("run", detectors=["nonfinite"], roles=roles)
    live.add("train/box_loss", steps, TRAIN)
    live.add("val/box_loss", steps, np.full(60, np.nan))
    events = live.detect()
    assert [(e.tag, e.severity) for e in events] == [("val/box_loss", "critical")]
    settled = settle_events(live.info(), events)
    assert [(e.tag, e.severity, e.details.get("not_computed")) for e in settled] == [
        ("val/box_loss", "info", None)]
    # without the training loss, a NaN validation loss says nothing of how it was computed
    alone = LiveRun("run", detectors=["nonfinite"], roles=roles)
    alone.add("val/box_loss", steps, np.full(60, np.nan))
    assert [e.severity for e in settle_events(alone.info(), alone.detect())] == ["critical"]


def test_a_val_loss_logged_after_a_train_loss_nan_to_its_end_stays_critical():
    # word_language_model: the train loss NaN from the first line to its last (17715), the
    # test loss logged once after it (17898), NaN: the weights were NaN, not "not computed"
    steps = np.arange(200, 17716, 200)
    roles = {"loss": "train_loss", "test loss": "val_loss"}
    live = LiveRun("run", detectors=["nonfinite"], roles=roles)
    live.add("loss", steps, np.full(steps.shape[0], np.nan))
    live.add("test loss", [17898], [np.nan])
    settled = settle_events(live.info(), live.detect())
    assert [(e.tag, e.severity, e.details.get("not_computed")) for e in settled] == [
        ("loss", "critical", None), ("test loss", "critical", None)]
