"""Karpathy's build-nanogpt (`train_gpt2.py`): its stdout and log/log.txt, written here with the
script's own format strings, and the real runs of a fork (benchmarks/real/excerpts.json,
fetched by benchmarks/real/fetch_excerpts.py; skipped when absent)."""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

import losslens
from losslens.pipeline import analyze_frame
from losslens.readers import read_records, sniff
from losslens.readers.build_nanogpt import sniff_build_nanogpt, sniff_build_nanogpt_log

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache" / "excerpts"


def train_gpt2(log_dir: Path, max_steps: int, *, diverge_at: int | None = None,
               use_compile: bool = False, ranks: int = 2, seed: int = 0) -> str:
    """What train_gpt2.py prints (returned) and writes to log_dir/log.txt and
    log_dir/model_NNNNN.pt, with the script's own f-strings and schedule: validation and
    HellaSwag every 250 steps and at the last step (HellaSwag and samples only without
    torch.compile), samples from every rank, checkpoints every 5000 steps and at the end."""
    rnd = random.Random(seed)
    out = ["using device: cuda:0", "total desired batch size: 524288",
           "=> calculated gradient accumulation steps: 4", "found 99 shards for split train",
           "found 1 shards for split val",
           "num decayed parameter tensors: 50, with 124,354,560 parameters",
           "num non-decayed parameter tensors: 98, with 121,344 parameters",
           "using fused AdamW: True"]
    log = []
    max_lr, min_lr, warmup_steps = 6e-4, 6e-5, 10

    def get_lr(it: int) -> float:
        if it < warmup_steps:
            return max_lr * (it + 1) / warmup_steps
        ratio = (it - warmup_steps) / (max_steps - warmup_steps)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (max_lr - min_lr)

    def loss_at(step: int) -> float:
        base = 3 + 8 * math.exp(-step / 200)
        if diverge_at is not None and step >= diverge_at:
            base += (step - diverge_at) * 0.05
        return base + rnd.gauss(0, 0.01)

    for step in range(max_steps):
        last_step = step == max_steps - 1
        if step % 250 == 0 or last_step:
            val = loss_at(step) + 0.05
            out.append(f"validation loss: {val:.4f}")
            log.append(f"{step} val {val:.4f}\n")
            if step > 0 and (step % 5000 == 0 or last_step):
                (log_dir / f"model_{step:05d}.pt").write_bytes(b"")
        if (step % 250 == 0 or last_step) and not use_compile:
            num_correct_norm, num_total = 2490 + step // 10, 10042
            acc_norm = num_correct_norm / num_total
            out.append(f"HellaSwag accuracy: {num_correct_norm}/{num_total}={acc_norm:.4f}")
            log.append(f"{step} hella {acc_norm:.4f}\n")
        if ((step > 0 and step % 250 == 0) or last_step) and not use_compile:
            for r in range(ranks):
                for i in range(4):
                    out.append(f"rank {r} sample {i}: Hello, I'm a language model, and\n"
                               "step 7 of the plan | loss: of words")
        loss_accum, norm = loss_at(step), 0.3 + rnd.random()
        dt, tokens_per_sec = 0.4 + rnd.random() / 100, 1.3e6
        lr = get_lr(step)
        out.append(f"step {step:5d} | loss: {loss_accum:.6f} | lr {lr:.4e} | norm: {norm:.4f} | "
                   f"dt: {dt*1000:.2f}ms | tok/sec: {tokens_per_sec:.2f}")
        log.append(f"{step} train {loss_accum:.6f}\n")
    (log_dir / "log.txt").write_text("".join(log))
    return "\n".join(out) + "\n"


