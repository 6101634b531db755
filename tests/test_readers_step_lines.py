"""Step lines a training script logs itself (`Step 100, Loss: 6.2713`), read by `epoch-lines`.

The fixture is written by loguru itself (its default format, `{time} | {level: <8} |
{name}:{function}:{line} - {message}`), with the f-strings of DanielPuentee/gpt-from-zero's
src/train_pretrain.py and src/train_finetune.py (@ d1b7619a). The real files are that
repository's logs/pretrain.log and logs/finetune.log, a re-fetch entry (the logs were removed
before the repository got its licence): tests/test_readers_real_refetched.py pins them exactly.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

import losslens
from losslens.errors import NoSeriesError
from losslens.readers import read_file, read_records, sniff
from losslens.readers import epochs

CACHE = Path(__file__).resolve().parents[1] / "benchmarks" / "real" / "cache" / "excerpts"


def pretrain(path: Path, epochs_n: int = 3, steps_per_epoch: int = 230) -> None:
    """train_pretrain.py's logging: DEBUG model lines, a step line every 100 global steps, an
    epoch line and a save line after each epoch; a multi-line SUCCESS message."""
    logger.remove()
    sink = logger.add(str(path), level="DEBUG")
    try:
        logger.info("Using device: cpu")
        logger.success("\nFinal vocab size: 1002")
        logger.debug("TokenEmbedding: vocab=1000, dim=128")
        logger.info("Starting training...")
        global_step = 0
        for epoch in range(epochs_n):
            total = 0.0
            for i in range(steps_per_epoch):
                global_step += 1
                loss = 6.5 - global_step / 200
                total += loss
                if global_step % 100 == 0:
                    avg_loss = loss
                    logger.info(f"Step {global_step}, Loss: {avg_loss:.4f}")
            logger.info(f"Epoch {epoch+1} completed. Average loss: {total / steps_per_epoch:.4f}")
            logger.info(f"Checkpoint saved: checkpoints/model_epoch{epoch+1}.pt")
        logger.info("Training completed!")
    finally:
        logger.remove(sink)


def points(rec, tag):
    m = rec.tag_code == rec.tags.index(tag)
    return rec.step[m].tolist(), rec.value[m].tolist()


def test_loguru_step_lines_read_at_their_steps(tmp_path):
    path = tmp_path / "pretrain.log"
    pretrain(path)
    assert " | INFO     | test_readers_step_lines:pretrain:" in path.read_text()
    assert sniff(path).name == "epoch-lines"
    [rec] = read_file(path, "run")
    assert set(rec.tags) == {"Loss", "Average loss"}
    steps, values = points(rec, "Loss")
    assert steps == [100, 200, 300, 400, 500, 600]
    assert values == [round(6.5 - s / 200, 4) for s in steps]
    # each epoch's summary at the step printed last before it
    assert points(rec, "Average loss")[0] == [200, 400, 600]
    assert rec.metadata.extra["step_source"] == (
        "step lines (an epoch line's values at the step printed last before it)")
    assert rec.skipped_count == 0 and rec.warnings == ()
    run = losslens.read(path).runs[0]
    assert run.roles == {"Loss": "train_loss", "Average loss": "train_loss"}
    assert len(run.segments) == 1


def test_epochs_shorter_than_the_log_interval_share_a_step_and_say_so(tmp_path):
    """train_finetune.py logs every 50 steps, with 25 steps an epoch: two epochs end between
    step lines."""
    path = tmp_path / "finetune.log"
    logger.remove()
    sink = logger.add(str(path), level="DEBUG")
    try:
        global_step = 0
        for epoch in range(4):
            for _ in range(25):
                global_step += 1
                if global_step % 50 == 0:
                    logger.info(f"Step {global_step}, Loss: {4.8:.4f}, "
                                f"Avg batch rating: {3.8:.1f}")
            logger.info(f"Epoch {epoch+1} completed. Average loss: {4.6 - epoch / 10:.4f}")
    finally:
        logger.remove(sink)
    [rec] = read_file(path, "run")
    assert points(rec, "Average loss") == ([0, 50, 50, 100], [4.6, 4.5, 4.4, 4.3])
    assert points(rec, "Avg batch rating") == ([50, 100], [3.8, 3.8])
    assert rec.warnings == (
        "1 epoch line value(s) come with no step line since the epoch line before them: they "
        "share its step, so only the last of them is plotted and judged",)


def test_a_second_launch_into_the_same_log_is_a_second_segment(tmp_path):
    path = tmp_path / "pretrain.log"
    pretrain(path, epochs_n=1)
    pretrain(path, epochs_n=2)  # loguru appends
    run = losslens.read(path).runs[0]
    assert [(s.first_step, s.last_step) for s in run.segments] == [(100, 200), (100, 400)]


@pytest.mark.parametrize("line, steps", [
    ("2026-02-03 13:24:36.939 | INFO     | __main__:<module>:172 - Step 100, Loss: 6.2713", 100),
    ("2025-01-01 10:00:00,000 - INFO - Iteration 300: loss=0.25, lr=1e-4", 300),
    ("Step [100/1000], Loss: 0.5000", 100),
    ("[train] step 7 - loss: 0.1", 7),
])
def test_step_line_shapes(tmp_path, line, steps):
    path = tmp_path / "s.log"
    path.write_text((line + "\n") * 3)
    assert sniff(path).name == "epoch-lines"
    [rec] = read_file(path, "run")
    assert set(rec.step.tolist()) == {steps} and rec.skipped_count == 0


@pytest.mark.parametrize("text", [
    # frameworks' own step lines are theirs: a counter followed by `|` or by spaces
    "Step 12 | loss:1.1174635887145996 lr:2e-05\n" * 3,            # torchtune
    "step     0 | loss: 10.955010 | lr 6.0000e-04 | norm: 15.3420 | dt: 19152.47ms\n" * 3,
    "[titan] 2024-05-01 10:00:00,123 - root - INFO - step:  1  loss: 12.2500  memory: 1.0GiB\n" * 3,
    "step:1/1530 train_loss:10.8258 train_time:24897ms step_avg:nanms\n" * 3,  # modded-nanogpt
    " iteration      100/  500000 | consumed samples: 6400 | lm loss: 6.1E+00 |\n" * 3,
    # a step mentioned inside a message is not a step line
    "2026-02-03 13:24:36.939 | INFO     | x:y:1 - Saved at step 100, loss: 3.0\n" * 3,
    "Step 100 done\n" * 3,                                          # no pairs
])
def test_what_is_not_a_step_line(text):
    assert epochs.sniff("x.log", text.encode()) == 0.0


def test_real_gpt_from_zero_logs_read_when_fetched():
    for name in ("step-lines-gpt-from-zero-pretrain", "step-lines-gpt-from-zero-finetune"):
        if not (CACHE / f"{name}.log").is_file():
            pytest.skip("run python benchmarks/real/fetch_excerpts.py")
    [rec] = read_file(CACHE / "step-lines-gpt-from-zero-pretrain.log", "p")
    steps, values = points(rec, "Loss")
    assert steps == list(range(100, 7601, 100)) * 2  # the script run twice into one log
    assert (values[0], values[75], values[76], values[-1]) == (6.2713, 0.4640, 6.2742, 0.4637)
    assert points(rec, "Average loss")[0] == [1500, 3000, 4500, 6000, 7600] * 2
    [rec] = read_file(CACHE / "step-lines-gpt-from-zero-finetune.log", "f")
    assert points(rec, "Average loss") == ([0, 50, 50, 100, 100],
                                           [4.6905, 4.609, 4.4468, 4.3095, 4.252])
    assert len(rec.warnings) == 1


def test_no_other_format_claims_the_loguru_log(tmp_path):
    from losslens.readers import FORMATS

    path = tmp_path / "pretrain.log"
    pretrain(path)
    head = path.read_bytes()
    scores = {}
    for name, fmt in FORMATS.items():
        mod = fmt.load()
        fn = getattr(mod, f"sniff_{name.replace('-', '_')}", None) or mod.sniff
        scores[name] = fn(path.name, head)
    assert {n: s for n, s in scores.items() if s > 0} == {"epoch-lines": 0.45}


@pytest.mark.parametrize("head", [
    b"Step 5, no pairs here\n" * 50000,                       # every line a candidate
    b"2026-01-01 00:00:00.000 | INFO | " + b"a:" * 400000,       # one long prefix-like line
    (b"- " * 60 + b"Step 5 x\n") * 8000,
    b"step " * 200000,
    b"loss is 1 and " * 70000 + b"\n",                        # one endless loss sentence
    b"x_loss is 1 and kl is\n" * 40000,                      # every line a near miss
    b"[step 5] " * 100000 + b"\n",
    (b"[step 5] a=b\n") * 60000,
])
def test_sniff_stays_fast_on_hostile_heads(head):
    import time

    t = time.process_time()
    assert epochs.sniff("x.log", head[:1 << 20]) == 0.0
    assert time.process_time() - t < 1.0


def _pipe_step_log(path, epochs: int = 2, steps_per_epoch: int = 125, log_interval: int = 50,
                   eval_interval: int = 100) -> None:
    """What a script's trainer writes through Python logging (format `%(asctime)s -
    %(name)s - %(levelname)s - %(message)s`): `Step N | Loss: x | LR: y | Curriculum: z`
    every `log_interval` steps, `Validation loss: x` every `eval_interval`, and `Epoch N
    completed | Average loss: x` at each epoch's end (the A-SHOJAEI distillation trainer's
    f-strings)."""
    import logging

    logger = logging.getLogger("pkg.training.trainer")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        logging.getLogger("httpx").addHandler(handler)
        logging.getLogger("httpx").setLevel(logging.INFO)
        logging.getLogger("httpx").propagate = False
        logging.getLogger("httpx").info('HTTP Request: HEAD https://huggingface.co/x "HTTP/1.1 200 OK"')
        logger.info("Train batches: 2500, Val batches: 250")
        step = 0
        for epoch in range(epochs):
            for _ in range(steps_per_epoch):
                step += 1
                if step % log_interval == 0:
                    lr = 1e-4 * (1 - step / 1000)
                    logger.info(f"Step {step} | Loss: {0.001 * step:.4f} | LR: {lr:.2e}"
                                f" | Curriculum: {4 * step}")
                if step % eval_interval == 0:
                    logger.info(f"Validation loss: {0.03 - 0.0001 * step:.4f}")
            logger.info(f"Epoch {epoch} completed | Average loss: {0.0005 * (epoch + 1):.4f}")
        logger.info(f"Final validation loss: {0.0123:.4f}")
    finally:
        logger.removeHandler(handler)
        logging.getLogger("httpx").removeHandler(handler)
        handler.close()


def test_pipe_step_lines_validation_lines_and_epoch_lines_all_read(tmp_path):
    path = tmp_path / "training.log"
    _pipe_step_log(path)
    (rec,) = read_records(path)
    assert rec.format == "epoch-lines" and rec.skipped_count == 0 and not rec.warnings
    got = {t: (rec.step[rec.tag_code == i].tolist(), rec.value[rec.tag_code == i].tolist())
           for i, t in enumerate(rec.tags)}
    assert set(got) == {"Loss", "LR", "Curriculum", "Validation loss", "Average loss"}
    assert got["Loss"] == ([50, 100, 150, 200, 250], [0.05, 0.1, 0.15, 0.2, 0.25])
    assert got["Curriculum"][1] == [200.0, 400.0, 600.0, 800.0, 1000.0]
    assert got["Validation loss"] == ([100, 200], [0.02, 0.01])
    # each epoch's summary at the step printed last before it (epochs end at 125 and 250)
    assert got["Average loss"] == ([100, 250], [0.0005, 0.001])
    roles = losslens.read(path).runs[0].roles
    assert roles == {"Loss": "train_loss", "LR": "lr", "Curriculum": "other",
                     "Validation loss": "val_loss", "Average loss": "train_loss"}


def test_a_lone_validation_line_before_any_step_line_is_not_a_point(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("INFO - Validation loss: 0.5\nINFO - Epoch 1 | Train Loss: 1.0\n"
                    "INFO - Epoch 2 | Train Loss: 0.8\n")
    (rec,) = read_records(path)
    assert rec.tags == ("Train Loss",)
    assert rec.step.tolist() == [1, 2]


def _grpo_script_output(path, epochs=2, steps_per_epoch=6, eval_every=3) -> None:
    """What a GRPO script prints (JunyiJ/PostTraining-LLM-Small run_train.py's f-strings):
    the epoch header, the model's sampled answers (free text, with numbers), `grpo_loss is
    {grpo_loss} and kl is {kl_loss}` once an update (its step counter goes up after it),
    `[step {global_step}] avg_loss={avg_loss:.4f} acc={acc:.4f}` every `eval_every` steps."""
    out, step = [], 0
    for epoch in range(1, epochs + 1):
        out.append(f"\n=== Epoch {epoch}/{epochs} ===")
        out.append("A garden has 180 flowers. How many daisies?")
        out.append("answer is 75")
        out.append("**Step 1:** 45 pens / 5 pens/set = 9 sets.")
        out.append("Final answer: 75")
        for _ in range(steps_per_epoch):
            grpo_loss, kl = (-0.0 if step % 2 else 0.01 * step), 0.001 * step
            out.append(f"reward is {0.9}")
            out.append(f"grpo_loss is {grpo_loss} and kl is {kl}")
            out.append(f"[timing] sample processed in {12.5:.2f}s")
            step += 1
            if step % eval_every == 0:
                out.append(f"[step {step}] avg_loss={-0.0007 * step:.4f} acc={0.9:.4f}")
        out.append(f"Saved checkpoint to /ckpt/lora_epoch{epoch}_step{step}.pt")
        out.append(f"==end-of-epoch {epoch}==")
    path.write_text("\n".join(out) + "\n")


def test_grpo_prints_read_the_loss_and_kl_at_each_update(tmp_path):
    path = tmp_path / "train_grpo.log"
    _grpo_script_output(path)
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    got = {t: (rec.step[rec.tag_code == i].tolist(), rec.value[rec.tag_code == i].tolist())
           for i, t in enumerate(rec.tags)}
    # the model's answers (`answer is 75`, `pens/set = 9`, `Final answer: 75`) are no series
    assert set(got) == {"grpo_loss", "kl", "avg_loss", "acc"}
    assert got["grpo_loss"][0] == list(range(1, 13))
    assert got["grpo_loss"][1][:4] == [0.0, -0.0, 0.02, -0.0]
    assert got["kl"][1][:3] == [0.0, 0.001, 0.002]
    assert got["avg_loss"] == ([3, 6, 9, 12], [-0.0021, -0.0042, -0.0063, -0.0084])
    roles = losslens.read(path).runs[0].roles
    assert roles == {"grpo_loss": "train_loss", "kl": "other", "avg_loss": "train_loss",
                     "acc": "train_acc"}
    # its `Saved checkpoint to /ckpt/lora_epoch1_step6.pt` lines are checkpoints
    assert rec.metadata.checkpoints == (6, 12)
    assert rec.metadata.checkpoint_source == "the log's save lines (Saved checkpoint to)"
    assert rec.metadata.checkpoint_dir == "/ckpt"


def test_save_lines_in_a_file_of_epochs_give_no_checkpoints(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("Epoch 1 | Train Loss: 1.0\nSaved checkpoint to ckpt/model_step100.pt\n"
                    "Epoch 2 | Train Loss: 0.8\n")
    (rec,) = read_records(path)
    assert rec.metadata.extra["step_source"] == "epoch" and rec.metadata.checkpoints is None


def test_ppo_step_colon_pipe_lines(tmp_path):
    path = tmp_path / "ppo.log"
    lines = ["", "=== Epoch 1/2 ==="]
    for step in range(1, 5):
        lines.append(f"Step: {step} | Loss: {0.001 * step:.4f} | KL: {-0.0001 * step:.4f}")
        lines.append(f"[step {step}] avg_loss={0.001 * step:.4f} acc={0.5:.4f}")
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.format == "epoch-lines"
    got = {t: rec.step[rec.tag_code == i].tolist() for i, t in enumerate(rec.tags)}
    assert got == {"Loss": [1, 2, 3, 4], "KL": [1, 2, 3, 4], "avg_loss": [1, 2, 3, 4],
                   "acc": [1, 2, 3, 4]}


@pytest.mark.parametrize("text", [
    "the answer is 5 and x is 3\n",  # no loss among the names
    "loss is high\n", "grpo_loss is -0.1 and then some words\n"])
def test_what_is_not_a_loss_sentence(text):
    assert epochs._sentence(text.strip()) is None


@pytest.mark.parametrize("body", [
    "loss is 1 and " * 70000 + "\n",
    "grpo_loss is 0.5 and kl is 0.1\n" + ("loss is 1 and kl is 2 and " * 40000) + "x\n",
    "[step 1] loss=1\n" + "[step 5] " * 100000 + "\n",
    "Validation loss: 1\n" * 1 + "Step 1 | Loss: 2\n" + "Validation loss: 0.5 " * 50000 + "\n",
])
def test_read_stays_linear_on_hostile_lines(tmp_path, body):
    import time

    path = tmp_path / "train.log"
    path.write_text(body)
    t = time.process_time()
    try:
        read_records(path, format="epoch-lines")
    except NoSeriesError:  # (nothing to read is a fine answer; a slow one is not)
        pass
    assert time.process_time() - t < 3.0
