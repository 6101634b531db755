"""fairseq2: LogMetricRecorder lines, written from fairseq2/metrics/recorder.py's formatters."""
from __future__ import annotations

import losslens
from losslens.readers import read_records, sniff

PREFIX = "[Rank 0] 2024-05-01 10:00:00,123 INFO fairseq2.recipes.trainer - "


def test_fairseq2_metric_lines(tmp_path):
    lines = ["[Rank 0] 2024-05-01 09:59:00,000 INFO fairseq2.recipes - Training started."]
    for s in range(10, 51, 10):
        lines.append(PREFIX + f"Train Metrics (step {s}) - Loss: {3 - s / 100:.3f} | Learning "
                     f"Rate: 0.0003 | Batch Size: 1,024 | Elements per Second: 12,345 | "
                     f"Elapsed Time: {s // 10}s | Wall Time: 1,2{s}s")
        if s % 20 == 0:
            lines.append(PREFIX + f"Valid Metrics (step {s}) - Loss: {3.1 - s / 100:.3f} | "
                         "Elapsed Time: <1")
    path = tmp_path / "train.log"
    path.write_text("\n".join(lines) + "\n" + PREFIX + "Train Metrics (step 60) - Loss: 2.")
    assert sniff(path).name == "fairseq2"
    (rec,) = read_records(path)

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    assert series("Train/Loss") == ([10, 20, 30, 40, 50], [2.9, 2.8, 2.7, 2.6, 2.5])
    assert series("Valid/Loss") == ([20, 40], [2.9, 2.7])
    assert series("Train/Batch Size")[1] == [1024.0] * 5
    assert series("Train/Wall Time")[1] == [1210.0, 1220.0, 1230.0, 1240.0, 1250.0]
    assert rec.metadata.extra == {"below_one_values": "2"}
    assert [(s.line, s.reason) for s in rec.skipped] == [(9, "truncated last line")]
    roles = losslens.read(path).runs[0].roles
    assert (roles["Train/Loss"], roles["Valid/Loss"], roles["Train/Learning Rate"],
            roles["Train/Elapsed Time"]) == ("train_loss", "val_loss", "lr", "other")


def rich_log(path, records, width=80):
    """Lines written the way fairseq2's `configure_logging()` writes them by default: rich's
    RichHandler (show_path=False, keywords=[]) on a Console that is not a terminal, formatter
    "%(name)s - %(message)s", and LogMetricRecorder's `log.info("{} - {}", m, s)`."""
    import logging

    from rich.console import Console
    from rich.logging import RichHandler

    with open(path, "w") as fh:
        console = Console(file=fh, highlight=False, width=width)
        handler = RichHandler(console=console, show_path=False, keywords=[])
        handler.setFormatter(logging.Formatter("%(name)s - %(message)s", "%Y-%m-%d %H:%M:%S"))
        log = logging.getLogger("fairseq2")
        saved = log.handlers, log.propagate, log.level
        log.handlers, log.propagate = [handler], False
        log.setLevel(logging.INFO)
        try:
            log.info("Running training on 8 device(s).")
            for m, s in records:
                log.info(m) if s is None else log.info("%s - %s", m, s)
        finally:
            log.handlers, log.propagate, log.level = saved


