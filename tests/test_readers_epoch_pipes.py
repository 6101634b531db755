"""PyTorch examples' word_language_model output (`epoch-pipes`): the lines printed with the
format strings of pytorch/examples word_language_model/main.py."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

import losslens
from losslens.readers import read_records, sniff


def _main_py_output(epochs=3, batches=2983, log_interval=200, losses=None, first_epoch=1,
                    prefix="") -> str:
    """What main.py prints: its batch line every `log_interval` batches (`batch > 0`), the
    end-of-epoch block, and the end-of-training block, with its own format strings."""
    out = []
    lr = 20.0
    n = 0
    for epoch in range(first_epoch, first_epoch + epochs):
        for batch in range(0, batches):
            if batch % log_interval == 0 and batch > 0:
                cur_loss = losses(n) if losses else 7.0 - 0.1 * n
                n += 1
                ppl = math.exp(cur_loss) if math.isfinite(cur_loss) else cur_loss
                out.append(prefix + '| epoch {:3d} | {:5d}/{:5d} batches | lr {:02.2f} | ms/batch {:5.2f} | '
                           'loss {:5.2f} | ppl {:8.2f}'.format(epoch, batch, batches, lr, 11.61,
                                                               cur_loss, ppl))
        val_loss = 6.0 - 0.2 * epoch if not losses else losses(n)
        vppl = math.exp(val_loss) if math.isfinite(val_loss) else val_loss
        out.append(prefix + '-' * 89)
        out.append(prefix + '| end of epoch {:3d} | time: {:5.2f}s | valid loss {:5.2f} | '
                   'valid ppl {:8.2f}'.format(epoch, 35.58, val_loss, vppl))
        out.append(prefix + '-' * 89)
        lr /= 4.0
    out.append(prefix + '=' * 89)
    out.append(prefix + '| End of training | test loss {:5.2f} | test ppl {:8.2f}'.format(
        5.24, 189.51))
    out.append(prefix + '=' * 89)
    return "\n".join(out) + "\n"


def _series(path):
    (rec,) = read_records(path)
    return rec, {t: (rec.step[rec.tag_code == i].tolist(), rec.value[rec.tag_code == i].tolist())
                 for i, t in enumerate(rec.tags)}


def test_word_language_model_output_reads_at_global_batches(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("Namespace(batch_size=20, bptt=35, lr=20, model='LSTM')\n"
                    + _main_py_output(epochs=2, batches=1000, log_interval=200))
    assert sniff(path).name == "epoch-pipes"
    rec, s = _series(path)
    assert rec.format == "epoch-pipes" and rec.skipped_count == 0 and not rec.warnings
    assert rec.metadata.extra["step_source"] == ("(epoch - 1) * 1000 + batch (the batches an "
                                                 "epoch printed)")
    assert s["loss"][0] == [200, 400, 600, 800, 1200, 1400, 1600, 1800]
    assert s["loss"][1] == [7.0, 6.9, 6.8, 6.7, 6.6, 6.5, 6.4, 6.3]
    assert s["lr"][1] == [20.0] * 4 + [5.0] * 4
    assert s["valid loss"] == ([1000, 2000], [5.8, 5.6])
    assert s["time"] == ([1000, 2000], [35.58, 35.58])
    assert s["test loss"] == ([2000], [5.24]) and s["test ppl"] == ([2000], [189.51])
    roles = losslens.read(path).runs[0].roles
    assert roles == {"lr": "lr", "ms/batch": "other", "loss": "train_loss", "ppl": "other",
                     "time": "other", "valid loss": "val_loss", "valid ppl": "other",
                     "test loss": "val_loss", "test ppl": "other"}


def test_nan_from_the_start_is_nan_and_analyze_says_so(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(_main_py_output(epochs=2, batches=600, log_interval=200,
                                    losses=lambda n: float("nan")))
    rec, s = _series(path)
    assert all(math.isnan(v) for v in s["loss"][1]) and len(s["loss"][1]) == 4
    assert all(math.isnan(v) for v in s["valid loss"][1])
    out = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "The loss is NaN/inf from the first logged step (200)" in out.stdout


def test_epochs_from_zero_prefixes_and_a_relaunch(tmp_path):
    path = tmp_path / "train.log"
    path.write_text(_main_py_output(epochs=2, batches=400, first_epoch=0,
                                    prefix="scGPT - INFO - ")
                    + _main_py_output(epochs=1, batches=400, first_epoch=0, prefix="[RANK 0]: "))
    rec, s = _series(path)
    assert rec.metadata.extra["step_source"].startswith("(epoch - 0) * 400 + batch")
    assert s["loss"][0] == [200, 600, 200]
    assert s["valid loss"][0] == [400, 800, 400]
    run = losslens.read(path).runs[0]
    assert [(g.first_step, g.last_step) for g in run.segments] == [(200, 800), (200, 400)]


def test_variants_perplexity_accuracy_and_only_epoch_ends(tmp_path):
    path = tmp_path / "a.log"
    path.write_text(
        "| epoch   1 |   200/ 1452 batches | lr 0.10 | ms/batch 215.45 | loss 11.36 | "
        "perplexity 85596.94\n"
        "| end of epoch   1 | time: 201.94s | valid loss  5.33 | valid perplexity   205.78\n"
        "| epoch   1 |  5500/ 7125 batches | accuracy    0.884\n")
    rec, s = _series(path)
    assert s["perplexity"] == ([200], [85596.94]) and s["valid perplexity"][0] == [1452]
    assert s["accuracy"] == ([5500], [0.884])
    only = tmp_path / "b.log"
    only.write_text("| end of epoch   0 | time: 2005.31s | valid loss  4.95 | valid ppl   141.70\n"
                    "| end of epoch   1 | time: 2149.59s | valid loss  4.62 | valid ppl   101.26\n")
    rec, s = _series(only)
    assert rec.metadata.extra["step_source"] == "epoch (no batch lines)"
    assert s["valid loss"] == ([0, 1], [4.95, 4.62])


def test_unread_parts_warn_and_a_cut_last_line_is_skipped(tmp_path):
    path = tmp_path / "train.log"
    path.write_text("| epoch   1 |   200/ 2983 batches | lr 20.00 | weird part here | loss  5.53\n"
                    "| epoch   1 |   400/ 2983 batches | no pairs at all |\n"
                    "| epoch   1 |   600/ 2983 batches | lr 20.00 | loss  5.4")
    rec, s = _series(path)
    assert s["loss"] == ([200], [5.53])
    assert rec.skipped_count == 2
    assert [(k.line, k.reason) for k in rec.skipped] == [
        (2, "line without a `name value` pair"), (3, "truncated last line")]
    assert rec.warnings == (f"{path}: 2 part(s) of epoch lines hold no `name value` pair and "
                            "were not read (first: line 1: 'weird part here')",)


@pytest.mark.parametrize("text", [
    "Epoch [1/50], Train Loss: 1.9463, Val Loss: 1.9097\nEpoch [2/50], Train Loss: 1.5, Val Loss: 1.6\n",
    "step   700 | loss 4.5105 | lr 2.99e-04 | 427 tok/s\n",
    "| epoch | loss |\n|---|---|\n| 1 | 2.0 |\n",  # a Markdown table
    "iter 10: loss 8.5000, time 50.00ms, mfu 10.00%\n",
])
def test_sniff_leaves_other_shapes_alone(tmp_path, text):
    path = tmp_path / "x.log"
    path.write_text(text * 3)
    fmt = sniff(path)
    assert fmt is None or fmt.name != "epoch-pipes"


@pytest.mark.parametrize("line", [
    "| epoch   1 |   200/ 2983 batches |" + " a" * 200_000,
    "| epoch   1 |   200/ 2983 batches | " + "x" * 400_000 + " 1",
    "| end of epoch 1 |" + " |" * 200_000,
    "[a] " * 100_000 + "| epoch 1 | 1/2 batches | loss 1",
    "| epoch   1 |   200/ 2983 batches | " + "a/b-c." * 100_000 + " 5",
])
def test_hostile_lines_stay_linear(tmp_path, line):
    path = tmp_path / "train.log"
    path.write_text(line + "\n| epoch   1 |   200/ 2983 batches | loss  5.53\n")
    t = time.process_time()
    sniff(path)
    read_records(path, format="epoch-pipes")
    assert time.process_time() - t < 3
