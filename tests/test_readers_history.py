"""Column-oriented JSON histories (`history-json`): Keras' `json.dump(history.history)` and a
script's training_history.json ({"epoch": [...], "train_loss": [...], ...})."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import losslens
from losslens.errors import NoSeriesError, ParseError
from losslens.readers import read_records, sniff


def _keras_history(epochs: int = 5) -> dict:
    """What Keras' History callback holds after `fit(..., validation_data=...)`: one list per
    metric the epoch's logs held, a float an epoch (Keras 3 adds `learning_rate` when the
    optimizer has a schedule)."""
    hist: dict[str, list] = {}
    for e in range(epochs):
        logs = {"accuracy": 0.5 + 0.08 * e, "loss": 1.2 / (e + 1), "val_accuracy": 0.48 + 0.07 * e,
                "val_loss": 1.3 / (e + 1) + 0.01 * e, "learning_rate": 0.001 * 0.9 ** e}
        for k, v in logs.items():
            hist.setdefault(k, []).append(float(v))
    return hist


def _series(path):
    (rec,) = read_records(path)
    out = {}
    for i, tag in enumerate(rec.tags):
        sel = rec.tag_code == i
        out[tag] = (rec.step[sel].tolist(), rec.value[sel].tolist())
    return rec, out


def test_keras_history_json_reads_every_metric_at_its_epoch(tmp_path):
    hist = _keras_history(5)
    path = tmp_path / "history.json"
    with open(path, "w") as fh:
        json.dump(hist, fh)  # what `json.dump(history.history, f)` writes
    assert sniff(path).name == "history-json"
    rec, series = _series(path)
    assert rec.format == "history-json" and rec.skipped_count == 0 and not rec.warnings
    assert set(series) == set(hist)
    for tag, values in hist.items():
        assert series[tag] == ([1, 2, 3, 4, 5], values)
    assert rec.metadata.extra["step_source"] == "position (1 = first)"
    run = losslens.read(path).runs[0]
    assert run.roles == {"loss": "train_loss", "val_loss": "val_loss", "accuracy": "train_acc",
                         "val_accuracy": "val_acc", "learning_rate": "lr"}


def test_script_history_with_an_epoch_list_and_a_summary(tmp_path):
    # the shape of a grokking replication's logs/training_history.json (indent=2), with a
    # summary dict that is not a series
    data = {"epoch": [0, 100, 200, 300], "train_loss": [4.6, 2.0, 0.9, float("nan")],
            "train_acc": [0.01, 0.5, 1.0, 1.0], "test_loss": [4.6, 4.5, 4.4, 0.2],
            "test_acc": [0.01, 0.02, 0.03, 0.99], "generalization_loss": [0.0, 2.5, 3.5, 0.2],
            "grokking_summary": {"train_acc_step": 200, "grokking_detected": True}}
    path = tmp_path / "training_history.json"
    path.write_text(json.dumps(data, indent=2))
    assert "NaN" in path.read_text()
    rec, series = _series(path)
    assert not rec.warnings and rec.skipped_count == 0
    assert set(series) == {"train_loss", "train_acc", "test_loss", "test_acc",
                           "generalization_loss"}
    assert series["test_loss"] == ([0, 100, 200, 300], [4.6, 4.5, 4.4, 0.2])
    assert series["train_loss"][0] == [0, 100, 200, 300]
    assert math.isnan(series["train_loss"][1][3])
    assert rec.metadata.extra == {"step_source": "epoch", "non_series_keys": "grokking_summary"}
    run = losslens.read(path).runs[0]
    assert run.roles == {"train_loss": "train_loss", "train_acc": "train_acc",
                         "test_loss": "val_loss", "test_acc": "val_acc",
                         "generalization_loss": "other"}
    # no warning of any kind for the summary
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losslens.read(path)


def test_unequal_lists_are_named_in_a_warning_and_nulls_are_nan(tmp_path):
    data = {"epoch": [1, 2, 3], "loss": [3.0, None, 1.0], "val_loss": [3.5, 2.5],
            "acc": [0.1, "oops", 0.3], "note": ["a", "b", "c"], "lr": 0.001}
    path = tmp_path / "h.json"
    path.write_text(json.dumps(data))
    rec, series = _series(path)
    assert rec.warnings == (f"{path}: `val_loss` has 2 values, the axis `epoch` 3: not read",)
    assert series["loss"][0] == [1, 2, 3] and math.isnan(series["loss"][1][1])
    assert series["acc"] == ([1, 3], [0.1, 0.3])
    assert rec.skipped_count == 1
    (sk,) = rec.skipped
    assert (sk.line, sk.reason, sk.where, sk.text) == (2, "not a number", "acc[1]", '"oops"')
    assert set(series) == {"loss", "acc"}
    assert rec.metadata.extra["non_series_keys"] == "lr,note"


def test_a_cut_file_keeps_the_lists_before_the_cut(tmp_path):
    text = json.dumps({"loss": [3.0, 2.0, 1.0], "val_loss": [3.1, 2.2, 1.5],
                       "accuracy": [0.1, 0.2, 0.3]}, indent=1)
    path = tmp_path / "history.json"
    path.write_text(text[: text.index("0.2,") + 3])
    rec, series = _series(path)
    assert set(series) == {"loss", "val_loss"}
    assert series["val_loss"] == ([1, 2, 3], [3.1, 2.2, 1.5])
    (w,) = rec.warnings
    assert w.startswith(f"{path}: JSON damaged or cut at byte ") and "(in `accuracy`)" in w
    assert w.endswith("read the 2 key(s) before it")


def test_nested_lists_read_as_parent_child_tags(tmp_path):
    data = {"train": {"loss": [2.0, 1.0]}, "val": {"loss": [2.5, 1.5]}, "meta": {"seed": 1}}
    path = tmp_path / "history.json"
    path.write_text(json.dumps(data))
    rec, series = _series(path)
    assert series == {"train/loss": ([1, 2], [2.0, 1.0]), "val/loss": ([1, 2], [2.5, 1.5])}
    assert rec.metadata.extra["non_series_keys"] == "meta"
    assert losslens.read(path).runs[0].roles == {"train/loss": "train_loss",
                                                 "val/loss": "val_loss"}


def test_a_non_integer_epoch_list_is_a_series_and_positions_are_steps(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"epoch": [0.5, 1.0, 1.5], "loss": [3.0, 2.0, 1.0]}))
    rec, series = _series(path)
    assert series == {"epoch": ([1, 2, 3], [0.5, 1.0, 1.5]), "loss": ([1, 2, 3], [3.0, 2.0, 1.0])}
    assert rec.warnings == (f"{path}: `epoch` is not all whole numbers: steps are positions "
                            "(1 = first) and `epoch` is read as a series",)


@pytest.mark.parametrize("head", [
    '{"log_history": [{"loss": 1.0, "step": 1}]}',  # HF trainer_state.json
    '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n',  # JSON lines
    '{"loss": "high"}', '[1, 2, 3]', '{"config": {"lr": [1, 2]}}', 'loss: [1, 2]',
    '{"hidden_sizes": [64, 128, 256], "dropout": 0.1}',  # a config in a run folder
    '{"' + "k" * 300 + '": [1, 2]}'])
def test_sniff_refuses_what_is_not_a_column_history(tmp_path, head):
    path = tmp_path / "x.json"
    path.write_text(head)
    fmt = sniff(path)
    assert fmt is None or fmt.name != "history-json"


def test_errors_are_one_line(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('{"loss": [1.0, ')
    with pytest.raises(ParseError, match=r"not a JSON object of lists \(.* at byte \d+\)$"):
        read_records(path, format="history-json")
    path.write_text('{"a": ["x", "y"]}')
    with pytest.raises(NoSeriesError, match="no list of numbers"):
        read_records(path, format="history-json")
    path.write_text("[1]")
    with pytest.raises(ParseError, match="expected a JSON object at byte 0"):
        read_records(path, format="history-json")


def test_hostile_inputs_are_bounded(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"loss": [1.0, 2.0], "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    t = time.process_time()
    rec, series = _series(deep)
    assert series == {"loss": ([1, 2], [1.0, 2.0])}
    assert "nested too deeply" in rec.warnings[0]
    long_key = tmp_path / "long.json"
    long_key.write_text('{"' + "a" * 5_000_000 + '": [1.0, 2.0]}')
    assert sniff(long_key) is None or sniff(long_key).name != "history-json"
    big = tmp_path / "big.json"
    n = 1_000_000
    big.write_text(json.dumps({"loss": np.linspace(3, 1, n).tolist(), "lr": [1e-3] * n}))
    rec, series = _series(big)
    assert len(series["loss"][0]) == n and series["loss"][0][-1] == n
    assert time.process_time() - t < 20


def test_cli_analyze_reads_a_history(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps(_keras_history(8)))
    out = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(path), "--format",
                          "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (run,) = doc["runs"]
    assert run["format"] == "history-json"
    assert {s["tag"]: (s["role"], s["points"], s["first_step"], s["last_step"])
            for s in run["series"]}["val_loss"] == ("val_loss", 8, 1, 8)


def test_a_config_beside_a_history_in_a_folder_is_not_a_run(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_sizes": [64, 128], "seed": 1}))
    (tmp_path / "metrics.json").write_text(json.dumps({"epoch": [1, 2], "val_loss": [2.0, 1.5]}))
    recs = read_records(tmp_path)
    assert [(r.format, r.tags) for r in recs] == [("history-json", ("val_loss",))]