def test_fairseq2_rich_wrapped_records(tmp_path):
    records = []
    for step in range(10, 61, 10):
        records.append((f"Train Metrics (step {step})",
                        f"Loss: {3 - step / 100:.3f} | Nll Loss: {2.9 - step / 100:.3f} | "
                        f"Learning Rate: 0.0003 | Gradient Norm: 0.87 | Batch Size: 1,024 | "
                        f"Elapsed Time: {step // 10}s | Wall Time: 1,2{step}s"))
        if step % 30 == 0:
            records.append((f"Validation Metrics (step {step}) - librispeech",
                            f"Loss: {3.1 - step / 100:.3f} | Elapsed Time: <1"))
            records.append((f"Checkpoint at step {step} saved.", None))  # trainer.py
    path = tmp_path / "train.log"
    rich_log(path, records)
    text = path.read_text()
    assert "\n                             Norm: 0.87" in text  # rich did wrap the records
    assert sniff(path).name == "fairseq2"
    (rec,) = read_records(path)

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    steps = [10, 20, 30, 40, 50, 60]
    assert series("Train/Loss") == (steps, [2.9, 2.8, 2.7, 2.6, 2.5, 2.4])
    assert series("Train/Gradient Norm") == (steps, [0.87] * 6)
    assert series("Train/Wall Time")[1] == [1210.0, 1220.0, 1230.0, 1240.0, 1250.0, 1260.0]
    assert series("Validation/librispeech/Loss") == ([30, 60], [2.8, 2.5])
    assert len(rec.tags) == 8 and rec.skipped_count == 0
    assert rec.metadata.extra == {"below_one_values": "2"}
    assert rec.metadata.checkpoints == (30, 60)
    # each point's order is the line its value is on
    lines = text.split("\n")
    sel = rec.tag_code == rec.tags.index("Train/Wall Time")
    assert all("1,2" in lines[o - 1] for o in rec.order[sel])
    roles = losslens.read(path).runs[0].roles
    assert (roles["Train/Loss"], roles["Validation/librispeech/Loss"],
            roles["Train/Gradient Norm"]) == ("train_loss", "val_loss", "grad_norm")
    # the unwrapped form (fairseq2 --no-rich: StreamHandler) reads the same points
    flat = tmp_path / "flat.log"
    flat.write_text("".join(f"2024-05-01 10:00:00 INFO: fairseq2 - {m} - {s}\n"
                            for m, s in records if s is not None))
    (rec2,) = read_records(flat)
    for tag in rec.tags:
        sel1, sel2 = rec.tag_code == rec.tags.index(tag), rec2.tag_code == rec2.tags.index(tag)
        assert rec.value[sel1].tolist() == rec2.value[sel2].tolist(), tag


def test_fairseq2_wrapped_records_followed_in_batches(tmp_path):
    from follow_check import follow_in_pieces

    path = tmp_path / "src.log"
    rich_log(path, [(f"Train Metrics (step {s})", f"Loss: {3 - s / 1000:.4f} | Learning Rate: "
                     f"0.0003 | Gradient Norm: 0.87 | Batch Size: 1,024 | Elapsed Time: 12s")
                    for s in range(1, 200)])
    data = path.read_bytes()
    dst = tmp_path / "run.log"
    st = follow_in_pieces(dst, data, "fairseq2", seed=3)
    frame = losslens.read(dst)
    assert frame.runs[0].skipped_count == 0
    for tag, s in st.series.items():
        ref = frame.series(frame.runs[0].run, tag)
        assert list(s.step[:s.n]) == list(ref.step) and len(ref.step) == 199, tag
        assert list(s.value[:s.n]) == list(ref.value), tag


def test_a_long_word_line_reads_in_linear_time(tmp_path):
    """`(\\w+) Metrics` tried at every position of a 2 MB word backtracked quadratically."""
    import time

    path = tmp_path / "f2.log"
    path.write_text("x - Train Metrics (step 1) - Loss: 2.5\n" + "a" * 2_000_000 + "\n"
                    + "x - Train Metrics (step 2) - Loss: 2.4\n")
    start = time.process_time()
    (rec,) = read_records(path, format="fairseq2")
    assert time.process_time() - start < 2
    assert rec.step.tolist() == [1, 2] and rec.skipped_count == 0


# ---- fairseq2's formatters (fairseq2/metrics/formatters.py), as the recorders call them


def _as_int(v, postfix=""):
    i = int(v)
    return ("<1" if i == 0 and isinstance(v, float) else f"{i:,}") + postfix


