"""Hand-written training scripts' log shapes that losslens once could not read (the blind7
set's unreadable logs): JSON lines with a run record first and last (`{"_meta": ...}`,
`{"event": "config", ...}`), JSON lines with train and test rows per step told apart by a
field (`"split": "train"`), a metrics.json whose lists sit under `history` with a step list of
their own per length (`eval_epochs`, `fourier_epochs`), and logging epoch lines that carry a
global batch counter. Each fixture is written the way the script writes it; the real logs
(benchmarks/real/cache, not in the repository) are pinned with exact counts and skipped when
absent."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

import losslens
from losslens.readers import read_records, sniff

CACHE = Path(__file__).resolve().parent.parent / "benchmarks" / "real" / "cache"


def _series(path):
    (rec,) = read_records(path)
    out = {}
    for i, tag in enumerate(rec.tags):
        sel = rec.tag_code == i
        out[tag] = (rec.step[sel].tolist(), rec.value[sel].tolist())
    return rec, out


def _roles(path):
    frame = losslens.read(path)
    (run,) = frame.runs
    return run, {s.tag: (s.role, s.points, s.first_step, s.last_step) for s in run.series}


# --- JSON lines with run records around the rows -------------------------------------------

def _meta_jsonl(path: Path, steps: int = 40, every: int = 25) -> None:
    """A grokking sweep's writer: `_meta` (the config) first, one row per evaluation, and a
    `_summary` (the config plus results) last; `cos_mem` is null until memorisation."""
    cfg = {"p": 97, "optimizer": "adamw", "lr": 0.001, "steps": steps * every, "seed": 2,
           "device": "cuda", "mech": True}
    with open(path, "w") as fh:
        fh.write(json.dumps({"_meta": cfg}) + "\n")
        for i in range(steps):
            row = {"step": i * every, "train_loss": 4.6 / (1 + i), "train_acc": min(1.0, 0.1 * i),
                   "test_loss": 4.6 - 0.05 * i, "test_acc": 0.01 * i,
                   "cos_mem": None if i < 4 else 0.5 + 0.01 * i}
            fh.write(json.dumps(row) + "\n")
        fh.write(json.dumps({"_summary": {**cfg, "grok_step": 900, "stopped_step":
                                          (steps - 1) * every}}) + "\n")


def test_meta_and_summary_records_are_set_aside_and_kept(tmp_path):
    path = tmp_path / "adamw_sc1.0_wd0.0_s2.jsonl"
    _meta_jsonl(path)
    assert sniff(path).name == "jsonl"
    rec, series = _series(path)
    assert rec.skipped_count == 0
    assert set(series) == {"train_loss", "train_acc", "test_loss", "test_acc", "cos_mem"}
    assert series["train_loss"][0] == [i * 25 for i in range(40)]
    assert series["cos_mem"][0][0] == 100 and len(series["cos_mem"][0]) == 36
    (warning,) = rec.warnings
    assert "line 1 (`_meta`), line 42 (`_summary`)" in warning and "run_records" in warning
    first, last = rec.metadata.extra["run_records"].split("\n")
    assert json.loads(first)["_meta"]["lr"] == 0.001
    assert json.loads(last)["_summary"]["grok_step"] == 900
    run, roles = _roles(path)
    assert roles["train_loss"] == ("train_loss", 40, 0, 975)
    assert roles["test_loss"] == ("val_loss", 40, 0, 975)


def test_event_config_first_and_done_last(tmp_path):
    """An RL distillation script: `{"event": "config", ...}`, then `{"event": "step", "step":
    i, "train/loss": ...}` rows, then `{"event": "done", "num_steps": N}`."""
    path = tmp_path / "train_log.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"event": "config", "lr": 1e-06, "num_steps": 12, "seed": 42,
                             "wandb_run_name": "opd-v3"}) + "\n")
        for i in range(12):
            fh.write(json.dumps({"event": "step", "step": i, "train/loss": -0.02 + 0.001 * i,
                                 "train/lr": 1e-07 * min(i + 1, 10),
                                 "train/grad_norm": 0.15}) + "\n")
        fh.write(json.dumps({"event": "done", "num_steps": 12}) + "\n")
    assert sniff(path).name == "jsonl"
    rec, series = _series(path)
    assert rec.skipped_count == 0 and set(series) == {"train/loss", "train/lr",
                                                      "train/grad_norm"}
    assert series["train/loss"][0] == list(range(12))
    assert "line 1 (`event=config`), line 14 (`event=done`)" in rec.warnings[0]
    assert "rows_split_by" not in rec.metadata.extra  # one `event` value on the rows: no split
    assert json.loads(rec.metadata.extra["run_records"].split("\n")[0])["num_steps"] == 12


def test_a_stepless_record_between_rows_is_still_a_skipped_line(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.9}, {"note": "eval", "x": 3},
             {"step": 3, "loss": 1.8}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    rec, series = _series(path)
    assert series["loss"][0] == [1, 2, 3] and "x" not in series
    assert rec.skipped_count == 1 and rec.skipped[0].line == 3
    assert "run_records" not in rec.metadata.extra


def test_a_file_of_stepless_records_only_is_not_set_aside(tmp_path):
    path = tmp_path / "config.jsonl"
    path.write_text('{"_meta": {"lr": 0.1}}\n{"_summary": {"acc": 0.9}}\n')
    assert sniff(path) is None or sniff(path).name != "jsonl"


# --- JSON lines with train and test rows per step ------------------------------------------

def _split_jsonl(path: Path, steps: int = 30, field: str = "split",
                 names: tuple[str, str] = ("train", "test")) -> None:
    """A grokking reproduction's writer: at each evaluation one row per split, the same keys;
    the learning rate and weight decay are the run's, equal in both rows."""
    with open(path, "w") as fh:
        for i in range(steps):
            for name, loss in zip(names, (4.7 / (1 + i), 4.7 + 0.01 * i)):
                fh.write(json.dumps({"step": 500 * i, field: name, "loss": loss,
                                     "acc": 1.0 if name == names[0] else 0.01,
                                     "lr": 0.001 * min(1.0, (i + 1) / 5),
                                     "weight_decay": 0.001, "time_sec": 14.5 * i + (
                                         0.0 if name == names[0] else 0.001)}) + "\n")


