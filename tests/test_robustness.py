"""Robustness: damaged input is salvaged exactly, outputs are written atomically, and nothing
in a log can reach the network, run code or style a report.

Salvage of TensorBoard files (a flipped payload byte loses one record, a bad length CRC
resynchronises, truncated tails and headers, a length past the end, valid CRCs around a
non-Event) is pinned in tests/test_readers_tensorboard.py, and `.wandb` damage (bad checksum,
bad header, unreadable rest of a block, bytes missing mid-file, garbage stretches, zero tails,
lost fragments) in tests/test_readers_wandb.py; ragged CSV rows in tests/test_readers_misc.py.
This file adds what they do not: a `.wandb` block cut in half composed without the wandb
package, and the text formats (a garbage line in the middle of a log costs that line only,
counted with its number). `watch` through truncation, rotation, deletion and half-written lines
is covered by tests/test_watch.py; the case it lacks (a file replaced by a shorter one between
two polls, then appended) is here. The fuzz campaign itself is tests/test_fuzz.py.
"""
from __future__ import annotations

import ast
import math
import os
import re
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from losslens.errors import LossLensWarning
from losslens.readers import read_records

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "losslens"
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz  # noqa: E402  (benchmarks/fuzz.py: seeds and the .wandb framing)


def _points(records) -> set[tuple]:
    """Every point of every run as (run/tag, step, value, order), NaN as a string so that
    sets compare."""
    out = set()
    for rec in records:
        vals = ["nan" if math.isnan(v) else v for v in rec.value.tolist()]
        out |= {(f"{rec.run}/{rec.tags[c]}", s, v, o) for c, s, v, o in
                zip(rec.tag_code.tolist(), rec.step.tolist(), vals, rec.order.tolist())}
    return out


def _skipped(records) -> list[int]:
    return [s.line for rec in records for s in rec.skipped]


def _one(path: Path):
    (rec,) = read_records(path)
    return rec


# ============================================================================ salvage: text


def _megatron_line(n: int, loss: str) -> str:
    return (f" iteration {n:8d}/{320000:8d} | consumed samples: {n * 256:12d} | elapsed time per "
            f"iteration (ms): 987.6 | learning rate: 1.500E-05 | global batch size:   256 | "
            f"lm loss: {loss} | loss scale: 65536.0 | grad norm: 3.142 | number of skipped "
            f"iterations:   0 | number of nan iterations:   0 |")


def test_megatron_garbage_lines_in_the_middle_cost_only_themselves(tmp_path):
    lines = [_megatron_line(10 * i, f"{7 - 0.1 * i:.6E}") for i in range(1, 7)]
    spliced = (" iteration       35/  320000 | consumed samples:         8960 | elapsed time per "
               "iteration (ms): 98[rank3]: NCCL WARN Call to connect returned Connection refused")
    binary = "\x00\x00\ufffd garbage ### \x1b[31m"
    path = tmp_path / "megatron.log"
    path.write_text("\n".join(lines[:3] + [spliced, binary] + lines[3:]) + "\n")
    rec = _one(path)
    assert rec.format == "megatron"
    lm = rec.tag_code == rec.tags.index("lm loss")
    assert rec.step[lm].tolist() == [10, 20, 30, 40, 50, 60]
    assert rec.value[lm].tolist() == [6.9, 6.8, 6.7, 6.6, 6.5, 6.4]
    assert rec.order[lm].tolist() == [1, 2, 3, 6, 7, 8]
    # the spliced line keeps the one field before the damage, and is counted with its number
    cs = rec.tag_code == rec.tags.index("consumed samples")
    assert rec.step[cs].tolist() == [10, 20, 30, 35, 40, 50, 60]
    assert rec.skipped_count == 1 and rec.skipped[0].line == 4
    assert rec.skipped[0].reason.startswith("unparseable text after 1 fields of a Megatron")
    assert rec.warnings == ()