def _as_float(v):
    return f"{float(v):g}"


def _as_percentage(v):
    import math
    return f"{math.ceil(float(v) * 100)}%"


def _as_byte_size(v):
    import math
    size, unit = float(v), 0
    if not math.isfinite(size) or size <= 0.0:
        return "0 B"
    while size >= 1024:
        size /= 1024
        unit += 1
    return f"{size:.2f} {['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'][unit]}"


def _v04_record(category, step, values):
    """LogMetricRecorder.record_metrics of fairseq2 0.3 / 0.4: the title is `capwords(run)`,
    values `display name: formatted`, joined by ` | `, `N/A` when there are none."""
    from string import capwords
    s = " | ".join(f"{name}: {fmt(v)}" for name, fmt, v in values) or "N/A"
    return f"{capwords(category)} Metrics (step {step}) - {s}"


def test_fairseq2_0_4_titles_hold_the_whole_category(tmp_path):
    """0.3 / 0.4 print a named validation unit as `Valid/<unit> Metrics (step N)` (the
    category through capwords); its loss is a validation loss under the whole title, not a
    train loss under the unit's last word."""
    prefix = "[Rank 0] 2025-01-10 10:00:00,000 INFO fairseq2.recipes.trainer - "
    lines = []
    for s in (100, 200):
        lines.append(prefix + _v04_record("train", s, [
            ("Loss", _as_float, 2.5 - s / 1000), ("Gradient Norm", _as_float, 0.5),
            ("Elapsed Time", lambda v: _as_int(v, "s"), 12.0),
            ("Peak Active Device Memory", _as_byte_size, 13_250_000_000 + s),
            ("Peak Active Device Memory (%)", _as_percentage, 0.1612),
            ("Padding Ratio (%)", _as_percentage, 0.0),
            ("Learning Rate", _as_float, 3e-4)]))
        lines.append(prefix + _v04_record("valid/dev clean", s, [
            ("Loss", _as_float, 2.6 - s / 1000), ("Word Error Rate (WER)", _as_float, 12.5)]))
        lines.append(prefix + _v04_record("valid/loss/eng_Latn-fra_Latn", s, [
            ("Loss", _as_float, 2.7 - s / 1000)]))
        lines.append(prefix + _v04_record("valid/empty", s, []))
    path = tmp_path / "rank_0.log"
    path.write_text("\n".join(lines) + "\n")
    assert "Valid/dev Clean Metrics (step 100) - Loss: 2.5 |" in path.read_text()
    assert "Valid/empty Metrics (step 200) - N/A" in path.read_text()
    (rec,) = read_records(path)
    assert rec.format == "fairseq2" and rec.skipped_count == 0

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    assert series("Train/Loss") == ([100, 200], [2.4, 2.3])
    assert series("Valid/dev Clean/Loss") == ([100, 200], [2.5, 2.4])
    assert series("Valid/dev Clean/Word Error Rate (WER)") == ([100, 200], [12.5, 12.5])
    assert series("Valid/loss/eng_latn-fra_latn/Loss") == ([100, 200], [2.6, 2.5])
    # byte sizes in bytes (fairseq2 prints two decimals of GiB), percentages as printed
    assert series("Train/Peak Active Device Memory")[1] == [12.34 * 2 ** 30] * 2
    assert series("Train/Peak Active Device Memory (%)")[1] == [17.0, 17.0]
    assert series("Train/Padding Ratio (%)")[1] == [0.0, 0.0]
    assert len(rec.tags) == 10
    roles = losslens.read(path).runs[0].roles
    assert {t: r for t, r in roles.items() if r in ("train_loss", "val_loss")} == {
        "Train/Loss": "train_loss", "Valid/dev Clean/Loss": "val_loss",
        "Valid/loss/eng_latn-fra_latn/Loss": "val_loss"}


