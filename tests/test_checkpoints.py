"""Checkpoint discovery: each framework's save lines, folders beside the log or named by it,
and the skip plan restarting from a checkpoint that was saved."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import losslens
from losslens.pipeline import analyze_frame
from losslens.readers import read_records
from losslens.readers.checkpoints import SaveLines, scan_dir, step_of_path


def _nanogpt_log(path: Path, saves: bool = True) -> Path:
    """nanoGPT train.py stdout: evals every 100 iterations, each followed by a save; the loss
    diverges from iteration 420."""
    rnd = random.Random(0)
    lines = ["tokens per iteration will be: 16,384"]
    for it in range(0, 501):
        if it % 100 == 0:
            lines.append(f"step {it}: train loss {3 - it / 400:.4f}, val loss {3.1 - it / 400:.4f}")
            if it and saves:
                lines.append("saving checkpoint to out")
        if it % 2 == 0:
            loss = 3 - it / 400 + rnd.gauss(0, 0.01) if it < 420 else 1.95 + (it - 420) * 0.05
            lines.append(f"iter {it}: loss {loss:.4f}, time 45.00ms, mfu 8.00%")
    path.write_text("\n".join(lines) + "\n")
    return path


def _plan(path: Path):
    frame = losslens.read(path)
    analysis = analyze_frame(frame)
    (ra,) = analysis.runs
    return ra, frame.runs[0].metadata


def test_nanogpt_saves_restart_from_300_not_320(tmp_path):
    ra, meta = _plan(_nanogpt_log(tmp_path / "train.log"))
    assert meta.checkpoints == (100, 200, 300, 400, 500)
    assert meta.checkpoint_source.startswith("the log's save lines (nanoGPT); nanoGPT overwrites")
    assert meta.checkpoint_dir == "out"
    onset = min(e.start_step for e in ra.events if e.kind == "spike")
    assert onset - 100 >= 300 and onset - 100 < 400  # without checkpoints: restart at onset-100
    assert ra.skip_plan.restart_from_step == 300
    assert ra.skip_plan.skip == ((301, 500),)
    assert ra.skip_plan.checkpoint_source == meta.checkpoint_source
    from losslens.report.jsondoc import analysis_document

    doc = analysis_document(analyze_frame(losslens.read(tmp_path / "train.log")))
    assert doc["runs"][0]["checkpoints"] == {"source": meta.checkpoint_source,
                                             "steps": [100, 200, 300, 400, 500]}


def test_nanogpt_without_save_lines_restarts_exactly_before_steps_earlier(tmp_path):
    ra, meta = _plan(_nanogpt_log(tmp_path / "train.log", saves=False))
    onset = min(e.start_step for e in ra.events if e.kind == "spike")
    assert meta.checkpoints is None
    assert ra.skip_plan.restart_from_step == onset - 100
    assert ra.skip_plan.checkpoint_source == (
        "none known: the restart is assumed 100 steps before the onset")


def _trainer_state(steps: range, diverge_at: int) -> dict:
    rnd = random.Random(1)
    hist = []
    for s in steps:
        loss = 3 - s / 400 + rnd.gauss(0, 0.01) if s < diverge_at else 2.0 + (s - diverge_at) * 0.05
        hist.append({"epoch": s / 1000, "grad_norm": 1.0, "learning_rate": 1e-4,
                     "loss": round(loss, 4), "step": s})
    return {"global_step": steps[-1], "log_history": hist, "save_steps": 100,
            "max_steps": 500}


def test_hf_output_dir_with_checkpoint_dirs_restarts_from_one_of_them(tmp_path):
    out = tmp_path / "out"
    for n in (100, 200, 300, 400, 500):
        d = out / f"checkpoint-{n}"
        d.mkdir(parents=True)
        (d / "trainer_state.json").write_text(json.dumps(_trainer_state(range(2, n + 1, 2), 420)))
    recs = read_records(out)
    assert [r.source for r in recs] == [str(out / "checkpoint-500" / "trainer_state.json")]
    meta = recs[0].metadata
    assert meta.checkpoints == (100, 200, 300, 400, 500)
    assert meta.checkpoint_source == f"checkpoint folders beside the log: {out}"
    analysis = analyze_frame(losslens.read(out))
    plan = analysis.runs[0].skip_plan
    assert plan.restart_from_step == 300 and plan.skip == ((301, 500),)
    assert plan.checkpoint_source == f"checkpoint folders beside the log: {out}"


def test_hf_console_save_and_delete_lines(tmp_path):
    log = tmp_path / "train.log"
    rows = []
    for s in range(10, 301, 10):
        rows.append(f"{{'loss': {3 - s / 400:.4f}, 'grad_norm': 1.0, 'learning_rate': 0.0001, "
                    f"'epoch': {s / 1000}}}")
        if s % 100 == 0:
            rows.append(f"[INFO|trainer.py:3984] 2024-05-01 10:00:00,000 >> Saving model "
                        f"checkpoint to out/checkpoint-{s}")
            if s == 300:
                rows.append("[INFO|trainer.py:4076] 2024-05-01 10:00:01,000 >> Deleting older "
                            "checkpoint [out/checkpoint-100] due to args.save_total_limit")
    log.write_text("\n".join(rows) + "\n")
    (rec,) = read_records(log)
    m = rec.metadata
    assert m.checkpoints == (200, 300)
    assert m.checkpoint_source == ("the log's save lines (HF Trainer); 1 deleted later "
                                   "(save_total_limit) left out")
    assert m.checkpoint_dir == "out"


def test_the_folder_the_log_names_wins_over_its_lines(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("{'loss': 2.5, 'learning_rate': 0.0001, 'epoch': 0.01}\n"
                   "Saving model checkpoint to out/checkpoint-10\n"
                   "{'loss': 2.4, 'learning_rate': 0.0001, 'epoch': 0.02}\n"
                   "Saving model checkpoint to out/checkpoint-20\n")
    (tmp_path / "out" / "checkpoint-20").mkdir(parents=True)
    (tmp_path / "out" / "checkpoint-30").mkdir()
    (rec,) = read_records(log)
    assert rec.metadata.checkpoints == (20, 30)
    assert rec.metadata.checkpoint_source == (
        f"the folder the log names: {tmp_path / 'out'} (the log also saved 10, no longer there)")


def test_lightning_checkpoints_beside_metrics_csv(tmp_path):
    version = tmp_path / "lightning_logs" / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    (version / "checkpoints" / "epoch=0-step=50.ckpt").write_bytes(b"")
    (version / "checkpoints" / "epoch=1-step=100-v1.ckpt").write_bytes(b"")
    (version / "metrics.csv").write_text(
        "epoch,step,train_loss,val_loss\n" + "".join(
            f"0,{s},{2 - s / 100:.3f},\n" for s in range(0, 100, 10)) + "0,99,,1.5\n")
    (rec,) = read_records(version / "metrics.csv")
    assert rec.metadata.checkpoints == (50, 100)
    assert rec.metadata.checkpoint_source == \
        f"checkpoint folders beside the log: {version / 'checkpoints'}"


@pytest.mark.parametrize("line, last, step, framework", [
    ("saving checkpoint to out", 300, 300, "nanoGPT"),
    ("[INFO|trainer.py:3984] 2024-05-01 10:00:00,000 >> Saving model checkpoint to "
     "/scratch/run/checkpoint-1500", None, 1500, "HF Trainer"),
    ("[2023-07-24 13:21:33,261] [INFO] [logging.py:96:log_dist] [Rank 0] [Torch] Checkpoint "
     "global_step10 is about to be saved!", None, 10, "DeepSpeed"),
    ("[2023-07-24 13:21:33,261] [INFO] [engine.py:3300:_save_checkpoint] Saving model "
     "checkpoint: ckpt/global_step20/mp_rank_00_model_states.pt", None, 20, "DeepSpeed"),
    ("Epoch 3, global step 800: 'val_loss' reached 0.41230 (best 0.41230), saving model to "
     "'/run/checkpoints/epoch=3-step=800.ckpt' as top 1", None, 800, "Lightning"),
    ("2024-02-01 10:00:00.000\tnode:0\tolmo.train:1000\tINFO\tCheckpoint saved to "
     "ckpts/run/step2000-unsharded", None, 2000, "OLMo"),
    ("[rank0]:[titan] 2025-04-01 00:25:50,000 - root - INFO - Saving a full checkpoint at step "
     "640", None, 640, "torchtitan"),
    ("[rank0]:[titan] 2025-04-01 00:25:50,000 - root - INFO - Saving the checkpoint (or staging "
     "if async is enabled).", 500, 500, "torchtitan"),
    ("[titan] Saving a model only checkpoint in torch.bfloat16 at last step, step 10.", None, 10,
     "torchtitan"),
    ("2021-03-01 10:00:00 | INFO | fairseq.checkpoint_utils | Saved checkpoint "
     "ckpt/checkpoint_2_5000.pt (epoch 2 @ 5000 updates, score 4.1) (writing took 3.2 seconds)",
     None, 5000, "fairseq"),
    (" saving checkpoint at iteration    1000 to /ckpts/gpt", None, 1000, "Megatron"),
    ("Writing checkpoint at step 250", None, 250, "llm.c"),
    ("05:47:25.181 [I] [process=0] Saving checkpoint at step 1000                 "
     "(2490449:checkpoint_manager.py:1408)", None, 1000, "orbax"),  # openpi's stdout
    ("Saved checkpoint to /ckpt/gemma-2-2b/lora_epoch3_step150.pt", None, 150,
     "Saved checkpoint to"),  # a GRPO script's own print
])
def test_save_lines_of_each_framework(line, last, step, framework):
    saves = SaveLines()
    assert saves.feed(7, line, last)
    assert saves.steps() == (step,)
    assert saves.fields()["checkpoint_source"].startswith(f"the log's save lines ({framework})")


def test_lines_that_are_not_saves():
    saves = SaveLines()
    for line in ("loading checkpoint from out", "Saving model checkpoint to out",  # final model
                 "checkpoint_interval = 500", "no checkpoint found, starting fresh"):
        saves.feed(1, line, 10)
    assert saves.steps() == () and "checkpoints" not in saves.fields()


def test_names_and_scan_dir(tmp_path):
    assert step_of_path("/a/b/checkpoint-300/") == 300
    assert step_of_path("out/iter_0001000/mp_rank_00/model_optim_rng.pt") == 1000
    assert step_of_path("out/ckpt.pt") is None
    for name in ("iter_0000200", "global_step300", "step400-unsharded", "step-500", "notes"):
        (tmp_path / name).mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("600\n")
    assert scan_dir(tmp_path) == [200, 300, 400, 500, 600]
    assert scan_dir(tmp_path / "missing") == []
