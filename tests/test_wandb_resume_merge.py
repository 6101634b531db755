"""A W&B run resumed into a second run dir (same run id) is read as one run with a segment."""
from __future__ import annotations

from losslens.frame import build
from losslens.readers import _merge_resumed
from losslens.records import RecordsBuilder, RunMeta


def _part(run, steps, value, rid="abc123", fmt="wandb"):
    b = RecordsBuilder()
    b.add_array("train/loss", steps, [value] * len(steps))
    if value > 2:
        b.add_array("train/lr", steps, [1e-4] * len(steps))
    return b.build(run, f"{run}.wandb", fmt, RunMeta(extra={"wandb.run_id": rid}))


def test_resumed_parts_are_stitched_into_one_run():
    first = _part("run-20240101_000000-abc123", range(0, 100), 3.0)
    second = _part("run-20240102_000000-abc123", range(80, 150), 1.0)
    other = _part("run-20240103_000000-zzz", range(0, 10), 1.0, rid="zzz")
    merged = _merge_resumed([first, other, second])
    assert [r.run for r in merged] == ["run-20240101_000000-abc123", "run-20240103_000000-zzz"]
    frame = build(merged)
    info = frame.run("run-20240101_000000-abc123")
    assert [(g.first_step, g.last_step, g.reason) for g in info.segments] == [
        (0, 99, "start"), (80, 149, "header")]
    loss = frame.series(info.run, "train/loss")
    assert loss.step.tolist() == list(range(0, 150))
    assert loss.value[79] == 3.0 and loss.value[80] == 1.0  # the resumed part wins
    assert info.metadata.extra["resumed_parts"] == \
        "run-20240101_000000-abc123.wandb, run-20240102_000000-abc123.wandb"


def test_other_formats_and_single_runs_are_untouched():
    a = _part("a", range(5), 1.0, fmt="jsonl")
    b = _part("b", range(5), 1.0, fmt="jsonl")
    assert _merge_resumed([a, b]) == [a, b]
