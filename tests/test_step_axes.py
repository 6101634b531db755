"""Per-tag step axes: Megatron's `... vs samples` TensorBoard tags count consumed samples, not
iterations, and must not set how far the run got; a run that stopped early says so."""
from __future__ import annotations

import json

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import losslens
from losslens.frame import build
from losslens.pipeline import analyze_frame, fleet
from losslens.records import RecordsBuilder, RunMeta
from losslens.roles import infer_axis

GBS = 80  # samples per iteration


def _megatron_tb(directory, iterations=344):
    """What Megatron-LM's training_log writes: every scalar at the iteration and again
    `vs samples` at the consumed samples."""
    w = EventFileWriter(str(directory))
    for it in range(1, iterations + 1):
        loss = 8.0 - it / 100
        values = [("lm loss", it, loss), ("lm loss vs samples", it * GBS, loss),
                  ("learning-rate", it, 1e-4), ("learning-rate vs samples", it * GBS, 1e-4)]
        for tag, step, v in values:
            w.add_event(event_pb2.Event(step=step, wall_time=1000.0 + it, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=v)])))
    w.close()


def test_infer_axis():
    assert infer_axis("lm loss vs samples") == "samples"
    assert infer_axis("lm loss validation vs tokens") == "tokens"
    assert infer_axis("lm loss vs gigaflos") == "gigaflos"
    assert infer_axis("lm loss") == infer_axis("samples/sec") == "iteration"


def test_vs_samples_tags_do_not_set_the_last_step(tmp_path):
    _megatron_tb(tmp_path)
    frame = losslens.read(tmp_path)
    (run,) = frame.runs
    got = {s.tag: (s.role, s.axis, s.points, s.last_step) for s in run.series}
    assert got == {"lm loss": ("train_loss", "iteration", 344, 344),
                   "lm loss vs samples": ("other", "samples", 344, 344 * GBS),
                   "learning-rate": ("lr", "iteration", 344, 344),
                   "learning-rate vs samples": ("other", "samples", 344, 344 * GBS)}
    assert 344 * GBS == 27520
    assert run.last_step == 344
    assert [(s.first_step, s.last_step) for s in run.segments] == [(1, 344)]
    analysis = analyze_frame(frame)
    assert fleet(analysis)[0].last_step == 344
    from losslens.report.jsondoc import run_document

    doc = run_document(run)
    assert doc["last_step"] == 344 and doc["notes"] == []
    assert {s["tag"]: s["axis"] for s in doc["series"]}["lm loss vs samples"] == "samples"
    json.dumps(doc)


def _records(last: int, planned: int | None):
    b = RecordsBuilder()
    steps = np.arange(1, last + 1)
    b.add_array("lm loss", steps, 8.0 - steps / 100)
    return b.build("run", "run.log", "megatron", RunMeta(train_iters=planned))


def test_a_run_that_stopped_early_says_so():
    (run,) = build([_records(344, 500)]).runs
    assert run.notes == ("stopped at 344 of 500 planned iterations",)
    assert build([_records(500, 500)]).runs[0].notes == ()
    assert build([_records(344, None)]).runs[0].notes == ()


def test_the_note_in_the_terminal_report(runner, tmp_path):
    from losslens.cli import app

    log = tmp_path / "train.log"
    log.write_text("".join(
        f" iteration {i:8d}/     500 | consumed samples: {i * GBS:10d} | elapsed time per "
        f"iteration (ms): 1000.0 | learning rate: 1.000E-04 | global batch size: {GBS:5d} | "
        f"lm loss: {8 - i / 100:.6E} | loss scale: 1.0 | grad norm: 1.000 | number of skipped "
        f"iterations:   0 | number of nan iterations:   0 |\n" for i in range(1, 345)))
    res = runner.invoke(app, ["analyze", str(log)])
    assert res.exit_code == 0, res.stderr
    assert "note: stopped at 344 of 500 planned iterations" in res.stdout