def test_titles_are_found_in_linear_time(tmp_path):
    """The title may hold spaces and `/`: it is only tried at a line's start and after a ` - `,
    for at most 128 characters, so lines of many short words stay linear."""
    import time

    path = tmp_path / "f2.log"
    path.write_text("x - Train Metrics (step 1) - Loss: 2.5\n" + "A " * 1_000_000 + "\n"
                    + " - A" * 500_000 + "\n" + "x - Train Metrics (step 2) - Loss: 2.4\n")
    start = time.process_time()
    (rec,) = read_records(path, format="fairseq2")
    assert time.process_time() - start < 2
    assert rec.step.tolist() == [1, 2] and rec.skipped_count == 0


def _jsonl_recorder(out, category, step, values, time="2025-01-10T10:00:00+00:00"):
    """JsonlMetricRecorder.record_metric_values: {"Time", "Step", display names...}, appended
    to `out/metrics/<category>.jsonl`."""
    import json
    file = (out / "metrics" / category).with_suffix(".jsonl")
    file.parent.mkdir(parents=True, exist_ok=True)
    output = {"Time": time}
    if step is not None:
        output["Step"] = step
    output.update(values)
    with open(file, "a") as fh:
        json.dump(output, fh, indent=None)
        fh.write("\n")


def test_fairseq2_jsonl_metric_files_are_one_run(tmp_path):
    out = tmp_path / "runs" / "ft1"
    for s in range(10, 51, 10):
        _jsonl_recorder(out, "train", s, {"Loss": 2.5 - s / 100, "Gradient Norm": 0.5,
                                          "Learning Rate": 3e-4, "Batch Size": 1024},
                        time=f"2025-01-10T10:00:{s:02d}+00:00")
        if s % 20 == 0:
            _jsonl_recorder(out, "valid", s, {"Loss": 2.6 - s / 100},
                            time=f"2025-01-10T10:00:{s + 1:02d}+00:00")
            _jsonl_recorder(out, "valid/librispeech", s, {"Loss": 2.7 - s / 100,
                                                          "Word Error Rate (WER)": 9.5},
                            time=f"2025-01-10T10:00:{s + 2:02d}+00:00")
    _jsonl_recorder(out, "train", 60, {"Loss": float("nan"), "Elements": [1, 2]})
    _jsonl_recorder(out, "train", None, {"Loss": 1.0})  # a record without a step
    train = out / "metrics" / "train.jsonl"
    assert sniff(train).name == "fairseq2-jsonl"
    (one,) = read_records(train)
    assert one.tags == ("train/Loss", "train/Gradient Norm", "train/Learning Rate",
                        "train/Batch Size")
    assert [(s.line, s.reason) for s in one.skipped] == [(7, "fairseq2 record without a step")]
    assert one.metadata.extra == {"list_values": "1"}
    from datetime import datetime, timezone
    assert one.wall_time[0] == datetime(2025, 1, 10, 10, 0, 10, tzinfo=timezone.utc).timestamp()
    (rec,) = read_records(tmp_path)
    assert (rec.run, rec.format) == ("runs/ft1/metrics", "fairseq2-jsonl")

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    assert series("train/Loss")[0] == [10, 20, 30, 40, 50, 60]
    assert series("train/Loss")[1][:5] == [2.4, 2.3, 2.2, 2.1, 2.0]
    assert series("valid/Loss") == ([20, 40], [2.4, 2.2])
    assert series("valid/librispeech/Loss") == ([20, 40], [2.7 - 0.2, 2.7 - 0.4])
    run = losslens.read(tmp_path).runs[0]
    assert (run.roles["train/Loss"], run.roles["valid/Loss"], run.roles["valid/librispeech/Loss"],
            run.roles["train/Gradient Norm"]) == ("train_loss", "val_loss", "val_loss",
                                                   "grad_norm")


