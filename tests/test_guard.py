"""losslens.guard: decisions, the events (equal to analyze's over the same series), the
configuration, the plan file, skipping on resume, alerts, and a plain PyTorch loop end to end."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from losslens.pipeline import analyze
from losslens.detectors import DETECTORS, detector_class
from losslens.errors import InvalidParameterError, LossLensError
from losslens.frame import build
from losslens.guard import (PLAN_FILE, Guard, GuardPolicy, SkippingSampler, load_guard_config,
                            read_plan, skip_planned, tensorboard_text, wandb_alert, write_plan)
from losslens.guard.core import TAGS
from losslens.records import RecordsBuilder


def curve(n: int, seed: int = 0, spikes=(), nan=(), diverge_at=None):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-s / 300)) * np.exp(rng.normal(0, 0.01, n))
    for at, width, factor in spikes:
        loss[at - 1:at - 1 + width] *= factor
    for at in nan:
        loss[at - 1] = math.nan
    if diverge_at:
        loss[diverge_at - 1:] *= np.exp(np.linspace(0, 2.5, n - diverge_at + 1))
    grad = np.exp(rng.normal(0, 0.05, n))
    grad[n // 3] *= 8
    lr = np.full(n, 3e-4)
    scale = np.full(n, 2.0 ** 16)
    scale[n // 2:] /= 2
    return s, loss, grad, lr, scale


def analyze_same(s, loss, grad, lr, scale):
    b = RecordsBuilder()
    for i in range(s.shape[0]):
        for tag, v in (("loss", loss[i]), ("grad_norm", grad[i]), ("lr", lr[i]),
                       ("loss_scale", scale[i])):
            b.add(tag, int(s[i]), float(v), order=i)
    frame = build([b.build("train", "guard", "guard")], TAGS)
    causal = [n for n in DETECTORS if getattr(detector_class(n), "causal", False)]
    return [e.to_dict() for e in analyze(frame, detectors=causal).runs[0].events]


@pytest.mark.parametrize("seed,kw", [
    (0, dict(spikes=[(700, 3, 2.0), (1500, 400, 1.6)], nan=[1000])),
    (1, dict(spikes=[(400, 1, 3.0)], diverge_at=1700)),
    (2, dict()),
])
def test_guard_events_equal_analyze_over_the_same_series(seed, kw, guards):
    """The events are analyze's with the causal detectors (those the guard runs: the others
    need the whole run), severities settled by the findings, ids and JSON included."""
    s, loss, grad, lr, scale = curve(2000, seed, **kw)
    g = guards(GuardPolicy(stop_on=()))  # never stops: every step is fed
    for i in range(s.shape[0]):
        g.step(s[i], loss[i], grad_norm=grad[i], lr=lr[i], loss_scale=scale[i])
    got = [e.to_dict() for e in g.flush()]
    assert got == analyze_same(s, loss, grad, lr, scale)
    assert got  # events there were


def test_decisions_alert_skip_and_stop_with_the_plan(guards):
    s, loss, *_ = curve(900, 3, spikes=[(300, 2, 2.0), (600, 400, 2.0)], nan=[450])
    g = guards(GuardPolicy(stop_after=40, check_every=25), checkpoint_every=100)
    out = []
    for i in range(s.shape[0]):
        d = g.step(s[i], loss[i])
        if d:
            out.append((d.action, d.step))
        if d.action == "stop_and_restart":
            break
    # the fast spike: nothing (info); the NaN: skip the step; the spike that stays out:
    # stop 40 steps into it
    assert out == [("skip_step", 450), ("stop_and_restart", 640)]
    stop = g.stopped
    assert stop.plan.restart_from_step == 500  # latest checkpoint >= 100 before step 600
    assert stop.plan.skip == ((501, 700),)  # min_skip 200
    assert not g.step(641, 2.0) or g.stopped is stop


def test_alert_when_a_spike_comes_back_slowly_and_for_a_divergence(guards):
    s, loss, *_ = curve(1400, 6, spikes=[(300, 300, 1.8)])
    g = guards(GuardPolicy(stop_after=400, check_every=25))
    got = [(d.action, d.step, d.events[0].recovery) for i in range(1000)
           if (d := g.step(s[i], loss[i]))]
    assert got == [("alert", 600, "slow")]  # back at 600: seen at the periodic check there
    s, loss, *_ = curve(2000, 1, diverge_at=1500)
    g = guards(GuardPolicy(stop_on=("spike",)))
    got = [(d.action, d.events[0].kind) for i in range(2000) if (d := g.step(s[i], loss[i]))]
    assert got[:1] == [("alert", "divergence")]


def test_skip_z_skips_a_step_that_starts_an_extreme_spike(guards):
    s, loss, *_ = curve(400, 4, spikes=[(300, 1, 5.0)])
    g = guards(GuardPolicy(skip_z=50))
    acts = [(d.action, d.step) for i in range(400) if (d := g.step(s[i], loss[i]))]
    assert ("skip_step", 300) in acts


def test_nan_grad_norm_is_skipped(guards):
    g = guards()
    for i in range(1, 30):
        g.step(i, 2.0 + 0.01 * (i % 3), grad_norm=1.0)
    d = g.step(30, 2.0, grad_norm=math.inf)
    assert d.action == "skip_step" and "grad norm" in d.reason


def test_policy_validation_and_config_file(tmp_path, guards):
    with pytest.raises(InvalidParameterError, match="check_every"):
        Guard(GuardPolicy(check_every=0))
    (tmp_path / "pyproject.toml").write_text(
        "[tool.losslens.guard]\nstop-after = 7\nstop-on = ['divergence']\nmin-skip = 10\n"
        "[tool.losslens.detectors.spike]\nthreshold = 9.0\n")
    pol, dets = load_guard_config(start=tmp_path)
    assert (pol.stop_after, pol.stop_on, pol.min_skip) == (7, ("divergence",), 10)
    assert dets["spike"].threshold == 9.0
    g = guards(pol, detectors=dets, asynchronous=False)  # its streams are here to look at
    assert next(s.det for s in g.live.streams.streams if s.kind == "spike").threshold == 9.0
    (tmp_path / "pyproject.toml").write_text("[tool.losslens.guard]\nasynchronous = false\n")
    assert guards(load_guard_config(start=tmp_path)[0]).asynchronous is False
    (tmp_path / "pyproject.toml").write_text("[tool.losslens.guard]\nstop-soon = 1\n")
    with pytest.raises(InvalidParameterError, match="unknown key 'stop-soon'"):
        load_guard_config(start=tmp_path)
    (tmp_path / "pyproject.toml").unlink()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_guard_config(start=empty) == (GuardPolicy(), None)


def test_a_guard_table_is_part_of_the_settings_every_command_reads(tmp_path):
    from losslens import options

    (tmp_path / "losslens.toml").write_text("fail-on = 'warning'\n[guard]\nstop-after = 9\n")
    opts = options.load(start=tmp_path)
    assert opts.fail_on == "warning" and opts.guard == {"stop-after": 9}
    assert load_guard_config(start=tmp_path)[0].stop_after == 9


def test_plan_file_round_trip_and_bad_file(tmp_path, guards):
    s, loss, *_ = curve(500, 5, spikes=[(300, 400, 2.0)])
    g = guards(GuardPolicy(stop_after=20, before=10, min_skip=30), checkpoint_every=50)
    for i in range(500):
        if g.step(s[i], loss[i]).action == "stop_and_restart":
            break
    path = write_plan(tmp_path, g.stopped)
    assert path.name == PLAN_FILE
    plan = read_plan(tmp_path)
    assert plan.restart_from_step == 250 and plan.skip == ((251, 320),)
    doc = json.loads(path.read_text())
    assert doc["events"][0]["kind"] == "spike" and doc["action"] == "stop_and_restart"
    assert read_plan(tmp_path / "none") is None
    path.write_text("{}")
    with pytest.raises(LossLensError, match="not a losslens guard plan"):
        read_plan(tmp_path)


def test_skipping_sampler_and_iterator():
    base = list(range(20))
    sampler = SkippingSampler(base, [(2, 3)], samples_per_step=2)
    assert list(sampler) == [0, 1, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    assert len(sampler) == 16
    sampler.set_epoch(1)  # steps 11..20: nothing planned there
    assert list(sampler) == base and len(sampler) == 20
    assert list(skip_planned(range(10), [(3, 4), (8, 8)])) == [0, 1, 4, 5, 6, 8, 9]
    assert list(skip_planned("abcdef", [(2, 2)], batches_per_step=2)) == list("abef")


def test_alert_sinks_callable_tensorboard_and_wandb(tmp_path, guards):
    pytest.importorskip("torch")  # the SummaryWriter opened on a folder is torch's
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    calls, fake = [], []

    class Run:
        def alert(self, title, text, level):
            fake.append((title, level))

    g = guards(alert=[calls.append, tensorboard_text(tmp_path / "tb"), wandb_alert(Run())])
    for i in range(1, 60):
        g.step(i, 2.0 + 0.01 * (i % 3))
    g.step(60, math.nan)
    assert [d.action for d in calls] == ["skip_step"]
    assert fake == [("losslens: skip_step at step 60", "WARN")]
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    acc.Reload()
    assert "losslens/guard/text_summary" in acc.Tags()["tensors"]


def test_plain_pytorch_loop_stops_skips_and_resumes(tmp_path, guards):
    """A plain loop: guard.step before optimizer.step (a NaN step is skipped), stop at the
    non-recovering spike with the plan, resume from the checkpoint skipping its batches."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from guard_runs import BATCH, POISON, TokenData, one_thread, policy, tiny_gpt2

    data, trained = TokenData(), {}
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=False)

    def run(start, ckpt, plan, max_steps=60):
        model = tiny_gpt2()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["opt"])
        guard, saved, losses = guards(policy()), {}, {}
        batches = itertools.islice(skip_planned(iter(loader), plan), start, None)
        for step, batch in zip(range(start + 1, max_steps + 1), batches):
            loss = model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
            value = math.nan if step == 12 and ckpt is None else loss.item()  # a NaN step
            losses[step] = value
            trained[step] = batch["input_ids"][0]
            decision = guard.step(step, value)
            if decision.action == "stop_and_restart":
                write_plan(tmp_path, decision)
                return guard, saved, losses
            if decision.action == "skip_step":
                opt.zero_grad()
                continue
            loss.backward()
            opt.step()
            opt.zero_grad()
            if step % 10 == 0:
                saved[step] = {"model": {k: v.clone() for k, v in model.state_dict().items()},
                               "opt": opt.state_dict()}
                guard.checkpoint_saved(step)
        return guard, saved, losses

    with one_thread():
        guard, saved, losses = run(0, None, None)
        assert [(d.action, d.step) for d in guard.decisions][:1] == [("skip_step", 12)]
        assert guard.stopped.step == POISON[0] + 10
        plan = read_plan(tmp_path)
        assert plan.restart_from_step == 20 and plan.skip == ((21, 60),)
        guard2, _, losses2 = run(20, saved[20], plan)
    assert sorted(losses2) == list(range(21, 61))
    # step 21 trains on the batch of old step 61, step 60 on old step 100's
    assert torch.equal(trained[21], data.x[60 * BATCH])
    assert torch.equal(trained[60], data.x[99 * BATCH])
    assert max(losses2.values()) < 1.2 * min(losses[s] for s in range(16, 21))
    assert [e for e in guard2.flush() if e.kind != "grad_spike"] == []


def test_the_settings_shown_in_the_docs_are_valid():
    import re
    import tomllib
    from pathlib import Path

    from losslens.guard import policy_from_mapping
    from losslens.options import build_detectors

    text = (Path(__file__).resolve().parent.parent / "docs" / "guard.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S)]
    doc = tomllib.loads(block)["tool"]["losslens"]
    assert policy_from_mapping(doc["guard"]) == GuardPolicy()  # the defaults, as documented
    assert build_detectors(doc["detectors"])["spike"].threshold == 6.0