def test_rows_per_split_become_train_and_test_tags(tmp_path):
    path = tmp_path / "metrics.jsonl"
    _split_jsonl(path)
    rec, series = _series(path)
    assert set(series) == {"train/loss", "test/loss", "train/acc", "test/acc", "lr",
                           "weight_decay", "train/time_sec", "test/time_sec"}
    assert series["train/loss"][0] == [500 * i for i in range(30)]
    assert series["train/loss"][1][3] == pytest.approx(4.7 / 4)
    assert series["test/loss"][1][3] == pytest.approx(4.73)
    assert len(series["lr"][0]) == 30  # one point a step, not two
    assert rec.metadata.extra["rows_split_by"] == "split" and not rec.warnings
    run, roles = _roles(path)
    assert roles["train/loss"] == ("train_loss", 30, 0, 14500)
    assert roles["test/loss"] == ("val_loss", 30, 0, 14500)
    assert roles["test/acc"][0] == "val_acc" and roles["lr"][0] == "lr"
    assert len(run.segments) == 1


def test_a_mode_field_with_other_names_splits_too(tmp_path):
    path = tmp_path / "log.jsonl"
    _split_jsonl(path, field="phase", names=("train", "val"))
    _, roles = _roles(path)
    assert roles["train/loss"][:2] == ("train_loss", 30)
    assert roles["val/loss"][:2] == ("val_loss", 30)


def test_a_text_field_that_does_not_share_steps_splits_nothing(tmp_path):
    """`"phase": "warmup"` then `"phase": "main"` on rows with distinct steps: a label, not
    a partition; the tags keep their names."""
    path = tmp_path / "log.jsonl"
    with open(path, "w") as fh:
        for i in range(20):
            fh.write(json.dumps({"step": i, "phase": "warmup" if i < 5 else "main",
                                 "loss": 3.0 - 0.1 * i}) + "\n")
    rec, series = _series(path)
    assert set(series) == {"loss"} and len(series["loss"][0]) == 20
    assert "rows_split_by" not in rec.metadata.extra


def test_train_and_eval_rows_with_disjoint_keys_keep_their_names(tmp_path):
    """`{"split": "train", "loss"}` and `{"split": "eval", "eval_loss"}` at one step: no key
    is logged under both values, so nothing is renamed."""
    path = tmp_path / "log.jsonl"
    with open(path, "w") as fh:
        for i in range(10):
            fh.write(json.dumps({"step": i, "split": "train", "loss": 2.0 - 0.1 * i}) + "\n")
            fh.write(json.dumps({"step": i, "split": "eval", "eval_loss": 2.1 - 0.1 * i}) + "\n")
    rec, series = _series(path)
    assert set(series) == {"loss", "eval_loss"}
    assert "rows_split_by" not in rec.metadata.extra


