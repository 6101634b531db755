"""Must show (a new user's trial): every view says the same true thing about a run.

- The skip plan's restart is said once (`SkipPlan.restart_note`) and every view prints it:
  `analyze` text, Markdown and HTML say "no checkpoints known" where `skiplist` does, never
  "restart from the checkpoint at iteration N" for a step that is no checkpoint.
- An event within `before` steps of a log that starts at step 1 restarts from the start of
  training (step 0, skip from iteration 1), which needs no checkpoint: `skiplist` prints it.
- The samples row of the Markdown plan names the batch size the plan used
  (`--global-batch-size`), not "GBS ?".
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from losslens.cli import app


def _log(path: Path, nan_from: int, n: int = 1000) -> Path:
    """A 1-based CSV log: a smooth falling loss, NaN from `nan_from` on."""
    rows = ["step,loss"]
    for s in range(1, n + 1):
        v = 3 * math.exp(-s / 200) + 1 + 0.01 * math.sin(s * 1.7)
        rows.append(f"{s},{'nan' if s >= nan_from else round(v, 5)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_no_checkpoint_known_is_said_alike_by_every_view(runner, tmp_path):
    log = _log(tmp_path / "mid.csv", 500)
    text = runner.invoke(app, ["analyze", str(log)]).stdout
    md = runner.invoke(app, ["analyze", str(log), "-f", "markdown"]).stdout
    html = runner.invoke(app, ["analyze", str(log), "-f", "html"]).stdout
    sk = runner.invoke(app, ["skiplist", str(log), "-t", "megatron-deepspeed",
                             "--allow-no-checkpoint"])
    note = next(line[2:] for line in sk.stderr.splitlines() if line.startswith("# restart"))
    assert note.startswith("restart from iteration 400 (no checkpoints known")
    assert note in " ".join(text.split())
    assert "No checkpoints known" not in md and "Restart from iteration 400 \\(no checkpoints "\
        "known" in md
    assert "Restart from iteration 400 (no checkpoints known" in html
    for doc in (md, html):
        assert "Restart from the checkpoint at iteration" not in doc


def test_an_event_near_the_start_restarts_from_the_start_of_training(runner, tmp_path):
    log = _log(tmp_path / "early.csv", 50)
    plan = json.loads(runner.invoke(app, ["analyze", str(log), "-f", "json"]).stdout)[
        "runs"][0]["skip_plan"]
    assert (plan["restart_from_step"], plan["skip"]) == (0, [[1, 500]])
    sk = runner.invoke(app, ["skiplist", str(log), "-t", "megatron-deepspeed"])
    assert sk.exit_code == 0 and sk.stdout == "--skip-train-iteration-range 1-500\n"
    assert "# restart from the start of training (step 0: no checkpoint needed)" in sk.stderr
    text = " ".join(runner.invoke(app, ["analyze", str(log)]).stdout.split())
    assert "skip plan: restart from the start of training (step 0" in text


def test_markdown_samples_name_the_batch_size_given(runner, tmp_path):
    log = _log(tmp_path / "mid.csv", 500)
    md = runner.invoke(app, ["analyze", str(log), "-f", "markdown",
                             "--global-batch-size", "8"]).stdout
    assert "| samples (0-based, GBS 8) | `3200-7199` |" in md