def series(rec, tag: str) -> tuple[list[int], list[float]]:
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_stdout_and_log_txt_from_the_source_format(tmp_path):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    out = tmp_path / "train.out"
    out.write_text(train_gpt2(log_dir, 601))
    assert sniff(out).name == "build-nanogpt"
    assert sniff(log_dir / "log.txt").name == "build-nanogpt-log"
    (con,) = read_records(out)
    (txt,) = read_records(log_dir / "log.txt")
    assert con.format == "build-nanogpt" and txt.format == "build-nanogpt-log"
    assert con.skipped_count == txt.skipped_count == 0
    assert set(con.tags) == {"loss", "lr", "norm", "dt", "tok/sec", "val loss", "HellaSwag"}
    assert set(txt.tags) == {"loss", "val loss", "HellaSwag"}
    roles = losslens.read(out).runs[0].roles
    assert roles == {"loss": "train_loss", "lr": "lr", "norm": "grad_norm", "dt": "other",
                     "tok/sec": "other", "val loss": "val_loss", "HellaSwag": "val_acc"}
    # validation and HellaSwag print no step: the step printed next (top of the loop)
    for tag in ("val loss", "HellaSwag"):
        assert series(con, tag)[0] == series(txt, tag)[0] == [0, 250, 500, 600]
        assert series(con, tag) == series(txt, tag)
    assert series(con, "loss") == series(txt, "loss")
    assert series(con, "loss")[0] == list(range(601))
    assert series(con, "HellaSwag")[1][:2] == [0.248, 0.2504]
    steps, lr = series(con, "lr")
    assert steps == list(range(601)) and lr[:2] == [6e-05, 1.2e-04] and lr[-1] == 6.0004e-05
    assert con.metadata.framework == txt.metadata.framework == "build-nanogpt"
    assert dict(con.metadata.extra) == {
        "device": "cuda:0", "total_batch_size_tokens": "524288", "grad_accum_steps": "4",
        "decayed_parameters": "124354560", "non_decayed_parameters": "121344"}
    # the script's only checkpoint of a 601-step run: log/model_00600.pt beside log.txt
    assert txt.metadata.checkpoints == (600,)
    assert txt.metadata.checkpoint_source == f"checkpoint folders beside the log: {log_dir}"
    assert con.metadata.checkpoints is None


def test_with_torch_compile_no_hellaswag_and_still_sniffed(tmp_path):
    out = tmp_path / "train.out"
    out.write_text(train_gpt2(tmp_path, 300, use_compile=True))
    (con,) = read_records(out)
    (txt,) = read_records(tmp_path / "log.txt")
    assert set(txt.tags) == {"loss", "val loss"} and txt.format == "build-nanogpt-log"
    assert series(con, "val loss") == series(txt, "val loss")
    assert series(con, "val loss")[0] == [0, 250, 299]


def test_checkpoints_beside_log_txt_feed_the_skip_plan(tmp_path):
    # the loss diverges at 5400; the script saved model_05000.pt and model_07000.pt: the plan
    # restarts from 5000, not from 100 steps before the onset
    train_gpt2(tmp_path, 7001, diverge_at=5400)
    (tmp_path / "model_07000.pt").unlink()  # a run killed before its last step
    path = tmp_path / "log.txt"
    frame = losslens.read(path)
    assert frame.runs[0].metadata.checkpoints == (5000,)
    (ra,) = analyze_frame(frame).runs
    onset = min(e.start_step for e in ra.events if e.kind in ("spike", "divergence"))
    assert 5400 <= onset < 5600
    assert ra.skip_plan.restart_from_step == 5000
    assert ra.skip_plan.checkpoint_source == f"checkpoint folders beside the log: {tmp_path}"


def test_earlier_print_forms_of_the_video(tmp_path):
    # the repository's history: `{step:4d}`, no lr, no norm, and the comma form before them
    text = ("step    0 | loss: 10.955010 | dt: 1000.00ms | tok/sec: 16384.00\n"
            "step    1 | loss: 9.500000 | norm: 5.1000 | dt: 100.00ms | tok/sec: 163840.00\n"
            "step    2 | loss: 9.000000 | lr 6.0000e-04 | norm: 4.0000 | dt: 100.00ms | "
            "tok/sec: 163840.00\n"
            "step 3, loss: 8.5, dt: 99.00ms, tok/sec: 165000.00\n"
            "step    4 | loss: nan | lr 6.0000e-04 | norm: inf | dt: 100.00ms | tok/sec: 1.00\n")
    path = tmp_path / "out.txt"
    path.write_text(text)
    assert sniff(path).name == "build-nanogpt"
    (rec,) = read_records(path)
    assert rec.skipped_count == 0
    assert series(rec, "loss")[0] == [0, 1, 2, 3, 4]
    assert series(rec, "loss")[1][:4] == [10.95501, 9.5, 9.0, 8.5]
    assert math.isnan(series(rec, "loss")[1][4])
    assert series(rec, "norm") == ([1, 2, 4], [5.1, 4.0, math.inf])
    assert series(rec, "lr") == ([2, 4], [6e-4, 6e-4])
    assert series(rec, "dt")[1] == [1000.0, 100.0, 100.0, 99.0, 100.0]


