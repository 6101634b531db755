"""Replay on scenarios a new user meets, each a toy run (`replay_toy.py`) with its expected verdict.

- a log printed every 10 iterations (Megatron's mean over the interval) with a bad batch inside
  the interval → `bad_batch`, the flagged range widened to the interval, the corrupted rows of
  the right batch as the samples to look at;
- an LR-schedule jump (×30 for 3 iterations, in the log's own LR column): with `lr_at` the
  replay follows it → `lr_schedule`; without it → `inconclusive`, the schedule named; never
  `bad_batch`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import torch
except ImportError:
    torch = None

from losslens.replay import replay

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")
TESTS = Path(__file__).resolve().parent
NAMES = ["build_model", "build_optimizer", "checkpoints", "load_checkpoint", "get_batch",
         "loss_fn", "sample_ids"]


def _run(tmp_path, monkeypatch, lr_at: bool = True, **cfg):
    sys.path.insert(0, str(TESTS))
    try:
        import replay_toy
    finally:
        sys.path.remove(str(TESTS))
    log = replay_toy.train(tmp_path, **cfg)
    monkeypatch.setenv("LOSSLENS_TOY_RUN", str(tmp_path))
    names = NAMES + (["lr_at"] if lr_at else [])
    plug = tmp_path / "plugin.py"
    plug.write_text(f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
                    f"from replay_toy import {', '.join(names)}\n")
    threads = torch.get_num_threads()
    try:
        return replay(str(plug), log, device="cpu")
    finally:
        torch.set_num_threads(threads)


def test_sparse_log_bad_batch_inside_the_interval(tmp_path, monkeypatch):
    rep = _run(tmp_path, monkeypatch, bad_step=226, log_every=10)
    [r] = rep.results
    assert (r.event.id, r.event.start_step, r.flagged, r.checkpoint) == ("spike-1", 230,
                                                                       (221, 230), 200)
    assert (r.verdict, r.cause) == ("bad_batch", "data")
    m = r.measurements
    assert m["flagged_widened"]["to"] == [221, 230]
    # the log's mean over 221-230 against the replay's mean over the same iterations
    assert m["log"]["reduction"] == "mean"
    assert [p["covers"] for p in m["log"]["event"]] == [[221, 230]]
    assert m["log"]["event_match"] is True and m["log"]["pre_match"] is True
    # every batch of the interval scanned; the corrupted rows of batch 226 come first
    assert [f["step"] for f in m["static"]["flagged"]] == list(range(221, 231))
    assert [(s["step"], s["index"]) for s in r.samples[:3]] == [(226, 7), (226, 11), (226, 2)]
    assert r.samples[0]["sample_id"] == 225 * 16 + 7


@pytest.mark.parametrize("lr_at, verdict", [(True, "lr_schedule"), (False, "inconclusive")])
def test_lr_jump_is_the_schedule_not_the_data(tmp_path, monkeypatch, lr_at, verdict):
    rep = _run(tmp_path, monkeypatch, lr_at=lr_at, lr_jump=[201, 3, 30.0], steps=300, lr=1e-2)
    [r] = [x for x in rep.results if x.flagged[0] > 150]
    assert (r.event.kind, r.flagged[0], r.checkpoint) == ("grad_spike", 202, 200)
    assert (r.verdict, r.cause) == (verdict, "schedule")
    assert r.measurements["lr"]["log_lr_jumps"][0] == [201, pytest.approx(30.0)]
    # a grad-norm event is described by the grad norm the log printed, not by the loss
    peak = max(v for s, v in rep_log_values(tmp_path, "grad norm").items() if 202 <= s <= 213)
    assert r.evidence[0] == f"log: grad_spike of grad norm at step 202, logged peak {peak:.4g}"
    if lr_at:
        assert "the log's LR jumps ×30 at 201; lr_at follows it" in r.evidence
        assert r.measurements["counterfactuals"]["substitute"]["check"]["shows"] is True
        assert r.evidence[-1] == ("the event happens with any batches at the LR the log shows: "
                                  "the schedule")
    else:
        assert r.evidence[-1] == (
            "the plug-in gives no lr_at and the log's LR jumps ×30 at 201: schedule (replay kept "
            "the checkpoint's LR; give lr_at(step) to replay it)")
        assert r.measurements["lr"]["mismatched_steps"] == [201, 202, 203]


def rep_log_values(folder: Path, tag: str) -> dict[int, float]:
    import losslens

    frame = losslens.read(folder / "train.log")
    s = frame.series(frame.runs[0].run, tag)
    return {int(k): float(v) for k, v in zip(s.step, s.value)}
