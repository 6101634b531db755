"""Replay on runs built from docs/replay.md alone (session 12: an MLP classifier with a
shuffled-label batch, JSON lines, a nanoGPT-style loop counting iterations from 0). What they
found, one test each:

- a plug-in naming checkpoints by the iteration they were saved before (nanoGPT's layout):
  replay departs from the log at its first step; it said only "check get_batch, lr_at,
  grad_clip and the checkpoint" and then ran every counterfactual of a replay it had already
  judged not to be the run (14 minutes for one event of a tiny LM here, for an `inconclusive`);
- an LR ×100 in the update a checkpoint holds: replay started after it, every batch spiked and
  the verdict was `inconclusive (state)`, not `lr_schedule`;
- `load_state_dict(strict=False)` matching no key: right in text, a crash in `--format json`;
- checkpoints() listing deleted files: a run-level error that stopped every event;
- get_batch with a random augmentation: hidden by replay's batch cache (bitwise-equal
  preflight), blamed on the checkpoint.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")

D, C, N, B = 16, 5, 1024, 32
BAD = 45  # the batch with shuffled labels


@pytest.fixture
def threads():
    from guard_runs import one_thread

    with one_thread():
        yield


def data():
    g = torch.Generator().manual_seed(3)
    centers = torch.randn(C, D, generator=g) * 0.6
    labels = torch.randint(0, C, (N,), generator=g)
    return centers[labels] + torch.randn(N, D, generator=g), labels


def get_batch(step: int, bad: int | None = BAD):
    x, y = data()
    epoch, pos = divmod(step, N // B)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(100 + epoch))
    idx = idx[pos * B:(pos + 1) * B]
    x, y = x[idx], y[idx]
    if step == bad:
        y = y[torch.randperm(B, generator=torch.Generator().manual_seed(5))]
    return x, y


def build_model(device):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.GELU(),
                               torch.nn.Linear(64, C)).to(device)


def build_optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=3e-3)


def loss_fn(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y, reduction="none")


def lr_at(step: int, jump: int | None = None) -> float:
    """3e-3; from `jump` on ×100 (a schedule bug)."""
    return 3e-3 * (100.0 if jump is not None and step >= jump else 1.0)


def train(out: Path, jump: int | None = None, bad: int | None = BAD) -> Path:
    """nanoGPT's loop shape: iterations from 0, `ckpt_{N}.pt` saved at the top of iteration
    N (the state after iterations 0 … N − 1), the iteration's own loss printed (JSON lines)."""
    out.mkdir(parents=True)
    model = build_model("cpu")
    opt = build_optimizer(model)
    rows = []
    for it in range(0, 70):
        if it and it % 10 == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                       out / f"ckpt_{it}.pt")
        for group in opt.param_groups:
            group["lr"] = lr_at(it, jump)
        loss = loss_fn(model, get_batch(it, bad)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append(json.dumps({"step": it, "loss": loss.item(), "lr": lr_at(it, jump)}))
    (out / "log.jsonl").write_text("\n".join(rows) + "\n")
    return out / "log.jsonl"


def plugin(folder: str, offset: int, jump: int | None = None, bad: int | None = BAD,
           strict: bool = True, listed: list[int] | None = None, augment: bool = False,
           batch_offset: int = 0):
    """The user's plug-in: checkpoint name − `offset` is the iteration it is the state after;
    `strict=False` loads the whole file (model and optimizer) as the model's state dict;
    `listed`: the checkpoint names checkpoints() gives (every 10, as configured);
    `batch_offset`: get_batch(s) gives the batch of s + batch_offset."""
    from losslens.replay.plugin import load_torch_file

    run = Path(folder)

    class P:
        pass

    p = P()
    p.build_model, p.build_optimizer = build_model, build_optimizer
    p.get_batch, p.loss_fn = (lambda s: get_batch(s + batch_offset, bad)), loss_fn
    p.lr_at = lambda s: lr_at(s, jump)
    if augment:  # a random augmentation from the global generator: not random access
        def noisy(s):
            x, y = get_batch(s, bad)
            return x + 0.01 * torch.randn_like(x), y
        p.get_batch = noisy
    names = listed or [int(f.stem[5:]) for f in run.glob("ckpt_*.pt")]
    p.checkpoints = lambda: sorted(n - offset for n in names)

    def load_checkpoint(step, model, optimizer=None):
        sd = load_torch_file(run / f"ckpt_{step + offset}.pt")
        if strict:
            model.load_state_dict(sd["model"])
        else:
            model.load_state_dict(sd, strict=False)
        if optimizer is not None:
            optimizer.load_state_dict(sd["optimizer"])

    p.load_checkpoint = load_checkpoint
    return p


def _plugin_file(tmp_path: Path, monkeypatch, folder: Path, offset: int, extra: str = "",
                 name: str = "") -> Path:
    monkeypatch.setitem(sys.modules, "test_replay_outside_cases", sys.modules[__name__])
    plug = tmp_path / f"user_plugin_{offset}{name}.py"
    plug.write_text("from test_replay_outside_cases import plugin as make\n"
                    f"plugin = make({str(folder)!r}, {offset}{', ' + extra if extra else ''})\n")
    return plug


def _cli(*args: str) -> subprocess.CompletedProcess:
    import os

    root = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root.parent), str(root)])}
    return subprocess.run([sys.executable, "-m", "losslens", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_checkpoint_named_by_the_iteration_it_was_saved_before(tmp_path, threads, monkeypatch):
    """Named `ckpt_40` = state after iteration 39: with the name as the step the replay runs
    batch 41 on the state before iteration 40 and departs from the log at once. Inconclusive,
    with the first departing step and what it points at; no counterfactuals. Named right
    (name − 1) the same run is a bad batch."""
    from losslens.replay import replay

    log = train(tmp_path / "run")
    wrong = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 0)
    [r] = replay(str(wrong), log, device="cpu").results
    assert (r.event.kind, r.checkpoint, r.verdict) == ("spike", 40, "inconclusive")
    text = "\n".join(r.evidence)
    assert "it departs at the first logged step replayed (41)" in text, text
    assert r.evidence[-1].startswith("counterfactuals not run"), text
    assert "counterfactuals" not in r.measurements
    assert r.facts.ablations == [] and r.facts.substitute is None and r.facts.reruns is None
    # loaded as the state after 39 (iterations 40, 41, ...) it matches: the numbering is named
    assert [(t["shift"], t["match"], t["steps"]) for t in r.measurements["numbering"]] == [
        (-1, True, (40, 41))]
    assert ("Replayed as the state after iteration 39, checkpoint 40 matches the log at 2 "
            "logged step(s)") in text
    assert "fix the plug-in (checkpoints() returns 39 for that file" in text

    right = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1)
    [r] = replay(str(right), log, device="cpu").results
    assert (r.checkpoint, r.verdict, r.cause) == (39, "bad_batch", "data"), "\n".join(r.evidence)
    assert r.facts.log_match is True and r.facts.counterfactuals_skipped is False
    assert not any("counterfactuals not run" in e for e in r.evidence)


