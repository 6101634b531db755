"""Hardening: inputs built to hurt (nesting, alias bombs, truncation under a reader, damaged
chains, shuffled lines, injection in names) and one bad unit in a folder of good ones.

Every reproduction runs bounded: in a subprocess with a memory cap and a time limit where
the old behaviour was a crash or a memory bomb, with a time assertion where it was slow.
"""
from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import losslens
from losslens.readers import read_records

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30


def run_bounded(args: list[str], timeout: float = 120, memory: int = 3 * GB,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m losslens ARGS` with an address-space cap and a time limit."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "losslens", *args], capture_output=True,
                          text=True, timeout=timeout, preexec_fn=limit, env=env, cwd=cwd,
                          errors="replace")


def _good_log(path: Path, seed: int, steps: int = 400) -> None:
    rng = random.Random(seed)
    path.write_text("".join(f"s:{s} trl:{3 + 8 * 0.99 ** s + rng.gauss(0, 0.02):.4f} "
                            f"lr:0.0006 norm:1.0\n" for s in range(steps)))


# --------------------------------------------------------------------------- nesting

def test_jsonl_nested_40k_levels_is_a_skipped_line_not_a_segfault(tmp_path):
    """pyarrow's JSON reader recursed on `[[[...]]]`: 40k levels was exit 139, 20k a minute."""
    path = tmp_path / "metrics.jsonl"
    rows = [f'{{"step": {i}, "loss": {2 - i / 100}}}' for i in range(50)]
    rows[20] = "[" * 40_000 + "]" * 40_000
    rows[30] = '{"step": 30, "x": ' + "{\"a\": " * 20_000 + "1" + "}" * 20_000 + "}"
    path.write_text("\n".join(rows) + "\n")
    start = time.perf_counter()
    res = run_bounded(["series", str(path), "-f", "json"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - start < 30
    doc = json.loads(res.stdout)
    (run,) = doc["runs"]
    assert run["series"][0]["points"] == 48
    assert [s["line"] for s in run["skipped_lines"]["examples"]] == [21, 31]
    assert run["skipped_lines"]["examples"][0]["reason"] == "nested deeper than 64 levels"


def test_deep_lines_ignores_brackets_inside_strings():
    from losslens.readers.jsonl import deep_lines

    body = b'{"s": "' + b"[" * 500 + b'", "step": 1}\n' + b"[" * 65 + b"]" * 65 + b"\n"
    assert deep_lines(body) == [(len(body) - 131, len(body) - 1)]


# --------------------------------------------------------------------------- YAML aliases

def _alias_bomb() -> str:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_beside_wandb_history_is_left_out_with_a_warning(tmp_path):
    """906 bytes of aliases grew to 3.7 GB: the node graph is measured before it is built."""
    (tmp_path / "config.yaml").write_text(_alias_bomb())
    hist = tmp_path / "wandb-history.jsonl"
    hist.write_text("".join(f'{{"_step": {i}, "loss": {2 - i / 100}}}\n' for i in range(30)))
    res = run_bounded(["series", str(hist), "-f", "json"], timeout=60, memory=2 * GB)
    assert res.returncode == 0, res.stderr
    (run,) = json.loads(res.stdout)["runs"]
    assert run["series"][0]["points"] == 30
    assert run["warnings"] == [f"{tmp_path / 'config.yaml'}: run config left out (its "
                               "aliases expand to over 100,000 values)"]


def test_yaml_with_a_few_aliases_still_loads(tmp_path):
    from losslens.readers import wandb as wb
    from losslens.records import RecordsBuilder

    (tmp_path / "config.yaml").write_text(
        "base: &b {value: 0.001}\nlr: *b\nhidden_size: {value: 512}\n")
    b = RecordsBuilder()
    cfg = wb._sibling_config(tmp_path / "wandb-history.jsonl", b)
    assert cfg["lr"] == {"value": 0.001} and b.warnings == []
    assert wb.config_meta(cfg).hidden_size == 512


# --------------------------------------------------------------------------- truncation

TRUNCATE_UNDER_READ = r"""
import os, sys
from pathlib import Path
from losslens.readers import megatron
path = Path(sys.argv[1])
real = megatron._read_fast
def cut_then_read(raw, state):
    os.truncate(path, 0)  # logrotate copytruncate, `> log`, while the bytes are in hand
    return real(raw, state)
megatron._read_fast = cut_then_read
rec = megatron.read_file(path, "r", fast=True)
print(len(rec))
"""


def test_megatron_log_truncated_while_read_is_no_sigbus(tmp_path):
    """A mapped log truncated under the reader killed it with SIGBUS (exit 135)."""
    path = tmp_path / "train.log"
    line = (" iteration {:8d}/  100000 | consumed samples: {:12d} | elapsed time per iteration "
            "(ms): 1000.0 | learning rate: 1.000E-04 | global batch size:   512 | lm loss: "
            "{:.6E} | loss scale: 1.0 | grad norm: 1.000 | number of skipped iterations:   0 | "
            "number of nan iterations:   0 |\n")
    path.write_text("".join(line.format(i, i * 512, 3.0) for i in range(1, 12_000)))
    assert path.stat().st_size > 2 << 20
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", TRUNCATE_UNDER_READ, str(path)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert int(res.stdout) == 11_999 * 9  # every point of every line, read before the cut


# --------------------------------------------------------------------------- .wandb

def test_wandb_damaged_chains_and_garbage_read_in_linear_time(tmp_path):
    """`data.count(0, pos)` per damaged record (2 MB: 58 s) and a byte-by-byte resync
    (64 MB of 0x01: 39-146 s)."""
    import struct

    from losslens.readers import wandb as wb
    from losslens.readers.wandb_log import MAGIC

    chain = MAGIC + (b"\x00\x01\x02\x03" + struct.pack("<HB", 0, 1)) * ((2 << 20) // 7) + b"\0"
    ones = MAGIC + b"\x01" * (16 << 20)
    for name, data, limit in (("chain.wandb", chain, 10), ("ones.wandb", ones, 15)):
        path = tmp_path / name
        path.write_bytes(data)
        start = time.perf_counter()
        (rec,) = wb.read_wandb(path, "r")
        assert time.perf_counter() - start < limit, name
        assert len(rec) == 0 and rec.warnings[-1].endswith("the intact records were read")


def test_wandb_with_nothing_readable_keeps_its_damage_warnings(tmp_path, runner):
    from losslens.cli import app
    from losslens.readers.wandb_log import MAGIC

    path = tmp_path / "run-x.wandb"
    path.write_bytes(MAGIC + bytes(range(1, 250)) * 40)
    res = runner.invoke(app, ["series", str(path)])
    assert res.exit_code == 2
    lines = res.stderr.splitlines()
    assert lines[-1].startswith(f"Error: {path}: no metric series")
    assert any(ln.startswith(f"Warning: {path}: record 1 at byte 7") for ln in lines)


# --------------------------------------------------------------------------- shuffled lines

def test_shuffled_lines_read_in_step_order_with_a_warning(tmp_path):
    """A shuffled llm.c main.log ran for over 10 minutes (thousands of segments)."""
    from losslens.pipeline import analyze_frame

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shuffled_lines import main_log

    lines = main_log(4000, 0)
    shuffled = list(lines)
    random.Random(1).shuffle(shuffled)
    results = []
    for name, ls in (("in_order", lines), ("shuffled", shuffled)):
        path = tmp_path / name / "main.log"
        path.parent.mkdir()
        path.write_text("\n".join(ls) + "\n")
        start = time.perf_counter()
        analysis = analyze_frame(losslens.read(path))
        results.append((time.perf_counter() - start, analysis.runs[0]))
    (t_in, a), (t_sh, b) = results
    assert t_sh < 20
    assert [(e.kind, e.start_step) for e in b.events] == [(e.kind, e.start_step)
                                                         for e in a.events]
    assert len(b.info.segments) == 1
    assert "lines written out of order" in b.info.warnings[0]


def test_rollback_coverage_matches_the_definition():
    from losslens.detectors.segments import _Coverage

    def brute(earlier, first, last):
        points = {first} | {a for a, _ in earlier if first <= a <= last}
        return max(sum(1 for a, b in earlier if a <= p <= b) for p in points)

    rng = random.Random(3)
    for _ in range(200):
        segs = [(a, a + rng.randint(0, 30)) for a in (rng.randint(0, 60)
                                                      for _ in range(rng.randint(1, 20)))]
        cov = _Coverage(sorted({a for a, _ in segs}))
        for k, (a, b) in enumerate(segs):
            if k:
                prev = rng.randint(a, a + 40)
                assert cov.most(a, prev) == brute(segs[:k], a, prev)
            cov.add(a, b)


# --------------------------------------------------------------------------- names

def test_lone_surrogate_in_a_json_key_is_shown_not_a_traceback(tmp_path, runner):
    from losslens.cli import app

    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss\\ud800": 2.0}\n{"step": 2, "loss\\ud800": 1.5}\n')
    for args in (["series", str(path)], ["analyze", str(path), "-f", "json"],
                 ["analyze", str(path), "-f", "markdown"], ["check", str(path)]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    frame = losslens.read(path)
    assert frame.runs[0].series[0].tag == "loss\\ud800"


INJECT = "\x1b]52;c;ZXZpbA==\x07loss\x1b[2J\n::error::pwned"


def test_escape_sequences_in_names_never_reach_the_terminal_or_ci(tmp_path, runner):
    from losslens.cli import app

    path = tmp_path / "m.jsonl"
    key = json.dumps(INJECT)
    path.write_text("".join(f'{{"step": {i}, {key}: {2 - i / 50}, '
                            f'"=HYPERLINK(\\"http://x\\")": 1}}\n' for i in range(40)))
    for args in (["series", str(path)], ["analyze", str(path)],
                 ["analyze", str(path), "-f", "markdown"], ["check", str(path)],
                 ["check", str(path), "-f", "github"], ["series", str(path), "-f", "csv"]):
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 1), (args, res.output)
        out = res.stdout
        assert "\x1b" not in out and "\x07" not in out, args
        assert not any(ln.startswith("::error::pwned") for ln in out.splitlines()), args
        if args[-1] == "csv":
            assert "\n" + path.name + ",\"'=HYPERLINK" in out


def test_markdown_run_names_are_escaped(tmp_path, runner):
    from losslens.cli import app

    run = tmp_path / "# <b>x *y* [z](u)"
    run.mkdir()
    _good_log(run / "main.log", 1)
    res = runner.invoke(app, ["analyze", str(tmp_path), "-f", "markdown"])
    assert res.exit_code == 0, res.output
    assert "## \\# &lt;b&gt;x \\*y\\* \\[z\\]\\(u\\)/main.log" in res.stdout


# --------------------------------------------------------------------------- a folder

BAD = ("deep.jsonl", "garbage.wandb", "boom.log", "slow.log")


def _fleet(root: Path) -> Path:
    """12 good runs and one of each bad kind: a JSON log nested past any parser, a .wandb of
    garbage, a log whose reader crashes (`boom`), one whose reader hangs (`slow`)."""
    from losslens.readers.wandb_log import MAGIC

    folder = root / "fleet"
    for i in range(12):
        (folder / f"run{i:02d}").mkdir(parents=True)
        _good_log(folder / f"run{i:02d}" / "main.log", i)
    (folder / "deep.jsonl").write_text('{"step": 1}\n{"step": 2, "loss": '
                                       + "[" * 40_000 + "]" * 40_000 + "}\n")
    (folder / "garbage.wandb").write_bytes(MAGIC + b"\x01" * 300_000)
    _good_log(folder / "boom.log", 99)
    _good_log(folder / "slow.log", 98)
    return folder


@pytest.fixture
def faulty_reader(monkeypatch):
    """The llm.c reader crashes on boom.log and hangs on slow.log (a reader bug, an input
    shape nobody foresaw); fork-started workers inherit the patch."""
    from losslens import parallel
    from losslens.readers import llmc

    real = llmc.read_llmc_mainlog

    def faulty(path, run):
        if Path(path).name == "boom.log":
            os.kill(os.getpid(), signal.SIGSEGV) if os.getpid() != MAIN else None
            raise TypeError("boom")
        if Path(path).name == "slow.log":
            time.sleep(60)
        return real(path, run)

    MAIN = os.getpid()
    monkeypatch.setattr(llmc, "read_llmc_mainlog", faulty)
    import multiprocessing

    monkeypatch.setattr(parallel, "_context",
                        lambda mp, units: multiprocessing.get_context("fork"))


@pytest.mark.parametrize("jobs", [1, 2])
def test_folder_of_twelve_good_runs_and_bad_ones(tmp_path, runner, faulty_reader, jobs):
    """A report for the 12, a clear error for each bad one (in the report and on stderr),
    exit 2; serially (the crash an exception) and with --jobs 2 (a segfaulting worker)."""
    from losslens.cli import app

    folder = _fleet(tmp_path)
    start = time.perf_counter()
    res = runner.invoke(app, ["analyze", str(folder), "-f", "json", "--unit-timeout", "3",
                              "--jobs", str(jobs)])
    assert time.perf_counter() - start < 60
    assert res.exit_code == 2, res.output
    doc = json.loads(res.stdout)
    runs = {r["run"]: r for r in doc["runs"]}
    good = [r for r in runs.values() if not r["error"]]
    assert len(good) == 12 and all(r["series"][0]["points"] == 400 for r in good)
    errors = {name: runs[name]["error"] for name in BAD}
    assert errors["deep.jsonl"] == (f"{folder / 'deep.jsonl'}: no metric series could be read "
                                    "(line 2: nested deeper than 64 levels)")
    assert errors["garbage.wandb"].startswith(f"{folder / 'garbage.wandb'}: no metric series")
    boom = ("the process reading it was killed by SIGSEGV" if jobs == 2
            else "could not be read (internal error: TypeError: boom)")
    assert errors["boom.log"] == f"{folder / 'boom.log'}: {boom}"
    assert errors["slow.log"].startswith(f"{folder / 'slow.log'}: gave up after 3 s")
    stderr_errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error: ")]
    assert stderr_errors == [f"Error: {runs[name]['error']}" for name in sorted(BAD)]


def test_check_reports_a_failed_unit_in_junit_and_exits_2(tmp_path, runner, faulty_reader):
    from losslens.cli import app

    folder = _fleet(tmp_path)
    (folder / "slow.log").unlink()
    res = runner.invoke(app, ["check", str(folder), "-f", "junit"])
    assert res.exit_code == 2, res.output
    assert res.stdout.count("<error ") == 3
    assert 'errors="3"' in res.stdout


def test_unreadable_subfolder_is_a_failed_run_not_silence(tmp_path, runner, monkeypatch):
    """check exited 0 "clean" while the unreadable folder held a critical spike."""
    from losslens.cli import app

    (tmp_path / "ok").mkdir()
    _good_log(tmp_path / "ok" / "main.log", 1)
    locked = tmp_path / "locked"
    locked.mkdir()
    _good_log(locked / "main.log", 2)
    real = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    res = runner.invoke(app, ["check", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[-1] == (f"Error: {locked}: cannot list folder "
                                          "(Permission denied)")