# the text formats whose readers are line by line: a damaged copy of a metric line, inserted
# in the middle, is skipped with its line number and every other point stays as it was
LINE_SEEDS = {
    "nanogpt_resume.log": "nanogpt", "llmc_main_resume.log": "llmc-mainlog",
    "pix2pix_loss_log.txt": "pix2pix", "fairseq_json.log": "fairseq",
    "fairseq_simple.log": "fairseq", "metaseq.log": "fairseq", "olmo_v1.log": "olmo",
    "olmo_core.log": "olmo-core", "titan.log": "torchtitan", "train.log": "llmc",
    "wandb-history.jsonl": "wandb-history", "metrics.jsonl": "jsonl",
    "levanter.log": "levanter", "table.csv": "csv", "metrics.csv": "lightning-csv",
    "history.csv": "wandb-csv",
}
_LAST_NUMBER = re.compile(r"\d+\.\d+(?:[eE][-+]?\d+)?(?!.*\d+\.\d+)")


@pytest.fixture(scope="module")
def line_seeds() -> dict[str, fuzz.Seed]:
    return {s.name: s for s in fuzz.seeds(corpus=None) if s.name in LINE_SEEDS}


@pytest.mark.parametrize("name", sorted(LINE_SEEDS))
def test_damaged_metric_line_in_the_middle_is_counted_and_nothing_else_moves(
        tmp_path, line_seeds, name):
    seed = line_seeds[name]
    path = tmp_path / name
    path.write_bytes(seed.data)
    before = read_records(path)
    assert {r.format for r in before} == {LINE_SEEDS[name]}
    lines = seed.data.decode().split("\n")
    orders = sorted({o for *_, o in _points(before)
                     if _LAST_NUMBER.search(lines[o - 1]) and o > 1})
    at = orders[len(orders) // 2]  # a line that gave points, in the middle
    damaged = _LAST_NUMBER.sub("1.2.3", lines[at - 1])
    path.write_text("\n".join(lines[:at] + [damaged] + lines[at:]))
    after = read_records(path)
    shifted = {(t, s, v, o if o <= at else o + 1) for t, s, v, o in _points(before)}
    extra = _points(after) - shifted
    assert shifted <= _points(after)  # every point kept, the lines after it one further down
    assert {o for *_, o in extra} <= {at + 1}  # what the damaged line still gave, if anything
    assert sorted(_skipped(after)) == sorted(
        [n if n <= at else n + 1 for n in _skipped(before)] + [at + 1])


@pytest.mark.parametrize("name", sorted(LINE_SEEDS))
def test_binary_garbage_line_changes_no_point(tmp_path, line_seeds, name):
    data = line_seeds[name].data
    path = tmp_path / name
    path.write_bytes(data)
    before = read_records(path)
    lines = data.split(b"\n")
    at = len(lines) // 2
    path.write_bytes(b"\n".join(lines[:at] + [b"\x00\xff\xfe\x1b[0m\x80 \x00"] + lines[at:]))
    after = read_records(path)
    shifted = {(t, s, v, o if o <= at else o + 1) for t, s, v, o in _points(before)}
    assert _points(after) == shifted
    assert len(_skipped(after)) - len(_skipped(before)) in (0, 1)


# ============================================================================ salvage: .wandb


def _wandb_rows(n: int) -> list[bytes]:
    return [fuzz._history(i, {"loss": f"{i}.5"}, pad=2000) for i in range(n)]


def test_wandb_block_cut_in_half_keeps_the_records_around_it(tmp_path):
    """The second half of block 2 is gone (a copy that lost 16 KiB): the records wholly
    before and after the cut are read; the damage is one warning saying what was lost."""
    data = fuzz.wandb_frame(_wandb_rows(60))
    block = 32 * 1024
    cut_from, cut_to = 2 * block + block // 2, 3 * block
    spans, pos = [], 7  # (start, end, step) of each record, from the intact framing
    for i in range(60):
        start = pos
        while True:
            left = block - pos % block
            if left < 7:
                pos += left
                continue
            length = int.from_bytes(data[pos + 4:pos + 6], "little")
            kind = data[pos + 6]
            pos += 7 + length
            if kind in (1, 4):
                break
        spans.append((start, pos, i))
    kept = [s for a, b, s in spans if b <= cut_from or a >= cut_to]
    path = tmp_path / "run-cut.wandb"
    path.write_bytes(data[:cut_from] + data[cut_to:])
    rec = _one(path)
    m = rec.tag_code == rec.tags.index("loss")
    assert rec.step[m].tolist() == kept
    assert rec.value[m].tolist() == [s + 0.5 for s in kept]
    assert 50 <= len(kept) < 60 and kept[-1] == 59
    assert len(rec.warnings) == 2
    assert rec.warnings[0].startswith(f"{path}: record ") and "lost" in rec.warnings[0]
    assert rec.warnings[1].endswith("the intact records were read")


def test_wandb_nan_and_infinity_values_are_kept(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(fuzz.wandb_frame([fuzz._history(0, {"loss": "NaN"}),
                                       fuzz._history(1, {"loss": "Infinity"}),
                                       fuzz._history(2, {"loss": "-Infinity"})]))
    rec = _one(path)
    assert rec.step.tolist() == [0, 1, 2] and np.isnan(rec.value[0])
    assert rec.value[1:].tolist() == [math.inf, -math.inf]


# ============================================================================ salvage: odd numbers


def test_steps_past_int64_are_skipped_with_their_line(tmp_path):
    """A counter with spliced digits is not a step: the line is counted, the rest is kept."""
    nano = _read_text(tmp_path, "nano.log", "iter 1: loss 2.5, time 10.0ms, mfu 5.00%\n"
                      "iter 99999999999999999999999: loss 2.4, time 10.0ms, mfu 5.00%\n"
                      "iter 3: loss 2.3, time 10.0ms, mfu 5.00%\n")
    assert _series(nano, "loss") == ([1, 3], [2.5, 2.3])
    assert [(s.line, s.reason) for s in nano.skipped] == [(2, "step does not fit in 64 bits")]
    main = _read_text(tmp_path, "main.log", "s:0 trl:2.5 lr:0.1 norm:1.0\n"
                      "s:1e999 trl:2.4 lr:0.1 norm:1.0\n"
                      f"s:{'9' * 30} trl:2.4 lr:0.1 norm:1.0\ns:2 trl:2.3 lr:0.1 norm:1.0\n")
    assert _series(main, "trl") == ([0, 2], [2.5, 2.3])
    assert sorted(s.line for s in main.skipped) == [2, 3]
    js = _read_text(tmp_path, "h.jsonl", '{"step": 1, "loss": 2.5}\n'
                    '{"step": 123456789012345678901234, "loss": 2.4}\n{"step": 3, "loss": 2.3}\n')
    assert _series(js, "loss") == ([1, 3], [2.5, 2.3])
    assert [s.line for s in js.skipped] == [2]


def test_damaged_time_stamps_and_settings_are_no_crash(tmp_path):
    """Month 13, full-width digits and `inf` settings: no wall time / no setting, every point."""
    olmo = ("2024-13-45 10:00:00\tnode:0\tolmo.train:1\tINFO\t[step=1/100]\n"
            "    train/CE loss=2.5\n"
            "2024-01-01 10:00:0\uff12\tnode:0\tolmo.train:1\tINFO\t[step=2/100]\n"
            "    train/CE loss=2.4\n")
    rec = _read_text(tmp_path, "olmo.log", olmo)
    assert _series(rec, "train/CE loss") == ([1, 2], [2.5, 2.4])
    assert np.isnan(rec.wall_time[0]) and rec.wall_time[1] == 1704103202.0  # \uff12 is a 2
    titan = ("[rank0]:[titan] 2025-13-01 12:00:00,000 - root - INFO - step: 1  loss:  8.1  "
             "memory: 1.00GiB(1.00%)  tps: 1\n")
    rec = _read_text(tmp_path, "titan.log", titan)
    assert _series(rec, "loss") == ([1], [8.1]) and np.isnan(rec.wall_time).all()
    nano = ("Overriding: max_iters = inf\nOverriding: n_layer = nan\n"
            "iter 1: loss 2.5, time 10.0ms, mfu 5.00%\n")
    rec = _read_text(tmp_path, "nano.log", nano)
    assert rec.metadata.train_iters is None and rec.metadata.num_layers is None
    assert rec.metadata.extra["max_iters"] == "inf"
    llmc = ("| warmup iterations     | inf                  |\n"
            "| channels C            | 1e999                |\n"
            "step    1/6 | loss 9.100000 (+0.00z)| norm 2.0000 (+0.00z)| lr 5.00e-04 | 41.00 ms"
            " | 32.0% bf16 MFU | 121000 tok/s\n")
    rec = _read_text(tmp_path, "llmc.log", llmc)
    assert _series(rec, "loss") == ([1], [9.1])
    assert rec.metadata.warmup_steps is None and rec.metadata.hidden_size is None
    state = '{"log_history": [{"step": Infinity, "loss": 1.0}, {"step": 2, "loss": 0.5}], ' \
            '"logging_steps": Infinity, "global_step": 2}'
    rec = _read_text(tmp_path, "trainer_state.json", state)
    assert _series(rec, "loss") == ([2], [0.5]) and rec.metadata.log_interval is None
    assert [s.line for s in rec.skipped] == [1]


def _read_text(tmp_path: Path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return _one(path)


def _series(rec, tag: str) -> tuple[list[int], list[float]]:
    m = rec.tag_code == rec.tags.index(tag)
    return rec.step[m].tolist(), rec.value[m].tolist()


@pytest.mark.parametrize("name, line", [
    ("train.log", "| train data pattern    | dev/data/fineweb10B/fineweb_train_*.bin    |"),
    ("levanter.log", '2024-05-01T10:00:30 INFO {"tracker": "json_logger", "event": "log", '
                     '"step": 30, "metrics": {"train/loss": 2.5}}'),
])
def test_long_line_of_repeated_records_reads_in_linear_time(tmp_path, name, line):
    """A 2 MiB line of table rows (llm.c) or tracker records (Levanter) once made a lazy regex
    backtrack for minutes; now it is one skipped or ignored line."""
    import time

    seed = {s.name: s for s in fuzz.generated_seeds()}[name]
    lines = seed.data.decode().split("\n")
    path = tmp_path / name
    path.write_text("\n".join(lines[:3] + [line * (2_000_000 // len(line))] + lines[3:]))
    start = time.process_time()
    before = read_records(tmp_path / name)
    assert time.process_time() - start < 5
    path.write_text(seed.data.decode())
    assert _points(read_records(path)) == {(t, s, v, o if o <= 3 else o - 1)
                                           for t, s, v, o in _points(before)}


DEEP = "[" * 100_000  # json.loads raises RecursionError, not ValueError, on this


@pytest.mark.parametrize("name, text, line", [
    ("a.jsonl", '{"step": 1, "loss": 2.5}\n{"step": 2, "x": %s}\n{"step": 3, "loss": 2.3}\n', 2),
    ("wandb-history.jsonl", '{"_step": 1, "_runtime": 1, "loss": 2.5}\n{"_step": 2, "x": %s}\n'
     '{"_step": 3, "_runtime": 3, "loss": 2.3}\n', 2),
    ("f.log", "2023-01-01 12:00:01 | INFO | train_inner | {\"loss\": \"2.5\", \"num_updates\": "
     "\"1\"}\n2023-01-01 12:00:02 | INFO | train_inner | {\"epoch\": %s}\n2023-01-01 12:00:03 "
     "| INFO | train_inner | {\"loss\": \"2.3\", \"num_updates\": \"3\"}\n", 2),
    ("trainer_state.json", '{"log_history": [{"step": 1, "loss": 2.5}, %s]}', 0),
    ("lev.log", '2024-05-01T10:00:30 INFO {"tracker": "json_logger", "event": "log", "step": 1, '
     '"metrics": {"loss": 2.5}}\n2024-05-01T10:00:31 INFO {"tracker": "json_logger", "event": '
     '"log", "step": 2, "metrics": %s}\n', 2),
])
def test_deeply_nested_json_is_a_bad_line_not_a_crash(tmp_path, name, text, line):
    path = tmp_path / name
    path.write_text(text % DEEP)
    (rec,) = read_records(path)
    assert _series(rec, "loss")[1][0] == 2.5
    if line:
        assert [s.line for s in rec.skipped] == [line]
    else:  # trainer_state.json: the entries before the damage, and a warning saying so
        assert rec.warnings == (f"{path}: damaged JSON at line 1; kept the 1 log_history "
                                "entries before it",)


def test_resume_from_a_tiny_loss_to_a_huge_one_is_analysed(tmp_path):
    """A resume whose first loss is 1e300 after losses of 1e-12 (a log ratio past 709)."""
    from losslens.pipeline import analyze_frame
    import losslens

    lines = [f"iter {i}: loss {1e-12 * (1 + i / 1000):.4g}, time 10.0ms, mfu 5.00%"
             for i in range(0, 300, 10)]
    lines.append("Resuming training from out")
    lines += [f"iter {i}: loss {1e300 if i <= 210 else 1e-12:.4g}, time 10.0ms, mfu 5.00%"
              for i in range(200, 400, 10)]
    path = tmp_path / "train.log"
    path.write_text("\n".join(lines) + "\n")
    analysis = analyze_frame(losslens.read(path))
    assert any(e.kind == "resume_spike" for e in analysis.runs[0].events)


def test_huge_csv_header_cell_is_not_a_table(tmp_path):
    path = tmp_path / "x.log"
    path.write_text("step," + "9" * 200_000 + "\n1,2\n")
    from losslens.errors import LossLensError

    with pytest.raises(LossLensError) as err:
        read_records(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_folder_with_a_dangling_link_and_a_fifo_reads_the_rest(tmp_path):
    """A dangling `latest.log` link and a named pipe (opening it would block) are passed over,
    each with a warning naming it (test_hostile_bounds); the log beside them is read."""
    log = tmp_path / "run" / "train.log"
    log.parent.mkdir()
    log.write_bytes((ROOT / "tests" / "data" / "textlogs" / "nanogpt_resume.log").read_bytes())
    (tmp_path / "run" / "latest.log").symlink_to(tmp_path / "nowhere.log")
    os.mkfifo(tmp_path / "run" / "pipe.log")
    with pytest.warns(LossLensWarning, match="passed over") as caught:
        (rec,) = read_records(tmp_path)
    assert rec.run == "run/train.log" and rec.format == "nanogpt"
    assert len(caught) == 2


def test_unreadable_path_is_a_one_line_error(tmp_path):
    from losslens.errors import ParseError
    from losslens.readers import read_file

    with pytest.raises(ParseError) as err:
        read_file(tmp_path, "x")  # a folder where a file was expected: open() fails
    assert str(err.value) == f"{tmp_path}: cannot read (Is a directory)"


# ============================================================================ atomic writes


class _HalfWriter:
    """A file object that writes half of what it is given, then fails (a full disk)."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, text):
        self.fh.write(text[: len(text) // 2])
        self.fh.flush()
        raise OSError(28, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()
        return False


def _fail_midway(monkeypatch):
    import losslens.textsafe as commands

    real = os.fdopen
    monkeypatch.setattr(commands.os, "fdopen", lambda *a, **k: _HalfWriter(real(*a, **k)))


def test_write_failing_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    from losslens.textsafe import write_file as write_atomic
    from losslens.errors import LossLensError

    target = tmp_path / "skip.txt"
    target.write_text("old plan\n")
    _fail_midway(monkeypatch)
    with pytest.raises(LossLensError) as err:
        write_atomic(target, "new plan\n" * 1000)
    assert str(err.value) == (f"{target}: cannot write (No space left on device); "
                              "the old file is kept")
    assert target.read_text() == "old plan\n"
    assert sorted(os.listdir(tmp_path)) == ["skip.txt"]


@pytest.mark.parametrize("args", [
    ["analyze", "{log}", "--format", "markdown", "-o", "{out}"],
    ["analyze", "{log}", "--format", "html", "-o", "{out}"],
    ["analyze", "{log}", "--format", "json", "-o", "{out}"],
    ["check", "{log}", "--format", "json", "-o", "{out}"],
    ["check", "{log}", "--junit-file", "{out}"],
])
def test_cli_report_failing_midway_is_one_error_and_the_old_report_stays(
        runner, tmp_path, monkeypatch, args):
    from losslens.cli import app

    log = ROOT / "sample_logs" / "megatron_gpt_spikes.log"
    out = tmp_path / "report.out"
    out.write_text("previous report\n")
    _fail_midway(monkeypatch)
    res = runner.invoke(app, [a.format(log=log, out=out) for a in args])
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[-1] == (f"Error: {out}: cannot write (No space left on "
                                           "device); the old file is kept")
    assert "Traceback" not in res.output
    assert out.read_text() == "previous report\n" and sorted(os.listdir(tmp_path)) == [
        "report.out"]


# ============================================================================ safety: network


def _every_fixture(tmp_path: Path) -> list[Path]:
    paths = [p for p in sorted((ROOT / "tests" / "data").rglob("*"))
             if p.is_file() and p.suffix != ".py"]
    paths += sorted((ROOT / "sample_logs").glob("*.log"))
    gen = tmp_path / "generated"
    gen.mkdir()
    for s in fuzz.generated_seeds():
        (gen / s.name).write_bytes(s.data)
        paths.append(gen / s.name)
    corpus = ROOT.parent / "shared" / "corpus"
    if corpus.is_dir():
        paths += [p for p in sorted(corpus.iterdir()) if p.is_dir()]
    return paths + [gen]


def test_no_network_call_on_any_fixture(runner, tmp_path, monkeypatch):
    """read (series), analyze, check and skiplist over every fixture and the corpus with
    every way out to the network closed: none is tried."""
    from losslens.cli import app

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.chdir(tmp_path)
    paths = _every_fixture(tmp_path)
    assert len(paths) >= 30
    for path in paths:
        for command in ("series", "analyze", "check", "skiplist"):
            if command == "skiplist" and path.is_dir():
                continue  # skiplist plans one run
            res = runner.invoke(app, [command, str(path)])
            assert res.exit_code in (0, 1, 2), (command, path, res.output[-2000:])
            assert res.exception is None or isinstance(res.exception, SystemExit), (
                command, path, res.exception)
    assert calls == []


# ============================================================================ safety: code


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                else ""
            yield node, owner, name


def test_no_eval_exec_pickle_or_unsafe_yaml_in_the_package():
    """Nothing in losslens can turn log content into code. `literal_eval` would be allowed
    (it only builds literals, though on unbounded input it can exhaust the stack), but the
    package does not use it either; `__import__` / `import_module` only take names from the
    format registry, a constant, or the replay plug-in the user names on the command line."""
    found = []
    imports_of_code = {"pickle", "cPickle", "dill", "marshal", "shelve", "joblib"}
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in imports_of_code for n in names):
                    found.append(f"{rel}:{node.lineno} imports {names}")
        for node, owner, name in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if name in ("eval", "exec") and owner in ("", "builtins"):
                found.append(f"{where} {name}()")
            if name == "load" and owner == "yaml":
                safe = any(k.arg == "Loader" and "Safe" in ast.unparse(k.value)
                           for k in node.keywords)
                if not safe:
                    found.append(f"{where} yaml.load without SafeLoader")
            if name in ("load", "loads") and owner in imports_of_code:
                found.append(f"{where} {owner}.{name}()")
            if name == "literal_eval":
                found.append(f"{where} literal_eval")
            if name in ("__import__", "import_module"):
                arg = node.args[0] if node.args else None
                allowed = (isinstance(arg, ast.Constant) or str(rel) in (
                    "losslens/__init__.py", "losslens/readers/__init__.py",
                    "losslens/detectors/__init__.py", "losslens/replay/plugin.py"))
                if not allowed:
                    found.append(f"{where} {name}({ast.unparse(arg) if arg else ''})")
    assert found == []


def test_replay_loads_torch_checkpoints_with_weights_only():
    """Every torch.load in the package passes weights_only=True (the plug-in may load its own
    checkpoints its own way: that is the user's code, named on the command line)."""
    loads = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node, owner, name in _calls(tree):
            if name == "load" and owner == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                safe = isinstance(kw.get("weights_only"), ast.Constant) and \
                    kw["weights_only"].value is True
                loads.append((str(path.relative_to(ROOT)), node.lineno, safe))
    assert loads and all(safe for *_, safe in loads), loads
    assert {p for p, *_ in loads} == {"losslens/replay/plugin.py",
                                      "losslens/replay/adapters/hf.py",
                                      "losslens/replay/adapters/nanogpt.py",
                                      "losslens/replay/adapters/plain.py"}


PAYLOAD = "__import__('os').system('touch {marker}')"


def test_crafted_log_lines_never_run_code(tmp_path, runner, monkeypatch):
    """Python expressions in every place a reader looks at values are text, never code."""
    from losslens.cli import app

    marker = tmp_path / "PWNED"
    p = PAYLOAD.format(marker=marker)
    logs = {
        "hf.log": f"{{'loss': {p}, 'grad_norm': 1.0, 'learning_rate': 1e-4, 'epoch': 0.1}}\n"
                  f"{{'loss': 2.5, 'grad_norm': {p}, 'learning_rate': 1e-4, 'epoch': 0.2}}\n"
                  f"{{'eval_loss': eval(\"{p}\"), 'epoch': 0.2}}\n"
                  "{'loss': 2.4, 'grad_norm': 1.0, 'learning_rate': 1e-4, 'epoch': 0.3}\n",
        "trainer_state.json": '{"log_history": [{"step": 1, "loss": "%s"}, {"step": 2, '
                              '"loss": 2.0}], "logging_steps": "%s"}' % (p, p),
        "fairseq.log": f"2023-01-01 12:00:00 | INFO | fairseq_cli.train | Namespace(lr=[{p}], "
                       f"max_update={p}, adam_betas='({p}, 0.98)')\n"
                       "2023-01-01 12:00:01 | INFO | train_inner | {\"epoch\": 1, \"loss\": "
                       f"\"{p}\", \"num_updates\": \"100\"}}\n",
        "nanogpt.log": f"Overriding: learning_rate = {p}\niter 1: loss 2.5, time 1.0ms, mfu 1%\n",
        "megatron.log": f"------------------------ arguments ------------------------\n"
                        f"  lr .............................................. {p}\n"
                        f"-------------------- end of arguments ---------------------\n"
                        + _megatron_line(10, p.replace(" ", "")) + "\n"
                        + _megatron_line(20, "7.0E+00") + "\n",
        "titan.log": "[rank0]:[titan] 2025-06-01 12:00:00,000 - root - INFO - Building with "
                     f"ModelArgs(dim={p}, n_layers=2)\n[rank0]:[titan] 2025-06-01 12:00:01,000 - "
                     "root - INFO - step: 1  loss:  8.1  memory: 1.00GiB(1.00%)  tps: 1\n",
        "metrics.jsonl": f'{{"step": 1, "loss": "{p}"}}\n{{"step": 2, "loss": 1.0}}\n',
    }
    monkeypatch.chdir(tmp_path)
    for name, text in logs.items():
        path = tmp_path / name
        path.write_text(text)
        for command in ("series", "analyze", "check", "skiplist"):
            res = runner.invoke(app, [command, str(path)])
            assert res.exit_code in (0, 1, 2) and not isinstance(
                res.exception, Exception), (name, command, res.output)
        assert not marker.exists(), name
    # the values were not taken for numbers either: the HF dicts holding it are skipped
    hf = _one(tmp_path / "hf.log")
    assert [s.line for s in hf.skipped] == [1, 2, 3]
    assert _series(hf, "loss")[1] == [2.4]


# ============================================================================ safety: reports


def _script_run(tmp_path: Path) -> tuple[Path, str]:
    """A folder whose walk names its one run `<script>alert(1)</script>.log`."""
    root = tmp_path / "runs"
    folder = root / "<script>alert(1)<"
    folder.mkdir(parents=True)
    (folder / "script>.log").write_bytes((ROOT / "sample_logs" / "nanogpt_clean.log").read_bytes())
    return root, "<script>alert(1)</script>.log"


def test_html_report_escapes_a_script_in_the_run_name(runner, tmp_path):
    from losslens.cli import app

    root, run = _script_run(tmp_path)
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["analyze", str(root), "--format", "html", "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    # the report's own three scripts (data, uPlot, page code); the run name's is inert text
    assert html.lower().count("<script") == 3 and "<script>alert" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.log" in html
    assert "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e.log" in html  # in the data


def test_html_report_escapes_markup_in_tags_charts_included(runner, tmp_path):
    import json

    from losslens.cli import app

    tag = "<img src=x onerror=alert(1)>"
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"step": i, tag: 2.0 - i / 100 + (3.0 if i == 150 else 0)})
                            + "\n" for i in range(300)))
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["analyze", str(path), "--role", f"train_loss={tag}",
                              "--format", "html", "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    assert "<img" not in html and html.count("&lt;img src=x onerror=alert(1)&gt;") >= 3


def test_markdown_report_escapes_pipes_in_run_names_and_tags(runner, tmp_path):
    from losslens.cli import app

    path = tmp_path / "a|b.jsonl"
    path.write_text("".join(f'{{"step": {i}, "lo|ss": {2.0 - i / 100}}}\n' for i in range(50)))
    res = runner.invoke(app, ["analyze", str(path), "--format", "markdown"])
    assert res.exit_code == 0, res.output
    table_rows = [ln for ln in res.stdout.splitlines() if ln.startswith("|")]
    assert any("a\\|b.jsonl" in ln for ln in table_rows) or "a\\|b.jsonl" in res.stdout
    assert all("a|b" not in ln for ln in table_rows)


def test_terminal_prints_rich_markup_in_tags_and_run_names_literally(runner, tmp_path):
    from losslens.cli import app

    root = tmp_path / "runs"
    folder = root / "[bold]run["
    folder.mkdir(parents=True)
    path = folder / "bold].jsonl"
    rows = [{"step": i, "[red]x[/red]": 2.0 - i / 100 + (3.0 if i == 150 else 0.0)}
            for i in range(300)]
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for command in ("series", "analyze"):
        res = runner.invoke(app, [command, str(root), "--role", "train_loss=[red]x[/red]"])
        assert res.exit_code == 0, res.output
        assert "[red]x[/red]" in res.stdout, (command, res.stdout)
        assert "[bold]run[/bold].jsonl" in res.stdout, (command, res.stdout)


# ============================================================================ watch
# tests/test_watch.py covers truncation, rotation, a deleted and re-created file and a
# half-written last line; these add damage arriving while a log is followed.


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _lines(start: int, n: int) -> bytes:
    return "".join(_megatron_line(i, f"{5 - i / 1000:.6E}") + "\n"
                   for i in range(start, start + n)).encode()


def test_watch_reads_past_garbage_and_binary_lines_appended_between_polls(tmp_path):
    from losslens.watch import Follower

    path = tmp_path / "g.log"
    path.write_bytes(_lines(1, 50))
    with Follower(path) as f:
        f.poll()
        _append(path, b"\x00\xff\xfe garbage \x1b[31m\n" + _lines(51, 10)
                + b" iteration       61/  320000 | consumed samples: 15\x00\x00NCCL WARN\n"
                + bytes(range(256)) + b"\n" + _lines(62, 10))
        f.poll()
        s = f.states["g.log"].series["lm loss"]
        assert s.n == 70 and list(s.step[:s.n]) == list(range(1, 61)) + list(range(62, 72))


def test_watch_follows_a_file_replaced_by_a_shorter_one(tmp_path):
    """`os.replace` of a shorter log over the followed one (a restart that rewrites it): the
    new file is read from its start as a new segment."""
    from losslens.watch import Follower

    path = tmp_path / "r.log"
    path.write_bytes(_lines(1, 300))
    with Follower(path) as f:
        f.poll()
        new = tmp_path / "r.log.new"
        new.write_bytes(_lines(201, 20))
        os.replace(new, path)
        u = f.poll()
        assert any("replaced" in n for n in u.notices)
        _append(path, _lines(221, 5))
        f.poll()
        st = f.states["r.log"]
        assert [(g.first_step, g.last_step) for g in st.segments.segments()] == [
            (1, 300), (201, 225)]


def test_watch_half_written_line_then_truncated_by_a_restart(tmp_path):
    """The writer died mid-line and its successor truncated the log: the half line is never
    read as a point, and the new lines are."""
    from losslens.watch import Follower

    path = tmp_path / "h.log"
    path.write_bytes(_lines(1, 40))
    half = _lines(41, 1)[:60]
    _append(path, half)
    with Follower(path) as f:
        f.poll()
        s = f.states["h.log"].series["lm loss"]
        assert s.n == 40
        path.write_bytes(_lines(1, 3))
        u = f.poll()
        assert any("truncated" in n for n in u.notices)
        # steps 1-3 rewritten in place; the restarted run stands at 3: the replaced run's
        # 4..40 are kept (`total`) but are not its series (frame.stitched_positions)
        assert list(s.step[:s.n]) == [1, 2, 3] and s.total == 40
        segments = f.states["h.log"].segments.segments()
        assert [(g.first_step, g.last_step, g.reason) for g in segments] == [
            (1, 40, "start"), (1, 3, "step_back")]


def test_watch_survives_its_log_overwritten_with_random_bytes(tmp_path):
    import random

    from losslens.watch import Follower

    path = tmp_path / "x.log"
    path.write_bytes(_lines(1, 30))
    with Follower(path) as f:
        f.poll()
        with open(path, "r+b") as fh:  # same file, same size and more: bytes overwritten
            fh.write(random.Random(3).randbytes(path.stat().st_size + 5000))
        f.poll()
        _append(path, b"\n" + _lines(31, 5))
        f.poll()
        s = f.states["x.log"].series["lm loss"]
        assert list(s.step[:s.n])[-5:] == [31, 32, 33, 34, 35]