def test_fairseq2_tensorboard_category_folders_are_one_run(tmp_path):
    """TensorBoardRecorder: one SummaryWriter per category under `out/tb/`, display names as
    tags: `valid/` is the validation of the same run, its Loss a validation loss."""
    from torch.utils.tensorboard import SummaryWriter

    tb = tmp_path / "ft1" / "tb"
    writers = {c: SummaryWriter(tb / c) for c in ("train", "valid", "valid/librispeech")}
    for s in range(10, 51, 10):
        writers["train"].add_scalar("Loss", 2.5 - s / 100, s)
        writers["train"].add_scalar("Learning Rate", 3e-4, s)
        if s % 20 == 0:
            writers["valid"].add_scalar("Loss", 2.6 - s / 100, s)
            writers["valid/librispeech"].add_scalar("Loss", 2.7 - s / 100, s)
    for w in writers.values():
        w.close()
    (rec,) = read_records(tmp_path)
    assert rec.run == "ft1/tb"
    assert rec.tags == ("train/Loss", "train/Learning Rate", "valid/Loss", "valid/librispeech/Loss")
    sel = rec.tag_code == rec.tags.index("valid/librispeech/Loss")
    assert rec.step[sel].tolist() == [20, 40]
    run = losslens.read(tmp_path).runs[0]
    assert (run.roles["train/Loss"], run.roles["valid/Loss"],
            run.roles["valid/librispeech/Loss"]) == ("train_loss", "val_loss", "val_loss")


def test_fairseq2_0_4_checkpoints_and_resume(tmp_path):
    """0.3 / 0.4 trainer: `Saving checkpoint after step N.` ... `Checkpoint complete.` (a save
    is a checkpoint once complete), and `Checkpoint loaded, restoring training from step N.`
    after a restart: a new segment."""
    prefix = "[Rank 0] 2025-01-10 10:00:00,000 INFO fairseq2.recipes.trainer - "
    lines = []

    def train(steps):
        for s in steps:
            lines.append(prefix + _v04_record("train", s, [("Loss", _as_float, 3 - s / 100)]))
            if s % 20 == 0:
                lines.append(prefix + f"Saving checkpoint after step {s}.")
                lines.append(prefix + "Saving trainer state.")
                lines.append(prefix + "Trainer state saved.")
                if s != 60:  # the job was killed while saving step 60
                    lines.append(prefix + "Checkpoint complete.")

    lines.append(prefix + "Attempting to load the last checkpoint.")
    lines.append(prefix + "No checkpoint found. Starting training.")
    train(range(10, 61, 10))
    lines.append(prefix + "Attempting to load the last checkpoint.")
    lines.append(prefix + "Checkpoint loaded, restoring training from step 40.")
    lines.append(prefix + "Training restored, resuming.")
    train(range(50, 81, 10))
    path = tmp_path / "rank_0.log"
    path.write_text("\n".join(lines) + "\n")
    (rec,) = read_records(path)
    assert rec.metadata.checkpoints == (20, 40, 80)
    assert rec.step.tolist() == [10, 20, 30, 40, 50, 60, 50, 60, 70, 80]
    run = losslens.read(path).runs[0]
    assert [(s.first_step, s.last_step, s.reason) for s in run.segments] == [
        (10, 60, "start"), (50, 80, "header")]


def test_a_keras_log_dir_named_tb_keeps_keras_layout(tmp_path):
    """`tb/train/` + `tb/validation/` is Keras's layout (its validation tags get `validation/`),
    not fairseq2's `tb/train/` + `tb/valid/`."""
    from torch.utils.tensorboard import SummaryWriter

    for sub, tag in (("train", "epoch_loss"), ("validation", "epoch_loss")):
        w = SummaryWriter(tmp_path / "tb" / sub)
        for e in range(3):
            w.add_scalar(tag, 1.0 - e / 10, e)
        w.close()
    (rec,) = read_records(tmp_path)
    assert rec.run == "tb" and rec.tags == ("epoch_loss", "validation/epoch_loss")
