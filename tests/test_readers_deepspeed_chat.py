"""DeepSpeed-Chat steps 1 and 2: the evaluations (`ppl: P, loss: L`; reward scores; DPO rewards)
that its main.py files print between the DeepSpeed engine's step lines.

The fixtures are printed with the f-strings of microsoft/DeepSpeedExamples @ 83757d9c,
applications/DeepSpeed-Chat/training/step1_supervised_finetuning/main.py,
step2_reward_model_finetuning/main.py and step2_dpo_finetuning/main.py, and DeepSpeed's own
`[Rank 0] step=N, skipped=K, lr=[...], mom=[...]` line every `steps_per_print`; the real logs are
that commit's training_log_output files (Apache-2.0), pinned in test_readers_real_excerpts.py.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import losslens
from losslens.readers import deepspeed, read_file, sniff

DATA = Path(__file__).resolve().parent / "data" / "real_excerpts"
STAMP = "[2023-04-18 01:46:59,142] [INFO] [logging.py:96:log_dist] "


def engine(step: int, lr: float = 9.65e-06) -> str:
    return f"{STAMP}[Rank 0] step={step}, skipped=0, lr=[{lr}, {lr}], mom=[(0.9, 0.95), (0.9, 0.95)]"


def sft_log(epochs: int = 2, batches: int = 30, with_loss: bool = True) -> str:
    """step1's main.py: evaluation before training and after each epoch."""
    out = ["cmd = deepspeed main.py --model_name_or_path facebook/opt-1.3b "
           "--num_train_epochs 2 --print_loss"]

    def evaluate(e: int, ppl: float, loss: float) -> None:
        out.append(f"***** Evaluating perplexity, Epoch {e}/{epochs} *****")
        out.append(f"ppl: {ppl}, loss: {loss}" if with_loss else f"ppl: {ppl}")

    out.append("***** Running training *****")
    evaluate(0, 4998.29638671875, 8.516852378845215)
    step = 0
    for epoch in range(epochs):
        out.append(f"Beginning of Epoch {epoch+1}/{epochs}, Total Micro Batches {batches}")
        for _ in range(batches):
            step += 1
            if step % 10 == 0:
                out.append(engine(step))
        evaluate(epoch + 1, 2.0 - epoch / 10, 0.7 - epoch / 100)
    out.append("saving the final model ...")
    return "\n".join(out) + "\n"


def points(rec, tag):
    """(steps, values) of one tag in write order."""
    import numpy as np

    m = np.flatnonzero(rec.tag_code == rec.tags.index(tag))
    m = m[np.argsort(rec.order[m], kind="stable")]
    return rec.step[m].tolist(), rec.value[m].tolist()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sft_perplexity_and_loss_at_the_end_of_each_epoch(tmp_path):
    path = write(tmp_path, "training.log", sft_log())
    assert sniff(path).name == "deepspeed"
    [rec] = read_file(path, "sft")
    assert points(rec, "eval/ppl") == ([0, 30, 60], [4998.29638671875, 2.0, 1.9])
    assert points(rec, "eval/loss") == ([0, 30, 60], [8.516852378845215, 0.7, 0.69])
    assert points(rec, "lr")[0] == [10, 20, 30, 40, 50, 60]
    assert rec.metadata.framework == "deepspeed-chat" and rec.skipped_count == 0
    run = losslens.read(path).runs[0]
    assert run.roles["eval/loss"] == "val_loss" and run.roles["eval/ppl"] == "other"


def test_sft_before_the_loss_was_printed(tmp_path):
    """The logs committed with DeepSpeed-Chat (April 2023) print `ppl: P` alone."""
    [rec] = read_file(write(tmp_path, "t.log", sft_log(with_loss=False)), "sft")
    assert points(rec, "eval/ppl")[0] == [0, 30, 60] and "eval/loss" not in rec.tags


