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
from losslens.readers import read_file, sniff
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
