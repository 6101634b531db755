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


def test_a_run_without_a_loss_is_not_called_clean(runner, tmp_path):
    log = tmp_path / "acc.csv"
    log.write_text("step,accuracy,lr\n" + "".join(
        f"{s},{0.1 * s:.1f},0.001\n" for s in range(1, 6)))
    an = json.loads(runner.invoke(app, ["analyze", str(log), "-f", "json"]).stdout)["runs"][0]
    assert [(f["rule"], f["severity"], f["title"]) for f in an["findings"]] == [
        ("no_loss", "info", "No loss series: the loss was not checked")]
    assert "None of the series read (accuracy, lr) has a loss role" in an["findings"][0][
        "explanation"]
    ck = json.loads(runner.invoke(app, ["check", str(log), "-f", "json"]).stdout)
    assert ck["exit_code"] == 0 and [(c["name"], c["severity"]) for c in ck["runs"][0]["checks"]
                                     if c["severity"]] == [("no_loss", "info")]
    strict = runner.invoke(app, ["check", str(log), "--fail-on", "info"])
    assert strict.exit_code == 1  # the gate agrees with the finding analyze reports


def test_validation_only_overfitting_does_not_claim_a_training_loss(runner, tmp_path):
    log = tmp_path / "val.csv"
    log.write_text("epoch,val_loss\n" + "".join(
        f"{i},{1.0 - 0.03 * i + (0.04 * (i - 12) if i > 12 else 0):.4f}\n" for i in range(1, 21)))
    f = json.loads(runner.invoke(app, ["analyze", str(log), "-f", "json"]).stdout)[
        "runs"][0]["findings"]
    assert [x["rule"] for x in f] == ["overfitting"]
    assert "training loss did not" not in f[0]["explanation"]
    assert "the log has no training curve to compare with" in f[0]["explanation"]


def test_skiplist_says_why_a_nan_from_the_start_gets_no_plan(runner, tmp_path):
    log = tmp_path / "nan.csv"
    log.write_text("step,loss\n" + "".join(f"{s},nan\n" for s in range(1, 301)))
    res = runner.invoke(app, ["skiplist", str(log)])
    assert (res.exit_code, res.stdout) == (0, "")
    # not "no event needs a restart ... a restart is planned for ... non-finite losses"
    assert res.stderr.strip() == (
        "Nothing to skip in nan.csv: the loss is non-finite from the first logged step (1): "
        "no skip plan for that; fix the setup")


def test_overfitting_on_several_series_names_each_step_once():
    from losslens.diagnosis import diagnose
    from losslens.events import Event
    from losslens.records import RunMeta

    over = [Event("overfitting", "r", f"eval_g{i}_loss", 401 if i < 5 else 802, None, 12030,
                  "warning", magnitude=2.5 - 0.1 * i,
                  details={"evals_after": 29, "train_tag": "loss"}, id=f"overfitting-{i + 1}")
            for i in range(6)]
    f = diagnose(over, RunMeta())[0]
    assert f.explanation.startswith(
        "Validation loss has been getting worse since step(s) 401, 802 (eval_g0_loss up x2.50 "
        "over 29 evaluations; also eval_g1_loss, eval_g2_loss, eval_g3_loss, eval_g4_loss, "
        "eval_g5_loss) while the training loss did not")


def test_a_validation_echo_gets_no_skip_range_of_its_own():
    # wordlm-gru-jump-never-recovers: the training loss jumps at 10349 and stays up; the
    # validation loss shows it at its next evaluation, 11932 (an echo, left to the training
    # spike's finding). The plan skipped 11833-12332 for the echo too: "3 event(s) need a
    # restart" beside one finding citing one spike.
    from losslens.events import Event
    from losslens.skipplan import plan

    echo = {"echo_of": {"kind": "spike", "tag": "loss", "start_step": 10349}}
    events = [Event("spike", "r", "loss", 10349, 10349, None, "critical", "none", None, 1.28),
              Event("divergence", "r", "valid loss", 11932, None, 29830, details=echo),
              Event("spike", "r", "valid loss", 11932, 11932, None, recovery="none",
                    magnitude=1.21, details=echo)]
    skip, _ = plan(events)
    assert (skip.restart_from_step, skip.skip) == (10249, ((10250, 10449),))
    assert skip.reason.startswith("1 event(s) need a restart (unrecovered spike)")


