"""LLaMA-Factory's `trainer_log.jsonl`, written as its LogCallback writes it: one JSON object
per log with `current_steps` (the step), `total_steps` (the planned length), the metrics of
that log and progress fields. Older versions wrote every key, with `null` for the metrics a
log did not have (`eval_loss` on a training log); newer ones drop the nulls. Real files:
tests/test_readers_real_excerpts.py."""
from __future__ import annotations

import json

import pytest

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
    # no total_steps series; `epoch` is one (the epoch-staircase rule needs it)
    assert set(rec.tags) == {"loss", "eval_loss", "lr", "percentage", "epoch"}
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


def _with_bad_line(src, dst):
    lines = src.read_text().splitlines()
    at = len(lines) // 2
    lines.insert(at, '{"current_steps": 15, "loss": oops}')  # defeats pyarrow: read in pieces
    dst.write_text("\n".join(lines) + "\n")
    return at + 1


def _same_series(a, b):
    assert set(a.tags) == set(b.tags)
    for tag in a.tags:
        ma, mb = a.tag_code == a.tags.index(tag), b.tag_code == b.tags.index(tag)
        assert a.step[ma].tolist() == b.step[mb].tolist(), tag
        assert a.value[ma].tolist() == b.value[mb].tolist(), tag



@pytest.mark.parametrize("last", [400, 8000])  # line by line (< 64 KiB), pieces of pyarrow
def test_null_placeholders_are_quiet_on_every_path(tmp_path, last):
    """A line that defeats pyarrow sends the file down the piece-by-piece path (pyarrow on
    halves, line by line below 64 KiB): the same points, and no warning about the slots that
    are null on every line (predict_loss, reward, accuracy), as on the one-table path."""
    clean, bad = tmp_path / "clean.jsonl", tmp_path / "trainer_log.jsonl"
    _write(clean, with_nulls=True, last=last, total=10000)
    line = _with_bad_line(clean, bad)
    (a,), (b,) = read_records(clean), read_records(bad)
    assert a.warnings == () and b.warnings == ()
    assert [(s.line, s.reason) for s in b.skipped] == [(line, "invalid JSON line")]
    assert b.metadata.framework == "llama-factory" and b.metadata.train_iters == 10000
    _same_series(a, b)


@pytest.mark.parametrize("rows", [40, 8000])
def test_a_key_null_on_every_line_is_warned_once_on_every_path(tmp_path, rows):
    """Outside LLaMA-Factory a key that is null on every line is named in one warning, on
    the one-table path and in pieces alike; a key null in one piece and a number in another
    is read, not warned about (each piece warned on its own before)."""
    def line(i):
        return json.dumps({"step": i, "loss": 2.0 - i / 1e5, "dead": None,
                           "late": None if i < rows // 2 + 5 else 1.0})

    clean, bad = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    clean.write_text("".join(line(i) + "\n" for i in range(rows)))
    _with_bad_line(clean, bad)
    (a,), (b,) = read_records(clean), read_records(bad)
    want = ("'dead': every value is null (NaN or never logged?); not read",)
    assert a.warnings == want and b.warnings == want
    assert a.format == b.format == "jsonl"
    _same_series(a, b)


def test_epoch_is_kept_as_a_series_on_every_path(tmp_path):
    """LLaMA-Factory's `epoch` is read (role other), line by line, in one pyarrow table and
    piece by piece, with the same points."""
    small, big = tmp_path / "trainer_log.jsonl", tmp_path / "big.jsonl"
    _write(small, with_nulls=True)
    _write(big, with_nulls=True, last=8000, total=8000)
    bad = tmp_path / "bad.jsonl"
    _with_bad_line(big, bad)
    frame = losslens.read(small)
    info = frame.runs[0]
    assert info.roles["epoch"] == "other"
    ep = frame.series(info.run, "epoch")
    # written on the training and the evaluation lines alike (the same value at a step)
    assert ep.step.tolist() == list(range(10, 401, 10))
    assert ep.value[0] == 0.03 and ep.value[-1] == 1.2
    fb, fbad = losslens.read(big), losslens.read(bad)
    a, b = fb.series(fb.runs[0].run, "epoch"), fbad.series(fbad.runs[0].run, "epoch")
    assert a.step.tolist() == list(range(10, 8001, 10)) and a.step.tolist() == b.step.tolist()
    assert a.value.tolist() == b.value.tolist() and a.value[-1] == 3.0


def test_other_json_lines_still_take_epoch_as_an_axis(tmp_path):
    """Only LLaMA-Factory's file keeps `epoch`; a generic JSON-lines log reads as before."""
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 2.0 - s / 100, "epoch": s / 50})
                            + "\n" for s in range(1, 21)))
    (rec,) = read_records(path)
    assert rec.metadata.framework is None and set(rec.tags) == {"loss"}


def test_a_staircase_fine_tune_names_its_epoch_drops(tmp_path):
    """A 3-epoch SFT whose loss steps down at each new epoch: with `epoch` read, the drops
    are the multi-epoch staircase (an info finding), not the grokking note."""
    import numpy as np

    from losslens.pipeline import analyze

    rng = np.random.default_rng(0)
    n, per_epoch = 3000, 1000
    lines = []
    for t in range(1, n + 1):
        k = (t - 1) // per_epoch
        level = (1.0, 0.7, 0.5)[k] * (1 - 0.03 * ((t - 1) % per_epoch) / per_epoch)
        loss = (level + 1.5 * np.exp(-t / 60.0)) * np.exp(rng.normal(0, 0.01))
        lines.append(json.dumps({"current_steps": t, "total_steps": n, "loss": round(loss, 4),
                                 "lr": 1e-5, "epoch": round(t / per_epoch, 4),
                                 "percentage": round(t / n * 100, 2)}))
    path = tmp_path / "trainer_log.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ra = analyze(losslens.read(path)).runs[0]
    drops = [(e.start_step, e.details["epoch_boundary"]) for e in ra.events
             if e.kind == "sudden_drop"]
    assert [d[1] for d in drops] == [1000, 2000]
    titles = [f.title for f in ra.findings]
    assert "Loss drops at epoch boundaries (2)" in titles
    assert not any("Grokking" in t for t in titles)
