"""Real output of MaxText, Composer / llm-foundry, NeMo, GPT-NeoX, axolotl and CLU (Flax) runs, published in
documentation or committed with the run's code (tests/data/real_excerpts/README.md names each
source): exact series, roles, counts and steps."""
from __future__ import annotations

from pathlib import Path

import pytest

import losslens
from losslens.readers import read_records, sniff

DATA = Path(__file__).resolve().parent / "data" / "real_excerpts"

#: file -> (format, framework, {tag: (role, points, first step, last step, first, last)})
EXPECTED = {
    "maxtext_deepseek2-16b.log": ("maxtext", "maxtext", {
        "loss": ("train_loss", 10, 0, 9, 12.038, 10.374),
        "seconds": ("other", 10, 0, 9, 44.923, 5.667),
        "TFLOP/s/device": ("other", 10, 0, 9, 17.022, 134.924),
        "Tokens/s/device": ("other", 10, 0, 9, 1094.129, 8672.758),
        "total_weights": ("other", 10, 0, 9, 196608.0, 196608.0),
    }),
    "llm-foundry_mpt-125m.log": ("composer", "composer", {
        "loss/train/total": ("train_loss", 4, 1, 4, 10.9736, 10.6459),
        "LanguageCrossEntropy": ("other", 4, 1, 4, 10.9736, 10.6459),
        "Perplexity": ("other", 4, 1, 4, 58312.0586, 42018.5508),
    }),
    # CLU's LoggingWriter (what t5x prints its summaries through), in the Flax Gemma example's
    # run on a TPU v6e-16: no `collection=`, the train/eval prefix in the keys
    "flax_gemma3-1b_lm1b.log": ("t5x", "clu", {
        "steps_per_sec": ("other", 8, 1, 4001, 0.014434, 3.0123),
        "uptime": ("other", 8, 1, 4001, 144.522, 894.341),
        "train_accuracy": ("train_acc", 2, 2000, 4000, 0.37408044934272766, 0.4054645895957947),
        "train_loss": ("train_loss", 2, 2000, 4000, 3.729034185409546, 3.389246940612793),
        "eval_accuracy": ("val_acc", 2, 2000, 4000, 0.4045374393463135, 0.42954444885253906),
        "eval_loss": ("val_loss", 2, 2000, 4000, 3.198998212814331, 2.988433599472046),
        "eval_perplexity": ("other", 2, 2000, 4000, 24.50796127319336, 19.85456085205078),
    }),
    # a GPT-NeoX MoE run killed at iteration 270 of 11,000: its Tee'd stdout and TensorBoard
    "gpt-neox_moe2_stdout.txt": ("megatron", "gpt-neox", {
        "samples/sec": ("other", 27, 10, 270, 1.328, 6.154),
        "elapsed time per iteration (ms)": ("other", 27, 10, 270, 752.9, 162.5),
        "learning rate": ("lr", 27, 10, 270, 0.0002727, 0.0002996),
        "approx flops per GPU (TFLOPS)": ("other", 27, 10, 270, 4.3, 19.8),
        "lm_loss": ("train_loss", 27, 10, 270, 11.01279, 7.103374),
        "number of skipped iterations": ("skipped", 27, 10, 270, 0.0, 0.0),
        "number of nan iterations": ("skipped", 27, 10, 270, 0.0, 0.0),
    }),
    "gpt-neox_moe2.tfevents": ("tensorboard", "tensorboard", {
        "timers/forward": ("other", 274, 1, 274, 4.352039813995361, 0.04493844509124756),
        "timers/backward": ("other", 274, 1, 274, 1.5051121711730957, 0.07003480195999146),
        "timers/backward-backward": ("other", 274, 1, 274, 1.5050790309906006,
                                     0.0700153112411499),
        "timers/backward-allreduce": ("other", 274, 1, 274, 0.0, 0.0),
        "timers/optimizer": ("other", 274, 1, 274, 0.17879700660705566, 0.04791760444641113),
        "timers/batch generator": ("other", 274, 1, 274, 0.25093817710876465,
                                   0.0006503462791442871),
        "train/learning_rate": ("lr", 274, 1, 274, 2.7272726583760232e-05,
                                0.00029961176915094256),
        "train/lm_loss": ("train_loss", 274, 1, 274, 11.990318298339844, 7.178306579589844),
        "runtime/samples_per_sec": ("other", 27, 10, 270, 1.3281643390655518,
                                    6.154058456420898),
        "runtime/iteration_time": ("other", 27, 10, 270, 0.7529188394546509,
                                   0.16249439120292664),
        "runtime/flops_per_sec_per_gpu": ("other", 27, 10, 270, 4277247410176.0,
                                          19818652631040.0),
    }),
    # DeepSpeed-Chat step 1 (SFT of OPT-1.3B, 16 epochs of 460 steps): its perplexity before
    # training and after each epoch, on the engine's step axis; fp16 overflows and lr
    "deepspeed-chat_step1_opt-1.3b.log": ("deepspeed", "deepspeed-chat", {
        "eval/ppl": ("other", 17, 0, 7360, 4998.29638671875, 1.8085135221481323),
        "loss scale": ("loss_scale", 73, 1, 7331, 2048.0, 32768.0),
        "overflow": ("skipped", 73, 1, 7331, 6.0, 2.0),
        "lr": ("lr", 736, 10, 7360, 9.649992967150629e-06, 8.490116182110961e-09),
        "skipped": ("skipped", 736, 10, 7360, 6.0, 139.0),
    }),
    # DeepSpeed-Chat step 2 (reward model, OPT-350M, 1 epoch of 1,840 steps)
    "deepspeed-chat_step2-rm_opt-350m.log": ("deepspeed", "deepspeed-chat", {
        "eval/chosen_last_scores": ("other", 2, 0, 1840, 2.8115079402923584, 2.243525981903076),
        "eval/acc": ("val_acc", 2, 0, 1840, 0.4924241304397583, 0.6994950175285339),
        "epoch mean loss": ("train_loss", 1, 1840, 1840, 0.5754789632299672,
                            0.5754789632299672),
        "loss scale": ("loss_scale", 8, 1, 1721, 64.0, 1024.0),
        "overflow": ("skipped", 8, 1, 1721, 10.0, 1.0),
        "lr": ("lr", 184, 10, 1840, 5e-05, 1.4574440845649407e-08),
        "skipped": ("skipped", 184, 10, 1840, 10.0, 20.0),
    }),
    # jackokeefe11/nanoGPT: iteration losses in BPC, evaluation losses still in nats
    "nanogpt-bpc_bn1klkfl_output.log": ("nanogpt", "nanogpt", {
        "loss": ("train_loss", 134, 0, 1330, 6.1551, 1.8209),
        "time": ("other", 134, 0, 1330, 63478.93, 58.39),
        "mfu": ("other", 133, 10, 1330, 7.56, 6.25),
        "train loss": ("train_loss", 6, 0, 1250, 4.2874, 1.2009),
        "val loss": ("val_loss", 6, 0, 1250, 4.2823, 1.4874),
    }),
    # HF Trainer's TensorBoardCallback in an axolotl LoRA run of open_llama_3b_v2 (Dec 2023)
    "axolotl_openllama-3b_lora-out/runs/Dec10_21-45-51_ash06/"
    "events.out.tfevents.1702262763.ash06.1154852.0": ("tensorboard", "tensorboard", {
        "train/loss": ("train_loss", 130, 1, 130, 5.02400016784668, 1.3214999437332153),
        "train/learning_rate": ("lr", 130, 1, 130, 0.0, 0.00019999158394057304),
        # the eval log's epoch is written as train/epoch at the same step: 131 points
        "train/epoch": ("other", 131, 1, 130, 0.0, 0.019999999552965164),
        "eval/loss": ("val_loss", 1, 1, 1, 4.308958530426025, 4.308958530426025),
        "eval/runtime": ("other", 1, 1, 1, 171.02940368652344, 171.02940368652344),
        "eval/samples_per_second": ("other", 1, 1, 1, 6.385000228881836, 6.385000228881836),
        "eval/steps_per_second": ("other", 1, 1, 1, 3.191999912261963, 3.191999912261963),
    }),
    # LLaMA-Factory's trainer_log.jsonl (its LogCallback: `current_steps`, `total_steps`, ...):
    # a GRPO run stopped at step 202 of 5,100, and a finished Qwen2.5-7B LoRA SFT with evals
    "llama-factory_grpo_trainer_log.jsonl": ("jsonl", "llama-factory", {
        "loss": ("train_loss", 202, 1, 202, 0.6491, 0.4962),
        "accuracy": ("train_acc", 202, 1, 202, 1.0, 1.0),
        "lr": ("lr", 202, 1, 202, 9.803921568627451e-10, 1.980392156862745e-07),
        "percentage": ("other", 202, 1, 202, 0.02, 3.96),
        "epoch": ("other", 202, 1, 202, 0.0019588638589618022, 0.395690499510284),
    }),
    "llama-factory_qwen2.5-7b-medical_trainer_log.jsonl": ("jsonl", "llama-factory", {
        "loss": ("train_loss", 675, 10, 6750, 2.219, 1.5999),
        "lr": ("lr", 675, 10, 6750, 1.3333333333333334e-06, 6.68570453998818e-12),
        "percentage": ("other", 689, 10, 6750, 0.15, 100.0),
        "epoch": ("other", 689, 10, 6750, 0.0044444444444444444, 3.0),
        "eval_loss": ("val_loss", 13, 500, 6500, 1.6410622596740723, 1.577560544013977),
    }),
    "nemo_bionemo_esm2.log": ("megatron", "nemo", {
        "reduced_train_loss": ("train_loss", 7, 28, 34, 2.778, 2.788),
        "val_loss": ("val_loss", 1, 28, 28, 2.861, 2.861),  # repeated on every line: one point
        "val_ppl": ("other", 1, 28, 28, 17.57, 17.57),
        "lr": ("lr", 7, 28, 34, 5.6e-06, 6.8e-06),
        "global_batch_size": ("other", 7, 28, 34, 32.0, 32.0),
        "global_step": ("other", 7, 28, 34, 28.0, 34.0),
        "train_step_timing in s": ("other", 7, 28, 34, 0.189, 0.1902),
        "consumed_samples": ("other", 7, 28, 34, 928.0, 1120.0),
    }),
    # NeMo 2's ProgressPrinter stdout of a 20-step toy Llama-3 run, gzipped as committed
    "nemo2_playground-cpt-llama3_pretrain.log.gz": ("megatron", "nemo", {
        "reduced_train_loss": ("train_loss", 20, 0, 19, 10.84, 10.84),
        "lr": ("lr", 20, 0, 19, 1.499e-07, 2.999e-06),
        "consumed_samples": ("other", 20, 0, 19, 64.0, 1280.0),
        "global_batch_size": ("other", 20, 0, 19, 64.0, 64.0),
        "global_step": ("other", 20, 0, 19, 0.0, 19.0),
        "train_step_timing in s": ("other", 20, 0, 19, 3.632, 0.4437),
    }),
    # a script's Python-logging `Step 650 | Loss: x | LR: y | Curriculum: z` lines (every 50
    # steps), `Validation loss: x` lines and `Epoch 0 completed | Average loss: x`: all read,
    # the epoch and validation values at the step printed last before them
    "epoch-lines_progressive-distillation_training.log": ("epoch-lines", None, {
        "Loss": ("train_loss", 50, 50, 2500, 0.0002, 0.003),
        "LR": ("lr", 50, 50, 2500, 0.0001, 9.84e-05),
        "Curriculum": ("other", 50, 50, 2500, 200.0, 10000.0),
        "Validation loss": ("val_loss", 5, 500, 2500, 0.0292, 0.0184),
        "Average loss": ("train_loss", 4, 600, 2500, 0.0006, 0.0027),
    }),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_excerpt_reads_exactly(name):
    fmt, framework, series = EXPECTED[name]
    path = DATA / name
    assert sniff(path).name == fmt
    (rec,) = read_records(path)
    assert rec.format == fmt and rec.metadata.framework == framework
    assert rec.skipped_count == 0 and set(rec.tags) == set(series)
    roles = losslens.read(path).runs[0].roles
    for tag, (role, n, first_step, last_step, first, last) in series.items():
        sel = rec.tag_code == rec.tags.index(tag)
        steps, values = rec.step[sel].tolist(), rec.value[sel].tolist()
        assert (roles[tag], len(steps), steps[0], steps[-1], values[0], values[-1]) == (
            role, n, first_step, last_step, first, last), tag
        assert steps == sorted(steps)


def test_neox_stdout_is_the_mean_of_tensorboard_over_each_log_interval():
    """Two writers of one run, read independently: NeoX prints at iteration N the mean lm_loss
    of iterations N-9..N (log_interval 10), TensorBoard has every iteration."""
    (out,) = read_records(DATA / "gpt-neox_moe2_stdout.txt")
    (tb,) = read_records(DATA / "gpt-neox_moe2.tfevents")
    sel = out.tag_code == out.tags.index("lm_loss")
    printed = dict(zip(out.step[sel].tolist(), out.value[sel].tolist()))
    sel = tb.tag_code == tb.tags.index("train/lm_loss")
    every = dict(zip(tb.step[sel].tolist(), tb.value[sel].tolist()))
    assert sorted(printed) == list(range(10, 271, 10))
    for step, value in printed.items():  # printed with 7 significant digits
        assert sum(every[s] for s in range(step - 9, step + 1)) / 10 == pytest.approx(
            value, rel=2e-7)


def test_neox_argument_dump_and_stop_note():
    """NeoXArgs.print pads each value with dots to column 64 and adds `updated`/`default`;
    precision is its own argument (`bfloat16`), warmup a fraction of train_iters."""
    path = DATA / "gpt-neox_moe2_stdout.txt"
    (rec,) = read_records(path)
    m = rec.metadata
    assert (m.precision, m.lr, m.min_lr, m.lr_schedule, m.train_iters, m.warmup_steps) == (
        "bf16", 0.0003, 3e-05, "infinite_cosine", 11000, 11)
    assert (m.hidden_size, m.num_layers, m.num_heads, m.seq_length, m.global_batch_size,
            m.micro_batch_size, m.log_interval, m.clip_grad, m.weight_decay) == (
        768, 12, 12, 2048, 1, 1, 10, 1.0, 0.1)
    assert m.extra["optimizer"] == (
        "{'type': 'Adam', 'params': {'lr': 0.0003, 'betas': [0.9, 0.95], 'eps': 1e-08}}")
    assert m.extra["load"] == "none" and m.extra["checkpoint_factor"] == "1000"
    assert losslens.read(path).runs[0].notes == ("stopped at 270 of 11,000 planned iterations",)


def test_neox_stdout_relaunched_twice_into_one_file():
    """NeoX's Tee appends: three launches in one stdout, the second dying before training,
    the third starting over from iteration 0: two segments, the second from a header."""
    path = DATA / "gpt-neox_moe8_relaunched_stdout.txt"
    (rec,) = read_records(path)
    assert rec.format == "megatron" and rec.metadata.framework == "gpt-neox"
    assert rec.skipped_count == 0 and rec.headers == (389, 656)
    sel = rec.tag_code == rec.tags.index("lm_loss")
    assert rec.step[sel].tolist() == [10, 20, 30, 40, 50] + list(range(10, 81, 10))
    assert (rec.value[sel][0], rec.value[sel][4], rec.value[sel][5], rec.value[sel][-1]) == (
        11.38677, 7.898805, 11.38679, 7.580786)
    run = losslens.read(path).runs[0]
    assert [(s.first_step, s.last_step, s.reason) for s in run.segments] == [
        (10, 50, "start"), (10, 80, "header")]
    assert run.roles["lm_loss"] == "train_loss"


def test_axolotl_output_folder_with_a_launch_that_logged_nothing():
    """axolotl's `lora-out/runs/` holds one folder per launch; a launch that stopped before
    its first log has only HF's text summaries (args, model config): a failed unit that says
    so, beside the launch that trained."""
    result = losslens.read(DATA / "axolotl_openllama-3b_lora-out")
    (empty, trained) = result.runs
    assert (empty.run, trained.run) == ("runs/Dec10_21-41-23_ash06", "runs/Dec10_21-45-51_ash06")
    assert empty.series == () and empty.error.endswith(
        "no metric series could be read (no scalars, only text summaries: 2 tags "
        "(args/text_summary, model_config/text_summary))")
    assert trained.error is None and trained.last_step == 130
    assert {s.tag: s.role for s in trained.series}["eval/loss"] == "val_loss"


def test_nemo_excerpt_save_line_names_the_checkpoint():
    (rec,) = read_records(DATA / "nemo_bionemo_esm2.log")
    assert rec.metadata.checkpoints == (99,)
    assert rec.metadata.checkpoint_source == (
        "the log's save lines (Megatron: successfully saved checkpoint)")


def test_hf_run_shorter_than_its_logging_steps_says_why_it_has_no_series():
    """BigScience's 2021 gpt2-hf-ds runs made 16 optimization steps with logging_steps=500:
    HF Trainer printed no loss, only its end-of-training summary."""
    from typer.testing import CliRunner

    from losslens.cli import app
    from losslens.errors import NoSeriesError

    path = DATA / "bigscience_gpt2-hf-ds_n4.out"
    assert sniff(path).name == "hf-trainer"
    why = (f"{path}: HF Trainer logged no loss: the run made 16 optimization step(s) and logs "
           "every logging_steps=500, so it printed only its end-of-training summary; set "
           "logging_steps below 16 to see the loss")
    with pytest.warns(UserWarning, match="HF Trainer logged no loss") as got:
        with pytest.raises(NoSeriesError):
            read_records(path)
    assert [str(w.message) for w in got] == [why]
    res = CliRunner().invoke(app, ["analyze", str(path)])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0] == f"Warning: {why}" and lines[-1].startswith(
        f"Error: {path}: no metric series found")


def test_every_excerpt_has_its_licence_beside_it():
    readme = (DATA / "README.md").read_text()
    for name in EXPECTED:
        assert f"`{name}`" in readme
    for line in readme.splitlines():
        if line.startswith("| `"):
            repo = line.split("|")[2].split("@")[0].strip()
            assert (DATA / (repo.replace("/", "__") + ".LICENSE")).is_file(), repo
