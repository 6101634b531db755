"""Replay's verdict logic, event selection and log comparison: pure, no torch needed.

The rules are tested on numbers: each verdict from the measurements it claims, `inconclusive`
naming the missing piece otherwise, contributing causes kept beside the primary verdict.
"""
from __future__ import annotations

import math
import sys

import pytest
from typer.testing import CliRunner

from losslens.cli import app
from losslens.errors import LossLensError, MissingDependencyError
from losslens.events import Event
from losslens.replay import require_torch
from losslens.replay.logcheck import LogSpec, compare, compare_lr, lr_jumps, spec_for
from losslens.replay.targets import flagged_range, select
from losslens.replay.verdicts import Facts, SpikeCheck, check_spike, decide


def test_without_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'losslens\[replay\]'"):
        require_torch()
    res = CliRunner().invoke(app, ["replay", "--plugin", "examples/tiny_gpt_plugin.py", "x.log"])
    assert res.exit_code == 2
    assert res.output.strip() == ("Error: losslens replay needs PyTorch: "
                                  "pip install 'losslens[replay]'")


# --------------------------------------------------------------------------- targets

def _ev(kind, tag, start, peak=None, end=None, id=""):
    return Event(kind=kind, run="r", tag=tag, start_step=start, peak_step=peak, end_step=end,
                 id=id)


def test_targets_fold_overlaps_and_skip_unreplayable():
    roles = {"lm loss": "train_loss", "grad norm": "grad_norm", "val": "val_loss"}
    evs = [_ev("grad_spike", "grad norm", 90, 91, 92, "grad_spike-1"),
           _ev("spike", "lm loss", 90, 90, 91, "spike-1"),
           _ev("spike", "val", 50, 50, 51, "spike-2"),
           _ev("changepoint", "lm loss", 17, id="changepoint-1"),
           _ev("grad_spike", "grad norm", 200, 201, 203, "grad_spike-2"),
           _ev("nonfinite", "lm loss", 300, None, 302, "nonfinite-1"),
           # in the recovery of spike-3 (peak 410, back at 480): the same event
           _ev("spike", "lm loss", 400, 410, 480, "spike-3"),
           _ev("grad_spike", "grad norm", 450, 451, 455, "grad_spike-3")]
    got = select(evs, roles, None)
    assert [t.event.id for t in got] == ["spike-1", "grad_spike-2", "nonfinite-1", "spike-3"]
    assert [t.role for t in got] == ["train_loss", "grad_norm", "train_loss", "train_loss"]
    assert [t.event.id for t in select(evs, roles, ["grad_spike-1"])] == ["grad_spike-1"]
    with pytest.raises(LossLensError, match="--events: no event spike-9"):
        select(evs, roles, ["spike-9"])
    assert flagged_range(evs[5], 32) == (300, 302)
    assert flagged_range(_ev("divergence", "lm loss", 10, None, 500), 32) == (10, 41)
    assert flagged_range(evs[1], 32) == (90, 90)


# --------------------------------------------------------------------------- verdicts

def _chk(shows, nonfinite=False, ratio=2.0):
    return SpikeCheck(2.0, 1.0, 0.05, ratio, 20.0, nonfinite, shows)


def _f(**kw):
    """A faithful, deterministic replay that reproduced the event, unless told otherwise."""
    base = dict(checkpoint=5, preflight_noise=0.0, preflight_bitwise=True, log_match=True,
                log_mismatch=0.0, log_compared=4, replay=_chk(True))
    return Facts(**{**base, **kw})