def test_damaged_lines_are_reported_not_dropped(tmp_path):
    text = ("validation loss: 10.9\n"
            "step     0 | loss: 10.9 | lr 6.0000e-04 | norm: 1.0 | dt: 1.00ms | tok/sec: 1.00\n"
            "step     1 | loss: ten | lr 6.0000e-04 | norm: 1.0 | dt: 1.00ms | tok/sec: 1.00\n"
            "step     2 | loss: 10.1 | lr 6.0000e-04 | norm: 1.0 | dt: 1.00\n"
            "validation loss: \n"
            "HellaSwag accuracy: 1/4=0.2500\n"
            "step     3 | loss: 10.0 | lr 6.0000e-04 | norm: 1.0 | dt: 1.00ms | tok/sec: 1.00\n"
            "step     4 | loss: 9.9 | lr 6.0000e-04 | no")
    path = tmp_path / "out.txt"
    path.write_text(text)
    (rec,) = read_records(path)
    assert series(rec, "loss")[0] == [0, 3]
    assert series(rec, "val loss") == ([0], [10.9])
    assert series(rec, "HellaSwag") == ([3], [0.25])  # after step 2's line (unread): step 3
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (3, "build-nanogpt step line with a value that is not a number"),
        (4, "build-nanogpt step line that does not parse"),
        (5, "build-nanogpt validation loss line that does not parse"),
        (8, "truncated last line")]


def test_log_txt_other_kinds_damaged_lines_and_truncation(tmp_path):
    text = ("0 val 10.9512\n0 hella 0.2470\n0 train 10.954321\n0 lr 0.0006\n"
            "1 train 10.012345\n1 train oops\n2 train 9.5 extra=1\nnot a line\n3 train 9.4")
    path = tmp_path / "log.txt"
    path.write_text(text)
    (rec,) = read_records(path, "build-nanogpt-log")  # too damaged to be sniffed
    assert sniff_build_nanogpt_log("log.txt", text.encode()) == 0.0
    assert set(rec.tags) == {"val loss", "HellaSwag", "loss", "lr"}
    assert series(rec, "loss") == ([0, 1], [10.954321, 10.012345])
    assert series(rec, "lr") == ([0], [0.0006])
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (6, "build-nanogpt log.txt train value that is not a number"),
        (7, "build-nanogpt log.txt line that is not `step kind value`"),
        (8, "build-nanogpt log.txt line that is not `step kind value`"),
        (9, "truncated last line")]


@pytest.mark.parametrize("text", [
    "0 train 10.9\n1 train 10.8\n2 train 10.7\n",          # no val / hella: any `N word X` file
    "0 val 1.0\n0 hella 0.2\n",                            # no train
    "0 val 10.9\n0 train 10.9\nhello\n1 train 10.8\n",    # a line of another shape
    "epoch 1 train 0.5\n",
    "100 val_loss 2.5\n100 train_loss 2.6\n",
    "",
])
def test_log_txt_sniff_declines_other_text(text):
    assert sniff_build_nanogpt_log("log.txt", text.encode()) == 0.0


def test_log_txt_sniff_reads_around_one_damaged_line_in_twenty():
    good = "0 val 10.9\n0 hella 0.25\n" + "".join(f"{i} train 10.{i}\n" for i in range(19))
    assert sniff_build_nanogpt_log("log.txt", (good + "1 train oops\n").encode()) == 0.95
    assert sniff_build_nanogpt_log("log.txt", (good + "x\ny\n").encode()) == 0.0


def test_log_txt_sniff_ignores_a_line_cut_by_the_head():
    head = b"0 val 10.9\n0 hella 0.25\n0 train 10.9\n1 tra"
    assert sniff_build_nanogpt_log("x.log", head) == 0.9
    assert sniff_build_nanogpt_log("log.txt", head) == 0.95


@pytest.mark.parametrize("text", [
    "step 1 | loss: 2.0\n",  # no timing: too little to tell
    "Step 10 | loss:1.54 lr:9.9e-05 \n",  # torchtune
    "step    1/74 | loss 11.01 | norm 15.4 | lr 6.00e-04 | 1234.56 ms | 42.1% bf16 MFU | "
    "1234 tok/s\n",  # llm.c
    "step 100: train loss 3.1, val loss 3.2\niter 100: loss 3.1, time 45.00ms, mfu 8.00%\n",
    "step:125/1530 train_loss:4.1 train_time:21000ms step_avg:170.00ms\n",
])
def test_stdout_sniff_declines_the_relatives(text):
    assert sniff_build_nanogpt("out.log", text.encode()) == 0.0


