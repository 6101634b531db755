"""HF Trainer with the guard's callback: an injected run of bad batches makes the loss spike
and stay up; the callback stops the run with the plan, and the resumed run skips the planned
batches and does not spike again (tiny local GPT-2, no downloads)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from guard_runs import BATCH, MAX_LAG, POISON, TokenData, one_thread, policy, tiny_gpt2  # noqa: E402

from losslens.guard import PLAN_FILE, Guard  # noqa: E402
from losslens.guard.hf import GuardCallback  # noqa: E402


def trainer(out, model, callback, max_steps=60):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=BATCH,
        learning_rate=3e-3, logging_steps=1, save_steps=10, save_strategy="steps",
        report_to=[], use_cpu=True, train_sampling_strategy="sequential",
        dataloader_num_workers=0, seed=0, disable_tqdm=True, save_only_model=False,
        lr_scheduler_type="constant", warmup_steps=0)
    return Trainer(model=model, args=args, train_dataset=TokenData(), callbacks=[callback])


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def test_hf_trainer_stops_at_the_spike_and_the_resumed_run_skips_the_batches(
        tmp_path, guards):
    alerts = []
    cb = GuardCallback(guards(policy(), alert=alerts.append))
    t = trainer(tmp_path, tiny_gpt2(), cb)
    t.train()
    stop = cb.guard.stopped
    assert stop is not None and stop.action == "stop_and_restart"
    assert stop.events[0].kind == "spike" and stop.events[0].start_step == POISON[0]
    assert stop.step == POISON[0] + 10  # decided stop_after steps into it
    assert stop.step <= t.state.global_step <= stop.step + MAX_LAG  # delivered then
    doc = json.loads((tmp_path / PLAN_FILE).read_text())
    assert doc["plan"]["restart_from_step"] == 20  # latest checkpoint >= 5 before step 31
    assert doc["plan"]["skip"] == [[21, 60]]  # widened to min_skip=40: covers 31..50
    assert [d.action for d in alerts] == ["stop_and_restart"]

    # resume from the planned checkpoint: the planned batches are left out
    cb2 = GuardCallback(guards(policy()))
    t2 = trainer(tmp_path, tiny_gpt2(), cb2)
    t2.train(resume_from_checkpoint=str(tmp_path / "checkpoint-20"))
    assert cb2.skipping
    seen = t2.train_dataset.seen  # step 21 trains on the batch of old step 61, and so on
    assert seen[:BATCH] == list(range(60 * BATCH, 61 * BATCH))
    # (accelerate loads one batch ahead)
    assert max(seen) < 101 * BATCH and not any(240 <= i < 400 for i in seen)
    assert t2.state.global_step == 60
    before = [h["loss"] for h in t2.state.log_history if "loss" in h and h["step"] <= 20]
    after = [h["loss"] for h in t2.state.log_history if "loss" in h and h["step"] > 20]
    assert len(after) == 40 and max(after) < min(before[-5:]) * 1.2  # poison gave ~4.1
    assert [e for e in cb2.guard.flush() if e.kind != "grad_spike"] == []  # no loss event
    assert cb2.guard.decisions == []
