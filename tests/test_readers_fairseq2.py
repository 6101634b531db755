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