@pytest.mark.parametrize("facts, verdict", [
    (_f(replay=_chk(False)), "not_reproducible"),
    # no logged value to check against: not_reproducible would be a claim without evidence
    (_f(replay=_chk(False), log_match=None, log_compared=0,
        log_missing="the log has no value at steps 221–229 to check against"), "inconclusive"),
    (_f(replay=_chk(False), log_match=False, log_mismatch=0.05), "inconclusive"),
    (_f(preflight_noise=0.5, preflight_bitwise=False), "inconclusive"),
    (_f(preflight_noise=0.0, preflight_bitwise=False, param_noise=0.3), "inconclusive"),
    (_f(replay=_chk(None)), "inconclusive"),  # in part
    (Facts(None), "inconclusive"),
    (_f(load_ok=False, load_note="load_checkpoint(5) did not restore the weights"),
     "inconclusive"),
    (_f(fp32=_chk(False), run_dtype="float16", substitute=_chk(False),
        ablations=[(0, _chk(True))]), "numerics"),
    # fp32 "in part" is not "the event needs the precision"
    (_f(fp32=_chk(None), run_dtype="float16", substitute=_chk(False),
        ablations=[(0, _chk(True))]), "bad_batch"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(True))]), "bad_batch"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(True)), (1, _chk(True))]), "bad_batch"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(False))]), "batch_state_interaction"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(True)), (1, _chk(False))]),
     "batch_state_interaction"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(None))]), "inconclusive"),
    (_f(substitute=_chk(False), ablations=[(3, _chk(None))], flagged_loss_z=13.6), "bad_batch"),
    # no earlier checkpoint: bad_batch only on a loss outlier (z >= 6), not on a grad z
    (_f(substitute=_chk(False), flagged_loss_z=9.0), "bad_batch"),
    (_f(substitute=_chk(False), flagged_loss_z=3.4, flagged_grad_z=40.0), "inconclusive"),
    (_f(substitute=_chk(True), adam_update_jump=3.0, adam_share_jump=1.0, adam_share_peak=0.0),
     "optimizer_state"),
    (_f(substitute=_chk(True), adam_update_jump=1.1, adam_share_jump=50.0,
        adam_share_peak=1e-3), "optimizer_state"),
    (_f(substitute=_chk(True), adam_update_jump=1.1, adam_share_jump=1.2, adam_share_peak=1e-3),
     "inconclusive"),
    # the "other batches" are the flagged ones: no data counterfactual ...
    (_f(substitute=None, substitute_same=True), "inconclusive"),
    # ... unless the same batches trained harmlessly before the event
    (_f(substitute=None, substitute_same=True, flagged_seen_before="steps 6–9",
        adam_update_jump=30.0), "optimizer_state"),
    # the log printed the spike and the replay gives the same value: reproduced, whatever the
    # level says
    (_f(replay=_chk(False), event_log_match=True, event_logged=30.0, event_replayed=30.0,
        substitute=_chk(False), ablations=[(3, _chk(False))]), "batch_state_interaction"),
    (_f(reruns=(1, 3)), "inconclusive"),  # transient
])
def test_decide(facts, verdict):
    d = decide(facts)
    assert d.verdict == verdict, d.evidence
    got, evidence = d  # unpacks as (verdict, evidence)
    assert got == verdict
    assert evidence and all("\n" not in e for e in evidence)


def test_verdicts_name_the_missing_piece():
    d = decide(_f(replay=_chk(False), log_match=None, log_compared=0,
                  log_missing="the log has no value at steps 221–229 to check against"))
    assert d.evidence[-1] == ("the log has no value at steps 221–229 to check against: a replay "
                              "that does not spike may not be the run")
    d = decide(_f(substitute=_chk(False), flagged_loss_z=3.4, flagged_grad_z=40.0))
    assert d.evidence[-1] == ("and the flagged batches are not loss outliers at the "
                              "checkpoint's weights (z = 3.4 < 6)")
    d = decide(_f(load_ok=False, load_note="load_checkpoint(5) did not restore the weights"))
    assert d.evidence == ["load_checkpoint(5) did not restore the weights"]


def test_schedule_is_named_with_and_without_lr_at():
    no_lr_at = decide(_f(replay=_chk(False), lr_jump=(401, 100.0), has_lr_at=False,
                         lr_match=False, lr_mismatch_steps="401–403"))
    assert (no_lr_at.verdict, no_lr_at.cause) == ("inconclusive", "schedule")
    assert no_lr_at.evidence[-1].startswith(
        "the plug-in gives no lr_at and the log's LR jumps ×100 at 401: schedule")
    with_lr_at = decide(_f(lr_jump=(401, 100.0), lr_match=True, substitute=_chk(True),
                           adam_update_jump=1.0))
    assert (with_lr_at.verdict, with_lr_at.cause) == ("lr_schedule", "schedule")
    # the data matters too (other batches do not spike): the schedule stays as contributing
    both = decide(_f(lr_jump=(401, 100.0), lr_match=True, substitute=_chk(False),
                     ablations=[(300, _chk(True))]))
    assert both.verdict == "bad_batch"
    assert "schedule: the log's LR jumps ×100 at 401" in both.contributing


def test_numerics_keeps_the_data_evidence():
    d = decide(_f(fp32=_chk(False), run_dtype="float16", substitute=_chk(False),
                  flagged_loss_z=40.0, ablations=[(0, _chk(True))]))
    assert (d.verdict, d.cause) == ("numerics", "precision")
    assert d.contributing == [
        "data: the flagged batches are loss outliers at the checkpoint's weights (z = 40.0)",
        "data/state counterfactuals alone would say bad_batch"]
    assert any(e.startswith("contributing — data: ") for e in d.evidence)


