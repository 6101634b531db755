"""LLaMA-Factory's `trainer_log.jsonl`, written as its LogCallback writes it: one JSON object
per log with `current_steps` (the step), `total_steps` (the planned length), the metrics of
that log and progress fields. Older versions wrote every key, with `null` for the metrics a
log did not have (`eval_loss` on a training log); newer ones drop the nulls. Real files:
tests/test_readers_real_excerpts.py."""
from __future__ import annotations

import json

import losslens
from losslens.readers import read_records, sniff


def _record(step, total, loss=None, eval_loss=None, lr=None, with_nulls=True):
    logs = {"current_steps": step, "total_steps": total, "loss": loss, "eval_loss": eval_loss,
            "predict_loss": None, "reward": None, "accuracy": None, "lr": lr,
            "epoch": round(step / total * 3, 2), "percentage": round(step / total * 100, 2),
            "elapsed_time": "0:01:00", "remaining_time": "1 day, 0:08:23"}
    if not with_nulls:
        logs = {k: v for k, v in logs.items() if v is not None}
    return json.dumps(logs)


def _write(path, with_nulls, last=400, total=1000):
    lines = []
    for step in range(10, last + 1, 10):
        lines.append(_record(step, total, loss=2.0 - step / 1000, lr=1e-4, with_nulls=with_nulls))
        if step % 100 == 0:
            lines.append(_record(step, total, eval_loss=round(1.9 - step / 2000, 4),
                                 with_nulls=with_nulls))
    path.write_text("\n".join(lines) + "\n")


def test_trainer_log_jsonl_with_nulls_reads_steps_roles_and_planned_length(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    _write(path, with_nulls=True)
    assert sniff(path).name == "jsonl"
    (rec,) = read_records(path)
    assert rec.metadata.framework == "llama-factory" and rec.metadata.train_iters == 1000
    assert set(rec.tags) == {"loss", "eval_loss", "lr", "percentage"}  # no total_steps series
    frame = losslens.read(path)
    info = frame.runs[0]
    assert info.roles["loss"] == "train_loss" and info.roles["eval_loss"] == "val_loss"
    loss, ev = frame.series(info.run, "loss"), frame.series(info.run, "eval_loss")
    assert loss.step.tolist() == list(range(10, 401, 10))
    # the nulls of the training logs are "not logged here", not NaN
    assert ev.step.tolist() == [100, 200, 300, 400] and ev.value.tolist() == [1.85, 1.8, 1.75, 1.7]
    assert info.notes == ("stopped at 400 of 1,000 planned iterations",)
    assert not any("null" in w for w in info.warnings)


def test_trainer_log_jsonl_without_nulls_reads_the_same(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _write(a, with_nulls=True)
    _write(b, with_nulls=False)
    fa, fb = losslens.read(a), losslens.read(b)
    for tag in ("loss", "eval_loss", "lr"):
        sa, sb = fa.series(fa.runs[0].run, tag), fb.series(fb.runs[0].run, tag)
        assert sa.step.tolist() == sb.step.tolist() and sa.value.tolist() == sb.value.tolist()


def test_a_finished_run_has_no_stop_note(tmp_path):
    path = tmp_path / "trainer_log.jsonl"
    _write(path, with_nulls=False, last=1000, total=1000)
    assert losslens.read(path).runs[0].notes == ()
