"""Resume lines of the newer dialects, from each project's source, start a segment even when the
steps go on without going back (the case where only the marker tells a resume happened)."""
from __future__ import annotations

import json

import pytest

import losslens

ABSL = "I0612 10:01:02.123456 140245 {}] "


def _t5x(s):
    return ABSL.format("logging_writer.py:48") + f"[{s}] collection=train loss={3 - s / 100:.6g}"


def _maxtext(s):
    return (ABSL.format("max_logging.py:27") + f"completed step: {s}, seconds: 1.150, "
            f"TFLOP/s/device: 470.000, total_weights: 8192, loss: {3 - s / 100:.3f}")


def _fairseq2(s):
    return f"2024-05-01 10:00:00 INFO: fairseq2 - Train Metrics (step {s}) - Loss: {3 - s / 100:.3f}"


def _levanter(s):
    return ("2025-06-01T10:00:00 - 0 - levanter.json_logger - json_logger.py:79 - INFO :: "
            + json.dumps({"tracker": "json_logger", "event": "log", "step": s,
                          "metrics": {"train/loss": 3 - s / 100}}))


CASES = {  # format: (metric line, resume line as the source prints it)
    "t5x": (_t5x, ABSL.format("checkpoints.py:1067")
            + "Restoring from checkpoint: gs://b/model/checkpoint_10"),
    "maxtext": (_maxtext, ABSL.format("max_logging.py:27")
                + "restoring from this run's directory step 10"),
    "fairseq2": (_fairseq2, "2024-05-01 10:00:00 INFO: fairseq2 - Restoring training from the "
                            "last checkpoint at step 10."),
    "levanter": (_levanter, "2025-06-01T10:00:00 - 0 - levanter.main.train_lm - train_lm.py:262"
                            " - INFO :: Resuming training from step 10"),
}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_resume_line_starts_a_segment(tmp_path, fmt):
    line, resume = CASES[fmt]
    path = tmp_path / "run.log"
    path.write_text("\n".join([resume.replace("checkpoint_10", "checkpoint_0")
                               .replace("step 10", "step 0") if fmt == "t5x" else "header"]
                              + [line(s) for s in range(1, 11)] + [resume]
                              + [line(s) for s in range(11, 21)]) + "\n")
    frame = losslens.read(path)
    (run,) = frame.runs
    assert run.format == fmt
    assert [(g.first_step, g.last_step, g.reason) for g in run.segments] == [
        (1, 10, "start"), (11, 20, "header")]