def test_check_spike_thresholds():
    # logged magnitude 2.0: half the excess (x1.5) and z >= 5 reproduce; under x1.2 does not
    assert check_spike([1.6], 1.0, 0.05, 2.0).shows is True
    assert check_spike([1.15], 1.0, 0.05, 2.0).shows is False
    assert check_spike([1.35], 1.0, 0.05, 2.0).shows is None
    assert check_spike([1.6], 1.0, 0.2, 2.0).shows is None  # z = 3: in part
    # orders of magnitude (>= x10): shares of the log-ratio (x100 of a logged x1e4 is back)
    assert check_spike([100.0], 1.0, 0.02, 1e4).shows is True
    assert check_spike([50.0], 1.0, 0.02, 1e4).shows is None
    assert check_spike([5.0], 1.0, 0.02, 1e4).shows is False
    assert check_spike([1.0, float("nan")], 1.0, 0.05).shows is True
    assert check_spike([1.4], 1.0, 0.05, nonfinite_event=True).shows is False
    c = check_spike([-0.5], -2.0, 0.1)  # additive losses: z alone
    assert c.shows is True and math.isnan(c.ratio)


# --------------------------------------------------------------------------- the log

def test_compare_interval_mean_and_missing_values():
    replayed = {s: 2.0 for s in range(201, 241)}
    replayed[226] = 32.0  # one bad batch inside the interval 221-230
    logged = {s: 2.0 for s in range(10, 241, 10)}
    logged[230] = 5.0  # the mean of 221..230
    mean = compare(logged, replayed, LogSpec("mean", "test"), 200, 221, 230)
    assert [p.step for p in mean.pre] == [210, 220] and mean.pre_match is True
    assert [(p.step, p.covers, p.replayed) for p in mean.event] == [(230, (221, 230), 5.0)]
    assert mean.event_match is True and mean.missing is None
    # the printed step alone: 230 is not the bad batch, the log and the replay differ
    step = compare(logged, replayed, LogSpec("step", "test"), 200, 221, 230)
    assert step.event_match is False
    # a checkpoint inside an interval: the value printed at 210 covers 201..210, all replayed,
    # the one at 200 is before the replay
    late = compare(logged, replayed, LogSpec("mean", "test"), 205, 221, 230)
    assert [(p.step, p.replayed) for p in late.pre] == [(210, None), (220, 2.0)]
    # no value before the event: the missing piece named
    sparse = compare({230: 5.0}, replayed, LogSpec("step", "test"), 220, 221, 230)
    assert sparse.pre_match is None
    assert compare({200: 1.0, 230: 5.0}, replayed, LogSpec("step", "test"), 200, 226,
                   230).missing == "the log has no value at steps 201–225 to check against"
    unknown = compare(logged, replayed, spec_for("csv", interval=10), 200, 221, 230)
    assert unknown.pre == () and "declare log_loss" in unknown.missing


def test_spec_from_format_and_plugin():
    assert spec_for("megatron").loss == "mean"
    assert spec_for("hf-trainer-state").loss == "mean"
    assert spec_for("nanogpt").loss == "step"
    assert spec_for("csv", interval=1).loss == "step"
    assert spec_for("csv", interval=10).loss is None
    assert spec_for("megatron", declared="step").source == "declared by the plug-in"
    with pytest.raises(LossLensError, match="log_loss must be 'mean' or 'step'"):
        spec_for("csv", declared="avg")


def test_lr_jumps_and_offset():
    lr = {s: 1e-3 for s in range(1, 500)}
    for s in (401, 402, 403):
        lr[s] = 0.1
    assert lr_jumps(lr, 300, 450) == [(401, pytest.approx(100.0)), (404, pytest.approx(0.01))]
    warm = {s: 1e-3 * s / 10 for s in range(1, 20)}
    assert lr_jumps(warm, 1, 19) == []  # warmup from step 1 is no jump
    replay = {s: 1e-3 for s in range(301, 411)}
    chk = compare_lr(lr, replay, 0, 301, 410)
    assert chk.match is False and chk.mismatched == (401, 402, 403)
    # HF prints the LR after the step: logged s is iteration s + 1's
    shifted = {s: 1e-3 * (s + 1) for s in range(1, 30)}
    assert compare_lr(shifted, {s: 1e-3 * s for s in range(2, 30)}, 1, 2, 28).match is True


