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
from losslens.errors import LossLensError
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


def test_deeply_nested_config_yaml_is_left_out_fast(tmp_path):
    """50k levels of `[` in config.yaml: PyYAML recursed for 12 s before giving up."""
    (tmp_path / "config.yaml").write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    hist = tmp_path / "wandb-history.jsonl"
    hist.write_text("".join(f'{{"_step": {i}, "loss": {2 - i / 100}}}\n' for i in range(30)))
    start = time.perf_counter()
    (rec,) = read_records(hist)
    assert time.perf_counter() - start < 5
    assert rec.warnings == (f"{tmp_path / 'config.yaml'}: run config left out (nested deeper "
                            "than 32 levels)",)


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


INJECT = "loss\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b2J\n::error::pwned"


def test_escape_sequences_in_names_never_reach_the_terminal_or_ci(tmp_path, runner):
    from losslens.cli import app

    path = tmp_path / "m.jsonl"
    key = json.dumps(INJECT)
    # a loss that jumps for good at the end: findings quote the tag in every report
    path.write_text("".join(f'{{"step": {i}, {key}: {2 - i / 50 if i < 40 else 9.0}, '
                            f'"=HYPERLINK(\\"http://x\\")": 1}}\n' for i in range(44)))
    for args in (["series", str(path)], ["analyze", str(path)],
                 ["analyze", str(path), "-f", "markdown"], ["check", str(path)],
                 ["check", str(path), "-f", "github"], ["check", str(path), "-f", "junit"],
                 ["series", str(path), "-f", "csv"]):
        res = runner.invoke(app, args)
        assert res.exit_code in (0, 1), (args, res.output)
        out = res.stdout
        assert "\x1b" not in out and "\x07" not in out and "\x9b" not in out, args
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
            if os.getpid() != MAIN:  # a worker process: die as a segfaulting C library would
                import faulthandler

                faulthandler.disable()  # (no fatal-error dump in the test output)
                os.kill(os.getpid(), signal.SIGSEGV)
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
    res = runner.invoke(app, ["analyze", str(folder), "-f", "json", "--unit-timeout", "20",
                              "--jobs", str(jobs)])
    assert time.perf_counter() - start < 150  # (slow.log's 20 s, on a busy machine)
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
    assert errors["slow.log"].startswith(f"{folder / 'slow.log'}: gave up after 20 s")
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


# --------------------------------------------------------------------------- exit codes

def _tiny(tmp_path: Path) -> Path:
    path = tmp_path / "main.log"
    _good_log(path, 0, 60)
    return path


def test_full_disk_behind_stdout_is_exit_2_one_line(tmp_path):
    """A full disk behind stdout exited 1, which `check` documents as "findings"."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(_tiny(tmp_path)),
                              "-f", "json"], stdout=full, stderr=subprocess.PIPE, text=True,
                             env=env, timeout=120)
    assert res.returncode == 2
    assert res.stderr == "Error: stdout: cannot write the output (No space left on device)\n"


def test_closed_pipe_is_exit_2_one_line(tmp_path):
    path = tmp_path / "big.log"
    _good_log(path, 0, 60_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "losslens", "series", str(path), "-f", "csv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader went away (`| head`)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 2
    assert err == "Error: stdout: the output pipe was closed\n"


def test_latin1_settings_file_is_exit_2_one_line(tmp_path):
    (tmp_path / "pyproject.toml").write_bytes(b'[tool.losslens]\nfail-on = "critical"\n'
                                              b'# caf\xe9\n')
    res = run_bounded(["check", str(_tiny(tmp_path))], cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == (f"Error: {tmp_path / 'pyproject.toml'}: not valid TOML (not UTF-8: "
                          "byte 0xe9 at offset 42)\n")


@pytest.mark.parametrize("exc,message", [
    (MemoryError(), "Error: out of memory (a unit of a folder that runs out is reported as a "
                    "failed run; here the command itself did)"),
    (KeyError("x"), "Error: internal error: KeyError: 'x' (--debug shows the traceback)"),
])
def test_crashes_are_exit_2_not_1(tmp_path, runner, monkeypatch, exc, message):
    from losslens import pipeline
    from losslens.cli import app

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pipeline, "analyze", boom)
    for command in ("analyze", "check"):
        res = runner.invoke(app, [command, str(_tiny(tmp_path))])
        assert res.exit_code == 2, res.output
        assert res.stderr.splitlines() == [message]


# --------------------------------------------------------------------------- --output

def test_output_to_dev_stdout_writes_through_and_keeps_the_device(tmp_path):
    """As root, `-o /dev/stdout` replaced the device link with a regular file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(_tiny(tmp_path)),
                          "-f", "json", "-o", "/dev/stdout"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["runs"][0]["run"] == "main.log"
    assert os.path.islink("/dev/stdout")


