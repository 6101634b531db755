"""GPT-NeoX: its stdout (megatron/logging.py `training_log`, training.py
`evaluate_and_print_results`) read by the Megatron reader, and its TensorBoard tags' roles."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import losslens
from losslens.readers import megatron, read_records


def _train(it, loss, flops="150.3TFLOPS", nan=0, total=320):
    # the line training_log builds, field by field
    return (f" samples/sec: 51.234 | iteration {it:8d}/{total:8d} | elapsed time per iteration "
            f"(ms): 9876.5 | learning rate: 1.234E-04 | approx flops per GPU: {flops} | MFU: "
            f"40.00% | HFU: 45.50% | lm_loss: {loss:.6E} | loss scale: 65536.0 | number of "
            f"skipped iterations: {0:3d} | number of nan iterations: {nan:3d} |")


def _valid(it, loss, ppl):
    s = f" validation results at iteration {it} | lm_loss value: {loss:.6E} | lm_loss_ppl value: {ppl:.6E} | "
    return ["-" * (len(s) + 1), s, "-" * (len(s) + 1)]


LOG = "\n".join(["NeoXArgs.from_ymls() ['configs/125M.yml']",
                 _train(10, 10.5), _train(20, 9.75, flops="1.2PFLOPS"),
                 _train(30, 9.25, nan=1), *_valid(30, 9.5, 13359.7),
                 _train(40, 8.5, flops="980.0GFLOPS"), ""])


def _series(rec, tag):
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_neox_stdout_from_the_source_format(tmp_path):
    path = tmp_path / "neox.log"
    path.write_text(LOG)
    (rec,) = read_records(path)
    assert rec.format == "megatron" and rec.metadata.framework == "gpt-neox"
    assert _series(rec, "lm_loss") == ([10, 20, 30, 40], [10.5, 9.75, 9.25, 8.5])
    assert _series(rec, "samples/sec")[1] == [51.234] * 4  # the field before `iteration`
    assert _series(rec, "approx flops per GPU (TFLOPS)")[1] == [150.3, 1200.0, 150.3, 0.98]
    assert _series(rec, "MFU")[1] == [40.0] * 4
    assert _series(rec, "lm_loss validation") == ([30], [9.5])
    assert _series(rec, "lm_loss validation ppl") == ([30], [13359.7])
    assert "lm loss" not in rec.tags  # a nan iteration with lm_loss printed: no synthetic NaN
    assert rec.skipped_count == 0 and rec.metadata.train_iters == 320
    roles = losslens.read(path).runs[0].roles
    assert (roles["lm_loss"], roles["lm_loss validation"], roles["lm_loss validation ppl"],
            roles["learning rate"]) == ("train_loss", "val_loss", "other", "lr")


def test_neox_fast_path_reads_alike(tmp_path):
    path = tmp_path / "neox_big.log"
    rng = np.random.default_rng(0)
    lines = []
    for it in range(10, 40001, 10):
        lines.append(_train(it, 10 - it / 5000 + rng.normal(0, 0.01),
                            flops=("150.3TFLOPS", "1.2PFLOPS")[it % 20 == 0], total=40000))
        if it % 1000 == 0:
            lines += _valid(it, 9 - it / 5000, 100.0)
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 1 << 20
    fast = megatron.read_file(path, "r", fast=True)
    slow = megatron.read_file(path, "r", fast=False)
    assert fast.tags == slow.tags and len(fast) == len(slow) == 4000 * 10 + 40 * 2
    for col in ("tag_code", "step", "value", "order"):
        assert np.array_equal(getattr(fast, col), getattr(slow, col), equal_nan=True), col


def test_neox_tensorboard_tags(tmp_path):
    tags = {"train/lm_loss": "train_loss", "train/learning_rate": "lr",
            "train/loss_scale": "loss_scale", "validation/lm_loss": "val_loss",
            "validation/lm_loss_ppl": "other", "runtime/samples_per_sec": "other",
            "runtime/flops_per_sec_per_gpu": "other", "timers/forward": "other"}
    w = EventFileWriter(str(tmp_path))
    for step in (10, 20):
        for tag in tags:
            w.add_event(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary_pb2.Summary(
                value=[summary_pb2.Summary.Value(tag=tag, simple_value=2.0)])))
    w.close()
    (run,) = losslens.read(Path(tmp_path)).runs
    assert run.roles == tags
    assert all(s.points == 2 for s in run.series)
