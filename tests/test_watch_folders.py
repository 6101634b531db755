"""`watch DIR` follows every run `analyze DIR` reads: text logs of any format, TensorBoard
folders, JSON lines and CSV files, including runs that appear while it watches."""
from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest

import losslens
from losslens.pipeline import analyze
from losslens.detectors import DETECTORS, detector_class
from losslens.readers.follow import FolderSource, TextSource, open_source
from losslens.watch import Follower

from test_watch import _scalar_events, megatron

CAUSAL = sorted(n for n in DETECTORS if getattr(detector_class(n), "causal", False))


def key(e) -> tuple:
    return (e.kind, e.tag, e.start_step, e.peak_step, e.end_step, e.severity, e.recovery)


def analyzed_folder(root: Path) -> dict[str, list[tuple]]:
    frame = losslens.read(root)
    return {ra.info.run: sorted(key(e) for e in ra.events)
            for ra in analyze(frame, detectors=CAUSAL).runs}


def watched(f: Follower) -> dict[str, list[tuple]]:
    return {run: sorted(key(e) for e in events) for run, events in f.events().items()}


def jsonl_lines(lo: int, hi: int, spike_at: int) -> list[str]:
    rnd = random.Random(lo)
    out = []
    for s in range(lo, hi):
        v = 1.5 + 3 * math.exp(-s / 200) + rnd.random() * 0.01
        out.append(json.dumps({"step": s, "loss": v * (3.0 if s == spike_at else 1.0)}))
    return out


def csv_rows(lo: int, hi: int, spike_at: int) -> list[str]:
    rnd = random.Random(lo + 1)
    return [f"{s},{(1.2 + 2 * math.exp(-s / 150) + rnd.random() * 0.01) * (2.5 if s == spike_at else 1.0):.6f}"
            for s in range(lo, hi)]


def add(path: Path, lines: list[str]) -> None:
    with open(path, "a") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_folder_of_every_kind_of_run_equals_analyze_as_it_grows(tmp_path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    root = tmp_path / "runs"
    (root / "megatron").mkdir(parents=True)
    (root / "tb").mkdir()
    log, jl, csv = root / "megatron" / "train.log", root / "metrics.jsonl", root / "loss.csv"
    add(log, megatron(600))
    add(jl, jsonl_lines(1, 400, spike_at=-1))
    csv.write_text("step,train_loss\n" + "\n".join(csv_rows(1, 300, spike_at=-1)) + "\n")
    w = EventFileWriter(str(root / "tb"))
    for ev in _scalar_events(range(1, 301)):
        w.add_event(ev)
    w.flush()
    with Follower(root) as f:
        first = f.poll()
        assert first.events == []
        assert sorted(f.states) == ["loss.csv", "megatron/train.log", "metrics.jsonl", "tb"]
        # each run grows and spikes; a new run appears
        add(log, megatron(400, start=601, spikes=[(800, 2.0, 2)], seed=5))
        add(jl, jsonl_lines(400, 700, spike_at=600))
        add(csv, csv_rows(300, 600, spike_at=450))
        for ev in _scalar_events(range(301, 601), spike_at=500, seed=1):
            w.add_event(ev)
        w.flush()
        (root / "later").mkdir()
        add(root / "later" / "nano.log", [f"iter {i}: loss {2.0 + (3.0 if i == 300 else 0) + 0.001 * (i % 7):.4f}, time 10.00ms, mfu 1.00%"
                                          for i in range(1, 500)])
        got = f.poll()
        reported = sorted((r.run, r.event.kind, r.event.start_step) for r in got.events
                          if r.event.kind == "spike")
        assert reported == [("later/nano.log", "spike", 300), ("loss.csv", "spike", 450),
                            ("megatron/train.log", "spike", 800),
                            ("metrics.jsonl", "spike", 600), ("tb", "spike", 500)]
        w.close()
        assert watched(f) == analyzed_folder(root)


def test_unknown_files_in_a_folder_are_ignored_quietly_and_sniffed_again_when_they_grow(
        tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    notes = root / "notes.txt"
    notes.write_text("nothing to see\n")
    with Follower(root) as f:
        u = f.poll()
        assert u.notices == [] and u.events == [] and f.states == {}
        add(notes, jsonl_lines(1, 300, spike_at=200))  # now it reads as a log (not JSONL:
        f.poll()  # its first line is prose) or stays unknown: no error either way
    src = open_source(root)
    assert isinstance(src, FolderSource)
    src.close()
    assert isinstance(open_source(notes), TextSource)
    assert open_source(root / "missing") is None


def _fields(e: dict) -> tuple:
    return (e["kind"], e["tag"], e["start_step"], e["peak_step"], e["end_step"],
            e["severity"], e["recovery"])


def _analyze_vs_watch(runner, root: Path) -> tuple[dict, dict]:
    """(analyze's causal events per run, watch --once's last report of each event per run)."""
    from losslens.cli import app

    res = runner.invoke(app, ["analyze", str(root), "--format", "json"])
    assert res.exit_code in (0, 1), res.stderr
    want = {r["run"]: sorted(_fields(e) for e in r["events"] if e["kind"] in CAUSAL)
            for r in json.loads(res.stdout)["runs"]}
    res = runner.invoke(app, ["watch", str(root), "--once", "-f", "json"])
    assert res.exit_code == 0, res.stderr
    last: dict[tuple, dict] = {}
    for line in res.stdout.splitlines():
        e = json.loads(line)
        last[(e["run"], e["id"])] = e  # an update keeps its event's id
    got = {run: sorted(_fields(e) for (r, _), e in last.items() if r == run) for run in want}
    return want, got


SETTINGS = 'ignore-kinds = ["overflow"]\n[detectors.spike]\nthreshold = 8.0\nfast_within = 100\n'


@pytest.mark.parametrize("settings", [None, SETTINGS], ids=["defaults", "settings-file"])
def test_watch_and_analyze_agree_on_the_sample_logs(tmp_path, runner, monkeypatch, settings):
    """The same settings file (detector fields, ignored kinds) or none: `watch DIR` reports
    the events `analyze DIR` finds, run by run (the causal kinds; a spike's last report)."""
    samples = Path(__file__).resolve().parent.parent / "sample_logs"
    root = tmp_path / "runs"
    root.mkdir()
    for log in sorted(samples.glob("*.log")):
        shutil.copy(log, root / log.name)
    monkeypatch.chdir(tmp_path)
    if settings:
        (tmp_path / "losslens.toml").write_text(settings)
    want, got = _analyze_vs_watch(runner, root)
    assert got == want
    assert any(k == "spike" for evs in want.values() for k, *_ in evs)
    if settings:
        assert not any(k == "overflow" for evs in got.values() for k, *_ in evs)


@pytest.mark.corpus
@pytest.mark.parametrize("settings", [None, SETTINGS], ids=["defaults", "settings-file"])
def test_watch_and_analyze_agree_on_the_corpus(corpus, tmp_path, runner, monkeypatch,
                                               settings):
    monkeypatch.chdir(tmp_path)
    if settings:
        (tmp_path / "losslens.toml").write_text(settings)
    want, got = _analyze_vs_watch(runner, corpus)
    assert got == want
    assert sum(len(v) for v in want.values()) > 10
