"""nanoGPT forks that print a unit after the loss (`iter 10: loss 4.5735 BPC, time ...`).

The fixture is printed with the f-strings of jackokeefe11/nanoGPT's train.py (@ 0ba21c3): the
loss in nats divided by ln 2, `:.4f`, then ` BPC`; the real files are two of that fork's W&B
`files/output.log` (MIT; tests/data/real_excerpts/README.md).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import losslens
from losslens.readers import read_file, sniff
from losslens.readers import nanogpt

DATA = Path(__file__).resolve().parent / "data" / "real_excerpts"


def bpc_run(units: tuple[str, str] = (" BPC", " BPC")) -> str:
    """What train.py prints: eval every 250 iterations (with a save while val improves), an
    iter line every 10; `units` = (eval unit, iter unit) as the script's f-strings put them."""
    ev, it = units
    out = [""]
    val = [4.20, 2.10, 2.30]  # nats: improves, then worsens (no save at 500)
    for i in range(0, 501, 10):
        if i % 250 == 0:
            tr_bpc, va_bpc = (val[i // 250] - 0.1) / math.log(2), val[i // 250] / math.log(2)
            out.append(f"step {i}: train loss {tr_bpc:.4f}{ev}, val loss {va_bpc:.4f}{ev}")
            if i in (250,):
                out.append("saving checkpoint to out-shakespeare-char")
        lossf_bpc = (4.3 - i / 200) / math.log(2)
        mfu = -1.0 if i == 0 else 0.0892
        out.append(f"iter {i}: loss {lossf_bpc:.4f}{it}, time {267.36:.2f}ms, mfu {mfu*100:.2f}%")
    return "\n".join(out) + "\n"


def points(rec, tag):
    m = rec.tag_code == rec.tags.index(tag)
    return rec.step[m].tolist(), rec.value[m].tolist()


def test_bpc_fixture_reads_every_series_with_its_unit(tmp_path):
    path = tmp_path / "output.log"
    path.write_text(bpc_run())
    assert sniff(path).name == "nanogpt"
    [rec] = read_file(path, "run")
    assert set(rec.tags) == {"train loss", "val loss", "loss", "time", "mfu"}
    steps, values = points(rec, "loss")
    assert steps == list(range(0, 501, 10))
    assert values[0] == round(4.3 / math.log(2), 4) == 6.2036
    assert values[-1] == round(1.8 / math.log(2), 4)
    assert points(rec, "val loss") == ([0, 250, 500], [round(v / math.log(2), 4)
                                                       for v in (4.20, 2.10, 2.30)])
    assert points(rec, "train loss")[0] == [0, 250, 500]
    assert points(rec, "mfu")[0] == list(range(10, 501, 10))  # iter 0's -100.00% is no measurement
    assert rec.metadata.checkpoints == (250,)
    assert rec.metadata.extra["unit/loss"] == "BPC"
    assert rec.metadata.extra["unit/val loss"] == "BPC"
    assert rec.skipped_count == 0 and rec.warnings == ()
    run = losslens.read(path).runs[0]
    assert run.roles == {"train loss": "train_loss", "val loss": "val_loss", "loss": "train_loss",
                         "time": "other", "mfu": "other"}


def test_without_a_unit_the_reading_is_unchanged(tmp_path):
    """The plain nanoGPT print gives exactly what it gave before units were read."""
    plain, bpc = tmp_path / "plain.log", tmp_path / "bpc.log"
    plain.write_text(bpc_run(("", "")))
    bpc.write_text(bpc_run())
    [a], [b] = read_file(plain, "p"), read_file(bpc, "b")
    assert a.tags == b.tags and np.array_equal(a.step, b.step)
    assert np.array_equal(a.value, b.value)
    assert not any(k.startswith("unit/") for k in a.metadata.extra)
    assert a.warnings == ()


def test_mixed_units_are_read_and_warned_about(tmp_path):
    path = tmp_path / "output.log"
    path.write_text(bpc_run(("", " BPC")))  # the eval print not yet changed, as in bn1klkfl
    [rec] = read_file(path, "run")
    assert len(points(rec, "loss")[0]) == 51 and len(points(rec, "val loss")[0]) == 3
    assert rec.metadata.extra["unit/loss"] == "BPC" and "unit/val loss" not in rec.metadata.extra
    assert rec.warnings == (
        f"{path}: loss values printed in different units ('loss' in BPC; 'train loss', "
        "'val loss' without a unit): those series are on different scales (BPC is the loss in "
        "nats / ln 2)",)


@pytest.mark.parametrize("line", [
    "iter 10: loss 4.5735 BPC BPC, time 1.00ms, mfu 8.92%",    # two words
    "iter 10: loss 4.5735 B3C, time 1.00ms, mfu 8.92%",        # not a word
    "iter 10: loss 4.5735 averagedoverall, time 1.00ms",       # longer than a unit
    "step 250: train loss 2.5833 BPC val loss 2.7931 BPC",      # no comma
])
def test_what_is_not_a_unit_is_a_skipped_metric_line(tmp_path, line):
    path = tmp_path / "o.log"
    path.write_text(bpc_run() + line + "\n")
    [rec] = read_file(path, "run", "nanogpt")
    assert [(s.reason, s.text) for s in rec.skipped] == [
        ("nanoGPT metric line that does not parse", line)]


@pytest.mark.parametrize("text", [
    "step 100, loss 4.5 BPC, time 3ms\n",                       # not nanoGPT's shape
    "iter 100: loss 4.57 BPC\n",                                 # no time
    "epoch 1: train loss 2.5 BPC, val loss 2.6 BPC\n",
])
def test_sniff_declines_lookalikes(text):
    assert nanogpt.sniff("x.log", text.encode()) == 0.0


def test_real_kt2awly2_overfitting_run():
    """jackokeefe11/nanoGPT's shakespeare-char run kt2awly2: 5000 iterations in BPC, val loss
    best at 1250 then rising (saves stop there); W&B leaves the last line without `\\n`."""
    path = DATA / "nanogpt-bpc_kt2awly2_output.log"
    assert sniff(path).name == "nanogpt"
    [rec] = read_file(path, path.name)
    got = {t: (len(points(rec, t)[0]), points(rec, t)[0][0], points(rec, t)[0][-1],
               points(rec, t)[1][0], points(rec, t)[1][-1]) for t in rec.tags}
    assert got == {"loss": (500, 0, 4990, 6.0659, 0.1746),
                   "time": (500, 0, 4990, 254533.85, 317.57),
                   "mfu": (499, 10, 4990, 8.92, 7.37),
                   "train loss": (21, 0, 5000, 6.0601, 0.1191),
                   "val loss": (21, 0, 5000, 6.0586, 4.9221)}
    assert rec.metadata.checkpoints == (250, 500, 750, 1000, 1250)
    assert [(s.line, s.reason) for s in rec.skipped] == [(528, "truncated last line")]
    assert {k: v for k, v in rec.metadata.extra.items() if k.startswith("unit/")} == {
        "unit/loss": "BPC", "unit/train loss": "BPC", "unit/val loss": "BPC"}
    assert rec.warnings == ()
    run = losslens.read(path).runs[0]
    assert run.roles["val loss"] == "val_loss" and run.roles["loss"] == "train_loss"


def test_real_bn1klkfl_mixed_units_warns():
    path = DATA / "nanogpt-bpc_bn1klkfl_output.log"
    [rec] = read_file(path, path.name)
    assert rec.skipped_count == 0 and rec.metadata.extra["unit/loss"] == "BPC"
    assert len(rec.warnings) == 1 and "('loss' in BPC; 'train loss', 'val loss' without a unit)" \
        in rec.warnings[0]
