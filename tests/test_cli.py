"""CLI behaviour: exit codes, stdout vs stderr, one-line errors without tracebacks."""
from __future__ import annotations

import json

import pytest

from losslens.cli import app


def test_missing_path_is_a_one_line_error(runner, tmp_path):
    missing = tmp_path / "nope.log"
    result = runner.invoke(app, ["series", str(missing)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"Error: {missing}: no such file or directory\n"


def test_unknown_input_format_lists_known_ones(runner, tmp_path):
    log = tmp_path / "x.log"
    log.write_text("hello\n")
    result = runner.invoke(app, ["series", str(log), "--input-format", "bogus"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown format 'bogus'; known formats: tensorboard, ")
    assert "megatron" in result.stderr and "Traceback" not in result.stderr


def test_prose_file_is_not_a_log(runner, tmp_path):
    prose = tmp_path / "notes.md"
    prose.write_text("# Notes\n\nWe restarted the run twice this week. Loss looked fine.\n")
    result = runner.invoke(app, ["series", str(prose)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {prose}: not a log format losslens knows")
    assert result.stderr.count("\n") == 1


def test_bad_role_override(runner, tmp_path):
    result = runner.invoke(app, ["series", str(tmp_path), "--role", "nonsense"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --role expects ROLE=TAG, got 'nonsense'\n"


def test_empty_folder_has_no_series(runner, tmp_path):
    result = runner.invoke(app, ["series", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {tmp_path}: no metric series found")


def test_formats_lists_the_registry(runner):
    result = runner.invoke(app, ["formats"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    from losslens.readers import FORMATS
    assert names == list(FORMATS)


def test_series_json_on_the_sample(runner):
    from pathlib import Path
    sample = Path(__file__).resolve().parents[1] / "sample_logs" / "nanogpt_clean.log"
    result = runner.invoke(app, ["series", str(sample), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "losslens.analysis/1"
    (run,) = doc["runs"]
    assert run["format"] == "nanogpt" and run["events"] == [] and run["skip_plan"] is None
    roles = {s["tag"]: s["role"] for s in run["series"]}
    assert roles["val loss"] == "val_loss"


def test_folder_walk_reads_only_the_newest_hf_checkpoint(tmp_path):
    import losslens
    for n in (10, 20):
        d = tmp_path / "out" / f"checkpoint-{n}"
        d.mkdir(parents=True)
        hist = [{"loss": 2.0 - i * 0.1, "step": i * 5 + 5} for i in range(n // 5)]
        (d / "trainer_state.json").write_text(json.dumps(
            {"log_history": hist, "global_step": n, "logging_steps": 5}))
    frame = losslens.read(tmp_path / "out")
    assert [r.run for r in frame.runs] == ["checkpoint-20/trainer_state.json"]
    assert frame.series(frame.runs[0].run, "loss").step.tolist() == [5, 10, 15, 20]


def test_read_reports_progress_per_unit(tmp_path):
    import losslens
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n')
    seen = []
    frame = losslens.read(tmp_path, progress=lambda n, d, t: seen.append((n, d, t)))
    assert [r.run for r in frame.runs] == ["a.jsonl", "b.jsonl"]
    assert seen == [(str(tmp_path / "a.jsonl"), 0, 2), (str(tmp_path / "b.jsonl"), 1, 2)]


def test_folder_walk_skips_code_and_weights(tmp_path):
    import losslens
    (tmp_path / "train.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
    (tmp_path / "make_log.py").write_text('print(f"iter {it}: loss {loss:.4f}, time 1ms")\n')
    (tmp_path / "model.pt").write_bytes(b"iter 1: loss 2.0, time 3ms\n")
    seen = []
    losslens.read(tmp_path, progress=lambda n, d, t: seen.append(n))
    assert seen == [str(tmp_path / "train.jsonl")]


@pytest.mark.parametrize("name, text, warning", [
    ("trainer_state.json", '{"log_history": [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.',
     "damaged JSON at line 1; kept the 1 log_history entries before it"),
    ("metrics.csv", "loss,lr\n2.5,0.1\n2.4,0.1\n",
     "no step column; the row number (from 0) is used as the step"),
])
def test_reader_warnings_name_the_file_once(runner, tmp_path, name, text, warning):
    """Reader warnings that already name their file are not prefixed with the run's name
    (`trainer_state.json: /…/trainer_state.json: …` before)."""
    path = tmp_path / name
    path.write_text(text)
    result = runner.invoke(app, ["series", str(path)])
    assert result.exit_code == 0
    assert result.stderr == f"Warning: {path}: {warning}\n"


# --------------------------------------------------------------------------- shared options

SAMPLES = __import__("pathlib").Path(__file__).resolve().parents[1] / "sample_logs"


def test_version_and_short_help(runner):
    from losslens import __version__

    res = runner.invoke(app, ["--version"])
    assert (res.exit_code, res.stdout) == (0, f"losslens {__version__}\n")
    for cmd in ("analyze", "check", "skiplist", "watch", "series", "replay"):
        res = runner.invoke(app, [cmd, "-h"])
        assert res.exit_code == 0 and res.stdout.startswith("Usage: "), cmd
        assert ("-f, --format" in res.stdout or "-f, -t, --format, --target" in res.stdout), cmd
        assert "-o, --output FILE" in res.stdout, cmd
        assert "<str>" not in res.stdout and "<list[str]>" not in res.stdout, cmd


def test_check_writes_its_report_with_output_file(runner, tmp_path):
    out = tmp_path / "check.json"
    res = runner.invoke(app, ["check", str(SAMPLES / "megatron_gpt_spikes.log"), "-f", "json",
                              "-o", str(out)])
    assert res.exit_code == 1 and res.stdout == ""
    assert res.stderr.endswith(f"losslens: wrote {out}\n")
    assert json.loads(out.read_text())["schema"] == "losslens.check/1"


def test_check_output_names_a_file_not_a_format(runner):
    res = runner.invoke(app, ["check", str(SAMPLES / "nanogpt_clean.log"), "--output", "json"])
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == "Error: --output takes a FILE; for the json format use --format json\n"


def test_missing_output_folder_is_an_output_error(runner, tmp_path):
    out = tmp_path / "no" / "such" / "report.md"
    res = runner.invoke(app, ["analyze", str(SAMPLES / "nanogpt_clean.log"), "-f", "markdown",
                              "-o", str(out)])
    assert (res.exit_code, res.stdout) == (2, "")
    assert res.stderr == f"Error: {out}: folder {out.parent} does not exist\n"


@pytest.mark.parametrize("cmd", [["series", "-f", "json"], ["series", "-f", "csv"],
                                 ["analyze", "-f", "markdown"],
                                 ["skiplist", "-f", "json"]])
def test_output_file_holds_what_stdout_would(runner, tmp_path, cmd):
    log = str(SAMPLES / "megatron_gpt_spikes.log")
    shown = runner.invoke(app, [cmd[0], log, *cmd[1:]])
    out = tmp_path / "out.txt"
    written = runner.invoke(app, [cmd[0], log, *cmd[1:], "-o", str(out)])
    assert shown.exit_code == written.exit_code == 0
    assert written.stdout == "" and out.read_text() == shown.stdout != ""


def test_watch_appends_its_event_lines_to_output(runner, tmp_path):
    out = tmp_path / "events.jsonl"
    log = str(SAMPLES / "megatron_gpt_spikes.log")
    shown = runner.invoke(app, ["watch", log, "--once", "-f", "json"])
    written = runner.invoke(app, ["watch", log, "--once", "-f", "json", "-o", str(out)])
    assert shown.exit_code == written.exit_code == 0 and written.stdout == ""
    assert out.read_text() == shown.stdout != ""
