"""Epoch lines that training scripts print themselves (`epoch-lines`), written with Python's
logging module and tqdm as those scripts write them; Keras' finished progress bar."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import losslens
from losslens.readers import read_records, sniff


def _log(path, fmt: str, messages: list[str]) -> None:
    """`messages` written through a logging.FileHandler with `fmt`, as the scripts do."""
    logger = logging.getLogger(f"losslens-test-{path.name}-{len(messages)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(fmt))
    logger.addHandler(handler)
    try:
        for m in messages:
            logger.info(m)
    finally:
        logger.removeHandler(handler)
        handler.close()


def series(rec, tag):
    sel = rec.tag_code == rec.tags.index(tag)
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_logging_epoch_lines_with_a_restart(tmp_path):
    """AdityaJ87/Face_Emotion_Detection's train.py shape: `%(asctime)s - %(levelname)s -
    %(message)s`, the f-string below, `Saved best model` lines; the script run twice into the
    same file (the epoch goes back: a new segment)."""
    msgs = ["Class weights: [1.02, 9.40, 1.00]"]
    for run, epochs in ((0, 3), (1, 4)):
        for e in range(epochs):
            tl, vl = 2.0 - 0.1 * e - run / 100, 1.9 - 0.1 * e
            msgs.append(f"Epoch [{e + 1}/50], Train Loss: {tl:.4f}, Train Acc: {20 + e:.2f}%, "
                        f"Val Loss: {vl:.4f}, Val Acc: {17.5 + e:.2f}%")
            msgs.append("Saved best model")
    path = tmp_path / "training.log"
    _log(path, "%(asctime)s - %(levelname)s - %(message)s", msgs)
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.format == "epoch-lines" and rec.skipped_count == 0
    assert rec.tags == ("Train Loss", "Train Acc", "Val Loss", "Val Acc")
    assert series(rec, "Train Loss") == ([1, 2, 3, 1, 2, 3, 4],
                                         [2.0, 1.9, 1.8, 1.99, 1.89, 1.79, 1.69])
    assert series(rec, "Val Acc") == ([1, 2, 3, 1, 2, 3, 4], [17.5, 18.5, 19.5] + [
        17.5, 18.5, 19.5, 20.5])
    assert rec.metadata.extra["step_source"] == "epoch"
    run = losslens.read(path).runs[0]
    assert run.roles == {"Train Loss": "train_loss", "Train Acc": "train_acc",
                         "Val Loss": "val_loss", "Val Acc": "val_acc"}
    assert [(s.first_step, s.last_step) for s in run.segments] == [(1, 3), (1, 4)]
    assert run.last_step == 4
    assert all(w > 1.6e9 for w in rec.wall_time.tolist())  # the logging time stamps


def test_equals_pairs_and_camel_case_names(tmp_path):
    """EmoNetTCN (`%(asctime)s %(levelname)s:%(message)s`, `Epoch N: Train Loss=x, Val
    Loss=y`) and skin_lesion_classifier (`| INFO |`, CamelCase names, `|` groups, units);
    a configuration banner (`Epochs : 30`, `LR : 0.0001`) and a checkpoint line that names
    an epoch are not points."""
    path = tmp_path / "a.log"
    _log(path, "%(asctime)s %(levelname)s:%(message)s",
         [f"Epoch {e}: Train Loss={0.07 / e:.4f}, Val Loss={0.08 / e:.4f}" for e in (1, 2, 3)])
    (rec,) = read_records(path)
    assert rec.tags == ("Train Loss", "Val Loss")
    assert series(rec, "Val Loss") == ([1, 2, 3], [0.08, 0.04, 0.0267])

    path = tmp_path / "b.log"
    msgs = ["  Epochs       : 30", "  LR           : 0.0001", "  Batch size   : 32"]
    for e in (1, 2):
        msgs.append(f"Epoch [{e:03d}/30] TrainLoss={1.8 / e:.4f} TrainAcc={48 + e:.2f}% | "
                    f"ValLoss={1.3 / e:.4f} ValAcc={60 + e:.2f}% | LR={1e-4:.2e} | "
                    f"Time={480.3 + e:.1f}s")
        msgs.append("[Checkpoint] Saved -> results/models/best.pth  (epoch=1, val_acc=60.9415)")
    _log(path, "%(asctime)s | %(levelname)s | %(message)s", msgs)
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.tags == ("TrainLoss", "TrainAcc", "ValLoss", "ValAcc", "LR", "Time")
    assert series(rec, "ValAcc") == ([1, 2], [61.0, 62.0])
    assert series(rec, "Time") == ([1, 2], [481.3, 482.3])
    roles = losslens.read(path).runs[0].roles
    assert roles == {"TrainLoss": "train_loss", "TrainAcc": "train_acc", "ValLoss": "val_loss",
                     "ValAcc": "val_acc", "LR": "lr", "Time": "other"}


def test_groups_and_blocks_name_unqualified_values(tmp_path):
    """`| Val Loss: x Acc: y |` gives `Val Acc`; a repeated `Acc` takes the Train/Val word
    before it; an `Epoch [N/M]` line alone opens a block of pair lines; `LR` stays `LR`."""
    lines = ["Epoch [01/02] (12.5s) | Train Loss: 0.9000 Acc: 61.00% | "
             "Val Loss: 0.8000 Acc: 64.00% | LR: 1.00e-03",
             "Epoch 2/2: Train Loss: 0.7000, Acc: 0.7100, Val Loss: 0.6500, Acc: 0.7300, LR: 0.001",
             "",
             "Epoch [3/3]",
             "  Train Loss: 0.5000, Train Acc: 80.0000",
             "  Val Loss: 0.5500, Val Acc: 78.0000",
             "Current LR: 1.00e-04",
             "Validation accuracy improved, saving model",
             "Epoch [4/4]",
             "Val Losses: mse: 0.3048, mae: 0.3886"]
    path = tmp_path / "train.out"
    path.write_text("\n".join(lines) + "\n")
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.tags == ("Train Loss", "Train Acc", "Val Loss", "Val Acc", "LR", "Current LR",
                        "Val mse", "Val mae")
    assert series(rec, "Train Acc") == ([1, 2, 3], [61.0, 0.71, 80.0])
    assert series(rec, "Val Acc") == ([1, 2, 3], [64.0, 0.73, 78.0])
    assert series(rec, "LR") == ([1, 2], [0.001, 0.001])
    assert series(rec, "Current LR") == ([3], [0.0001])
    assert series(rec, "Val mae") == ([4], [0.3886])
    roles = losslens.read(path).runs[0].roles
    assert (roles["Val mse"], roles["Current LR"], roles["Val Acc"]) == ("other", "lr", "val_acc")


def test_tqdm_bars_are_not_points_the_summary_after_them_is(tmp_path):
    """tqdm drives a `desc=f'Epoch {e}/{n}'` bar with a running loss in its postfix into the
    same file the summary lines go to (a `2>&1` capture): the bars' redraws are not read."""
    from tqdm import tqdm
    path = tmp_path / "console.log"
    with open(path, "w") as fh:
        for e in (1, 2):
            bar = tqdm(range(5), desc=f"Epoch {e}/2", file=fh, mininterval=0, miniters=1,
                       ascii=False)
            for i in bar:
                bar.set_postfix(loss=f"{3.0 - i / 10:.4f}")
            bar.close()
            fh.write(f"Epoch {e}/2 - Train Loss: {1.5 / e:.4f} - Val Loss: {1.6 / e:.4f}\n")
    text = path.read_bytes().decode()
    assert "\r" in text and "loss=3.0000" in text
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.tags == ("Train Loss", "Val Loss")
    assert series(rec, "Train Loss") == ([1, 2], [1.5, 0.75])
    bars = sum(piece.count("%|") for piece in text.split("\r"))
    assert rec.metadata.extra["progress_bar_lines"] == str(bars) and bars >= 10


def test_keras_fit_output(tmp_path):
    """Keras `fit(verbose=1)` into a file: `Epoch N/M`, then the progress bar; its last drawing
    (count == total) carries the epoch's metrics; Keras 3's bar too; `evaluate`'s bar after
    the last epoch is not a point."""
    text = ("Epoch 1/2\n"
            "  1/782 [..............................] - ETA: 20:11 - loss: 2.3026 - accuracy: 0.0938"
            "\r782/782 [==============================] - ETA: 0s - loss: 1.2400 - accuracy: 0.5600"
            "\nEpoch 00001: val_loss improved from inf to 1.10230, saving model to best.h5\n"
            "782/782 [==============================] - 45s 57ms/step - loss: 1.2345 - "
            "accuracy: 0.5678 - val_loss: 1.1023 - val_accuracy: 0.6120\n"
            "Epoch 2/2\n"
            "\x1b[1m782/782\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m44s\x1b[0m "
            "56ms/step - accuracy: 0.6543 - loss: 0.9876 - val_accuracy: 0.6600 - val_loss: 0.9500\n"
            # model.evaluate on the test set: not epoch 2's
            "313/313 [==============================] - 2s 6ms/step - loss: 0.9911 - "
            "accuracy: 0.6500\n")
    path = tmp_path / "fit.log"
    path.write_text(text)
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.metadata.framework == "keras"
    assert set(rec.tags) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert series(rec, "val_loss") == ([1, 2], [1.1023, 0.95])
    assert series(rec, "loss") == ([1, 2], [1.2345, 0.9876])
    roles = losslens.read(path).runs[0].roles
    assert roles == {"loss": "train_loss", "accuracy": "train_acc", "val_loss": "val_loss",
                     "val_accuracy": "val_acc"}


def test_iteration_lines_put_the_epoch_on_a_global_iteration_axis(tmp_path):
    """The PyTorch tutorial's `Epoch [1/5], Step [100/600], Loss: x`: step = (epoch - 1) ×
    600 + step; an epoch's validation line sits at its last iteration."""
    lines = []
    for e in (1, 2):
        for s in (200, 400, 600):
            lines.append(f"Epoch [{e}/2], Step [{s}/600], Loss: {1 / (e * s):.6f}")
        lines.append(f"Epoch [{e}/2], Val Loss: {0.5 / e:.4f}")
    path = tmp_path / "tutorial.log"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert series(rec, "Loss")[0] == [200, 400, 600, 800, 1000, 1200]
    assert series(rec, "Val Loss") == ([600, 1200], [0.5, 0.25])
    assert rec.metadata.extra["step_source"] == (
        "(epoch - 1) * 600 + iteration (the total printed)")

    # no total printed, a counter that restarts every epoch (0-based epochs)
    lines = [f"epoch: {e}, iter: {i}, loss: {e + i / 1000:.3f}" for e in (0, 1) for i in (50, 100)]
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert series(rec, "loss")[0] == [50, 100, 150, 200]
    assert rec.metadata.extra["step_source"] == (
        "(epoch - 0) * 100 + iteration (the largest iteration seen)")

    # a global counter
    lines = [f"Epoch {e} | Iteration {i} | Loss: 0.5" for e, i in ((1, 10), (1, 20), (2, 30))]
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert series(rec, "Loss")[0] == [10, 20, 30]
    assert rec.metadata.extra["step_source"] == "iteration (a counter that never goes back)"


def test_more_shapes_scripts_print(tmp_path):
    """A `[tag]` before the epoch (also at the file's start), `epoch:N`, a test loss, a best
    loss, a batch counter, `INFO:root:` and `|` groups of comma pairs."""
    path = tmp_path / "v.log"
    path.write_text("[CLS] Epoch 3 | Train Loss: 0.5000 | Val Loss: 0.4000 | Acc: 0.8000\n"
                    "-- epoch:4, train loss: 0.5, test loss: 0.6\n"
                    "Epoch: 5, Val Loss: 0.5, Best Loss: 0.4\n"
                    "INFO:root:Epoch 6/10: Train Loss: 0.3, Acc: 0.9 | Val Loss: 0.33, Acc: 0.88\n")
    assert sniff(path).name == "epoch-lines"
    (rec,) = read_records(path)
    assert rec.tags == ("Train Loss", "Val Loss", "Acc", "train loss", "test loss", "Best Loss",
                        "Train Acc", "Val Acc")
    assert series(rec, "Val Loss") == ([3, 5, 6], [0.4, 0.5, 0.33])
    assert series(rec, "Val Acc") == ([6], [0.88])
    roles = losslens.read(path).runs[0].roles
    assert (roles["test loss"], roles["Best Loss"], roles["Acc"]) == ("val_loss", "other",
                                                                     "train_acc")


def test_truncated_last_line_and_nan(tmp_path):
    path = tmp_path / "t.log"
    path.write_text("Epoch 1, Loss: 1.5\nEpoch 2, Loss: nan\nEpoch 3, Loss: 1.")
    (rec,) = read_records(path)
    steps, values = series(rec, "Loss")
    assert steps == [1, 2] and values[0] == 1.5 and values[1] != values[1]
    assert [(s.line, s.reason) for s in rec.skipped] == [(3, "truncated last line")]


@pytest.mark.parametrize("text", [
    # an epoch named in passing, mid-sentence
    "Saved model (epoch=3, val_acc=0.61)\nBest model at epoch 4 with loss: 0.5\n",
    # a configuration banner
    "Epochs: 30\nLR: 0.001\nBatch size: 32\n",
    # tqdm bars only (no summary line)
    "Epoch 1/3: 100%|##########| 50/50 [00:01<00:00, 40.1it/s, loss=0.5]\n" * 3,
    # fairseq's end-of-epoch line has no name: value pairs
    "epoch 001 | loss 7.532 | nll_loss 7.1 | ppl 137.4 | wps 12000 | ups 3.2\n",
    # `Epoch` alone, no pairs after it
    "Epoch 1/10\nEpoch 2/10\n",
])
def test_not_epoch_lines(tmp_path, text):
    path = tmp_path / "x.log"
    path.write_text(text)
    fmt = sniff(path)
    assert fmt is None or fmt.name != "epoch-lines"


def test_cli_reads_epoch_lines(tmp_path):
    path = tmp_path / "training.log"
    _log(path, "%(asctime)s - %(levelname)s - %(message)s",
         [f"Epoch [{e}/5], Train Loss: {2 / e:.4f}, Val Loss: {2.1 / e:.4f}" for e in range(1, 6)])
    res = subprocess.run([sys.executable, "-m", "losslens", "formats"], capture_output=True,
                         text=True)
    assert res.returncode == 0 and "epoch-lines" in res.stdout
    res = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(path), "--format",
                          "json"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    import json

    from tests.schema_check import validate
    doc = json.loads(res.stdout)
    validate(doc)
    (run,) = doc["runs"]
    assert run["format"] == "epoch-lines"
    assert {s["tag"]: (s["role"], s["points"], s["first_step"], s["last_step"])
            for s in run["series"]} == {"Train Loss": ("train_loss", 5, 1, 5),
                                        "Val Loss": ("val_loss", 5, 1, 5)}


@pytest.mark.parametrize("line", [
    "=" * 5000 + "x Epoch 1, Loss: 1",          # a long run of prefix characters
    "Epoch 1, " + "a(" * 500_000,               # name characters that never end in `:`
    "Epoch 1 " + "aB" * 500_000 + "=1",         # a 1 MB name
    "Epoch 1, " + "a " * 500_000,               # words without values
])
def test_hostile_lines_stay_linear(tmp_path, line):
    import time

    from losslens.readers import epochs

    path = tmp_path / "h.log"
    path.write_text("Epoch 0, Loss: 2.0\n" + line + "\n")
    start = time.process_time()
    (rec,) = epochs.read(path, "h")
    assert time.process_time() - start < 2.0
    assert rec.tags == ("Loss",) and series(rec, "Loss") == ([0], [2.0])


def test_minimind_bare_iteration_in_brackets_is_the_step(tmp_path):
    """MiniMind (jingyaogong/minimind) prints `Epoch:[{epoch}/{epochs}]({step}/{iters})` then its
    metrics: the bracketed step is the iteration (it was read as the epoch, so 3,970 lines of a
    real pretraining log collapsed onto step 1)."""
    old = ["Epoch:[1/2]({}/300) loss:{:.3f} lr:0.000500000000 epoch_Time:12.0min:".format(i, 9 - i / 100)
           for i in range(100, 301, 100)]
    new = ["Epoch:[2/2]({}/300), loss: {:.4f}, logits_loss: {:.4f}, aux_loss: 0.0000, "
           "lr: 0.00050000, epoch_time: 11.0min".format(i, 6 - i / 100, 6 - i / 100)
           for i in range(100, 301, 100)]
    path = tmp_path / "pretrain.log"
    path.write_text("Model Params: 30.03M\n" + "\n".join(old + new) + "\n")
    (rec,) = read_records(path)
    assert rec.format == "epoch-lines" and rec.skipped_count == 0
    assert rec.metadata.extra["step_source"].startswith("(epoch - 1) * 300 + iteration")
    sel = rec.tag_code == rec.tags.index("loss")
    assert rec.step[sel].tolist() == [100, 200, 300, 400, 500, 600]
    assert rec.value[sel].tolist() == [8.0, 7.0, 6.0, 5.0, 4.0, 3.0]
    assert not rec.warnings


def test_lines_repeating_an_epoch_without_an_iteration_are_warned_about(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("".join(f"Epoch 1: Train Loss={2 - i / 10:.2f}\n" for i in range(5))
                    + "Epoch 2: Train Loss=1.10\n")
    (rec,) = read_records(path)
    assert rec.step.tolist() == [1, 1, 1, 1, 1, 2]
    assert rec.warnings == ("4 epoch line(s) repeat the epoch of the line before them with no "
                            "iteration losslens can read: the step is the epoch, so only the last "
                            "line of each epoch is plotted and judged",)
