"""Run layouts: Keras/TF2 train+validation folders, Lightning versions, an HF output folder."""
from __future__ import annotations

import json

import pytest

import losslens
from losslens.pipeline import analyze_frame

torch_tb = pytest.importorskip("torch.utils.tensorboard")  # the writer (torch), not our code


def _keras_like(root, epochs=5, batches=3):
    """What the Keras TensorBoard callback writes (tensor scalars, `new_style`): per-batch
    `batch_loss` at the global batch and `epoch_loss` at the epoch in train/, `epoch_loss` at
    the epoch in validation/."""
    train = torch_tb.SummaryWriter(str(root / "train"))
    val = torch_tb.SummaryWriter(str(root / "validation"))
    for e in range(epochs):
        for b in range(batches):
            step = e * batches + b
            train.add_scalar("batch_loss", 2.0 - 0.05 * step, step, new_style=True)
        train.add_scalar("epoch_loss", 2.0 - 0.1 * e, e, new_style=True)
        train.add_scalar("epoch_accuracy", 0.5 + 0.05 * e, e, new_style=True)
        val.add_scalar("epoch_loss", 2.1 - 0.1 * e, e, new_style=True)
        val.add_scalar("epoch_accuracy", 0.45 + 0.05 * e, e, new_style=True)
    train.close()
    val.close()


def test_keras_train_and_validation_folders_are_one_run(tmp_path):
    _keras_like(tmp_path / "fit")
    frame = losslens.read(tmp_path)
    (run,) = frame.runs
    assert run.run == "fit" and run.source == str(tmp_path / "fit")
    got = {s.tag: (s.role, s.axis, s.points, s.last_step) for s in run.series}
    assert got == {"batch_loss": ("train_loss", "iteration", 15, 14),
                   "epoch_loss": ("train_loss", "epoch", 5, 4),
                   "epoch_accuracy": ("train_acc", "epoch", 5, 4),
                   "validation/epoch_loss": ("val_loss", "epoch", 5, 4),
                   "validation/epoch_accuracy": ("val_acc", "epoch", 5, 4)}
    assert frame.series("fit", "validation/epoch_loss").value.tolist() == pytest.approx(
        [2.1, 2.0, 1.9, 1.8, 1.7])
    assert run.last_step == 14  # the batches, not the epochs
    assert len(run.segments) == 1


def test_keras_epoch_only_run_last_step_is_the_last_epoch(tmp_path):
    w = torch_tb.SummaryWriter(str(tmp_path / "train"))
    v = torch_tb.SummaryWriter(str(tmp_path / "validation"))
    for e in range(3):
        w.add_scalar("epoch_loss", 1.0 / (e + 1), e, new_style=True)
        v.add_scalar("epoch_loss", 1.1 / (e + 1), e, new_style=True)
    w.close()
    v.close()
    (run,) = losslens.read(tmp_path).runs
    assert run.run == tmp_path.name and run.last_step == 2
    assert run.roles == {"epoch_loss": "train_loss", "validation/epoch_loss": "val_loss"}


def _metrics_csv(path, steps, base):
    path.parent.mkdir(parents=True)
    path.write_text("epoch,step,train_loss\n" + "".join(
        f"0,{s},{base - s / 1000:.4f}\n" for s in steps))


def test_lightning_version_that_continues_is_a_resume_segment(tmp_path):
    logs = tmp_path / "lightning_logs"
    _metrics_csv(logs / "version_0" / "metrics.csv", range(49, 500, 50), 3.0)
    _metrics_csv(logs / "version_1" / "metrics.csv", range(449, 800, 50), 2.6)  # from 400
    _metrics_csv(logs / "version_2" / "metrics.csv", range(49, 300, 50), 3.0)  # a new run
    frame = losslens.read(tmp_path)
    names = [r.run for r in frame.runs]
    assert names == ["lightning_logs/version_0", "lightning_logs/version_2"]
    run = frame.runs[0]
    (train,) = [s for s in run.series if s.tag == "train_loss"]
    assert (train.first_step, train.last_step, train.raw_points) == (49, 799, 18)
    assert [(g.first_step, g.last_step, g.reason) for g in run.segments] == [
        (49, 499, "start"), (449, 799, "header")]
    assert run.metadata.extra["resumed_parts"] == (
        f"{logs / 'version_0' / 'metrics.csv'}, {logs / 'version_1' / 'metrics.csv'}")


def test_hf_output_folder_checkpoints_and_runs_are_one_run(tmp_path):
    out = tmp_path / "out"
    hist = [{"loss": round(3 - s / 400, 4), "learning_rate": 1e-4, "epoch": s / 1000, "step": s}
            for s in range(10, 501, 10)]
    for n in (200, 400):
        d = out / f"checkpoint-{n}"
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text(json.dumps(
            {"global_step": n, "save_steps": 200, "max_steps": 600,
             "log_history": [h for h in hist if h["step"] <= n]}))
    for name, steps in (("May01_10-00-00_host", range(10, 301, 10)),
                        ("May01_12-00-00_host", range(210, 501, 10))):  # resumed from 200
        w = torch_tb.SummaryWriter(str(out / "runs" / name))
        for s in steps:
            w.add_scalar("train/loss", 3 - s / 400, s)
        w.close()
    frame = losslens.read(out)
    (run,) = frame.runs
    assert run.run == "out" and run.source == str(out)
    assert run.metadata.framework == "transformers" and run.metadata.save_interval == 200
    assert run.metadata.checkpoints == (200, 400)
    (loss,) = run.series
    assert (loss.tag, loss.role, loss.points, loss.raw_points, loss.last_step) == (
        "train/loss", "train_loss", 50, 60, 500)
    assert [(g.first_step, g.last_step, g.reason) for g in run.segments] == [
        (10, 300, "start"), (210, 500, "header")]
    assert run.notes == ("stopped at 500 of 600 planned iterations",)
    assert analyze_frame(frame).runs[0].checkpoint_source.startswith(
        "checkpoint folders beside the log")


def test_t5x_train_and_training_eval_folders_are_one_run(tmp_path):
    """t5x's MetricsManager writes `model_dir/train/` and one `training_eval/<task>/` folder per
    evaluation (CLU SummaryWriter: tensor scalars under the metric names)."""
    root = tmp_path / "model"
    tr = torch_tb.SummaryWriter(str(root / "train"))
    c4 = torch_tb.SummaryWriter(str(root / "training_eval" / "c4"))
    wmt = torch_tb.SummaryWriter(str(root / "training_eval" / "wmt"))
    for s in range(100, 1001, 100):
        tr.add_scalar("loss", 3 - s / 1000, s, new_style=True)
        tr.add_scalar("accuracy", 0.4, s, new_style=True)
        if s % 500 == 0:
            c4.add_scalar("loss", 3.1 - s / 1000, s, new_style=True)
            c4.add_scalar("accuracy", 0.38, s, new_style=True)
            wmt.add_scalar("loss", 3.3 - s / 1000, s, new_style=True)
    for w in (tr, c4, wmt):
        w.close()
    (run,) = losslens.read(tmp_path).runs
    assert run.run == "model" and run.source == str(root)
    got = {s.tag: (s.role, s.points, s.first_step, s.last_step) for s in run.series}
    assert got == {"loss": ("train_loss", 10, 100, 1000), "accuracy": ("train_acc", 10, 100, 1000),
                   "training_eval/c4/loss": ("val_loss", 2, 500, 1000),
                   "training_eval/c4/accuracy": ("val_acc", 2, 500, 1000),
                   "training_eval/wmt/loss": ("val_loss", 2, 500, 1000)}
