"""Diagnosis rules: event patterns + metadata in, exact findings out."""
from __future__ import annotations

from losslens.diagnosis import CITES, diagnose
from losslens.events import Event
from losslens.records import RunMeta


def ev(kind, start, id_, **kw):
    return Event(kind=kind, run="r", tag=kw.pop("tag", "lm loss"), start_step=start, id=id_, **kw)


def titles(findings):
    return [(f.severity, f.title) for f in findings]


def test_clean_run_has_no_findings():
    assert diagnose([], RunMeta()) == []


def test_early_divergence_with_large_init_std_names_the_number():
    meta = RunMeta(hidden_size=14336, init_method_std=0.02)
    found = diagnose([ev("divergence", 1200, "divergence-1", severity="critical")], meta)
    assert titles(found) == [
        ("critical", "Early divergence with a too-large init std (step 1200)"),
        ("critical", "Divergence from step 1200")]
    assert "0.00482" in found[0].advice and "sqrt(1/(3*14336)) = 0.00482" in found[0].explanation
    assert found[0].cites == (CITES["init"],) and found[0].event_ids == ("divergence-1",)


def test_divergence_with_a_small_init_std_is_not_blamed_on_init():
    meta = RunMeta(hidden_size=14336, init_method_std=0.004)
    assert titles(diagnose([ev("divergence", 1200, "d-1")], meta)) == [
        ("critical", "Divergence from step 1200")]


def test_unrecovered_spikes_cite_palm_and_fast_ones_are_info():
    events = [ev("spike", 800, "spike-1", recovery="fast"),
              ev("spike", 2410, "spike-2", recovery="none")]
    found = diagnose(events, RunMeta())
    assert titles(found) == [("critical", "1 spike(s) that never recovered"),
                             ("info", "1 fast-recovering spike(s)")]
    assert CITES["palm"] in found[0].cites and found[0].event_ids == ("spike-2",)


def test_grad_led_spikes_get_epsilon_advice_unless_eps_is_small():
    events = [ev("grad_spike", 500, "grad_spike-1", tag="grad norm",
                 details={"loss_followed": True, "lag_steps": 10})]
    found = diagnose(events, RunMeta(adam_eps=1e-8))
    assert titles(found) == [("warning", "Loss spikes led by grad-norm spikes (1)")]
    assert "Adam epsilon is 1e-08" in found[0].explanation
    assert found[0].cites == (CITES["adam_eps"],)
    assert diagnose(events, RunMeta(adam_eps=1e-12)) == []


def test_fp16_overflow_and_resume_rules():
    events = [ev("overflow", 1100, "overflow-1", severity="warning"),
              ev("resume_spike", 1501, "resume_spike-1", details={"every_resume": True}),
              ev("repeat_data", 3000, "repeat_data-1"), ev("rollback", 1501, "rollback-1")]
    found = diagnose(events, RunMeta(precision="fp16"))
    assert titles(found) == [
        ("warning", "fp16 overflows / skipped iterations (1 burst(s))"),
        ("warning", "Loss spike at every resume"),
        ("warning", "Replayed data after a rollback"),
        ("info", "1 resume(s)/rollback(s) stitched")]
    assert "bf16" in found[0].advice and "sampler" in found[1].advice


def test_overfitting_is_not_grokking():
    over = [ev("changepoint", 4000, "changepoint-1", tag="val_loss",
               details={"pattern": "overfitting"})]
    assert titles(diagnose(over, RunMeta())) == [("warning", "Overfitting from step 4000")]
    grok = [ev("grokking", 9000, "grokking-1", tag="val_loss")]
    assert titles(diagnose(grok, RunMeta())) == [("info", "Grokking / sudden improvement")]


def test_nonfinite_is_critical():
    found = diagnose([ev("nonfinite", 77, "nonfinite-1")], RunMeta())
    assert titles(found) == [("critical", "Non-finite loss (NaN/inf) from step 77")]


def test_nan_from_the_first_step_is_a_broken_setup_not_an_instability():
    events = [ev("nonfinite", 1, "nonfinite-1", details={"finite_after": False})]
    found = diagnose(events, RunMeta(), first_step=1)
    assert titles(found) == [
        ("critical", "The loss is NaN/inf from the first logged step (1)")]
    assert "not an instability a restart could fix" in found[0].explanation
    # later NaN in the same kind of run is the ordinary finding
    assert titles(diagnose(events, RunMeta(), first_step=0)) == [
        ("critical", "Non-finite loss (NaN/inf) from step 1")]