def test_lr_jump_in_the_update_a_checkpoint_holds(tmp_path, threads, monkeypatch):
    """The LR ×100 from iteration 39, and the checkpoint holds the state after iteration 39
    (`ckpt_40`): the loss spikes at 40. Replay started at that checkpoint, after the bad
    update: any batch spiked, the log's LR jump was outside the replayed range, and the verdict
    was `inconclusive` ("the event comes from the state at the checkpoint"). It now starts
    from a checkpoint before the update behind the onset's loss: `lr_schedule`."""
    from losslens.replay import replay

    log = train(tmp_path / "run", jump=39, bad=None)
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, "jump=39, bad=None")
    results = replay(str(plug), log, device="cpu", events=["spike-1"]).results
    [r] = results
    assert (r.event.start_step, r.checkpoint) == (40, 29)
    assert (r.verdict, r.cause) == ("lr_schedule", "schedule"), "\n".join(r.evidence)
    assert any("the log's LR jumps ×100 at 39; lr_at follows it" in e for e in r.evidence)


def test_strict_false_load_in_json(tmp_path, threads, monkeypatch):
    """load_state_dict(whole file, strict=False) matches no key: inconclusive, named; the JSON
    report failed on it ("internal error: not JSON serialisable: StepRecord")."""
    log = train(tmp_path / "run")
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, "strict=False")
    res = _cli("replay", "--plugin", str(plug), str(log), "--format", "json")
    assert res.returncode == 0, res.stderr
    [r] = json.loads(res.stdout)["results"]
    assert r["verdict"] == "inconclusive"
    assert any("load_checkpoint(39) did not restore the weights" in e and "strict=False" in e
               for e in r["evidence"]), r["evidence"]