# --- metrics.json with a `history` object ----------------------------------------------------

def test_history_object_beside_final_scalars_with_its_own_step_lists(tmp_path):
    """A grokking sweep's `json.dump(results, f, indent=2)`: per-evaluation lists with their
    `eval_epochs`, a slower analysis with its `fourier_epochs`, final scalars and lists."""
    evals, fourier = list(range(0, 2001, 50)), list(range(0, 2001, 200))
    results = {"history": {
        "train_loss": [4.7 / (1 + i) for i in range(len(evals))],
        "test_loss": [4.7 + 0.01 * i for i in range(len(evals))],
        "train_acc": [min(1.0, 0.1 * i) for i in range(len(evals))],
        "eval_epochs": [float(e) for e in evals],
        "gini": [0.9 - 0.01 * i for i in range(len(fourier))],
        "fourier_epochs": [float(e) for e in fourier]},
        "final_train_loss": 0.01, "final_key_frequencies": [68, 45, 31],
        "total_epochs": 2000}
    path = tmp_path / "metrics.json"
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    assert sniff(path).name == "history-json"
    rec, series = _series(path)
    assert set(series) == {"train_loss", "test_loss", "train_acc", "gini"}
    assert series["train_loss"][0] == evals and series["gini"][0] == fourier
    assert not rec.warnings and rec.skipped_count == 0
    extra = rec.metadata.extra
    assert extra["step_source"] == "eval_epochs"
    assert extra["other_step_sources"] == "fourier_epochs (11 values)"
    assert extra["non_series_keys"] == "final_key_frequencies,final_train_loss,total_epochs"


def test_a_length_without_a_step_list_of_its_own_is_still_not_read(tmp_path):
    path = tmp_path / "history.json"
    path.write_text(json.dumps({"epoch": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.0, 1.0],
                                "val_loss": [3.5, 2.5]}))
    rec, series = _series(path)
    assert set(series) == {"loss"}
    assert any("`val_loss` has 2 values" in w for w in rec.warnings)


