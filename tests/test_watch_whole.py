"""Formats read whole again when they change (CSV, trainer_state.json, the HF console): when
the new read only grew, `watch` feeds the detectors just the new points (no reset), and its
events still equal `analyze`'s on the file; a file rewritten differently starts over."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import losslens
from losslens.pipeline import analyze
from losslens.readers.follow import TextSource
from losslens.watch import Follower

from test_watch_folders import CAUSAL, key


def losses(lo: int, hi: int, spike_at: int = -1) -> list[float]:
    rnd = random.Random(lo)
    return [(1.3 + 2 * math.exp(-s / 150) + rnd.random() * 0.01) * (2.5 if s == spike_at else 1)
            for s in range(lo, hi)]


def csv_text(n: int, spike_at: int = -1) -> str:
    return "step,train_loss\n" + "".join(f"{s},{v:.6f}\n" for s, v in
                                         zip(range(1, n + 1), losses(1, n + 1, spike_at)))


def trainer_state(n: int, spike_at: int = -1) -> str:
    hist = [{"step": s, "loss": round(v, 6), "grad_norm": 1.0 + 0.01 * (s % 5),
             "learning_rate": 3e-4} for s, v in zip(range(1, n + 1), losses(1, n + 1, spike_at))]
    return json.dumps({"global_step": n, "logging_steps": 1, "log_history": hist})


def hf_console(n: int, spike_at: int = -1) -> str:
    return "".join("{'loss': %.4f, 'grad_norm': 1.0, 'learning_rate': 5e-05, 'epoch': %.2f}\n"
                   % (v, s / 1000) for s, v in zip(range(1, n + 1), losses(1, n + 1, spike_at)))


def analyzed(path: Path) -> list[tuple]:
    frame = losslens.read(path)
    return sorted(key(e) for ra in analyze(frame, detectors=CAUSAL).runs for e in ra.events)


def grows(path: Path, write, fmt: str) -> None:
    """The file written at 300, 600 and 900 points (a spike at 700): the second and third
    reads are fed as new points only, and the events equal analyze's at the end."""
    write(path, 300, -1)
    src = TextSource(path, fmt, strict=True)
    try:
        first, _ = src.poll([])
        assert [b.reset for b in first] == [True]
        for n in (600, 900):
            write(path, n, 700)
            batches, _ = src.poll([])
            assert [b.reset for b in batches] == [False]
            assert int(batches[0].records.step.min()) == n - 299  # only the new points
    finally:
        src.close()
    write(path, 300, -1)
    with Follower(path) as f:
        f.poll()
        for n in (600, 900):
            write(path, n, 700)
            f.poll()
        got = sorted(key(e) for events in f.events().values() for e in events)
    want = analyzed(path)
    assert got == want
    assert any(k[0] == "spike" and k[2] == 700 for k in got)


def test_csv_that_grows_is_fed_its_new_rows(tmp_path):
    grows(tmp_path / "loss.csv", lambda p, n, s: p.write_text(csv_text(n, s)), None)


def test_trainer_state_rewritten_with_more_history_is_fed_its_new_entries(tmp_path):
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    grows(folder / "trainer_state.json",
          lambda p, n, s: p.write_text(trainer_state(n, s)), None)


def test_hf_console_that_grows_is_fed_its_new_dicts(tmp_path):
    grows(tmp_path / "train.log", lambda p, n, s: p.write_text(hf_console(n, s)), None)


def test_a_file_rewritten_differently_starts_over(tmp_path):
    path = tmp_path / "loss.csv"
    path.write_text(csv_text(400))
    src = TextSource(path, None, strict=True)
    try:
        src.poll([])
        path.write_text(csv_text(500).replace("\n3,", "\n3,9", 1))  # an old row changed
        batches, _ = src.poll([])
        assert [b.reset for b in batches] == [True]
    finally:
        src.close()
