"""Hostile inputs across every command: names that carry terminal escapes, bidi overrides and
CI workflow commands; numbers at the edge of float64; text in other encodings; paths that are
not files. Each test pins the exact exit code and what reaches stdout and stderr.

Companions: test_robustness.py, test_hardening.py, test_fuzz.py (what those cover is not
repeated here).
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GB = 1 << 30

#: a file name a log writer chose: OSC 52 (clipboard write), BEL, a bidi override, and a
#: newline that would start a GitHub workflow command in a CI log
EVIL = "r\x1b]52;c;cHduZWQ=\x07\u202e\n::error::pwn"
#: how it shows, on one line (textsafe.line)
SHOWN = "r\\e]52;c;cHduZWQ=\\x07\\u202e\\n::error::pwn"


def run_bounded(args: list[str], timeout: float = 120, memory: int = 3 * GB,
                cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m losslens ARGS` with an address-space cap and a time limit; bytes out."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "losslens", *args], capture_output=True,
                          timeout=timeout, preexec_fn=limit, env=env, cwd=cwd)


def assert_inert(stream: bytes) -> None:
    """No control character but newline, no bidi override, no line a CI runner would read
    as a workflow command."""
    text = stream.decode("utf-8")
    bad = [c for c in text if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f
           or c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"]
    assert not bad, bad
    assert not any(ln.lstrip().startswith("::") for ln in text.splitlines()
                   if "::error file=" not in ln and "::notice" not in ln), text


def _diverging(folder: Path, name: str = EVIL) -> Path:
    """A run whose loss turns NaN at step 500 (a restart is planned), logged to a file named
    `name` inside `folder`."""
    folder.mkdir()
    path = folder / name
    path.write_text("".join(json.dumps({"step": i, "loss": 3.0 - i * 0.001 if i < 500
                                        else float("nan")}) + "\n" for i in range(700)))
    return path


# --------------------------------------------------------------------------- names

def test_error_naming_a_hostile_run_is_one_inert_line(tmp_path):
    """skiplist with no checkpoint known: the error quotes the run name, which carried an
    escape sequence and a newline + `::error::` onto stderr as they were."""
    path = _diverging(tmp_path / "runs")
    res = run_bounded(["skiplist", str(tmp_path / "runs")])
    assert res.returncode == 2
    assert res.stdout == b""
    src = f"{tmp_path}/runs/{SHOWN}"
    assert res.stderr.decode() == (
        f"Error: {src}: run {SHOWN}: the plan restarts from iteration 400, and no checkpoint "
        "is known (none given, none in the log): pass --checkpoint-every, --checkpoints or "
        "--checkpoint-dir, or --allow-no-checkpoint to print the plan anyway\n")
    assert path.exists()


@pytest.mark.parametrize("target", ["megatron-deepspeed", "metaseq", "gpt-neox", "text"])
def test_skip_plan_notes_and_text_name_a_hostile_run_inertly(tmp_path, target):
    _diverging(tmp_path / "runs")
    res = run_bounded(["skiplist", str(tmp_path / "runs"), "--checkpoint-every", "100",
                       "-f", target])
    assert res.returncode == 0, res.stderr
    assert_inert(res.stdout)
    assert_inert(res.stderr)
    src = f"{tmp_path}/runs/{SHOWN}"
    if target == "text":
        assert res.stdout.decode().splitlines()[0] == f"run: {SHOWN} ({src})"
        assert res.stderr == b""
    else:
        assert res.stderr.decode().splitlines()[0] == \
            f"# losslens skip plan for run {SHOWN} ({src})"


def test_nothing_to_skip_names_hostile_runs_inertly(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / EVIL).write_text("".join(f'{{"step": {i}, "loss": {3 - i / 1000}}}\n'
                                       for i in range(300)))
    res = run_bounded(["skiplist", str(folder)])
    assert res.returncode == 0
    assert res.stdout == b""
    assert res.stderr.decode() == (
        f"Nothing to skip: no event in {SHOWN} needs a restart (0 event(s) found; a restart "
        "is planned for spikes that never recover, divergence and non-finite losses)\n")


def test_watch_lines_name_hostile_runs_and_tags_inertly(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    tag = "loss\x1b[2J\u202e"
    for name in (EVIL, "plain.jsonl"):
        (folder / name).write_text("".join(json.dumps({"step": i, tag: 3.0 - i * 0.001 if i < 500
                                                       else float("nan")}) + "\n"
                                           for i in range(600)))
    res = run_bounded(["watch", str(folder), "--once", "--from-start"])
    assert res.returncode == 0, res.stderr
    assert_inert(res.stdout)
    lines = res.stdout.decode().splitlines()
    event = "step 500  nonfinite  loss\\e[2J\\u202e  critical  100 non-finite through step 599"
    assert sorted(lines) == [f"{event}  [plain.jsonl]", f"{event}  [{SHOWN}]"]


def test_html_report_shows_controls_in_names_as_visible_escapes(tmp_path):
    _diverging(tmp_path / "runs")
    res = run_bounded(["analyze", str(tmp_path / "runs"), "-f", "html"])
    assert res.returncode == 0, res.stderr
    html = res.stdout.decode()
    assert "\x1b" not in html and "\x07" not in html and "\u202e" not in html
    assert f"<code>{tmp_path}/runs/r\\e]52;c;cHduZWQ=\\x07\\u202e\n::error::pwn</code>" in html


# --------------------------------------------------------------------------- numbers

BIG = 1.7976931348623157e308
#: loss curves at the edges of float64, each as it would be logged (NaN/Infinity as Python's
#: json writes them)
EXTREMES = {
    "max_both_signs": [BIG, -BIG, 1.0, -1.0] * 60,
    "max_after_normal": [3.0 - i / 1000 for i in range(200)] + [BIG, -BIG] * 30,
    "huge_negative_flat": [-1e300] * 100 + [-1e300 * 1.5] * 100,
    "subnormal": [5e-324, 1e-320, 2e-320, 0.0] * 60,
    "negative_zero": [-0.0, 0.0] * 120,
    "mixed": [float("nan"), float("inf"), -0.0, 1e-320, -float("inf"), 5e-324, BIG, -BIG] * 50,
    "one_point": [2.0],
    "all_nan": [float("nan")] * 100,
    "all_inf": [float("inf")] * 50 + [-float("inf")] * 50,
}


@pytest.mark.parametrize("name", sorted(EXTREMES))
def test_values_at_the_edge_of_float64_are_analysed(tmp_path, name):
    """±1.8e308 next to ordinary values: squares overflow to inf and the changepoint search
    (least squares) met NaN costs everywhere: `internal error: ValueError: min() arg is an
    empty sequence`, and the run was reported as failed."""
    import losslens

    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"step": i, "loss": v}) + "\n"
                            for i, v in enumerate(EXTREMES[name])))
    analysis = losslens.analyze(losslens.read(path))
    (ra,) = analysis.runs
    assert ra.info.error is None
    assert ra.info.series[0].points == len(EXTREMES[name])


@pytest.mark.parametrize("fmt", ["text", "html", "markdown"])
def test_reports_draw_losses_of_1e308(tmp_path, fmt):
    """The plots' axis span (max - min) overflowed: the terminal plot failed in np.repeat
    (`internal error: ValueError: repeats may not contain negative values`), the HTML one in
    its ticks (`OverflowError`) - the whole command, exit 2."""
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"step": i, "loss": v}) + "\n"
                            for i, v in enumerate(EXTREMES["mixed"])))
    res = run_bounded(["analyze", str(path), "-f", fmt])
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    assert b"non-finite" in res.stdout.lower()


# --------------------------------------------------------------------------- encodings, paths

def _jsonl_text(n: int = 600) -> str:
    return "".join(json.dumps({"step": i, "loss": 3.0 - i / 1000 + (5 if i == 300 else 0)})
                   + "\n" for i in range(n))


def test_jsonl_with_a_utf8_byte_order_mark_is_read(tmp_path):
    """A UTF-8 BOM (Windows editors, PowerShell 7's Out-File) hid the first `{`: the file
    was `not a log format losslens knows`."""
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl_text().encode())
    res = run_bounded(["series", str(path), "-f", "json"])
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    (run,) = json.loads(res.stdout)["runs"]
    assert [(s["tag"], s["points"], s["first_step"], s["last_step"]) for s in run["series"]] \
        == [("loss", 600, 0, 599)]


@pytest.mark.parametrize("codec, name, bom", [("utf-16", "UTF-16LE", "FF FE"),
                                              ("utf-16-be", "UTF-16BE", "FE FF"),
                                              ("utf-32", "UTF-32LE", "FF FE 00 00")])
def test_utf16_and_utf32_logs_are_named_as_such(tmp_path, codec, name, bom):
    """PowerShell 5's `python train.py > log.txt` writes UTF-16LE: it was `not a log format
    losslens knows`, and in a folder it was passed over without a word."""
    text = _jsonl_text()
    data = text.encode(codec) if codec != "utf-16-be" else b"\xfe\xff" + text.encode(codec)
    path = tmp_path / "m.jsonl"
    path.write_bytes(data)
    why = (f"{name} text (byte-order mark {bom}); losslens reads UTF-8 logs: convert it "
           f"first, e.g. iconv -f {name} -t UTF-8")
    res = run_bounded(["analyze", str(path)])
    assert (res.returncode, res.stdout, res.stderr.decode()) == (2, b"", f"Error: {path}: {why}\n")
    # in a folder: the other log is read and reported, this one is a failed run
    folder = tmp_path / "runs"
    folder.mkdir()
    path.rename(folder / "m.jsonl")
    (folder / "ok.jsonl").write_text(text)
    res = run_bounded(["check", str(folder), "-f", "json"])
    assert res.returncode == 2
    assert res.stderr.decode() == f"Error: {folder}/m.jsonl: {why}\n"
    runs = json.loads(res.stdout)["runs"]
    assert [r["run"] for r in runs] == ["m.jsonl", "ok.jsonl"]


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "/dev/null"])
def test_a_pipe_or_a_device_is_named_not_listed_as_a_folder(tmp_path, what):
    """A named pipe or /dev/zero given as the log was `cannot list folder (Not a
    directory)`."""
    if what == "fifo":
        path = tmp_path / "live.log"
        os.mkfifo(path)
        kind = "a named pipe"
    else:
        path, kind = Path(what), "a character device"
    res = run_bounded(["analyze", str(path)], timeout=60)
    assert (res.returncode, res.stdout, res.stderr.decode()) == (
        2, b"", f"Error: {path}: {kind}, not a log file or folder; save the stream to a file "
                "first (`losslens watch` follows a growing file)\n")


# --------------------------------------------------------------------------- settings files

@pytest.mark.parametrize("body, message", [
    ("[tool]\nlosslens = 5\n",
     "{p}: tool.losslens must be a table ([tool.losslens]), got int 5"),
    ("[tool.losslens]\nallow-steps = [[500, 100]]\n",
     "{p} [tool.losslens]: allow-steps range '500-100' ends before it starts"),
    ("[tool.losslens]\nallow-steps = \"100-200x\"\n",
     "{p} [tool.losslens]: allow-steps entries are N, \"A-B\" or [A, B], got '100-200x'"),
    ("[tool.losslens.detectors.spike]\nwindow = \"abc\"\n",
     "{p} [tool.losslens]: SpikeDetector.window must be an int >= 5, got 'abc'"),
    ("[tool.losslens]\ninput-format = \"nosuch\"\n",
     "{p} [tool.losslens]: unknown format 'nosuch'; known formats: tensorboard, "),
])
def test_bad_settings_name_their_file(tmp_path, body, message):
    """`[tool] losslens = 5` was `internal error: AttributeError`; `allow-steps = "100-200x"`
    was read character by character (`got '1'`... `got '-'`); [[500, 100]] was taken;
    a detector's bad field and an unknown input-format did not name the settings file."""
    p = tmp_path / "pyproject.toml"
    p.write_text(body)
    (tmp_path / "m.jsonl").write_text(_jsonl_text(100))
    res = run_bounded(["check", "m.jsonl"], cwd=tmp_path)
    assert (res.returncode, res.stdout) == (2, b"")
    lines = [ln for ln in res.stderr.decode().splitlines()
             if not ln.startswith("losslens: settings from")]
    assert len(lines) == 1 and lines[0].startswith("Error: " + message.format(p=p)), lines


def test_one_allowed_range_given_alone_is_one_entry(tmp_path):
    """`allow-steps = "250-350"` (a string, not a list) allows that range."""
    (tmp_path / "losslens.toml").write_text('allow-steps = "250-350"\n')
    (tmp_path / "m.jsonl").write_text(_jsonl_text())
    res = run_bounded(["analyze", "m.jsonl", "-f", "json"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (run,) = json.loads(res.stdout)["runs"]
    assert run["events"] == []
    (tmp_path / "plain").mkdir()  # the same log without the settings: the spike at 300
    (tmp_path / "plain" / "losslens.toml").write_text("")
    (tmp_path / "plain" / "m.jsonl").write_text(_jsonl_text())
    res = run_bounded(["analyze", "m.jsonl", "-f", "json"], cwd=tmp_path / "plain")
    assert res.returncode == 0, res.stderr
    assert [e["kind"] for e in json.loads(res.stdout)["runs"][0]["events"]] == ["spike"]


# --------------------------------------------------------------------------- replay's input

_DOC = {"schema": "losslens.analysis/1", "version": "0"}


@pytest.mark.parametrize("runs, message", [
    (5, "runs: expected a list, got int 5"),
    (["a"], "runs[0]: expected an object, got str 'a'"),
    ([{"run": "r", "series": 5}], "runs[0].series: expected a list, got int 5"),
    ([{"run": "r", "events": [[1]]}], "runs[0].events[0]: expected an object, got list"),
    ([{"run": "r", "events": [{"kind": "spike", "tag": "loss", "start_step": 1e300}]}],
     "runs[0].events[0].start_step: expected a step (a 64-bit integer), got float 1e+300"),
    ([{"run": "r", "events": [{"kind": "spike", "tag": "loss", "start_step": 5,
                               "peak_step": "x"}]}],
     "runs[0].events[0].peak_step: expected a step (a 64-bit integer) or null, got str 'x'"),
    ([{"run": "r", "metadata": 5}], "runs[0].metadata: expected an object or null, got int 5"),
    ([{"run": "r"}, {"run": 5}], "runs[1].run: expected a string, got int 5"),
])
def test_replay_names_the_part_of_a_bad_analysis_document(tmp_path, runs, message):
    """Each of these was `internal error: AttributeError/TypeError` (exit 2, no hint of
    where the document was wrong), before any model was built."""
    path = tmp_path / "a.json"
    path.write_text(json.dumps({**_DOC, "runs": runs}))
    res = run_bounded(["replay", "--plugin", str(ROOT / "examples" / "tiny_gpt_plugin.py"),
                       "--analysis", str(path), "--device", "cpu"])
    assert (res.returncode, res.stdout, res.stderr.decode()) == (
        2, b"", f"Error: --analysis {path}: {message}\n")


def test_replay_refuses_an_analysis_document_nested_past_the_parser(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"schema": "losslens.analysis/1", "runs": ' + "[" * 100_000
                    + "]" * 100_000 + "}")
    res = run_bounded(["replay", "--plugin", str(ROOT / "examples" / "tiny_gpt_plugin.py"),
                       "--analysis", str(path), "--device", "cpu"])
    assert (res.returncode, res.stdout, res.stderr.decode()) == (
        2, b"", f"Error: --analysis {path}: not an analysis document (nested too deeply to "
                "read)\n")


# --------------------------------------------------------------------------- shapes

def test_a_run_of_thousands_of_tags_builds_its_roles_once(tmp_path):
    """`Frame.series` rebuilt the run's tag -> role dict (and took four columns out of
    pandas) for every series a detector asked for: quadratic in the tags of a run, 115 s
    for 3,000 one-point loss tags (11 s after)."""
    import losslens

    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": i, f"loss_{i}": 1.0, "loss": 3 - i / 1e4})
                            + "\n" for i in range(2000)))
    frame = losslens.read(path)
    info = frame.runs[0]
    assert len(info.series) == 2001
    assert info.roles is info.roles  # built once
    one = frame.series(info.run, "loss_7")
    assert (one.step.tolist(), one.value.tolist()) == ([7], [1.0])
    whole = frame.series(info.run, "loss")
    assert whole.step.shape[0] == 2000 and whole.value[-1] == pytest.approx(3 - 1999 / 1e4)
    (ra,) = losslens.analyze(frame).runs
    assert ra.info.error is None


def test_a_step_past_int64_is_named_not_called_missing(tmp_path):
    """The line was skipped as `no step key in this line`, though it has one."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 1e999999}\n'
                    '{"step": 99999999999999999999999999, "loss": 1}\n' + _jsonl_text(50))
    res = run_bounded(["series", str(path)])
    assert res.returncode == 0
    assert res.stderr.decode() == (
        "Warning: m.jsonl: 1 line(s) looked like metrics but did not parse (first: line 2: "
        "step 99999999999999999999999999 is not an integer step (64-bit))\n")


def test_a_first_record_longer_than_the_sniffed_head_is_still_json_lines(tmp_path):
    """A W&B-style record of thousands of keys (here 1.2 MB on one line) ran past the 1 MB
    head the formats are sniffed from: `not a log format losslens knows`."""
    keys = [f"layer_{i:04d}/" + "x" * 580 for i in range(2000)]
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 3.0 - s / 10,
                                        **{k: float(s) for k in keys}}) + "\n"
                            for s in range(3)))
    assert path.stat().st_size > 1 << 20
    res = run_bounded(["series", str(path), "-f", "json"])
    assert res.returncode == 0, res.stderr
    assert res.stderr == b""
    (run,) = json.loads(res.stdout)["runs"]
    assert run["format"] == "jsonl" and len(run["series"]) == 2001
