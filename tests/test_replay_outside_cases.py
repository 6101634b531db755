"""Replay on runs built from docs/replay.md alone, session 12 (the cases and what each found
are in the module's tests): a loop that counts iterations from 0 and saves at the top of
iteration N (nanoGPT's layout) replayed with the checkpoint named N — the replay departs from
the log at its first step; replay said only "check get_batch, lr_at, grad_clip and the
checkpoint" and then ran every counterfactual of a replay it had already judged not to be the
run (14 minutes for one event of a tiny LM on this machine, for an `inconclusive`).
"""
from __future__ import annotations

import json
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


def get_batch(step: int):
    x, y = data()
    epoch, pos = divmod(step, N // B)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(100 + epoch))
    idx = idx[pos * B:(pos + 1) * B]
    x, y = x[idx], y[idx]
    if step == BAD:
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


def train(out: Path) -> Path:
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
        loss = loss_fn(model, get_batch(it)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append(json.dumps({"step": it, "loss": loss.item()}))
    (out / "log.jsonl").write_text("\n".join(rows) + "\n")
    return out / "log.jsonl"


def plugin(folder: str, offset: int):
    """The user's plug-in: checkpoint name − `offset` is the iteration it is the state after."""
    from losslens.replay.plugin import load_torch_file

    run = Path(folder)

    class P:
        pass

    p = P()
    p.build_model, p.build_optimizer = build_model, build_optimizer
    p.get_batch, p.loss_fn = get_batch, loss_fn
    p.checkpoints = lambda: sorted(int(f.stem[5:]) - offset for f in run.glob("ckpt_*.pt"))

    def load_checkpoint(step, model, optimizer=None):
        sd = load_torch_file(run / f"ckpt_{step + offset}.pt")
        model.load_state_dict(sd["model"])
        if optimizer is not None:
            optimizer.load_state_dict(sd["optimizer"])

    p.load_checkpoint = load_checkpoint
    return p


def _plugin_file(tmp_path: Path, monkeypatch, folder: Path, offset: int) -> Path:
    monkeypatch.setitem(sys.modules, "test_replay_outside_cases", sys.modules[__name__])
    plug = tmp_path / f"user_plugin_{offset}.py"
    plug.write_text("from test_replay_outside_cases import plugin as make\n"
                    f"plugin = make({str(folder)!r}, {offset})\n")
    return plug


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
    assert "checkpoint 40 must be the state after iteration 40" in text
    assert r.evidence[-1].startswith("counterfactuals not run"), text
    assert "counterfactuals" not in r.measurements
    assert r.facts.ablations == [] and r.facts.substitute is None and r.facts.reruns is None

    right = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1)
    [r] = replay(str(right), log, device="cpu").results
    assert (r.checkpoint, r.verdict, r.cause) == (39, "bad_batch", "data"), "\n".join(r.evidence)
    assert r.facts.log_match is True and r.facts.counterfactuals_skipped is False
    assert not any("counterfactuals not run" in e for e in r.evidence)
