"""The Frame: segments from step-backs and headers, stitched vs raw views, series access."""
from __future__ import annotations

import math

import numpy as np
import pytest

from losslens.frame import build
from losslens.records import RecordsBuilder, RunMeta


def _resumed_run() -> RecordsBuilder:
    b = RecordsBuilder()
    for i in range(1, 11):  # first job: steps 1..10, then it crashes
        b.add("lm loss", i, 10.0 - i * 0.1, order=i)
        b.add("grad norm", i, 1.0, order=i)
    b.header(50)  # "successfully loaded checkpoint ... at iteration 5"
    for i in range(6, 16):  # resumed job re-logs 6..10, then goes on
        b.add("lm loss", i, 9.0 - i * 0.1, order=100 + i)
        b.add("grad norm", i, 2.0, order=100 + i)
    for i in range(12, 20):  # a rollback to 12 with no header: the counter goes back
        b.add("lm loss", i, 8.0, order=200 + i)
    b.add("lm loss validation", 10, 5.0, order=11)
    return b


def test_segments_from_header_and_step_back():
    frame = build([_resumed_run().build("r", "r.log", "megatron")])
    segs = frame.run("r").segments
    assert [(s.index, s.first_step, s.last_step, s.points, s.reason, s.previous_last_step)
            for s in segs] == [(0, 1, 10, 21, "start", None), (1, 6, 15, 20, "header", 10),
                               (2, 12, 19, 8, "step_back", 15)]


def test_stitched_keeps_last_write_and_raw_keeps_all():
    frame = build([_resumed_run().build("r", "r.log", "megatron")])
    s = frame.series("r", "lm loss")
    assert s.step.tolist() == list(range(1, 20))
    # steps 6..11 from the resumed job, 12..19 from the rollback
    assert s.value[5] == pytest.approx(9.0 - 0.6)
    assert s.value[11:].tolist() == [8.0] * 8
    assert s.segment.tolist() == [0] * 5 + [1] * 6 + [2] * 8
    raw = frame.series("r", "lm loss", raw=True)
    assert len(raw) == 28
    assert raw.segment.tolist() == [0] * 10 + [1] * 10 + [2] * 8
    assert len(frame.data) == 49 and len(frame.stitched) == 35


def test_series_info_roles_and_counts():
    frame = build([_resumed_run().build("r", "r.log", "megatron")])
    info = {s.tag: (s.role, s.points, s.first_step, s.last_step, s.raw_points)
            for s in frame.run("r").series}
    assert info == {"lm loss": ("train_loss", 19, 1, 19, 28),
                    "grad norm": ("grad_norm", 15, 1, 15, 20),
                    "lm loss validation": ("val_loss", 1, 10, 10, 1)}


def test_role_override():
    frame = build([_resumed_run().build("r", "r.log", "x")], roles={"grad norm": "other"})
    assert frame.run("r").roles["grad norm"] == "other"


def test_nonfinite_values_are_kept():
    b = RecordsBuilder()
    b.add_array("loss", [0, 1, 2, 3], [1.0, math.nan, math.inf, -math.inf])
    frame = build([b.build("r", "x", "csv")])
    s = frame.series("r", "loss")
    assert np.isnan(s.value[1]) and s.value[2] == math.inf and s.value[3] == -math.inf
    assert frame.run("r").series[0].nonfinite == 3


def test_runs_with_same_name_stay_apart_and_columns():
    b1, b2 = RecordsBuilder(), RecordsBuilder()
    b1.add_array("loss", [1, 2], [3.0, 2.0])
    b2.add_array("loss", [1, 2], [5.0, 4.0])
    frame = build([b1.build("a", "x", "csv"), b2.build("a", "y", "csv")])
    assert [r.run for r in frame.runs] == ["a", "a#2"]
    assert list(frame.data.columns) == ["run", "tag", "step", "value", "wall_time", "segment"]
    assert frame.series("a#2", "loss").value.tolist() == [5.0, 4.0]


def test_empty_frame_has_columns():
    frame = build([])
    assert list(frame.data.columns) == ["run", "tag", "step", "value", "wall_time", "segment"]
    assert len(frame) == 0


def test_header_before_any_point_does_not_make_a_segment():
    b = RecordsBuilder()
    b.header(1)
    b.add_array("loss", [1, 2, 3], [3.0, 2.0, 1.0], orders=[5, 6, 7])
    assert len(build([b.build("r", "x", "t")]).run("r").segments) == 1


def test_tags_restarting_together_make_one_segment():
    # TensorBoard-style: each tag is its own record, so the step-back of the second tag
    # arrives after the first one's; it belongs to the same resume.
    b = RecordsBuilder()
    order = 0
    for job_steps in (range(0, 10), range(5, 12)):
        for s in job_steps:
            for tag in ("loss", "lr"):
                b.add(tag, s, 1.0, order=order)
                order += 1
    frame = build([b.build("r", "x", "tensorboard")])
    assert [(g.first_step, g.last_step, g.reason) for g in frame.run("r").segments] == [
        (0, 9, "start"), (5, 11, "step_back")]


def test_metadata_merged():
    meta = RunMeta(hidden_size=1024).merged(adam_eps=1e-8, extra={"a": "1"})
    assert meta.to_dict() == {"hidden_size": 1024, "adam_eps": 1e-8, "loss_units": "nats",
                              "extra": {"a": "1"}}


def test_one_step_written_twice_is_a_double_log_not_a_resume():
    b = RecordsBuilder()
    b.add_array("epoch", [10, 20, 20, 30], [0.0, 0.0, 1.0, 1.0])
    frame = build([b.build("r", "x", "tensorboard")])
    assert len(frame.run("r").segments) == 1
    s = frame.series("r", "epoch")
    assert s.step.tolist() == [10, 20, 30] and s.value.tolist() == [0.0, 1.0, 1.0]


def test_non_finite_hyperparameters_are_kept_as_text_not_numbers(tmp_path):
    """A log's `mom=[(1e999, 0.95)]` is no beta1: the field stays None, the text goes to `extra`,
    and the JSON document still meets its schema (a fuzz case CI found)."""
    import json

    import losslens
    from losslens.report.jsondoc import analysis_document, dumps

    meta = RunMeta(adam_beta1=math.inf, adam_beta2=0.95).merged(lr=math.nan)
    assert meta.adam_beta1 is None and meta.lr is None and meta.adam_beta2 == 0.95
    assert meta.to_dict() == {"adam_beta2": 0.95, "loss_units": "nats",
                              "extra": {"adam_beta1": "inf", "lr": "nan"}}
    log = tmp_path / "ds.log"
    log.write_text(
        "[2025-02-21 10:00:01,000] [INFO] [logging.py:128:log_dist] [Rank 0] step=10, skipped=0, "
        "lr=[0.0003], mom=[(1e999, 0.95)]\nsteps: 10 loss: 2.3456 iter time (s): 1.234\n")
    doc = json.loads(dumps(analysis_document(losslens.analyze(log))))
    assert doc["runs"][0]["metadata"]["extra"]["adam_beta1"] == "inf"
    assert "adam_beta1" not in {k for k in doc["runs"][0]["metadata"] if k != "extra"}
