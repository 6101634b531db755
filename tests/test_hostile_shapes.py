"""Hostile shapes found by attacking every reader (session 12): a JSON-lines file whose first
line is cut or damaged, a UTF-16 file named `.csv`, integers past 2**53, and heads and lines
of whitespace that made a regular expression quadratic or worse.

Each test failed before its fix (what it did then is in its docstring) and pins the exact
outcome now. Companions: test_hostile.py, test_hardening.py, test_fuzz.py.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from losslens.readers import FORMATS, _fn, read_records
from losslens.readers.textutil import colon_pairs

ROWS = "".join(json.dumps({"step": s, "loss": 3.0 - s / 100}) + "\n" for s in range(1, 200))


def _points(path: Path) -> dict[str, tuple[list[int], list[float]]]:
    (rec,) = read_records(path)
    out = {}
    for code, tag in enumerate(rec.tags):
        sel = rec.tag_code == code
        out[tag] = (rec.step[sel].tolist(), rec.value[sel].tolist())
    return out


# --------------------------------------------------------------------------- JSON lines

@pytest.mark.parametrize("first", [
    'ss": 2.97}',                                    # kept by `tail -c`: the end of a row
    '{"step": 0, "loss": ',                          # cut while written
    '{"step": 0, "lo\x00s": 3.0',                    # a damaged byte, no closing brace
    '{"cfg": ' + '{"a": ' * 990 + "1" + "}" * 991,   # a run record nested past json's depth
], ids=["tail-c", "cut", "damaged", "deep"])
def test_a_jsonl_file_whose_first_line_is_cut_or_damaged_is_read(tmp_path, first):
    """The sniff parsed only the first line: any damage there made the whole file `not a log
    format losslens knows`, though 199 rows followed. Now the rows are read and the first
    line is a skipped line."""
    path = tmp_path / "metrics.jsonl"
    path.write_text(first + "\n" + ROWS)
    (rec,) = read_records(path)
    assert rec.format == "jsonl" and rec.tags == ("loss",)
    assert rec.step.tolist() == list(range(1, 200))
    assert [s.line for s in rec.skipped] == [1]


def test_a_first_line_that_is_no_json_and_no_rows_after_it_is_still_no_jsonl(tmp_path):
    """The damaged-first-line rule needs two rows with a step after it: a text log with one
    JSON line is not JSON lines."""
    path = tmp_path / "notes.txt"
    path.write_text("hello there\n" + json.dumps({"step": 1, "loss": 2.0}) + "\nbye\n")
    assert _fn(FORMATS["jsonl"], "sniff")(path.name, path.read_bytes()) == 0.0


# --------------------------------------------------------------------------- encodings

def test_a_utf16_log_named_csv_is_named_as_utf16(tmp_path, runner):
    """A `.csv` is sniffed as CSV by its name, so a UTF-16 one (PowerShell's `>`) was read as
    CSV and said `no metric series found`; the UTF-16 message came only for names no reader
    claims."""
    from losslens.cli import app

    text = "step,loss\n" + "".join(f"{i},{1 + i % 5 / 10}\n" for i in range(50))
    path = tmp_path / "metrics.csv"
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    res = runner.invoke(app, ["series", str(path)])
    assert res.exit_code == 2
    assert res.stderr == (f"Error: {path}: UTF-16LE text (byte-order mark FF FE); losslens reads "
                          "UTF-8 logs: convert it first, e.g. iconv -f UTF-16LE -t UTF-8\n")


# --------------------------------------------------------------------------- numbers

@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_integers_past_2_53_are_read_as_the_nearest_float(tmp_path, suffix):
    """pyarrow refused to cast an int64 column past 2**53 to float64 (`ArrowInvalid: Integer
    value ... not in range`): a FLOP or token counter, or a time in nanoseconds, in a JSONL or
    CSV log was `internal error`."""
    steps = [i * 10 ** 16 for i in range(1, 31)]
    ns = [1_733_600_000_123_456_789 + i for i in range(30)]
    path = tmp_path / f"m{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps({"step": s, "loss": 2.0 + i % 3, "time_ns": t})
                                + "\n" for i, (s, t) in enumerate(zip(steps, ns))))
    else:
        path.write_text("step,loss,time_ns\n" + "".join(
            f"{s},{2.0 + i % 3},{t}\n" for i, (s, t) in enumerate(zip(steps, ns))))
    pts = _points(path)
    assert pts["loss"] == (steps, [2.0 + i % 3 for i in range(30)])
    assert pts["time_ns"][1] == [float(t) for t in ns]


# --------------------------------------------------------------------------- time

@pytest.mark.parametrize("unit", ["\n", " \t\n"])
def test_every_sniff_of_a_megabyte_of_blank_lines_is_linear(unit, cpu_pace):
    """The head every format sniffs is up to 1 MiB. Megatron's validation-line sniff and
    DeepSpeed's PPO sniff began `(?m)^\\s*`: from every line start `\\s*` ran across all the
    blank lines after it (10,000 blank lines: 8 s; a megabyte: hours). A log whose first
    megabyte is blank lines (or a file of them) hung the read."""
    head = unit.encode() * ((1 << 20) // len(unit))
    for fmt in FORMATS.values():
        t0 = time.process_time()
        _fn(fmt, "sniff")("train.log", head)
        assert time.process_time() - t0 < 10 * cpu_pace, fmt.name


def test_a_deepspeed_pipeline_line_of_spaces_is_read_in_linear_time(tmp_path, cpu_pace):
    """`steps: N` lines were split into pairs with `\\s*(.+?): (\\S+)`, cubic on a run of
    spaces: one line of 4,000 spaces took ten minutes. Now pairs are found from their `: `."""
    path = tmp_path / "train.log"
    lines = [f"steps: {s} loss: {3 - s / 100:.4f} iter time (s): 0.51 samples/sec: 31.2"
             for s in range(1, 60)]
    lines[30] = "steps: 31 " + " " * 100_000
    path.write_text("\n".join(lines) + "\n")
    t0 = time.process_time()
    (rec,) = read_records(path)
    assert time.process_time() - t0 < 10 * cpu_pace
    assert rec.format == "deepspeed"
    loss = rec.step[rec.tag_code == rec.tags.index("loss")].tolist()
    assert loss == [s for s in range(1, 60) if s != 31]
    assert [s.line for s in rec.skipped] == [31]


def test_colon_pairs_reads_deepspeed_lines_as_before():
    """The pairs of the lines DeepSpeed prints, as the regex gave them (keys stripped); an
    empty key (`: x` at the start) is no pair, and a line of spaces none."""
    assert colon_pairs("loss: 2.3456 iter time (s): 1.234 samples/sec: 51.9") == [
        ("loss", "2.3456"), ("iter time (s)", "1.234"), ("samples/sec", "51.9")]
    assert colon_pairs("  loss: nan  lr: 1e-4") == [("loss", "nan"), ("lr", "1e-4")]
    assert colon_pairs(": 5 loss: 1") == [("loss", "1")]
    assert colon_pairs(" " * 10) == []


def test_a_deepspeed_chat_key_padded_with_spaces_is_read_in_linear_time(cpu_pace):
    """DeepSpeed-Chat evaluation keys lost their `(higher is better)` through
    `\\s*\\((?:higher|lower) is better\\)\\s*$`, quadratic in a run of spaces (20,000: 5 s)."""
    from losslens.readers.deepspeed import DeepSpeedLines

    t0 = time.process_time()
    pairs = DeepSpeedLines._chat_pairs("chosen_last_scores (higher is better) : 1.5, acc"
                                       + " " * 50_000 + ": 0.5")
    assert time.process_time() - t0 < 10 * cpu_pace
    assert pairs == [("eval/chosen_last_scores", 1.5), ("eval/acc", 0.5)]
    assert np.isfinite([v for _, v in pairs]).all()


def test_an_epoch_line_padded_with_spaces_is_read_in_linear_time(tmp_path, cpu_pace):
    """The iteration after `Epoch N` was matched with `[\\s,|:;-]*[\\[(]?\\s*...` (two `\\s*`
    side by side around optional signs, twice): cubic in a run of spaces, 4,000 took 7 s and
    the 50,000 here hours."""
    path = tmp_path / "train.log"
    lines = [f"Epoch [{e}/20], Train Loss: {2 - e / 20:.4f}, Val Loss: {2.1 - e / 25:.4f}"
             for e in range(1, 21)]
    lines[9] = "Epoch [10/20]," + " " * 50_000 + f"Train Loss: {2 - 10 / 20:.4f}"
    path.write_text("\n".join(lines) + "\n")
    t0 = time.process_time()
    pts = _points(path)
    assert time.process_time() - t0 < 10 * cpu_pace
    assert pts["Train Loss"][0] == list(range(1, 21))
    assert pts["Val Loss"][0] == [e for e in range(1, 21) if e != 10]


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize("show", ["terminal", "line", "html", "markdown", "github_message",
                                  "csv_cell"])
def test_the_arabic_letter_mark_is_shown_as_an_escape_like_the_other_bidi_marks(show):
    """U+061C (ALM) is a bidi control like LRM/RLM (U+200E/F, already escaped): Trojan-Source
    style reordering of a run name. It reached every output as is."""
    import losslens.textsafe as textsafe

    out = getattr(textsafe, show)("run\u061cname")
    assert "\u061c" not in out and "\\u061c" in out


# --------------------------------------------------------------------------- replay

@pytest.mark.parametrize("body, code", [
    ("import sys\nsys.exit(1)\n", "1"),
    ("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n", "2"),
])
def test_a_replay_plugin_that_exits_while_imported_is_a_one_line_error(tmp_path, runner, body,
                                                                       code):
    """A training script given as the plug-in runs at import: its `sys.exit(1)` ended losslens
    with exit 1 (`findings`) and no word; argparse's exit 2 printed its own usage. SystemExit
    is no Exception, so the import's error boundary let it through."""
    from losslens.cli import app

    plugin = tmp_path / "train.py"
    plugin.write_text(body)
    log = Path(__file__).resolve().parents[1] / "sample_logs" / "megatron_gpt_spikes.log"
    res = runner.invoke(app, ["replay", str(log), "-p", str(plugin), "--device", "cpu"])
    assert res.exit_code == 2
    assert res.stderr.splitlines()[-1] == (
        f"Error: plugin {plugin}: import failed: it exited (sys.exit({code})) while imported: a "
        "plug-in must not run its script at import (see docs/replay.md)")


def test_a_replay_hook_that_calls_sys_exit_is_a_plugin_error():
    """A hook's `sys.exit(1)` (a get_batch that gives up) passed the hook's error boundary and
    ended losslens with exit 1, `findings`."""
    import types

    from losslens.replay.plugin import Plugin, PluginError

    module = types.ModuleType("p")
    module.get_batch = lambda step: __import__("sys").exit(1)
    with pytest.raises(PluginError) as exc:
        Plugin("p.py", module).call("get_batch", 7)
    assert str(exc.value) == "plugin p.py: get_batch(7) raised SystemExit: 1"


def test_a_maxtext_step_line_padded_with_spaces_is_read_in_linear_time(cpu_pace):
    """MaxText's pairs were `\\s*([^,:=]+?): ...`: a key that may begin with spaces after
    `\\s*` tried every split of a run of spaces (1,000: 14 s; the 20,000 here: hours)."""
    from losslens.readers.maxtext import _TRAIN_PAIR, _pairs

    t0 = time.process_time()
    assert _pairs("loss: 2.0," + " " * 20_000 + "no pair", _TRAIN_PAIR) is None
    assert time.process_time() - t0 < 10 * cpu_pace
    assert _pairs("loss: 2.0," + " " * 20_000 + "perplexity: 7.4", _TRAIN_PAIR) == [
        ("loss", "2.0"), ("perplexity", "7.4")]


# --------------------------------------------------------------------------- detectors

def test_a_short_quantised_loss_whose_noise_scale_is_zero_is_analysed(tmp_path, runner):
    """Eleven values of one decimal with a repeat at the start (0.6, 0.6, 4.2 ...): a spike
    was recorded over a noise scale of 0 and its z divided by it, so `analyze` said `could not
    be analysed (internal error: ZeroDivisionError)`, exit 2, on a readable log (found by
    fuzzing short series, session 12). The z is now +-inf there (0 for no excess)."""
    from losslens.cli import app
    from losslens.detectors.spike import SpikeDetector

    values = [0.6, 0.6, 4.2, 0.3, 2.0, 5.4, 1.0, 0.6, 2.2, 0.5, 4.4]
    got = SpikeDetector().find(np.arange(11) * 10, np.array(values))
    assert [(s["start"], s["end"], s["recovery"]) for s in got] == [
        (20, 70, "fast"), (80, 90, "fast"), (100, None, None)]
    assert [s["details"]["scale"] for s in got] == [0.05, 0.0, 0.0]
    assert [s["details"]["z"] for s in got][1:] == [np.inf, np.inf]
    path = tmp_path / "short.csv"
    path.write_text("step,loss\n" + "".join(f"{i * 10},{v}\n" for i, v in enumerate(values)))
    res = runner.invoke(app, ["analyze", str(path), "-f", "json"])
    assert res.exit_code == 0, res.output
    assert "internal error" not in res.output