def test_listed_checkpoint_missing(tmp_path, threads, monkeypatch):
    """checkpoints() lists every 10 as configured, but ckpt_40 (the one to replay from) and
    ckpt_30 (an ablation) were deleted: the event is inconclusive and names the missing file;
    it was a run-level error that stopped every event. With only ckpt_30 gone the event is
    judged from the others and the gap is noted."""
    from losslens.replay import replay

    log = train(tmp_path / "run")
    (tmp_path / "run" / "ckpt_30.pt").unlink()
    listed = "listed=[10, 20, 30, 40, 50, 60]"
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, listed)
    [r] = replay(str(plug), log, device="cpu").results
    assert (r.checkpoint, r.verdict) == (39, "bad_batch"), "\n".join(r.evidence)
    assert any(e.startswith("checkpoint 29 (listed by checkpoints()) does not load, not used: "
                            "plugin") and "FileNotFoundError" in e for e in r.evidence)
    (tmp_path / "run" / "ckpt_40.pt").unlink()
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, listed, name="b")
    [r] = replay(str(plug), log, device="cpu").results
    assert (r.checkpoint, r.verdict) == (39, "inconclusive")
    assert any(e.startswith("checkpoints() lists 39, but it does not load (a deleted or partly "
                            "written checkpoint?): plugin") and "ckpt_40.pt" in e
               for e in r.evidence), r.evidence


def test_get_batch_not_repeatable(tmp_path, threads, monkeypatch):
    """A plug-in that adds noise from the global generator in get_batch: the preflight's two
    runs were bitwise equal (replay keeps the batch), and the verdict read as a checkpoint
    problem. Now a second get_batch call is compared and named."""
    from losslens.replay import replay

    log = train(tmp_path / "run")
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, "augment=True")
    [r] = replay(str(plug), log, device="cpu").results
    assert r.verdict == "inconclusive"
    assert r.measurements["preflight"]["get_batch_repeatable"] is False
    assert any(e.startswith("get_batch(40) gave other tensors when called again") for e in
               r.evidence), r.evidence
    assert not any("departs" in e for e in r.evidence)


def test_get_batch_one_off_is_not_blamed_on_the_checkpoint(tmp_path, threads, monkeypatch):
    """get_batch(s) gives the batch of s − 1: the replay departs at its first step; the
    checkpoint loaded as the state after 38 or after 40 departs too, and replay says the
    numbering is not the cause (one short replay each)."""
    from losslens.replay import replay

    log = train(tmp_path / "run")
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1, "batch_offset=-1")
    [r] = replay(str(plug), log, device="cpu").results
    assert (r.checkpoint, r.verdict) == (39, "inconclusive")
    assert [(t["shift"], t["match"]) for t in r.measurements["numbering"]] == [
        (-1, False), (1, False)]
    text = "\n".join(r.evidence)
    assert ("Replayed as the state after iteration 38 or 40 it departs too: the checkpoint's "
            "numbering is not the cause") in text, text


def test_lr_jump_held_by_the_checkpoint(tmp_path, threads, monkeypatch):
    """LR ×100 from iteration 60, checkpoints every 20: checkpoint 60 already holds the first
    update at the new LR, the replay from it spikes with any batches and the jump is outside
    the replayed range, so the verdict was `inconclusive` ("the event comes from the state at
    the checkpoint"). Replayed from checkpoint 40 with lr_at ÷100 from 60, the same batches
    stay at the loss before the jump: `lr_schedule`."""
    from losslens.replay import replay

    out = tmp_path / "run"
    out.mkdir()
    model, rows = build_model("cpu"), []
    opt = build_optimizer(model)
    for it in range(1, 161):
        for group in opt.param_groups:
            group["lr"] = lr_at(it, 60)
        loss = loss_fn(model, get_batch(it, None)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append(json.dumps({"step": it, "loss": loss.item(), "lr": lr_at(it, 60)}))
        if it % 20 == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                       out / f"ckpt_{it}.pt")
    (out / "log.jsonl").write_text("\n".join(rows) + "\n")
    plug = _plugin_file(tmp_path, monkeypatch, out, 0, "jump=60, bad=None")
    # the spike from 62 on (the divergence from 61 starts right after checkpoint 60: replay
    # goes back to 40 for it, and the jump is in the replayed range)
    [r] = replay(str(plug), out / "log.jsonl", device="cpu", events=["spike-1"]).results
    assert r.flagged[0] == 62
    assert (r.checkpoint, r.verdict, r.cause) == (60, "lr_schedule", "schedule"), \
        "\n".join(r.evidence)
    sch = r.measurements["schedule"]
    assert (sch["jump_step"], sch["ratio"], sch["checkpoint"]) == (60, 100.0, 40)
    assert sch["check"]["shows"] is False and sch["check"]["ratio"] < 1.5
    assert r.facts.substitute.shows is True  # other batches spike too at the jumped LR
    assert ("the event happens with any batches after the LR jump, and not without it: the "
            "schedule") in r.evidence