def test_broken_from_start_is_judged_per_series():
    # llm.c: val loss logged at step 0, the train loss from step 1; both NaN throughout
    events = [ev("nonfinite", 0, "nonfinite-1", tag="val loss"),
              ev("nonfinite", 1, "nonfinite-2", tag="loss")]
    found = diagnose(events, RunMeta(), first_step={"val loss": 0, "loss": 1})
    assert titles(found) == [
        ("critical", "The loss is NaN/inf from the first logged step (0)")]
    assert found[0].event_ids == ("nonfinite-1", "nonfinite-2")


def test_a_sudden_drop_at_an_lr_step_is_not_grokking():
    drop = [ev("sudden_drop", 5000, "sudden_drop-1", details={"lr_drop": True})]
    assert diagnose(drop, RunMeta()) == []
    drop = [ev("sudden_drop", 5000, "sudden_drop-1", details={"lr_drop": False})]
    assert titles(diagnose(drop, RunMeta())) == [("info", "Grokking / sudden improvement")]


def test_a_grad_spike_at_the_loss_spikes_own_step_does_not_lead_it():
    same = [ev("grad_spike", 180, "grad_spike-1", tag="grad norm",
               details={"loss_followed": True, "lag_steps": 0})]
    assert diagnose(same, RunMeta(adam_eps=1e-8)) == []


def test_overfitting_events_name_the_best_step_and_the_climb():
    over = [ev("overfitting", 1000, "overfitting-1", tag="eval_loss", magnitude=1.3084,
               severity="warning", details={"evals_after": 4})]
    (f,) = diagnose(over, RunMeta())
    assert (f.severity, f.title) == ("warning", "Overfitting from step 1000")
    assert "eval_loss up x1.31 over 4 evaluations" in f.explanation
    assert "checkpoint nearest step 1000" in f.advice and f.event_ids == ("overfitting-1",)


def test_a_train_loss_drop_while_validation_worsens_is_not_called_grokking():
    events = [ev("sudden_drop", 3000, "sudden_drop-1"),
              ev("overfitting", 1000, "overfitting-1", tag="eval_loss", magnitude=1.3,
                 severity="warning", details={"evals_after": 4})]
    assert titles(diagnose(events, RunMeta())) == [("warning", "Overfitting from step 1000")]


def test_grad_spikes_the_loss_ignored_are_one_summary_and_extreme_ones_warn():
    quiet = [ev("grad_spike", 100 * k, f"grad_spike-{k}", tag="grad_norm", magnitude=3.0,
                details={"loss_followed": False}) for k in range(1, 95)]
    (f,) = diagnose(quiet, RunMeta())
    assert (f.severity, f.title) == ("info", "94 grad-norm spike(s) the loss did not follow")
    assert "about every 100 steps" in f.explanation and len(f.event_ids) == 94
    huge = quiet[:3] + [ev("grad_spike", 5000, "grad_spike-99", tag="grad_norm",
                           magnitude=2500.0, details={"loss_followed": False})]
    (f,) = diagnose(huge, RunMeta())
    assert (f.severity, f.title) == (
        "warning", "4 grad-norm spike(s) the loss did not follow (one x2500)")


def test_periodic_fast_spikes_are_summarised_with_their_period():
    fast = [ev("spike", 1250 + 80 * k, f"spike-{k}", recovery="fast") for k in range(10)]
    (f,) = diagnose(fast, RunMeta())
    assert f.title == "10 fast-recovering spike(s)" and "about every 80 steps" in f.explanation


def test_event_severity_follows_the_findings_that_cite_it():
    from losslens.diagnosis import settle

    events = [ev("rollback", 500, "rollback-1", severity="warning"),
              ev("changepoint", 700, "changepoint-1", severity="warning"),
              ev("spike", 900, "spike-1", recovery="none", severity="critical")]
    findings = diagnose(events, RunMeta())
    assert titles(findings) == [("critical", "1 spike(s) that never recovered"),
                                ("info", "1 resume(s)/rollback(s) stitched")]
    settled = {e.id: e.severity for e in settle(events, findings)}
    # a warning no finding mentions is not a warning; a rollback is no louder than its finding
    assert settled == {"rollback-1": "info", "changepoint-1": "info", "spike-1": "critical"}


def test_an_overfitting_drift_within_the_eval_noise_is_an_info_finding():
    drift = [ev("overfitting", 484, "overfitting-1", tag="val/box_loss", magnitude=1.058,
                severity="info", details={"evals_after": 16, "best_step": 484})]
    (f,) = diagnose(drift, RunMeta())
    assert (f.severity, f.title) == ("info", "Validation loss drifting up from step 484")
    assert "not yet a clear overfit" in f.explanation
    assert "checkpoint nearest step 484" in f.advice
    clear = drift + [ev("overfitting", 484, "overfitting-2", tag="val/cls_loss",
                        magnitude=1.3, severity="warning", details={"evals_after": 16})]
    assert titles(diagnose(clear, RunMeta())) == [("warning", "Overfitting from step 484")]