def test_a_logged_blip_within_the_replays_noise_is_not_explained():
    """A CNN's loss at 39 was flagged ×1.21 against the dip at 38; the replay gives the same
    values (bitwise), and against its own pre-event steps the point is ×1.03, z = 0.8. It was
    taken as reproduced because the log matched, and its re-runs (bitwise equal) as "transient:
    hardware or a nondeterministic kernel"."""
    blip = SpikeCheck(1.192, 1.158, 0.0439, 1.029, 0.77, False, False)
    d = decide(_f(replay=blip, event_log_match=True, event_logged=1.192, event_replayed=1.192,
                  reruns=(0, 2)))
    assert d.verdict == "inconclusive" and d.cause is None
    assert d.evidence[-1] == (
        "the replay gives the logged values, but the flagged steps do not stand out from the "
        "replayed steps just before them (z = 0.8 < 3): no spike at this level to attribute "
        "(the detector measured it against another level)")
    assert not any("transient" in e for e in d.evidence)


def test_nonfinite_values_are_named_in_the_evidence():
    d = decide(_f(replay=_chk(True, nonfinite=True), event_log_match=True,
                  event_logged=math.nan, event_replayed=math.nan, substitute=_chk(False),
                  ablations=[(3, _chk(True, nonfinite=True))]))
    assert d.verdict == "bad_batch"
    assert "at the event the log printed NaN, the replay gives NaN: the same" in d.evidence


@pytest.mark.parametrize("verdict", [
    "bad_batch", "batch_state_interaction", "optimizer_state", "lr_schedule", "numerics",
    "not_reproducible", "inconclusive"])
def test_every_verdict_prints_as_text(verdict):
    """`lr_schedule` had no style: the report printed `[]lr_schedule[/]`, which rich refuses
    (exit 2, "internal error: MarkupError")."""
    from types import SimpleNamespace

    from losslens.cli.replay import _text
    from losslens.replay.verdicts import VERDICTS

    assert verdict in VERDICTS
    ev = _ev("spike", "loss", 61, 61, 62, id="spike-[1]")
    r = SimpleNamespace(event=ev, flagged=(61, 62), checkpoint=60, verdict=verdict,
                        samples=[{"step": 61, "index": 0, "sample_id": None, "z": math.inf,
                                  "loss": math.nan}],
                        timings={"replay": 1.0}, evidence=["a [bold]log[/] value"],
                        measurements={})
    report = SimpleNamespace(run="run [x]", plugin="p.py", device="cpu", torch_version="2",
                             seconds=1.0, results=[r])
    out = _text(report)
    assert f"spike-[1] → {verdict}" in out
    assert "61:row 0 (NaN loss)" in out and "a [bold]log[/] value" in out


def test_no_earlier_checkpoint_says_which_were_left_out():
    """An outside case (a regression whose loss keeps falling toward its floor): every earlier
    checkpoint was left out by the 1.5× level rule, and the evidence read "no earlier
    checkpoint", as if the run had none."""
    f = _f(substitute=_chk(False), flagged_loss_z=40.0,
           ablations_skipped=[200, 400, 600, 800, 1000])
    d = decide(f)
    assert d.verdict == "bad_batch"
    assert ("no earlier checkpoint to tell a bad batch from a batch-state interaction (PaLM's "
            "ablation): checkpoint(s) 200 … 1000 not tried — their logged loss is over 1.5× the "
            "pre-event level (not a comparably trained state)") in d.evidence
    assert ("no earlier checkpoint to tell a bad batch from a batch-state interaction (PaLM's "
            "ablation)") in decide(_f(substitute=_chk(False), flagged_loss_z=40.0)).evidence



def test_cpu_autocast_departure_names_the_thread_count():
    """An outside case: a bf16 regressor trained on 1 CPU thread, replayed on torch's default 2,
    departs from its log by 1.2e-2 at step 213 (bf16 rounding moves with the thread count);
    on 1 thread it matches to 4e-6. The departure says which thread count replay used."""
    f = _f(log_match=False, log_mismatch=0.0117, log_departs_at=(213, 201),
           cpu_autocast=("bfloat16", 2))
    d = decide(f)
    assert d.verdict == "inconclusive"
    assert d.evidence[-1].endswith(
        "it matches the log through the logged steps before 213 and departs there: the replay "
        "drifts — check lr_at, grad_clip, grad_accum, the optimizer's settings, or get_batch at "
        "213; on CPU under bfloat16 autocast the thread count changes the rounding: this replay "
        "ran on 2 thread(s) — give the trainer's with --threads"), d.evidence[-1]