def test_output_keeps_mode_honours_umask_and_never_overwrites_the_input(tmp_path, runner):
    from losslens.cli import app

    log = _tiny(tmp_path)
    old = os.umask(0o022)
    try:
        fresh = tmp_path / "new.json"
        assert runner.invoke(app, ["analyze", str(log), "-f", "json", "-o", str(fresh)]
                             ).exit_code == 0
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.json"
        kept.write_text("{}")
        os.chmod(kept, 0o664)
        link = tmp_path / "link.json"
        link.symlink_to(kept)
        assert runner.invoke(app, ["analyze", str(log), "-f", "json", "-o", str(link)]
                             ).exit_code == 0
        assert link.is_symlink() and kept.stat().st_mode & 0o777 == 0o664
        assert json.loads(kept.read_text())["runs"][0]["run"] == "main.log"
    finally:
        os.umask(old)
    before = log.read_bytes()
    res = runner.invoke(app, ["analyze", str(log), "-f", "json", "-o", str(log)])
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == (f"Error: {log}: is one of the inputs being read; "
                                          "refusing to overwrite it")
    assert log.read_bytes() == before


# --------------------------------------------------------------------------- TFRecord

def _tf_parts():
    import struct

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fuzz import tensorboard_bytes
    from fuzz_structured import masked_crc

    good = tensorboard_bytes()
    bounds, pos = [], 0
    while pos < len(good):
        bounds.append(pos)
        pos += 16 + struct.unpack_from("<Q", good, pos)[0]

    def header(length: int) -> bytes:
        head = struct.pack("<Q", length)
        return head + struct.pack("<I", masked_crc(head))

    def record(payload: bytes) -> bytes:
        return header(len(payload)) + payload + struct.pack("<I", masked_crc(payload))

    return good, bounds, header, record


def _tb_points(folder: Path) -> int:
    (rec,) = read_records(folder)
    return len(rec), rec.warnings


@pytest.mark.parametrize("claim,why", [
    (256 << 20, "runs past the end of the file (3201 bytes left)"),
    (3000, "does not lead to the next record")])