def test_a_nested_config_of_lists_is_no_history(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model": {"hidden_sizes": [64, 128], "dropouts": [0.1, 0.2]}}))
    assert sniff(path) is None or sniff(path).name != "history-json"


# --- logging epoch lines with a global batch counter -----------------------------------------

def test_epoch_lines_with_a_global_batch_counter_step_on_the_counter(tmp_path):
    """A T5 fine-tune's `logging.info(f"Epoch {epoch}, Global Batch {global_batch}, Training
    Loss: ..., Validation Loss: ..., Validation Accuracy: ...")` every 5 batches, through
    `logging.basicConfig(format='%(asctime)s - %(levelname)s - %(message)s')`."""
    path = tmp_path / "training.log"
    logger = logging.getLogger("t5-global-batch-test")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        batch = 0
        for epoch in range(1, 4):
            for _ in range(8):
                batch += 5
                logger.info(f"Epoch {epoch}, Global Batch {batch}, Training Loss: "
                            f"{10 / batch:.4f}, Validation Loss: {11 / batch:.4f}, "
                            f"Validation Accuracy: {0.0:.4f}")
                if batch % 10 == 0:
                    logger.info("Checkpoint saved to checkpoints/checkpoint.pth")
            logger.info(f"Epoch {epoch} completed. Average Training Loss: {1 / epoch:.4f}")
    finally:
        logger.removeHandler(handler)
        handler.close()
    rec, series = _series(path)
    assert rec.metadata.extra["step_source"] == "iteration (a counter that never goes back)"
    assert series["Training Loss"][0] == list(range(5, 121, 5))
    assert series["Validation Loss"][1][0] == pytest.approx(2.2)
    assert series["Average Training Loss"][0] == [40, 80, 120]  # at each epoch's last batch
    assert not rec.warnings


# --- the real logs ---------------------------------------------------------------------------

def _real(name: str) -> Path:
    path = CACHE / name
    if not path.exists():
        pytest.skip(f"{name} not in benchmarks/real/cache")
    return path


#: name -> {tag: (role, points, first step, last step)} for the tags pinned, and warnings
REAL = {
    "jsonl-grok-adamw-slingshots-late-generalisation": ({
        "train_loss": ("train_loss", 759, 0, 18950), "test_loss": ("val_loss", 759, 0, 18950),
        "test_acc": ("val_acc", 759, 0, 18950), "cos_mem": ("other", 755, 100, 18950)}, 12, 1),
    "jsonl-grok-sgdm-collapse-then-spike-storm": ({
        "train_loss": ("train_loss", 481, 0, 12000), "test_loss": ("val_loss", 481, 0, 12000)},
        12, 1),
    "jsonl-on-policy-distillation-signed-loss": ({
        "train/loss": ("train_loss", 51, 0, 50), "train/grad_norm": ("grad_norm", 51, 0, 50),
        "train/lr": ("lr", 51, 0, 50)}, 27, 1),
    "jsonl-nanda-repro-split-rows-slow-then-sudden-grok": ({
        "train/loss": ("train_loss", 142, 0, 70500), "test/loss": ("val_loss", 142, 0, 70500),
        "train/acc": ("train_acc", 142, 0, 70500), "test/acc": ("val_acc", 142, 0, 70500),
        "lr": ("lr", 142, 0, 70500)}, 8, 0),
    "json-grok-base-late-grok-two-slingshots": ({
        "train_loss": ("train_loss", 801, 0, 39999), "test_loss": ("val_loss", 801, 0, 39999),
        "test_acc": ("val_acc", 801, 0, 39999), "gini": ("other", 201, 0, 39999)}, 6, 0),
    "json-grok-wd0.01-never-generalises-slingshots": ({
        "train_loss": ("train_loss", 401, 0, 39999), "test_loss": ("val_loss", 401, 0, 39999),
        "gini": ("other", 81, 0, 39999)}, 6, 0),
    "logging-t5-global-batch-resume-spikes": ({
        "Training Loss": ("train_loss", 2255, 5, 11284),
        "Validation Loss": ("val_loss", 2255, 5, 11284),
        "Validation Accuracy": ("val_acc", 2255, 5, 11284),
        "Average Training Loss": ("train_loss", 5, 2335, 9425)}, 4, 0),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_script_logs_read_with_exact_counts(name):
    pinned, tags, warnings = REAL[name]
    run, roles = _roles(_real(name))
    assert len(roles) == tags and len(run.warnings) == warnings and run.skipped_count == 0
    for tag, want in pinned.items():
        assert roles[tag] == want, tag


def test_real_t5_log_has_the_resume_spike_steps():
    frame = losslens.read(_real("logging-t5-global-batch-resume-spikes"))
    s = frame.series(frame.runs[0].run, "Training Loss")
    at = dict(zip(s.step.tolist(), s.value.tolist()))
    assert 7015 in at and 7095 in at and not math.isnan(at[7015])


def test_a_stepless_last_record_with_a_rows_key_is_a_row_that_lost_its_step(tmp_path):
    """`{"loss": 9}` last holds the rows' `loss`: not a run record, a skipped line."""
    path = tmp_path / "log.jsonl"
    path.write_text('{"_meta": {"lr": 0.1}}\n{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.9}\n'
                    '{"loss": 9}\n')
    rec, series = _series(path)
    assert series["loss"][0] == [1, 2]
    assert [(s.line, s.reason) for s in rec.skipped] == [(4, "no integer step in this row")]
    assert rec.metadata.extra["run_records"] == '{"_meta":{"lr":0.1}}'


def test_csv_rows_per_split_become_train_and_valid_tags(tmp_path):
    """The same shape in a CSV: a script appending `{"epoch": e, "split": split, "loss": l,
    **metrics}` rows with pandas (`to_csv(mode="a")`), one per split an epoch."""
    import pandas as pd

    path = tmp_path / "stats.csv"
    for epoch in range(1, 13):
        for split, loss, acc in (("train", 1.0 / epoch, 0.5 + 0.04 * epoch),
                                 ("valid", 1.2 / epoch + 0.01 * epoch, 0.45 + 0.03 * epoch)):
            row = {"epoch": epoch, "split": split, "loss": loss, "accuracy": acc}
            pd.DataFrame([row]).to_csv(path, mode="a", header=not path.exists(), index=False)
    assert sniff(path).name == "csv"
    rec, series = _series(path)
    assert set(series) == {"train/loss", "valid/loss", "train/accuracy", "valid/accuracy"}
    assert series["valid/loss"][0] == list(range(1, 13))
    assert series["valid/loss"][1][0] == pytest.approx(1.21)
    assert rec.metadata.extra["rows_split_by"] == "split"
    _, roles = _roles(path)
    assert roles["train/loss"][0] == "train_loss" and roles["valid/loss"][0] == "val_loss"