def test_reward_model_scores_mid_epoch_evaluations_and_epoch_loss(tmp_path):
    def scores(c, r, a):
        return (f"chosen_last_scores (higher is better) : {c}, "
                f"rejected_last_scores (lower is better) : {r}, "
                f"acc (higher is better) : {a}")

    lines = ["***** Running training *****",
             "***** Evaluating reward, Epoch 0/1 *****", scores(2.81, 2.79, 0.49),
             "Beginning of Epoch 1/1, Total Micro Batches 40",
             engine(10), engine(20),
             "Iter 20: Evaluating reward",
             f"Iter 20: c_scores: {3.1}, r_scores: {2.2}, diff: {3.1 - 2.2}, acc: {0.61}",
             engine(30), engine(40),
             f"Epoch 1/1 with loss {0.5754789632299672}",
             "***** Evaluating reward, Epoch 1/1 *****", scores(2.24, 1.1, 0.70),
             "saving model ..."]
    path = write(tmp_path, "rm.log", "\n".join(lines) + "\n")
    assert sniff(path).name == "deepspeed"
    [rec] = read_file(path, "rm")
    assert points(rec, "eval/chosen_last_scores") == ([0, 40], [2.81, 2.24])
    assert points(rec, "eval/rejected_last_scores") == ([0, 40], [2.79, 1.1])
    # the mid-epoch evaluation's acc is the same measurement on the same data: one series
    assert points(rec, "eval/acc") == ([0, 20, 40], [0.49, 0.61, 0.70])
    assert points(rec, "eval/c_scores") == ([20], [3.1])
    assert points(rec, "eval/diff") == ([20], [3.1 - 2.2])
    assert points(rec, "epoch mean loss") == ([40], [0.5754789632299672])
    roles = losslens.read(path).runs[0].roles
    assert (roles["eval/acc"], roles["epoch mean loss"], roles["eval/c_scores"]) == (
        "val_acc", "train_loss", "other")


def test_dpo_rewards_and_loss(tmp_path):
    lines = ["***** Evaluating rewards, Epoch 1/1 *****",
             "chosen: 0.0, rejected: 0.0, loss: 0.693359375",
             "Beginning of Epoch 1/1, Total Micro Batches 4708",
             engine(0, 5e-05), engine(10), engine(2350),
             "***** Evaluating rewards, Epoch 1/1 *****",
             "chosen: -31.9375, rejected: -33.96875, loss: 0.6650807857513428"]
    [rec] = read_file(write(tmp_path, "dpo.log", "\n".join(lines) + "\n"), "dpo")
    assert points(rec, "eval/loss") == ([0, 2350], [0.693359375, 0.6650807857513428])
    assert points(rec, "eval/chosen") == ([0, 2350], [0.0, -31.9375])
    assert rec.metadata.framework == "deepspeed-chat"


def test_a_damaged_evaluation_line_is_a_skipped_line(tmp_path):
    text = sft_log().replace("ppl: 2.0, loss: 0.7", "ppl: tensor(2.0, device='cuda:0')")
    [rec] = read_file(write(tmp_path, "t.log", text), "sft")
    assert [s.reason.split(" (")[0] for s in rec.skipped] == ["unparseable DeepSpeed line"]
    assert points(rec, "eval/ppl")[0] == [0, 60]


def test_megatron_does_not_read_chat_evaluations():
    """Megatron's reader shares the engine lines only (`ppo=False`)."""
    ds = deepspeed.DeepSpeedLines()
    assert not ds.feed(1, "ppl: 2.0, loss: 0.7", lambda *a: None, ppo=False)
    assert ds.feed(1, "ppl: 2.0, loss: 0.7", lambda *a: None)


@pytest.mark.parametrize("text", [
    "ppl: 2.0\n",                                       # no header, no engine lines
    "***** Evaluating perplexity *****\nppl: 2.0\n",    # no epoch in the header
])
def test_sniff_needs_the_evaluation_header_or_engine_lines(text):
    assert deepspeed.sniff("x.log", text.encode()) == 0.0