def test_bogus_tfrecord_length_hides_no_intact_record(tmp_path, claim, why):
    """A length with a valid CRC that is wrong hid every record after it ("1 record lost")."""
    good, bounds, header, _ = _tf_parts()
    cut = bounds[len(bounds) // 2]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "events.out.tfevents.1700000000.h").write_bytes(good)
    (tmp_path / "b").mkdir()
    path = tmp_path / "b" / "events.out.tfevents.1700000000.h"
    path.write_bytes(good[:cut] + header(claim) + good[cut:])
    intact, _ = _tb_points(tmp_path / "a")
    points, warns = _tb_points(tmp_path / "b")
    assert points == intact
    assert warns == (f"{path.name}: record {len(bounds) // 2 + 1} at byte {cut}: record "
                     f"length {claim} {why}; 12 bytes skipped to the next valid record",)


def test_large_tfrecord_record_reads_fast(tmp_path):
    """A valid 32 MB record (a graph_def) took 13.5 s (2.5 MB/s)."""
    good, bounds, _, record = _tf_parts()
    cut = bounds[len(bounds) // 2]
    (tmp_path / "big").mkdir()
    path = tmp_path / "big" / "events.out.tfevents.1700000000.h"
    path.write_bytes(good[:cut] + record(os.urandom(32 << 20)) + good[cut:])
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / path.name).write_bytes(good)
    start = time.perf_counter()
    points, warns = _tb_points(tmp_path / "big")
    assert time.perf_counter() - start < 15
    assert (points, warns) == _tb_points(tmp_path / "ref")


def test_sparse_tfrecord_claiming_256_mb_is_bounded(tmp_path):
    """An 8 KB sparse file claiming 256 MB took 100 s and 2.2 GB."""
    good, bounds, header, _ = _tf_parts()
    path = tmp_path / "events.out.tfevents.1700000000.h"
    path.write_bytes(good[:bounds[3]] + header(256 << 20))
    os.truncate(path, 256 << 20)
    start = time.perf_counter()
    res = run_bounded(["series", str(tmp_path), "-f", "json"], timeout=120, memory=3 * GB)
    assert res.returncode == 0, res.stderr
    assert time.perf_counter() - start < 60
    assert "truncated record (its length says 268435456 bytes" in res.stderr


def test_csv_with_400k_columns_is_refused_quickly(tmp_path):
    """A 3 MB header of short names (393,217 columns, 3 rows) took 1.3 GB."""
    path = tmp_path / "wide.csv"
    path.write_text("step," + ",".join(f"c{i}" for i in range((3 << 20) // 8)) + "\n1,2\n")
    start = time.perf_counter()
    with pytest.raises(LossLensError, match="393,217 columns; losslens reads tables of at "
                                            "most 25,000"):
        read_records(path)
    assert time.perf_counter() - start < 10


def test_csv_header_over_a_megabyte_reads(tmp_path):
    """A header of 1.3 MB (20,000 long metric names) was "Empty CSV file or block"."""
    names = [f"eval/task_{i:05d}/" + "x" * 48 + "/loss" for i in range(20_000)]
    path = tmp_path / "metrics_wide.csv"
    path.write_text("step," + ",".join(names) + "\n"
                    + "".join(f"{s}," + ",".join(["1.5"] * len(names)) + "\n" for s in range(3)))
    assert len(path.read_text().split("\n")[0]) > 1 << 20
    start = time.perf_counter()
    (rec,) = read_records(path)
    assert time.perf_counter() - start < 60
    assert len(rec.tags) == 20_000 and len(rec) == 60_000


# --------------------------------------------------------------------------- watch

def test_unterminated_tail_is_not_read_again_on_every_look(tmp_path):
    """A tqdm-style tail without newlines was re-read on every poll (1 GiB: 70% of a CPU)."""
    from losslens.readers.follow import FileTail

    path = tmp_path / "train.log"
    path.write_bytes(b"iter 1: loss 2.0\n" + b"x" * (4 << 20))
    tail, notices = FileTail(path), []
    assert [p.data for p in tail.read(notices)] == [b"iter 1: loss 2.0\n"]

    class Counting:
        def __init__(self, fh):
            self.fh, self.bytes = fh, 0

        def read(self, n=-1):
            data = self.fh.read(n)
            self.bytes += len(data)
            return data

        def __getattr__(self, name):
            return getattr(self.fh, name)

    tail.fh = counting = Counting(tail.fh)
    for _ in range(3):
        with open(path, "ab") as fh:
            fh.write(b"x" * 1000)
        assert [p.data for p in tail.read(notices)] == [b""]
    assert counting.bytes == 3000  # only what was appended, not the 4 MB tail again
    with open(path, "ab") as fh:
        fh.write(b"\niter 2: loss 1.9\n")
    (piece,) = tail.read(notices)
    assert piece.data == b"x" * ((4 << 20) + 3000) + b"\niter 2: loss 1.9\n"
    assert notices == []


def test_watch_on_a_named_pipe_honours_timeout(tmp_path):
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)
    start = time.perf_counter()
    res = run_bounded(["watch", str(fifo), "-i", "megatron", "--timeout", "1"], timeout=60)
    assert time.perf_counter() - start < 30
    assert res.returncode == 0
    assert res.stderr == (f"losslens watch: {fifo}: not a regular file (a named pipe?); "
                          "losslens watch follows files that grow\n")


def test_hanging_hook_is_killed_with_its_children_and_delays_nothing(tmp_path):
    from losslens.watch import Hooks, run_hook

    pidfile = tmp_path / "pid"
    command = f"sh -c 'sleep 300 & echo $! > {pidfile}; sleep 300'"
    start = time.perf_counter()
    assert run_hook(command, "{}", timeout=1) == ("--on-event: sh did not finish within 1 s "
                                                  "(killed, with the processes it started)")
    assert time.perf_counter() - start < 20
    child = int(pidfile.read_text())
    time.sleep(0.5)
    try:  # the hook's own child went with it: gone, or a zombie waiting for init to reap it
        state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        state = "gone"
    assert state in ("gone", "Z", "X")
    hooks = Hooks("sleep 300", 1)
    start = time.perf_counter()
    for _ in range(3):
        hooks.submit("{}")
    assert time.perf_counter() - start < 0.5  # the watch loop goes on at once
    assert len(hooks.close()) == 3


WATCH_SIGTERM = r"""
import sys, tempfile
made, where = tempfile.mkdtemp, sys.argv[2]
def record(*a, **k):
    path = made(*a, **k)
    with open(where, "a") as fh:
        fh.write(path + "\n")
    return path
tempfile.mkdtemp = record
from losslens.cli import main
sys.argv = ["losslens", "watch", sys.argv[1], "--from-start", "--interval", "0.2"]
main()
"""


def test_watch_removes_its_temp_files_on_sigterm(tmp_path):
    """SIGTERM left /dev/shm/losslens-watch-* (56 MB) behind."""
    log = tmp_path / "main.log"
    _good_log(log, 0, 300)
    made = tmp_path / "made.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WATCH_SIGTERM, str(log), str(made)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 60
    while not (made.exists() and made.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    (tmp,) = made.read_text().split()
    assert Path(tmp).is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert not Path(tmp).exists()


def test_structured_fuzz_smoke():
    """One case of each category through benchmarks/fuzz_structured.py (forked child,
    memory cap): no crash, no injection, exits 0/1/2, bounded time and memory."""
    # In a fresh interpreter: the campaign forks, and a fork of this pytest process (which
    # earlier tests left with threads: writers, guard pipes) can deadlock in the child.
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import fuzz_structured as f; "
            "r = f.campaign(8, seed=3, jobs=1, timeout=60, batch=8, log=lambda s: None); "
            "print(json.dumps({'results': r, 'categories': sorted(f.CATEGORIES)}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "benchmarks")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    results = out["results"]
    assert sorted(r["category"] for r in results) == out["categories"]
    assert [r for r in results if r["verdict"] != "ok" or r["exit"] not in (0, 1, 2)
            or r["seconds"] > 30 or r["rss"] > 2 * GB] == []
