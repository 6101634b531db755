"""modded-nanogpt record logs: a fixture written from train_gpt.py's print lines, and two real
record files from KellerJordan/modded-nanogpt (MIT, tests/data/modded_nanogpt/LICENSE)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import losslens
from losslens.readers import read_records, sniff

DATA = Path(__file__).parent / "data" / "modded_nanogpt"

# what train_gpt.py logs first: its own source, with the print lines of the metric lines
SOURCE = '''import os
import sys
with open(sys.argv[0]) as f:
    code = f.read() # read the code of this file ASAP, for logging

@dataclass
class Hyperparameters:
    num_iterations : int = 6 # number of iterations to run
    warmup_iters : int = 0
    val_loss_every : int = 3 # every how many steps to evaluate val loss? 0 for only at the end
    sequence_length : int = 64*1024

"""
An example of the log, in a docstring:
step:1/6 train_loss:9.9999 train_time:1ms step_avg:nanms
"""
def main():
    if last_step or (args.val_loss_every > 0 and step % args.val_loss_every == 0):
        print0(f'step:{step}/{args.num_iterations} val_loss:{val_loss:.4f} train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms/(timed_steps-1):.2f}ms')
    print0(f"step:{step+1}/{args.num_iterations} train_loss:{train_loss.item():.4f} train_time:{approx_time:.0f}ms step_avg:{approx_time/timed_steps:.2f}ms")
'''

LOG = """step:0/6 val_loss:10.8258 train_time:0ms step_avg:nanms
step:1/6 train_loss:10.8258 train_time:25000ms step_avg:nanms
step:2/6 train_loss:9.5000 train_time:25150ms step_avg:nanms
step:3/6 train_loss:8.2500 train_time:25300ms step_avg:150.00ms
step:3/6 val_loss:8.3000 train_time:25310ms step_avg:153.33ms
step:4/6 train_loss:nan train_time:25450ms step_avg:150.00ms
step:5/6 train_loss:7.00 train_time:25x00ms
step:6/6 train_loss:6.7500 train_time:25750ms step_avg:150.00ms
step:6/6 val_loss:6.8000 train_time:25760ms step_avg:152.00ms
peak memory allocated: 29148 MiB reserved: 44838 MiB
step:7/6 train_lo"""


def _write(tmp_path: Path) -> Path:
    p = tmp_path / "0f1e2d3c.txt"
    p.write_text(SOURCE + "=" * 100 + "\nRunning pytorch 2.6.0 compiled for CUDA 12.4\n"
                 "nvidia-smi:\n| NVIDIA-SMI 535.183.06 |\n|=====|\n" + "=" * 100 + "\n" + LOG)
    return p


def _series(rec, tag):
    code = rec.tags.index(tag)
    sel = rec.tag_code == code
    return rec.step[sel].tolist(), rec.value[sel].tolist()


def test_fixture_from_the_scripts_print_lines(tmp_path):
    path = _write(tmp_path)
    assert sniff(path).name == "modded-nanogpt"
    (rec,) = read_records(path)
    assert rec.format == "modded-nanogpt"
    steps, values = _series(rec, "train_loss")
    assert steps == [1, 2, 3, 4, 6]  # the source's lines (and its docstring example) are no points
    assert values[:3] == [10.8258, 9.5, 8.25] and np.isnan(values[3]) and values[4] == 6.75
    assert _series(rec, "val_loss") == ([0, 3, 6], [10.8258, 8.3, 6.8])
    # step 0's validation line has the only reading at step 0; later ones repeat the clock of
    # the training line just before them at the same step
    assert _series(rec, "train_time") == ([0, 1, 2, 3, 4, 6], [0.0, 25000.0, 25150.0, 25300.0,
                                                              25450.0, 25750.0])
    assert _series(rec, "step_avg") == ([3, 4, 6], [150.0, 150.0, 150.0])  # nanms left out
    source_lines = SOURCE.count("\n")
    assert [(s.line, s.reason) for s in rec.skipped] == [
        (source_lines + 13, "modded-nanogpt step line with a value that is not a number"),
        (source_lines + 17, "truncated last line")]
    m = rec.metadata
    assert (m.framework, m.train_iters, m.warmup_steps) == ("modded-nanogpt", 6, 0)
    assert m.extra["hparams.val_loss_every"] == "3"
    assert m.extra["script_source_lines"] == str(source_lines)
    assert m.extra["step_avg_nan_dropped"] == "3" and m.extra["peak_memory_mib"] == "29148"
    roles = losslens.read(path).runs[0].roles
    assert (roles["train_loss"], roles["val_loss"], roles["train_time"]) == (
        "train_loss", "val_loss", "other")


def test_stdout_without_the_source(tmp_path):
    p = tmp_path / "stdout.log"
    p.write_text("[rank0]:" + LOG.split("\n", 1)[0] + "\n" + LOG.split("\n", 1)[1])
    (rec,) = read_records(p)
    assert _series(rec, "val_loss")[0] == [0, 3, 6]
    assert "script_source_lines" not in rec.metadata.extra


def test_real_record_2024_12_04_value_embed():
    frame = losslens.read(DATA / "2024-12-04_ValueEmbed_1b4db08c.txt")
    (run,) = frame.runs
    got = {s.tag: (s.role, s.points, s.first_step, s.last_step) for s in run.series}
    assert got == {"train_loss": ("train_loss", 1530, 1, 1530),
                   "val_loss": ("val_loss", 14, 0, 1530),
                   "train_time": ("other", 1531, 0, 1530),
                   "step_avg": ("other", 1518, 13, 1530)}
    val = frame.series(run.run, "val_loss")
    assert val.step.tolist() == [0] + list(range(125, 1501, 125)) + [1530]
    assert val.value[0] == 10.8258 and val.value[-1] == 3.2898
    tl = frame.series(run.run, "train_loss")
    assert (tl.value[0], tl.value[-1]) == (10.8258, 3.2517)
    assert run.metadata.train_iters == 1530
    assert run.metadata.extra["script_source_lines"] == "566"
    assert len(run.segments) == 1


def test_real_optimizer_track_seconds_and_validation_only():
    frame = losslens.read(DATA / "20260505_newton_muon_47ca3026.txt")
    (run,) = frame.runs
    got = {s.tag: (s.role, s.points, s.first_step, s.last_step) for s in run.series}
    assert got == {"val_loss": ("val_loss", 38, 0, 3300), "train_time": ("other", 38, 0, 3300),
                   "step_avg": ("other", 37, 125, 3300)}
    tt = frame.series(run.run, "train_time")
    assert tt.value[1] == 99779.0  # 99.779s in ms
    assert frame.series(run.run, "val_loss").value[-1] == 3.27832
