"""What an experienced engineer says about each real log in ../shared/corpus, pinned.

Each case was judged by plotting the log (loss, validation, grad norm, loss scale) and writing
down what a person would say; losslens must say the same. Skipped when the corpus is absent.
"""
from __future__ import annotations

import json

import pytest

from losslens import read
from losslens.pipeline import analyze_frame
from losslens.report.jsondoc import analysis_document, dumps


def _analysis(corpus, name):
    return analyze_frame(read(corpus / name))


def _one(corpus, name):
    (run,) = _analysis(corpus, name).runs
    return run


def _titles(run):
    return [(f.severity, f.title) for f in run.findings]


def _kinds(run, severity=None):
    return [(e.kind, e.tag, e.start_step) for e in run.events
            if severity is None or e.severity == severity]


CLEAN = ["hf-trainer-state-gradnorm-spike", "llmc-gpt2-124m-mainlog", "llmc-gpt2-stdout-ok",
         "nanogpt-stdout-wandb-output", "tb-lstm-textgen"]


@pytest.mark.parametrize("name", CLEAN)
def test_clean_real_runs_have_nothing_above_info(corpus, name):
    # A smooth descent with grad-norm blips the loss did not follow: nothing to do.
    run = _one(corpus, name)
    assert [e for e in run.events if e.severity != "info"] == []
    assert [f for f in run.findings if f.severity != "info"] == []
    assert run.skip_plan is None


def test_hf_grad_norm_spikes_are_seen_but_harmless(corpus):
    run = _one(corpus, "hf-trainer-state-gradnorm-spike")
    grads = [e for e in run.events if e.kind == "grad_spike"]
    assert grads and all(not e.details.get("loss_followed") for e in grads)
    assert any(e.start_step == 22360 for e in grads)  # the 82.4 grad norm


def test_megatron_perf_run_diverged_with_a_too_large_init(corpus):
    # 62 iterations: x3.9 blow-up at iteration 3, slow way back to 11.7 at 31, then a steady
    # rise to 20.4 at 62: diverged. hidden 8192 with init std 0.02 (> sqrt(1/(3*8192)) = 0.0064)
    run = _one(corpus, "megatron-ds-perf-divergence")
    div = [e for e in run.events if e.kind == "divergence"]
    assert len(div) == 1 and 31 <= div[0].start_step <= 40 and div[0].end_step == 62
    titles = _titles(run)
    assert titles[0] == ("critical", f"Early divergence with a too-large init std "
                                     f"(step {div[0].start_step})")
    assert "0.00638" in run.findings[0].advice
    assert ("critical", f"Divergence from step {div[0].start_step}") in titles


def test_llmc_run_nan_from_the_start_is_a_broken_setup(corpus):
    run = _one(corpus, "llmc-gpt2-stdout-nan")
    assert _titles(run) == [("critical", "The loss is NaN/inf from the first logged step (0)")]
    assert run.skip_plan is None
    assert "no skip plan" in run.plan_warnings[0]


def test_bigscience_104b_excerpt_goes_nan_after_overflows(corpus):
    run = _one(corpus, "bigscience-tr8-104B-chronicles")
    titles = _titles(run)
    assert titles[0] == ("critical", "Non-finite loss (NaN/inf) from step 9027")
    assert ("info", "2 resume(s)/rollback(s) stitched") in titles
    assert any(e.kind == "overflow" for e in run.events)
    assert run.skip_plan.restart_from_step == 8927 and run.skip_plan.skip == ((8928, 9127),)


def test_rlhf_ppo_losses_swing_but_nothing_needs_action(corpus):
    # PPO actor/critic losses change sign and swing around steps 100-150, then settle; the
    # fp16 loss scale calibrates down at the start: normal.
    run = _one(corpus, "deepspeed-chat-rlhf-step3")
    assert [f for f in run.findings if f.severity == "critical"] == []
    assert run.skip_plan is None
    assert all(e.recovery in (None, "fast") for e in run.events if e.kind == "spike")


def test_pix2pix_restarts_are_stitched_not_diverged(corpus):
    # GAN losses oscillate by design; the log holds four restarts appended to one file.
    run = _one(corpus, "pix2pix-restarts")
    assert [f for f in run.findings if f.severity == "critical"] == []
    assert [e.kind for e in run.events if e.kind != "rollback"] == []
    assert len([e for e in run.events if e.kind == "rollback"]) == 3


def test_wandb_export_runs_judged_one_by_one(corpus):
    analysis = _analysis(corpus, "wandb-export-nanogpt-multirun")
    worst = {ra.info.run: ra.worst for ra in analysis.runs}
    assert worst == {
        "gpt2_last_char_to_char1729642919.4054031": None, "gpt2": None,
        "gpt2_last_char_token_to_token1729493675.529459": None,  # clean descents
        "gpt2_char_to_token1729578574.2848036": "info",        # spikes, each came back
        "gpt2_char_to_token1729534595.422701": "critical",     # x2.2 at 58, stays at 6-7
        "gpt2_char_to_token1729491541.2756786": "critical",    # x1.8 at 37 and 56, never back
        "gpt2_last_char_token_to_char1729587337.8266432": "critical",  # rising after 80
        # x2.2 at 41, back at 46 (3.58 against 3.47); x1.7 at 48, back at 50; the last six
        # points drift up 10 %: spikes that came back, a drift too small to act on
        "gpt2_augmented_char_to_token1729630560.5729918": "info",
    }


def test_prose_logbook_is_a_clear_error(corpus, runner):
    from losslens.cli import app

    result = runner.invoke(app, ["analyze", str(corpus / "glm130b-training-notes")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: ") and "no metric series found" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("name", ["bigscience-tr8-104B-chronicles", "deepspeed-chat-rlhf-step3",
                                  "hf-trainer-state-gradnorm-spike", "llmc-gpt2-124m-mainlog",
                                  "llmc-gpt2-stdout-nan", "llmc-gpt2-stdout-ok",
                                  "megatron-ds-perf-divergence", "nanogpt-stdout-wandb-output",
                                  "pix2pix-restarts", "tb-lstm-textgen",
                                  "wandb-export-nanogpt-multirun", "writer-samples"])
def test_json_contract_on_every_corpus_log(corpus, name):
    doc = json.loads(dumps(analysis_document(_analysis(corpus, name))))
    assert doc["schema"] == "losslens.analysis/1"
    for run in doc["runs"]:
        assert set(run) >= {"run", "source", "format", "series", "segments", "metadata",
                            "events", "findings", "skip_plan"}
        for s in run["series"]:
            assert set(s) >= {"tag", "role", "points", "first_step", "last_step"}
        ids = {e["id"] for e in run["events"]}
        for e in run["events"]:
            assert set(e) == {"id", "kind", "tag", "start_step", "peak_step", "end_step",
                              "severity", "recovery", "recovery_steps", "magnitude", "details"}
            assert e["severity"] in ("info", "warning", "critical")
        for f in run["findings"]:
            assert set(f) == {"severity", "title", "explanation", "advice", "event_ids",
                              "cites", "rule"} and f["cites"] and set(f["event_ids"]) <= ids
        if run["skip_plan"]:
            assert set(run["skip_plan"]) == {"restart_from_step", "skip", "units", "samples",
                                             "reason"}
