"""Text-log readers: HF Trainer (console, trainer_state.json), nanoGPT, llm.c (console, main.log),
torchtitan, pix2pix.

Fixtures are composed from the format strings in the frameworks' source: plain ones live in
tests/data/textlogs/, the ones with `\\r` redraws and ANSI colour are built here byte for byte.
Corpus tests pin what the readers make of real public logs (skipped without ../shared/corpus).
"""
from __future__ import annotations

import calendar
import math
from pathlib import Path

import numpy as np
import pytest

from losslens import frame
from losslens.errors import LossLensError
from losslens.readers import FORMATS, read_file, sniff
from losslens.records import RunRecords

TEXT = Path(__file__).resolve().parent / "data" / "textlogs"
NAN, INF = math.nan, math.inf


def load(path: Path, fmt: str | None = None) -> tuple[RunRecords, frame.Frame]:
    recs = read_file(path, path.name, fmt)
    assert len(recs) == 1
    return recs[0], frame.build(recs)


def pts(rec: RunRecords, tag: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one tag in write order."""
    mask = rec.tag_code == rec.tags.index(tag)
    idx = np.flatnonzero(mask)[np.argsort(rec.order[mask], kind="stable")]
    return rec.step[idx].tolist(), rec.value[idx].tolist()


def orders(rec: RunRecords, tag: str) -> list[int]:
    mask = rec.tag_code == rec.tags.index(tag)
    return sorted(rec.order[mask].tolist())


def same(values: list[float], expected: list[float]) -> bool:
    np.testing.assert_array_equal(np.asarray(values), np.asarray(expected, dtype=float))
    return True


def skipped(rec: RunRecords) -> list[tuple[int, str]]:
    return [(s.line, s.reason) for s in rec.skipped]


def segments(f: frame.Frame) -> list[tuple[int, int, str]]:
    return [(s.first_step, s.last_step, s.reason) for s in f.runs[0].segments]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# ====================================================================== HF Trainer console


def bar(n: int, total: int) -> str:
    """A tqdm bar redraw as HF's ProgressCallback draws it."""
    pct = 100 * n // total
    blocks = "█" * (10 * n // total)
    return f"{pct:3d}%|{blocks:<10}| {n}/{total} [00:{n % 60:02d}<00:{(total - n) % 60:02d},  1.00it/s]"


def bars(a: int, b: int, total: int) -> str:
    return "".join("\r" + bar(n, total) for n in range(a, b + 1))


CLEAR = "\r" + " " * 60 + "\r"
HF4_ARGS = """\
05/01/2024 10:00:00 - INFO - __main__ - Training/evaluation parameters TrainingArguments(
_n_gpu=1,
adam_beta1=0.9,
adam_beta2=0.999,
adam_epsilon=1e-08,
bf16=False,
eval_steps=20,
fp16=True,
gradient_accumulation_steps=4,
learning_rate=5e-05,
logging_first_step=False,
logging_steps=10,
logging_strategy=IntervalStrategy.STEPS,
lr_scheduler_type=SchedulerType.LINEAR,
max_grad_norm=1.0,
max_steps=40,
per_device_train_batch_size=8,
save_steps=500,
warmup_steps=5,
weight_decay=0.01,
)
"""
HF_BANNER = """\
[INFO|trainer.py:2078] 2024-05-01 10:00:05,000 >> ***** Running training *****
[INFO|trainer.py:2079] 2024-05-01 10:00:05,001 >>   Num examples = 1,280
[INFO|trainer.py:2083] 2024-05-01 10:00:05,002 >>   Total train batch size (w. parallel, distributed & accumulation) = 32
[INFO|trainer.py:2086] 2024-05-01 10:00:05,003 >>   Total optimization steps = 40
"""


def hf4_console() -> str:
    """4.4x console: args dump, banner, dicts between redraws (lines 26-35)."""
    lines = [
        bars(0, 9, 40) + CLEAR + "{'loss': 3.2101, 'grad_norm': 1.8304158449172974, "
        "'learning_rate': 4.2e-05, 'epoch': 0.25}",                                     # 26
        bars(10, 19, 40) + CLEAR + "{'loss': nan, 'grad_norm': inf, 'learning_rate': 3.1e-05, "
        "'epoch': 0.5}",                                                                  # 27
        bars(20, 20, 40) + bars(0, 4, 4) + CLEAR + "{'eval_c4_loss': 2.9512, 'eval_c4_runtime': "
        "1.2345, 'eval_c4_samples_per_second': 25.92, 'eval_c4_steps_per_second': 3.24, "
        "'epoch': 0.5}",                                                                  # 28
        "{'eval_wiki_loss': 3.1, 'eval_wiki_runtime': 1.1, 'epoch': 0.5}",               # 29
        # a dict cut by a redraw: the training log still counts for the later steps
        bars(20, 29, 40) + "{'loss': 2.31, 'grad_norm': 1.1\r" + bar(29, 40)
        + "\r, 'learning_rate': 2e-05, 'epoch': 0.75}",                                  # 30
        bars(30, 39, 40) + CLEAR + "{'loss': 2.5, 'grad_norm': tensor(0.95, device='cuda:0'), "
        "'learning_rate': 1e-05, 'epoch': 1.0}",                                          # 31
        bars(40, 40, 40) + bars(0, 4, 4) + CLEAR + "{'eval_c4_loss': 2.7, 'eval_c4_runtime': 1.2, "
        "'epoch': 1.0}",                                                                  # 32
        "{'eval_wiki_loss': 2.9, 'eval_wiki_runtime': 1.1, 'epoch': 1.0}",               # 33
        "{'train_runtime': 41.2345, 'train_samples_per_second': 31.043, "
        "'train_steps_per_second': 0.97, 'train_loss': 2.8, 'epoch': 1.0}",              # 34
        "\r" + bar(40, 40),                                                               # 35
    ]
    return HF4_ARGS + HF_BANNER + "\n".join(lines)


def test_hf_console_4x_logging_steps_from_args(tmp_path):
    path = write(tmp_path, "train.log", hf4_console())
    assert sniff(path).name == "hf-trainer"
    rec, f = load(path)
    assert rec.format == "hf-trainer"
    assert set(rec.tags) == {
        "loss", "grad_norm", "learning_rate", "epoch", "eval_c4_loss", "eval_c4_runtime",
        "eval_c4_samples_per_second", "eval_c4_steps_per_second", "eval_wiki_loss",
        "eval_wiki_runtime"}
    # training dicts are the 1st, 2nd, (cut) 3rd and 4th: steps 10, 20, [30], 40
    steps, values = pts(rec, "loss")
    assert steps == [10, 20, 40] and same(values, [3.2101, NAN, 2.5])
    assert same(pts(rec, "grad_norm")[1], [1.8304158449172974, INF, 0.95])
    assert pts(rec, "learning_rate") == ([10, 20, 40], [4.2e-05, 3.1e-05, 1e-05])
    assert pts(rec, "epoch") == ([10, 20, 40], [0.25, 0.5, 1.0])  # eval copies not repeated
    assert pts(rec, "eval_c4_loss") == ([20, 40], [2.9512, 2.7])
    assert pts(rec, "eval_wiki_loss") == ([20, 40], [3.1, 2.9])
    assert orders(rec, "loss") == [26, 27, 31]
    assert skipped(rec) == [(30, "HF log dict that does not parse")]
    assert rec.headers == (22,)
    assert segments(f) == [(10, 40, "start")]
    roles = f.runs[0].roles
    assert roles["loss"] == "train_loss" and roles["grad_norm"] == "grad_norm"
    assert roles["learning_rate"] == "lr"
    assert roles["eval_c4_loss"] == roles["eval_wiki_loss"] == "val_loss"
    assert roles["eval_c4_runtime"] == roles["epoch"] == "other"
    m = rec.metadata
    assert (m.lr, m.adam_eps, m.adam_beta1, m.adam_beta2) == (5e-05, 1e-08, 0.9, 0.999)
    assert (m.precision, m.micro_batch_size, m.global_batch_size) == ("fp16", 8, 32)
    assert (m.save_interval, m.train_iters, m.warmup_steps, m.log_interval) == (500, 40, 5, 10)
    assert (m.weight_decay, m.clip_grad, m.lr_schedule) == (0.01, 1.0, "linear")
    assert m.extra["step_source"] == "logging_steps=10"
    assert m.extra["gradient_accumulation_steps"] == "4"
    assert m.extra["final.train_runtime"] == "41.2345"
    assert m.extra["final.train_loss"] == "2.8"
    assert m.framework == "transformers"


def hf5_console() -> str:
    """5.x console: `.4g` strings, no args dump; steps come from the bar redrawn after a dict."""
    lines = [
        "[transformers] ***** Running training *****",
        bar(0, 30) + bars(1, 4, 30) + CLEAR + "{'loss': '2.346', 'grad_norm': '1.83', "
        "'learning_rate': '4.98e-05', 'epoch': '0.1667'}",
        bars(5, 9, 30) + CLEAR + "{'loss': 'nan', 'grad_norm': 'inf', 'learning_rate': "
        "'3.5e-05', 'epoch': '0.3333'}",
        bars(10, 10, 30) + bars(0, 2, 2) + CLEAR + "{'eval_loss': '2.123', 'eval_runtime': "
        "'12.35', 'eval_samples_per_second': '81', 'eval_steps_per_second': '10.12', "
        "'epoch': '0.3333'}",
        bars(10, 14, 30) + CLEAR + "{'loss': '2.01', 'grad_norm': '1.2', 'learning_rate': "
        "'2e-05', 'epoch': '0.5'}",
        bars(15, 16, 30),
    ]
    return "\n".join(lines)


def test_hf_console_5x_strings_steps_from_tqdm(tmp_path):
    path = write(tmp_path, "stdout.txt", hf5_console())
    assert sniff(path).name == "hf-trainer"
    rec, f = load(path)
    steps, values = pts(rec, "loss")
    assert steps == [5, 10, 15] and same(values, [2.346, NAN, 2.01])
    assert same(pts(rec, "grad_norm")[1], [1.83, INF, 1.2])
    assert pts(rec, "eval_loss") == ([10], [2.123])
    assert pts(rec, "eval_samples_per_second") == ([10], [81.0])
    assert pts(rec, "epoch") == ([5, 10, 15], [0.1667, 0.3333, 0.5])
    assert rec.metadata.extra["step_source"] == "tqdm"
    assert rec.skipped_count == 0 and rec.headers == (1,)
    assert f.runs[0].roles["eval_loss"] == "val_loss"


def test_hf_console_not_a_terminal_last_dict_takes_the_bar_before_it(tmp_path):
    # not a terminal: each bar redraw on its own line; the last dict ends the output (a killed
    # run, a pasted excerpt) with no redraw after it: HF updated the bar, then logged
    text = "\n".join([
        "  " + bar(1, 20), "", "  " + bar(4, 20),
        "{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.25}",
        "  " + bar(5, 20), "", "  " + bar(9, 20), "", "", "  " + bar(10, 20),
        "{'loss': 1.5, 'learning_rate': 9e-06, 'epoch': 0.5}"]) + "\n"
    rec, _ = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([5, 10], [2.0, 1.5])  # was [1, 2]: the count of dicts
    assert rec.metadata.extra["step_source"] == "tqdm" and rec.skipped_count == 0


def test_hf_console_eval_after_cut_training_dict_with_bars(tmp_path):
    text = "\n".join([
        bars(1, 5, 10) + CLEAR + "{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.5}",
        bars(5, 10, 10) + CLEAR + "{'loss': 1.9, 'learning_rate'",   # cut: still step 10
        bars(10, 10, 10) + CLEAR + "{'eval_loss': 2.2, 'epoch': 1.0}",
        bars(10, 10, 10)]) + "\n"
    rec, _ = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([5], [2.0])
    assert pts(rec, "eval_loss") == ([10], [2.2])
    assert rec.metadata.extra["step_source"] == "tqdm"
    assert skipped(rec) == [(2, "HF log dict that does not parse")]


def test_hf_console_log_count_and_truncated_dict(tmp_path):
    text = ("{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.2}\n"
            "{'eval_loss': 2.2, 'epoch': 0.2}\n"
            "{'loss': 1.9, 'learning_rate': 2e-05, 'epoch': 0.4}\n"
            "{'loss': -inf, 'learning_rate': 3e-05, 'epoch': 0.6, 'num_input_tokens_seen': 3072}\n"
            "{'loss': 1.8, 'learning_rate': 3e-05, 'epoch': 0.7}\n"
            "{'loss': 1.7, 'learning_rate': 4e-")
    rec, f = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([1, 2, 3, 4], [2.0, 1.9, -INF, 1.8])
    assert pts(rec, "eval_loss") == ([1], [2.2])
    assert pts(rec, "num_input_tokens_seen") == ([3], [3072.0])
    assert rec.metadata.extra["step_source"] == "log_count"
    assert skipped(rec) == [(6, "truncated last line")]
    # dicts with different keys are gathered apart; write order must survive regrouping
    assert rec.step[rec.tag_code == rec.tags.index("loss")].tolist() == [1, 2, 3, 4]
    assert segments(f) == [(1, 4, "start")]


def test_hf_console_one_line_arguments_repr(tmp_path):
    text = ("TrainingArguments(output_dir='out', learning_rate=0.0001, logging_steps=5, "
            "bf16=True, fp16=False)\n"
            "{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.2}\n"
            "{'loss': 1.5, 'learning_rate': 2e-05, 'epoch': 0.4}\n")
    rec, _ = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([5, 10], [2.0, 1.5])
    assert (rec.metadata.lr, rec.metadata.precision) == (0.0001, "bf16")
    assert rec.metadata.extra["output_dir"] == "out"


def test_hf_console_resume_continues_global_step(tmp_path):
    text = ("TrainingArguments(\nlogging_steps=10,\nmax_steps=50,\n)\n"          # 1-4
            "***** Running training *****\n"                                      # 5
            "{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.2}\n"             # 6
            "{'loss': 1.9, 'learning_rate': 2e-05, 'epoch': 0.4}\n"             # 7
            "{'loss': 1.8, 'learning_rate': 3e-05, 'epoch': 0.6}\n"             # 8
            "***** Running training *****\n"                                      # 9
            "  Continuing training from checkpoint, will skip to saved global_step\n"
            "  Continuing training from epoch 0\n"
            "  Continuing training from global step 20\n"                        # 12
            "{'loss': 1.85, 'learning_rate': 3e-05, 'epoch': 0.6}\n"            # 13
            "{'loss': 1.7, 'learning_rate': 4e-05, 'epoch': 0.8}\n")            # 14
    rec, f = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([10, 20, 30, 30, 40], [2.0, 1.9, 1.8, 1.85, 1.7])
    assert rec.headers == (5, 9)
    assert segments(f) == [(10, 30, "start"), (30, 40, "header")]
    assert f.runs[0].segments[1].previous_last_step == 30
    assert rec.metadata.log_interval == 10 and rec.metadata.train_iters == 50


def test_hf_console_resume_the_log_does_not_announce_takes_the_bar(tmp_path):
    """At the default log level a resumed run prints no banner and no "Continuing training"
    line: counting dicts × logging_steps would carry on (60, 70, 80); the progress bar, which
    HF redraws at the global step right after each dict, goes back to 40."""
    args = "TrainingArguments(\nlogging_steps=10,\nmax_steps=100,\n)\n"

    def run(first: int, last: int) -> str:
        return "".join(bars(s - 9, s, 100) + CLEAR + f"{{'loss': {3 - s / 100}, "
                       f"'learning_rate': 1e-05, 'epoch': {s / 100}}}\n" + bar(s, 100) + "\n"
                       for s in range(first, last + 1, 10))
    text = args + run(10, 50) + "Traceback (most recent call last):\n" + args + run(40, 60)
    rec, f = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss")[0] == [10, 20, 30, 40, 50, 40, 50, 60]
    assert segments(f) == [(10, 50, "start"), (40, 60, "step_back")]
    assert rec.metadata.extra["step_source"] == \
        "tqdm (logging_steps=10 counted on past a resume at line 20)"
    # the same log without the resume: both ways agree, logging_steps is named
    rec, _ = load(write(tmp_path, "log2.txt", args + run(10, 50)))
    assert pts(rec, "loss")[0] == [10, 20, 30, 40, 50]
    assert rec.metadata.extra["step_source"] == "logging_steps=10"


def test_hf_console_logging_first_step(tmp_path):
    text = ("TrainingArguments(\nlogging_first_step=True,\nlogging_steps=10,\n)\n"
            + "".join(f"{{'loss': {v}, 'learning_rate': 1e-05, 'epoch': 0.1}}\n"
                      for v in (3.0, 2.0, 1.0)))
    rec, _ = load(write(tmp_path, "log.txt", text))
    assert pts(rec, "loss") == ([1, 10, 20], [3.0, 2.0, 1.0])
    assert rec.metadata.extra["step_source"] == "logging_steps=10 with logging_first_step"


def test_hf_console_of_a_run_shorter_than_logging_steps_says_why_it_has_no_series(tmp_path):
    """The args dump logs every 10 steps; a run of 8 steps prints no log dict, only the
    end-of-training summary: no series, and a warning that says why (and what to change)."""
    from losslens.readers.hf import read_hf_trainer

    text = (HF4_ARGS.replace("max_steps=40", "max_steps=8")
            + HF_BANNER.replace("steps = 40", "steps = 8") + bars(0, 8, 8) + CLEAR
            + "{'train_runtime': 9.5, 'train_samples_per_second': 3.4, "
              "'train_steps_per_second': 0.8, 'train_loss': 2.8, 'epoch': 1.0}\n")
    path = write(tmp_path, "train.log", text)
    assert sniff(path).name == "hf-trainer"
    (rec,) = read_hf_trainer(path, "r")
    assert len(rec) == 0 and rec.metadata.extra["final.train_loss"] == "2.8"
    assert rec.warnings == (f"{path}: HF Trainer logged no loss: the run made 8 optimization "
                            "step(s) and logs every logging_steps=10, so it printed only its "
                            "end-of-training summary; set logging_steps below 8 to see the "
                            "loss",)
    # without the args dump: the summary alone is said
    (rec,) = read_hf_trainer(write(tmp_path, "b.log", text[len(HF4_ARGS):]), "r")
    assert rec.warnings[0].endswith("HF Trainer printed only its end-of-training summary "
                                    "(train_runtime ...), no log with a loss")


def test_hf_console_only_training_banner_and_training_arguments(tmp_path):
    text = ("DataTrainingArguments(max_train_samples=None, logging_steps=7)\n"
            "***** Running training *****\n  Num examples = 1,280\n"
            "  Total train batch size (w. parallel, distributed & accumulation) = 32\n"
            "{'loss': 2.0, 'learning_rate': 1e-05, 'epoch': 0.2}\n"
            "***** Running Evaluation *****\n  Num examples = 16\n  Batch size = 8\n"
            "{'eval_loss': 2.5, 'epoch': 0.2}\n")
    rec, _ = load(write(tmp_path, "log.txt", text))
    assert rec.metadata.extra["banner.Num examples"] == "1280"
    assert rec.metadata.global_batch_size == 32
    assert "logging_steps" not in rec.metadata.extra  # not the TrainingArguments
    assert pts(rec, "loss") == ([1], [2.0]) and pts(rec, "eval_loss") == ([1], [2.5])
    assert rec.headers == (2,)


def test_hf_console_launcher_prefix_and_unrelated_dicts(tmp_path):
    text = ("[default0]:{'loss': 2.5, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n"
            "{'architectures': ['LlamaForCausalLM'], 'hidden_size': 4096}\n"
            "0: {'loss': 2.4, 'grad_norm': 0.9, 'learning_rate': 2e-05, 'epoch': 0.2}\n")
    rec, _ = load(write(tmp_path, "log.txt", text), "hf-trainer")
    assert pts(rec, "loss") == ([1, 2], [2.5, 2.4])
    assert "hidden_size" not in rec.tags and rec.skipped_count == 0


# ====================================================================== trainer_state.json


def test_hf_trainer_state_fixture():
    path = TEXT / "trainer_state.json"
    assert sniff(path).name == "hf-trainer-state"
    rec, f = load(path)
    assert set(rec.tags) == {
        "epoch", "grad_norm", "learning_rate", "loss", "train/custom_metric", "eval_loss",
        "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_wiki_loss",
        "eval_wiki_runtime"}
    steps, values = pts(rec, "loss")
    assert steps == [10, 20, 30] and same(values, [2.5, NAN, 2.125])
    assert same(pts(rec, "grad_norm")[1], [1.8304158449172974, INF, 1.25])
    assert pts(rec, "epoch") == ([10, 20, 30], [0.1, 0.2, 0.3])
    assert pts(rec, "eval_loss") == ([20], [2.25])
    assert pts(rec, "eval_wiki_loss") == ([20], [2.75])
    assert pts(rec, "train/custom_metric") == ([20, 30], [0.75, 0.5])
    assert orders(rec, "eval_wiki_loss") == [4]  # record index in log_history
    assert segments(f) == [(10, 30, "start")]
    roles = f.runs[0].roles
    assert roles["eval_wiki_loss"] == roles["eval_loss"] == "val_loss"
    assert roles["loss"] == "train_loss" and roles["train/custom_metric"] == "other"
    m = rec.metadata
    assert (m.log_interval, m.save_interval, m.train_iters) == (10, 500, 100)
    assert m.extra["global_step"] == "30" and m.extra["eval_steps"] == "20"
    assert m.extra["final.train_loss"] == "2.3125" and m.extra["final.step"] == "30"
    assert m.extra["non_numeric_keys"] == "remaining_time"
    assert "train_loss" not in rec.tags and "train_runtime" not in rec.tags


def test_hf_trainer_state_damaged_keeps_entries_before(tmp_path):
    text = (TEXT / "trainer_state.json").read_text()
    cut = text.index('"eval_wiki_loss"')
    path = write(tmp_path, "trainer_state.json", text[:cut])
    rec, _ = load(path)
    assert pts(rec, "loss")[0] == [10, 20]
    assert pts(rec, "eval_loss") == ([20], [2.25])
    assert len(rec.warnings) == 1 and "kept the 3 log_history entries" in rec.warnings[0]


def test_hf_trainer_state_entry_without_step(tmp_path):
    text = ('{"global_step": 2, "log_history": [{"loss": 2.0, "step": 1}, {"loss": 1.0}, '
            '{"loss": NaN, "step": 2}]}')
    rec, _ = load(write(tmp_path, "state.json", text))
    steps, values = pts(rec, "loss")
    assert steps == [1, 2] and same(values, [2.0, NAN])
    assert skipped(rec) == [(2, "log_history entry without an integer step")]
    assert rec.skipped[0].location == "log_history[1]"  # not "line 2": the file is one line


def test_hf_trainer_state_not_a_state_file(tmp_path):
    path = write(tmp_path, "trainer_state.json", '{"log_history": 3}')
    with pytest.raises(LossLensError, match="trainer_state.json"):
        read_file(path, "x", "hf-trainer-state")


# ====================================================================== nanoGPT


def test_nanogpt_fixture_resume_sentinel_config():
    path = TEXT / "nanogpt_resume.log"
    assert sniff(path).name == "nanogpt"
    rec, f = load(path)
    assert set(rec.tags) == {"loss", "time", "mfu", "train loss", "val loss"}
    steps, values = pts(rec, "loss")
    assert steps == [0, 10, 20, 250, 260, 250, 260, 270]
    assert same(values, [4.2649, 3.2194, 2.7809, NAN, 1.987, 1.9605, 1.9788, 1.9512])
    assert pts(rec, "time")[1][:2] == [31145.51, 45.12]
    # the -100.00% warm-up sentinel (iter 0 of each process) is no measurement
    assert pts(rec, "mfu") == ([10, 20, 250, 260, 260, 270], [8.25, 8.26, 8.2, 8.22, 8.19, 8.21])
    assert pts(rec, "train loss") == ([0, 250, 250], [4.2874, 1.9712, 1.9714])
    assert pts(rec, "val loss") == ([0, 250, 250], [4.2823, 2.0704, 2.0701])
    assert skipped(rec) == [(30, "nanoGPT metric line that does not parse"),
                            (41, "truncated last line")]
    assert rec.headers == (36,)
    assert segments(f) == [(0, 260, "start"), (250, 270, "header")]
    roles = f.runs[0].roles
    assert roles == {"loss": "train_loss", "train loss": "train_loss", "val loss": "val_loss",
                     "time": "other", "mfu": "other"}
    m = rec.metadata
    assert (m.num_layers, m.num_heads, m.hidden_size, m.seq_length) == (6, 6, 384, 256)
    assert (m.lr, m.min_lr, m.adam_beta2, m.warmup_steps) == (1e-3, 1e-4, 0.99, 100)
    assert (m.train_iters, m.micro_batch_size, m.precision) == (5000, 64, "fp16")
    assert m.extra["tokens_per_iter"] == "16384" and m.extra["eval_interval"] == "250"
    assert m.extra["init_from"] == "resume" and m.extra["mfu_warmup_sentinels"] == "2"


def test_nanogpt_prefixes_crlf_and_old_form(tmp_path):
    text = ("[default0]:step 0: train loss 10.9886, val loss 10.9897\r\n"
            "[default0]:iter 0: loss 10.9766, time 22640.22ms\r\n"   # before 2023-02: no mfu
            "[default0]:iter 1: loss NaN, time 263.56ms\r\n")
    rec, _ = load(write(tmp_path, "out.log", text))
    steps, values = pts(rec, "loss")
    assert steps == [0, 1] and same(values, [10.9766, NAN])
    assert "mfu" not in rec.tags and rec.skipped_count == 0


# ====================================================================== llm.c console


def llmc_console() -> str:
    rows = [("total batch size", "8192"), ("sequence length T", "1024"),
            ("learning rate (LR)", "6.000000e-04"), ("warmup iterations", "2"),
            ("final LR fraction", "1.000000e-01"), ("checkpoint_every", "4"),
            ("precision", "BF16"), ("num_layers L", "12"), ("channels C", "768"),
            ("train_num_batches", "6")]
    rule = "+-----------------------+----------------------------------------------------+"
    table = [rule, f"| {'Parameter':<21} | {'Value':<50} |", rule]
    table += [f"| {k:<21} | {v:<50} |" for k, v in rows] + [rule]

    def step(n: int, loss: str, norm: str, lr: str, z: str = "+nanz") -> str:
        return (f"step {n:4d}/6 | loss {loss} ({z})| norm {norm} ({z})| lr {lr} | 4100.00 ms"
                f" | 32.0% bf16 MFU | 121000 tok/s")

    lines = (["Multi-GPU support is disabled. Using a single GPU."] + table + [  # 1-15
        "val loss 11.007921",                                                    # 16
        step(1, "11.009662", "15.0789", "3.00e-04"),                             # 17
        step(2, "-nan", "-nan", "6.00e-04"),                                     # 18
        "val loss 10.500000",                                                    # 19
        "evaluating HellaSwag: 0/10\revaluating HellaSwag: 10/10\rHellaSwag: 3/10 = 0.300000",
        "generating:",                                                           # 21
        "---",                                                                   # 22
        step(3, "1.000000", "1.0000", "1.00e-04"),  # sample text that looks like a step
        "---",                                                                   # 24
        "skipping update due to loss z-score of 5.123456",                       # 25
        step(3, "9.100000", "2.0000", "5.00e-04", "+1.20z"),                     # 26
        step(4, "9.000000", "1.9000", "4.00e-04", "-0.10z"),                     # 27
        "Writing checkpoint at step 4",                                          # 28
        "step    5/6 | loss 8.900000 (+0.00z)| norm 1.8000 (+0.00z)| lr 3.0e-04 | 41",
        "0: " + step(6, "8.800000", "1.7000", "6.00e-05", "+0.10z"),             # 30
        "val loss 8.700000",                                                     # 31
    ] + table[:3] + [                                                            # 32-34
        step(5, "8.950000", "1.8500", "3.00e-04", "+0.00z"),                     # 35
    ])
    return "\n".join(lines) + "\n" + step(6, "8.8", "1.7", "6.0e-05")[:30]     # 36: cut


def test_llmc_console_fixture(tmp_path):
    path = write(tmp_path, "gpt2_train.log", llmc_console())
    assert sniff(path).name == "llmc"
    rec, f = load(path)
    assert set(rec.tags) == {"loss", "norm", "lr", "time_ms", "mfu", "tok/s", "val loss",
                             "HellaSwag", "skipped updates"}
    steps, values = pts(rec, "loss")
    assert steps == [1, 2, 3, 4, 6, 5]
    assert same(values, [11.009662, NAN, 9.1, 9.0, 8.8, 8.95])
    assert same(pts(rec, "norm")[1], [15.0789, NAN, 2.0, 1.9, 1.7, 1.85])
    assert pts(rec, "lr")[1] == [3e-4, 6e-4, 5e-4, 4e-4, 6e-5, 3e-4]
    assert pts(rec, "mfu")[1] == [32.0] * 6 and pts(rec, "tok/s")[1] == [121000.0] * 6
    # val loss and HellaSwag take the latest printed step (0 before the first)
    assert pts(rec, "val loss") == ([0, 2, 6], [11.007921, 10.5, 8.7])
    assert pts(rec, "HellaSwag") == ([2], [0.3])
    assert orders(rec, "HellaSwag") == [20]
    assert pts(rec, "skipped updates") == ([3], [1.0])
    assert skipped(rec) == [(29, "llm.c step line that does not parse"),
                            (36, "truncated last line")]
    assert rec.headers == (33,)
    assert segments(f) == [(0, 6, "start"), (5, 5, "header")]
    roles = f.runs[0].roles
    assert (roles["loss"], roles["norm"], roles["lr"], roles["val loss"]) == (
        "train_loss", "grad_norm", "lr", "val_loss")
    assert roles["skipped updates"] == "skipped"
    m = rec.metadata
    assert (m.seq_length, m.global_batch_size, m.lr, m.warmup_steps) == (1024, 8, 6e-4, 2)
    assert m.min_lr == pytest.approx(6e-5)
    assert (m.save_interval, m.precision, m.num_layers, m.hidden_size) == (4, "bf16", 12, 768)
    assert m.train_iters == 6 and m.framework == "llm.c"
    assert m.checkpoints == (4,) and m.extra["total batch size"] == "8192"


def test_llmc_console_older_forms(tmp_path):
    text = "\n".join([
        "step    1/74 | train loss 11.010278 | norm 15.3213 | lr 6.00e-06 | 1234.50 ms "
        "| 45.3% A100 fp16 MFU | 400123 tok/s",
        "step    2/74: train loss 10.500000 norm 9.8700 lr 1.20e-05 (1200.00 ms, 410000 tok/s)",
        "step    3/74: train loss 10.100000 norm 8.0000 (1190.00 ms, 411000 tok/s)",
        "step    4/74: train loss 9.900000 (acc 0.100000) (1180.000000 ms, 412000 tok/s)",
        "step    5/74: train loss 9.800000 (1170.000000 ms, 413000 tok/s)",
        "step 6/74: train loss 9.700000 (1160.000000 ms)",
        "step    7/74 | train loss 9.600000 | norm 7.5000 | lr 1.40e-05 | (1150.00 ms | 414000 tok/s)",
    ]) + "\n"
    path = write(tmp_path, "old.log", text)
    assert sniff(path).name == "llmc"
    rec, _ = load(path)
    assert pts(rec, "train loss") == ([1, 2, 3, 4, 5, 6, 7],
                                      [11.010278, 10.5, 10.1, 9.9, 9.8, 9.7, 9.6])
    assert pts(rec, "norm") == ([1, 2, 3, 7], [15.3213, 9.87, 8.0, 7.5])
    assert pts(rec, "lr") == ([1, 2, 7], [6e-06, 1.2e-05, 1.4e-05])
    assert pts(rec, "acc") == ([4], [0.1])
    assert pts(rec, "time_ms")[0] == [1, 2, 3, 4, 5, 6, 7]
    assert pts(rec, "tok/s")[0] == [1, 2, 3, 4, 5, 7]
    assert pts(rec, "mfu") == ([1], [45.3])
    assert rec.metadata.precision == "fp16" and rec.skipped_count == 0


def test_llmc_console_bad_number_is_skipped(tmp_path):
    text = ("step    1/6 | loss 1.000000 (+nanz)| norm 1.0000 (+nanz)| lr 1.00e-04 | 1.00 ms "
            "| x% bf16 MFU | 1 tok/s\n"
            "step    2/6 | loss 0.900000 (+nanz)| norm 1.0000 (+nanz)| lr 1.00e-04 | 1.00 ms "
            "| 1.0% bf16 MFU | 1 tok/s\n")
    rec, _ = load(write(tmp_path, "x.log", text), "llmc")
    assert pts(rec, "loss") == ([2], [0.9])
    assert skipped(rec) == [(1, "llm.c step line that does not parse")]


def test_llmc_cpu_form_is_not_nanogpt(tmp_path):
    text = ("step 0: train loss 5.356086 (took 1786.042 ms)\n"
            "step 1: train loss 4.300641 (took 1758.532 ms)\n")
    path = write(tmp_path, "cpu.log", text)
    assert sniff(path).name == "llmc"
    rec, _ = load(path)
    assert pts(rec, "train loss") == ([0, 1], [5.356086, 4.300641])
    assert pts(rec, "time_ms") == ([0, 1], [1786.042, 1758.532])


# ====================================================================== llm.c main.log


def test_llmc_mainlog_fixture_resume():
    path = TEXT / "llmc_main_resume.log"
    assert sniff(path).name == "llmc-mainlog"
    rec, f = load(path)
    assert set(rec.tags) == {"trl", "lr", "norm", "tel", "eval"}
    steps, values = pts(rec, "trl")
    assert steps == [0, 1, 2, 3, 2, 3, 4]
    assert same(values, [11.0103, 10.6021, 10.2101, NAN, 10.2233, 9.8899, 9.777])
    assert same(pts(rec, "norm")[1], [15.32, 9.87, 7.51, NAN, 7.62, 6.01, 5.55])
    assert pts(rec, "lr")[1][:2] == [6e-06, 1.2e-05]
    assert pts(rec, "tel") == ([0, 4], [11.0093, 9.7012])
    assert pts(rec, "eval") == ([4], [0.2512])
    assert skipped(rec) == [(6, "llm.c main.log line that does not parse"),
                            (12, "truncated last line")]
    assert segments(f) == [(0, 3, "start"), (2, 4, "step_back")]
    roles = f.runs[0].roles
    assert (roles["trl"], roles["tel"], roles["lr"], roles["norm"]) == (
        "train_loss", "val_loss", "lr", "grad_norm")
    assert rec.metadata.framework == "llm.c"


def test_llmc_mainlog_old_form(tmp_path):
    path = write(tmp_path, "main.log", "s:0 tel:10.9\ns:0 trl:10.95\ns:1 trl:10.5\n")
    assert sniff(path).name == "llmc-mainlog"
    rec, _ = load(path)
    assert pts(rec, "trl") == ([0, 1], [10.95, 10.5]) and set(rec.tags) == {"trl", "tel"}


# ====================================================================== torchtitan

TITAN = "[rank0]:[titan] 2025-06-01 {t} - root - INFO - "
C = {c: f"\x1b[{c}m" for c in ("31", "32", "33", "34", "35", "36", "39")}
ORANGE, TURQ = "\x1b[38;2;180;60;0m", "\x1b[38;2;54;234;195m"


def titan_log() -> str:
    def line(t: str, msg: str) -> str:
        return TITAN.format(t=t) + msg

    lines = [
        line("12:34:50,000", "Building llama3 debugmodel with TransformerModelArgs(_enforced='x', "
             "dim=256, n_layers=6, n_heads=16, n_kv_heads=None, vocab_size=2000, "
             "norm_eps=1e-05, rope_theta=500000, max_seq_len=2048, depth_init=True)"),
        line("12:34:55,000", "Training starts at step 1."),                                 # 2
        line("12:34:56,789", f"{C['31']}step:  1  {C['32']}loss: 12.23650  {ORANGE}grad_norm:"
             f"  4.8000  {TURQ}memory:  1.23GiB(1.55%)  {C['34']}tps: 12,345  {C['36']}tflops:"
             f" 1,234.56  {C['35']}mfu: 12.34%{C['39']}"),                                    # 3
        line("12:35:06,789", "step: 10  loss:  8.12345  grad_norm:  1.2345  memory: "
             "12.34GiB(25.00%)  tps: 23,456  tflops: 123.45  mfu: N/A"),                      # 4
        line("12:35:16,789", "step: 20  loss:      nan  grad_norm:     nan  memory: "
             "12.34GiB(25.00%)  tps: 23,000  tflops: 120.00  mfu: 11.00%"),                   # 5
        line("12:35:20,000", f"{C['33']}validate step: 20  loss:  7.9000  memory: "
             f"12.34GiB(25.00%)  tps: 45,678{C['39']}"),                                      # 6
        line("12:35:26,789", "step: 30  loss:  7.50000 grad_norm"),                          # 7
        line("12:40:00,000", "Loading the checkpoint from ./outputs/checkpoint/step-20."),
        line("12:40:01,000", "Finished loading the checkpoint in 1.00 seconds."),
        line("12:40:01,500", "Training starts at step 21."),                                # 10
        line("12:40:11,789", "step: 30  loss:  7.40000  grad_norm:  1.1000  memory: "
             "12.34GiB(25.00%)  tps: 23,400  tflops: 122.00  mfu: 11.90%"),                   # 11
    ]
    return "\n".join(lines) + "\n" + line("12:40:21,789", "step: 4")                     # 12


def test_torchtitan_fixture(tmp_path):
    path = write(tmp_path, "titan.log", titan_log())
    assert sniff(path).name == "torchtitan"
    rec, f = load(path)
    assert set(rec.tags) == {"loss", "grad_norm", "memory", "memory_pct", "tps", "tflops",
                             "mfu", "validation_metrics/loss"}
    steps, values = pts(rec, "loss")
    assert steps == [1, 10, 20, 30] and same(values, [12.2365, 8.12345, NAN, 7.4])
    assert same(pts(rec, "grad_norm")[1], [4.8, 1.2345, NAN, 1.1])
    assert pts(rec, "mfu") == ([1, 20, 30], [12.34, 11.0, 11.9])  # N/A is no value
    assert pts(rec, "tps")[1] == [12345.0, 23456.0, 23000.0, 23400.0]
    assert pts(rec, "tflops")[1][0] == 1234.56
    assert pts(rec, "memory")[1][:2] == [1.23, 12.34]
    assert pts(rec, "memory_pct")[1][:2] == [1.55, 25.0]
    assert pts(rec, "validation_metrics/loss") == ([20], [7.9])
    assert skipped(rec) == [(7, "torchtitan step line that does not parse"),
                            (12, "truncated last line")]
    assert rec.headers == (2, 10)
    assert segments(f) == [(1, 20, "start"), (30, 30, "header")]
    first = np.flatnonzero(rec.order == 3)
    expected = calendar.timegm((2025, 6, 1, 12, 34, 56, 0, 0, 0)) + 0.789
    assert rec.wall_time[first] == pytest.approx([expected] * first.shape[0])
    roles = f.runs[0].roles
    assert roles["loss"] == "train_loss" and roles["validation_metrics/loss"] == "val_loss"
    assert roles["grad_norm"] == "grad_norm"
    assert {roles[t] for t in ("memory", "memory_pct", "tps", "tflops", "mfu")} == {"other"}
    m = rec.metadata
    assert (m.hidden_size, m.num_layers, m.num_heads, m.seq_length) == (256, 6, 16, 2048)
    assert m.extra["checkpoint_loaded_from"] == "./outputs/checkpoint/step-20"


def test_torchtitan_old_wps_form_without_rank_prefix(tmp_path):
    text = ("2024-05-01 10:00:00,000 - root - INFO - \x1b[36mstep:  1  \x1b[32mloss: 10.9010  "
            "\x1b[33mmemory:  2.01GiB(2.54%)  \x1b[34mwps: 2,918  \x1b[35mmfu: 1.27%\x1b[39m\n"
            "2024-05-01 10:00:10,000 - root - INFO - step: 10  loss:  9.8000  memory:  "
            "2.01GiB(2.54%)  wps: 3,001  mfu: 1.30%\n")
    path = write(tmp_path, "run.log", text)
    assert sniff(path).name == "torchtitan"
    rec, _ = load(path)
    assert pts(rec, "loss") == ([1, 10], [10.901, 9.8])
    assert pts(rec, "wps") == ([1, 10], [2918.0, 3001.0])
    assert set(rec.tags) == {"loss", "memory", "memory_pct", "wps", "mfu"}


# ====================================================================== pix2pix


def test_pix2pix_fixture_restart():
    path = TEXT / "pix2pix_loss_log.txt"
    assert sniff(path).name == "pix2pix"
    rec, f = load(path)
    assert set(rec.tags) == {"time", "data", "G_GAN", "G_L1", "D_real", "D_fake"}
    # 350 images per epoch, print_freq 100; the restart (epoch_count 2) goes back in step
    steps, values = pts(rec, "G_GAN")
    assert steps == [100, 200, 300, 400, 500, 600, 700, 800, 450, 550, 650]
    assert same(values, [1.25, 1.978, 2.499, 1.101, 1.202, NAN, 1.15, 1.14, 1.19, 1.18, 1.17])
    assert pts(rec, "D_fake")[1][:3] == [0.035, 0.039, 0.348]
    assert pts(rec, "data")[1][0] == 0.201
    assert skipped(rec) == [(10, "pix2pix loss line that does not parse"),
                            (15, "truncated last line")]
    assert rec.headers == (1, 11)
    assert segments(f) == [(100, 800, "start"), (450, 650, "header")]
    extra = rec.metadata.extra
    assert extra["images_per_epoch"] == "350"
    assert extra["step_source"] == ("(epoch - 1) * 350 + iters "
                                    "(inferred at 2 epoch changes with print_freq 100)")
    assert extra["run_headers"] == "2" and extra["last_run_started"] == "Wed May 29 19:15:40 2019"


def test_pix2pix_single_epoch_and_old_form(tmp_path):
    text = ("================ Training Loss (Mon Jan  1 00:00:00 2018) ================\n"
            "(epoch: 1, iters: 50, time: 0.100) D_A: 0.250 G_A: 0.900 cycle_A: 2.000 idt_A: 0.500 \n"
            "(epoch: 1, iters: 100, time: 0.100) D_A: 0.240 G_A: 0.800 cycle_A: 1.900 idt_A: 0.400 \n")
    rec, _ = load(write(tmp_path, "loss_log.txt", text))
    assert pts(rec, "cycle_A") == ([50, 100], [2.0, 1.9])
    assert "data" not in rec.tags
    assert rec.metadata.extra["step_source"] == "(epoch - 1) * 100 + iters (largest iters seen)"


# ====================================================================== robustness


TEXT_FORMATS = ("hf-trainer", "hf-trainer-state", "nanogpt", "llmc", "llmc-mainlog",
                "torchtitan", "pix2pix", "epoch-lines", "build-nanogpt", "build-nanogpt-log")

# Karpathy's build-nanogpt train_gpt2.py: its stdout and log/log.txt
BUILD_NANOGPT_OUT = (
    "total desired batch size: 524288\nvalidation loss: 10.9522\n"
    "HellaSwag accuracy: 2497/10042=0.2487\n"
    "step     0 | loss: 10.955010 | lr 6.0000e-04 | norm: 15.3420 | dt: 19152.47ms | "
    "tok/sec: 27374.43\n"
    "step     1 | loss: 10.014891 | lr 6.0000e-04 | norm: 3.8393 | dt: 394.95ms | "
    "tok/sec: 1327465.30\n")
BUILD_NANOGPT_LOG = "0 val 10.9522\n0 hella 0.2487\n0 train 10.955010\n1 train 10.014891\n"


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
@pytest.mark.parametrize("content", [b"", b"\x00\xff\xfe garbage \x80\n\r\r\n",
                                     b"step: iter s: {' (epoch: ===\n" * 3])
def test_bad_input_never_escapes(tmp_path, fmt, content):
    path = tmp_path / "bad.log"
    path.write_bytes(content)
    try:
        recs = read_file(path, "bad", fmt)
    except LossLensError:
        return
    assert all(len(r) == 0 for r in recs)


@pytest.mark.parametrize("fmt", TEXT_FORMATS)
def test_sniffers_decline_each_others_fixtures(tmp_path, fmt):
    fixtures = {
        "hf-trainer": write(tmp_path, "a.log", hf4_console()),
        "hf-trainer-state": TEXT / "trainer_state.json",
        "nanogpt": TEXT / "nanogpt_resume.log",
        "llmc": write(tmp_path, "b.log", llmc_console()),
        "llmc-mainlog": TEXT / "llmc_main_resume.log",
        "torchtitan": write(tmp_path, "c.log", titan_log()),
        "pix2pix": TEXT / "pix2pix_loss_log.txt",
        "epoch-lines": write(tmp_path, "d.log", "".join(
            f"2025-04-24 21:17:53,828 - INFO - Epoch [{e}/5], Train Loss: {2 / e:.4f}, "
            f"Val Loss: {2.1 / e:.4f}\n" for e in range(1, 6))),
        "build-nanogpt": write(tmp_path, "e.out", BUILD_NANOGPT_OUT),
        "build-nanogpt-log": write(tmp_path, "log.txt", BUILD_NANOGPT_LOG),
    }
    mod_sniff = FORMATS[fmt].load()
    fn = getattr(mod_sniff, f"sniff_{fmt.replace('-', '_')}", None) or mod_sniff.sniff
    for other, path in fixtures.items():
        score = fn(path.name, path.read_bytes())
        assert (score > 0) == (other == fmt), (fmt, other, score)


# ====================================================================== corpus


def corpus_file(corpus: Path, rel: str) -> Path:
    path = corpus / rel
    if not path.is_file():
        pytest.skip(f"{rel} is absent")
    return path


def summary(f: frame.Frame) -> dict[str, tuple[str, int, int, int]]:
    return {s.tag: (s.role, s.points, s.first_step, s.last_step) for s in f.runs[0].series}


def test_corpus_hf_trainer_state_gradnorm_spike(corpus):
    path = corpus_file(corpus, "hf-trainer-state-gradnorm-spike/trainer_state.json")
    assert sniff(path).name == "hf-trainer-state"
    rec, f = load(path)
    s = summary(f)
    custom = {f"train/acc_{i}": ("train_acc", 2000, 20, 40000) for i in range(7)}
    custom.update({f"train/ploss_{i}": ("other", 2000, 20, 40000) for i in range(7)})
    assert s == {"epoch": ("other", 2000, 20, 40000), "grad_norm": ("grad_norm", 2000, 20, 40000),
                 "loss": ("train_loss", 2000, 20, 40000), "lr": ("lr", 2000, 20, 40000),
                 **custom}
    steps, values = pts(rec, "grad_norm")
    assert steps[int(np.argmax(values))] == 22360 and max(values) == 82.40977369003497
    assert pts(rec, "loss")[1][0] == 24.79317626953125
    assert len(f.runs[0].segments) == 1 and rec.skipped_count == 0
    m = rec.metadata
    assert (m.log_interval, m.save_interval, m.train_iters) == (20, 1000, 252780)
    assert m.extra["global_step"] == "40000" and m.extra["non_numeric_keys"] == "remaining_time"


def test_corpus_nanogpt_stdout(corpus):
    path = corpus_file(corpus, "nanogpt-stdout-wandb-output/output.log")
    assert sniff(path).name == "nanogpt"
    rec, f = load(path)
    assert summary(f) == {"loss": ("train_loss", 2547, 0, 2546), "time": ("other", 2547, 0, 2546),
                          "mfu": ("other", 2542, 5, 2546),
                          "train loss": ("train_loss", 13, 0, 2400),
                          "val loss": ("val_loss", 13, 0, 2400)}
    assert pts(rec, "val loss")[1][-1] == 3.6716
    assert pts(rec, "loss")[1][:2] == [10.9766, 10.9733]
    assert segments(f) == [(0, 2546, "start")]
    assert rec.skipped_count == 0 and rec.metadata.extra["mfu_warmup_sentinels"] == "5"


LLMC_TABLE_META = dict(hidden_size=768, num_layers=12, num_heads=12, seq_length=1024,
                       precision="bf16", lr=6e-4, min_lr=0.0, warmup_steps=700,
                       train_iters=19560, global_batch_size=512, micro_batch_size=32,
                       save_interval=5000, weight_decay=0.1, lr_schedule="cosine")


def test_corpus_llmc_stdout_nan(corpus):
    path = corpus_file(corpus, "llmc-gpt2-stdout-nan/gpt2_train.11672255.log")
    assert sniff(path).name == "llmc"
    rec, f = load(path)
    per_step = {t: (r, 901, 1, 901) for t, r in (
        ("loss", "train_loss"), ("norm", "grad_norm"), ("lr", "lr"), ("time_ms", "other"),
        ("tok/s", "other"), ("mfu", "other"))}
    assert summary(f) == {**per_step, "val loss": ("val_loss", 4, 0, 750),
                          "HellaSwag": ("val_acc", 3, 250, 750)}
    nonfinite = {s.tag: s.nonfinite for s in f.runs[0].series}
    assert nonfinite["loss"] == nonfinite["norm"] == 901 and nonfinite["val loss"] == 4
    assert pts(rec, "HellaSwag") == ([250, 500, 750], [0.250448] * 3)
    # the job was killed mid-line and slurmstepd wrote into it
    assert skipped(rec) == [(976, "llm.c step line that does not parse")]
    assert segments(f) == [(0, 901, "start")]
    for name, value in LLMC_TABLE_META.items():
        assert getattr(rec.metadata, name) == value, name


def test_corpus_llmc_stdout_ok(corpus):
    path = corpus_file(corpus, "llmc-gpt2-stdout-ok/gpt2_train.11685414.log")
    assert sniff(path).name == "llmc"
    rec, f = load(path)
    per_step = {t: (r, 19559, 1, 19560) for t, r in (
        ("loss", "train_loss"), ("norm", "grad_norm"), ("lr", "lr"), ("time_ms", "other"),
        ("tok/s", "other"), ("mfu", "other"))}
    assert summary(f) == {**per_step, "val loss": ("val_loss", 80, 0, 19560),
                          "HellaSwag": ("val_acc", 79, 250, 19560)}
    assert pts(rec, "val loss")[1][:2] == [11.007921, 6.202221]
    assert pts(rec, "val loss")[1][-1] == 3.264775
    assert pts(rec, "loss")[1][-1] == 3.253402
    # step 19528's line was cut by a CUDA error message written into it
    assert skipped(rec) == [(19761, "llm.c step line that does not parse")]
    assert segments(f) == [(0, 19560, "start")]
    assert rec.metadata.checkpoints == (5000, 10000, 15000)
    for name, value in LLMC_TABLE_META.items():
        assert getattr(rec.metadata, name) == value, name


def test_corpus_llmc_mainlog(corpus):
    path = corpus_file(corpus, "llmc-gpt2-124m-mainlog/main.log")
    assert sniff(path).name == "llmc-mainlog"
    rec, f = load(path)
    assert summary(f) == {"trl": ("train_loss", 19552, 0, 19551), "lr": ("lr", 19552, 0, 19551),
                          "norm": ("grad_norm", 19552, 0, 19551),
                          "tel": ("val_loss", 80, 0, 19552), "eval": ("val_acc", 79, 250, 19552)}
    assert pts(rec, "trl")[1][:2] == [11.0116, 10.9586]
    assert pts(rec, "tel")[1][-1] == 3.2731 and pts(rec, "eval")[1][-1] == 0.3054
    assert segments(f) == [(0, 19552, "start")] and rec.skipped_count == 0


def test_corpus_pix2pix_restarts(corpus):
    path = corpus_file(corpus, "pix2pix-restarts/loss_log.txt")
    assert sniff(path).name == "pix2pix"
    rec, f = load(path)
    tags = ("time", "data", "G_GAN", "G_L1", "G_2_L1", "D_real", "D_fake")
    roles = {"G_L1": "train_loss", "G_2_L1": "train_loss"}
    assert summary(f) == {t: (roles.get(t, "other"), 1343, 100, 133647) for t in tags}
    assert {s.raw_points for s in f.runs[0].series} == {1369}
    assert rec.metadata.extra["images_per_epoch"] == "743"
    assert len(rec.headers) == 10 and rec.skipped_count == 0
    assert segments(f) == [(100, 1800, "start"), (100, 700, "header"), (100, 22200, "header"),
                           (100, 100, "header"), (21647, 133647, "header")]
    steps, values = pts(rec, "G_GAN")
    assert (steps[0], values[0]) == (100, 1.25) and (steps[-1], values[-1]) == (133647, 4.23)
