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
