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