def test_a_second_run_appended_to_the_same_stdout_starts_a_new_segment(tmp_path):
    path = tmp_path / "train.out"
    path.write_text(train_gpt2(tmp_path, 260) + train_gpt2(tmp_path, 260, seed=1))
    run = losslens.read(path).runs[0]
    assert [(s.first_step, s.last_step, s.reason) for s in run.segments] == [
        (0, 259, "start"), (0, 259, "header")]
    (rec,) = read_records(path)
    assert series(rec, "val loss")[0] == [0, 250, 259, 0, 250, 259]


# ---------------------------------------------------------------- the fork's real runs

RUNS = ("bigger", "group-kv-g2", "half-dataset", "linear-lr", "no-warmup", "shuffled",
        "smaller")


@pytest.mark.parametrize("run", RUNS)
def test_real_stdout_and_log_txt_of_one_run_agree_point_for_point(run):
    out = CACHE / f"build-nanogpt-agndm-{run}-stdout.log"
    txt = CACHE / f"build-nanogpt-agndm-{run}-log.log"
    if not (out.is_file() and txt.is_file()):
        pytest.skip("absent: python benchmarks/real/fetch_excerpts.py")
    (con,) = read_records(out)
    (log,) = read_records(txt)
    # an independent reading of log.txt: split() on every line
    mine: dict[str, tuple[list[int], list[float]]] = {}
    for line in txt.read_text().splitlines():
        step, kind, value = line.split()
        s, v = mine.setdefault(kind, ([], []))
        s.append(int(step))
        v.append(float(value))
    for tag, kind in (("loss", "train"), ("val loss", "val"), ("HellaSwag", "hella")):
        assert series(con, tag) == series(log, tag) == mine[kind], tag
    assert np.array_equal(np.diff(series(con, "loss")[0]), np.ones(19072))


def finetune_log(path: Path, start: int, max_steps: int, *, eval_interval: int = 50,
                 final: bool = True) -> None:
    """What a fine-tuning fork of train_gpt2.py (CeciliaGuo331/nano-gpt,
    model/finetune_dolly.py) appends to log.txt for one launch from `start`, with its
    f-strings: a validation before each step > 0 that is a multiple of `eval_interval`, the
    step's train loss, and after the loop the final validation."""
    lines = []
    for step in range(start, max_steps):
        if step > 0 and step % eval_interval == 0:
            lines.append(f"step {step} val_loss {2.5 - step / 1000:.4f}\n")
        lines.append(f"step {step} train_loss {2.9 - step / 500:.6f}\n")
    if final:
        lines.append(f"final val_loss {2.5 - max_steps / 1000:.4f}\n")
    with open(path, "a") as fh:
        fh.writelines(lines)


def test_log_txt_of_a_fine_tuning_fork_with_step_words_and_a_final_line(tmp_path):
    path = tmp_path / "log.txt"
    finetune_log(path, 0, 120, final=False)  # killed after step 119, resumed from 100
    finetune_log(path, 100, 200)
    assert sniff(path).name == "build-nanogpt-log"
    (rec,) = read_records(path)
    assert rec.tags == ("train_loss", "val_loss") and rec.skipped_count == 0
    steps, values = series(rec, "train_loss")
    assert steps == list(range(0, 120)) + list(range(100, 200)) and values[0] == 2.9
    assert series(rec, "val_loss") == ([50, 100, 100, 150, 199],
                                       [2.45, 2.4, 2.4, 2.35, 2.3])  # final: at step 199
    run = losslens.read(path).runs[0]
    assert run.roles == {"train_loss": "train_loss", "val_loss": "val_loss"}
    assert [(s.first_step, s.last_step) for s in run.segments] == [(0, 119), (100, 199)]


@pytest.mark.parametrize("text, score", [
    ("step 4 train_loss 2.776329\nstep 5 train_loss 2.875359\nstep 4 val_loss 2.6467\n", 0.95),
    ("step 1 train_loss 2.0\nstep 2 train_loss 1.9\n", 0.0),  # no evaluation kind
    ("step 1 loss 2.0\nstep 1 val_loss 1.9\n", 0.0),  # no training kind
    ("step 1 train_loss 2.0\nstep 1 val_loss 1.9\nstep 2 | loss 1.8\n", 0.0),  # another shape
])
def test_log_txt_sniff_of_the_step_word_form(text, score):
    assert sniff_build_nanogpt_log("log.txt", text.encode()) == score