def test_a_blow_up_that_starts_a_divergence_is_not_said_to_come_back():
    # json-grok-lr0.01-collapse-to-chance: at 18400 the training loss jumps x7.2e9, falls
    # from that peak within 100 steps ("fast") but stays x8.4e6 above its best: a divergence.
    # The blow-up finding said it "was back at the next points" beside "Divergence from
    # step 18400 ... after a spike it did not recover from".
    from losslens.diagnosis import diagnose
    from losslens.events import Event
    from losslens.records import RunMeta

    ratio = {"magnitude_units": "ratio"}
    events = [Event("divergence", "r", "train_loss", 18400, None, 39999, "critical",
                    magnitude=8.4e6, details={"preceded_by_spike": True}, id="divergence-1"),
              Event("spike", "r", "train_loss", 18400, 18400, 18500, "warning", "fast", 100,
                    7.2e9, ratio, "spike-1"),
              Event("spike", "r", "train_loss", 30000, 30000, 30010, "info", "fast", 10,
                    2.0, ratio, "spike-2")]
    found = {f.rule: f for f in diagnose(events, RunMeta())}
    assert sorted(found) == ["divergence", "fast_spikes"]
    assert found["fast_spikes"].event_ids == ("spike-2",)


def test_magnitudes_carry_three_significant_figures():
    # json-grok-lr0.01-collapse-to-chance's table: "×7,198,852,759 peak/level" and a
    # changepoint "+1.27e+09% level"
    from losslens.report.units import magnitude_text

    assert magnitude_text("spike", 7198852759.3) == "×7.2e+09 peak/level"
    assert magnitude_text("spike", 29421.2) == "×29,421 peak/level"
    assert magnitude_text("spike", 1.87) == "×1.87 peak/level"
    assert magnitude_text("changepoint", 1.27e7) == "×1.27e+07 level"
    assert magnitude_text("changepoint", 0.737) == "+73.7% level"
    assert magnitude_text("changepoint", -0.5) == "-50% level"


def test_the_plan_table_offers_the_forms_of_the_trainer_that_wrote_the_log(runner, tmp_path):
    # hf-qlora-lr-divergence (an HF Trainer run): the Markdown/HTML plan offered only
    # Megatron-DeepSpeed, Megatron-LM and metaseq flags, none of which an HF Trainer takes
    from losslens.events import SkipPlan
    from losslens.exporters import trainer_rows

    p = SkipPlan(2000, ((2001, 2420),), "r")
    names = {fmt: [n for n, _ in trainer_rows(p, fmt)] for fmt in
             ("megatron", "hf-trainer-state", "nanogpt", "fairseq", "csv", "tensorboard")}
    assert names["megatron"] == ["Megatron-DeepSpeed", "Megatron-LM (1-indexed)"]
    assert names["hf-trainer-state"] == names["nanogpt"] == ["HF Trainer / PyTorch loop"]
    assert names["fairseq"] == ["metaseq"]
    assert names["csv"] == names["tensorboard"] == [
        "Megatron-DeepSpeed", "Megatron-LM (1-indexed)", "metaseq", "HF Trainer / PyTorch loop"]
    md = runner.invoke(app, ["analyze", str(_log(tmp_path / "mid.csv", 500)), "-f",
                             "markdown"]).stdout
    assert ("| HF Trainer / PyTorch loop | `losslens skiplist RUN --target hf > plan.json, "
            "then losslens.skipdata (skipping_trainer / SkipBatches)` |") in md
