"""Replay on runs built the way a new user builds them from docs/replay.md alone — not the
examples' Megatron logs: a CNN classifier logging CSV with bf16 autocast and gradient
accumulation, an MLP logging JSON lines whose LR schedule jumps, an HF Trainer sequence
classifier (tiny BERT, dropout on, gradient accumulation). Each found something wrong:

- bf16 + gradient accumulation: replay ran one forward over the whole batch, which rounds
  differently from the trainer's micro-batches, and called the run unfaithful (relative
  difference 1.5e-3); `grad_accum = k` now replays the micro-batches;
- a NaN batch: its rows came last among the samples to look at (z = -inf), the evidence read
  "the log printed n/a, the replay gives n/a";
- an `lr_schedule` verdict crashed the text report (rich markup `[]lr_schedule[/]`);
- the HF adapter assumed a causal LM (IndexError on one label per row) and ran the step's
  micro-batches as one forward (other dropout masks: the log did not match).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    torch = None

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def threads():
    from guard_runs import one_thread

    with one_thread():
        yield


# --------------------------------------------------------------------------- the user's trainer

def get_batch(cfg: dict, step: int):
    """8×8 images, 4 classes (a brighter quadrant) under heavy noise; batch `nan_step` is NaN."""
    g = torch.Generator().manual_seed(cfg["seed"] * 7919 + step)
    n = cfg["batch"]
    y = torch.randint(0, 4, (n,), generator=g)
    if cfg["model"] == "mlp":
        x = torch.randn(n, 16, generator=g)
        x[torch.arange(n), y] += 2.0
    else:
        x = 1.5 * torch.randn(n, 1, 8, 8, generator=g)
        for i in range(n):
            r, c = int(y[i]) // 2 * 4, int(y[i]) % 2 * 4
            x[i, 0, r:r + 4, c:c + 4] += 0.6
    if step == cfg.get("nan_step"):
        x = torch.full_like(x, math.nan)
    return x, y


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(128, 4)

    def forward(self, x):
        return self.fc(F.relu(self.c2(F.max_pool2d(F.relu(self.c1(x)), 2))).flatten(1))


def build_model(cfg: dict, device):
    torch.manual_seed(cfg["seed"])
    model = TinyCNN() if cfg["model"] == "cnn" else nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    return model.to(device)


def build_optimizer(cfg: dict, model):
    return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.01)


def lr_at(cfg: dict, step: int) -> float:
    first, n, factor = cfg.get("lr_jump") or (0, 0, 1.0)
    return cfg["lr"] * (factor if first <= step < first + n else 1.0)


def loss_fn(model, batch):
    x, y = batch
    return F.cross_entropy(model(x).float(), y, reduction="none")


def train(folder: Path, **over) -> Path:
    """A plain PyTorch loop: AdamW, micro-batches (`accum`), bf16 autocast, a non-finite step
    skipped, {"model", "optimizer"} files every `ckpt_every`, a CSV or JSON-lines log."""
    cfg = {"seed": 0, "model": "cnn", "steps": 60, "batch": 32, "lr": 3e-3, "ckpt_every": 10,
           "accum": 1, "bf16": False, "log": "csv", **over}
    (folder / "ckpt").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    model = build_model(cfg, "cpu")
    opt = build_optimizer(cfg, model)
    lines = ["step,train_loss,lr"] if cfg["log"] == "csv" else []
    for step in range(1, cfg["steps"] + 1):
        if (step - 1) % cfg["ckpt_every"] == 0:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()},
                       folder / "ckpt" / f"step_{step - 1:05d}.pt")
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        x, y = get_batch(cfg, step)
        k, total = cfg["accum"], 0.0
        m = len(x) // k
        for i in range(k):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg["bf16"]):
                loss = loss_fn(model, (x[i * m:(i + 1) * m], y[i * m:(i + 1) * m])).mean()
            (loss / k).backward()
            total += float(loss.detach()) / k
        gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9))
        if math.isfinite(total) and math.isfinite(gnorm):
            opt.step()
        opt.zero_grad(set_to_none=True)
        if cfg["log"] == "csv":
            lines.append(f"{step},{total:.6f},{lr_at(cfg, step):.6g}")
        else:
            lines.append(json.dumps({"step": step, "loss": total, "lr": lr_at(cfg, step),
                                     "grad_norm": gnorm}))
    log = folder / ("metrics.csv" if cfg["log"] == "csv" else "metrics.jsonl")
    log.write_text("\n".join(lines) + "\n")
    return log


def plugin(folder: str, **settings):
    """What the user writes: the documented plain-checkpoint adapter around the trainer."""
    from losslens.replay.adapters import torch_checkpoints

    cfg = json.loads((Path(folder) / "config.json").read_text())
    if cfg["bf16"]:
        settings.setdefault("autocast_dtype", torch.bfloat16)
    return torch_checkpoints(Path(folder) / "ckpt" / "step_*.pt",
                             build_model=lambda d: build_model(cfg, d),
                             build_optimizer=lambda m: build_optimizer(cfg, m),
                             get_batch=lambda s: get_batch(cfg, s), loss_fn=loss_fn,
                             lr_at=lambda s: lr_at(cfg, s), **settings)


def _plugin_file(tmp_path: Path, monkeypatch, folder: Path, settings: str = "") -> Path:
    """The user's plug-in file; it imports this module by name (tests/ is on the path, here
    and in the CLI subprocesses)."""
    monkeypatch.setitem(sys.modules, "test_replay_cases", sys.modules[__name__])
    plug = tmp_path / "user_plugin.py"
    plug.write_text("from test_replay_cases import plugin as make\n"
                    f"plugin = make({str(folder)!r}{', ' + settings if settings else ''})\n")
    return plug


def _cli(*args: str) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    return subprocess.run([sys.executable, "-m", "losslens", *args], capture_output=True,
                          text=True, env=env, timeout=300)


# --------------------------------------------------------------------------- the cases

@pytest.mark.parametrize("declared", [True, False])
def test_bf16_gradient_accumulation_nan_batch(tmp_path, threads, monkeypatch, declared):
    """CNN, bf16 autocast on CPU, 4 micro-batches a step, batch 45 all NaN (the step is
    skipped, as a guarded loop does), CSV log. With `grad_accum = 4` the replay is the run and
    the NaN batch is the cause; without it the replay says it is not the run — not a guess."""
    from losslens.replay import replay

    log = train(tmp_path / "run", bf16=True, accum=4, nan_step=45)
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run",
                        "grad_accum=4" if declared else "")
    [r] = replay(str(plug), log, device="cpu").results
    assert (r.event.kind, r.flagged, r.checkpoint) == ("nonfinite", (45, 45), 40)
    m = r.measurements
    if not declared:  # one bf16 forward over 32 rows is not four over 8
        assert m["log"]["pre_max_rel_diff"] > 1e-5
        return
    assert (r.verdict, r.cause) == ("bad_batch", "data"), "\n".join(r.evidence)
    assert m["log"]["pre_match"] is True and m["log"]["pre_max_rel_diff"] < 1e-5
    assert "at the event the log printed NaN, the replay gives NaN: the same" in r.evidence
    # the NaN rows are the samples to look at, first (they ranked last, z = -inf, before)
    assert [s["step"] for s in r.samples] == [45] * len(r.samples)
    assert all(s["z"] == math.inf for s in r.samples)


def test_grad_accum_must_divide_the_batch(tmp_path, threads, monkeypatch):
    log = train(tmp_path / "run", steps=30, nan_step=25)
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run", "grad_accum=5")
    res = _cli("replay", "--plugin", str(plug), str(log))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [
        f"Error: plugin {plug}: grad_accum = 5 needs a batch whose tensors have a multiple of 5 "
        "rows (got 32); or give select(batch, indices)"]


def test_lr_jump_verdict_in_text(tmp_path, threads, monkeypatch):
    """An MLP logging JSON lines; the LR is ×200 for iterations 61–62 (in the log's `lr`).
    The text report crashed on the `lr_schedule` verdict (exit 2, "internal error:
    MarkupError")."""
    log = train(tmp_path / "run", model="mlp", log="jsonl", steps=90, lr=2e-3,
                lr_jump=[61, 2, 200.0])
    plug = _plugin_file(tmp_path, monkeypatch, tmp_path / "run")
    text = _cli("replay", "--plugin", str(plug), str(log), "--device", "cpu")
    # stderr (not a terminal) holds the progress lines, one per finished stage, and nothing else
    assert text.returncode == 0, text.stderr
    lines = text.stderr.splitlines()
    assert lines and all(x.startswith("losslens replay: spike-1: ") for x in lines), lines
    assert "→ lr_schedule" in text.stdout
    assert "the log's LR jumps ×200 at 61; lr_at follows it" in text.stdout


class _Rows(torch.utils.data.Dataset if torch is not None else object):
    """Token rows whose class is whether the first token is ≥ 18; rows `bad` have it flipped."""

    def __init__(self, n: int, bad=()):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(4, 32, (n, 16), generator=g)
        self.y = (self.x[:, 0] >= 18).long()
        for i in bad:
            self.y[i] = 1 - self.y[i]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "attention_mask": torch.ones(16, dtype=torch.long),
                "labels": self.y[i]}


def make_classifier_trainer(out: Path, bad=()):
    """The user's code: a tiny BERT sequence classifier (local config, dropout 0.1 on) under
    `transformers.Trainer`, 2 micro-batches of 8 a step, logging every step."""
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, num_labels=2)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=8, max_steps=30,
                             gradient_accumulation_steps=2, save_steps=10, logging_steps=1,
                             learning_rate=5e-3, seed=0, use_cpu=True, report_to=[],
                             disable_tqdm=True, dataloader_num_workers=0)
    return Trainer(model=BertForSequenceClassification(cfg), args=args,
                   train_dataset=_Rows(400, bad))


HF_BAD_STEP = 22


def test_hf_sequence_classifier_with_gradient_accumulation(tmp_path, threads, monkeypatch):
    """One step's 16 rows have their labels flipped. The adapter assumed a causal LM
    (`labels[:, 1:]`: IndexError on one label per row) and ran the step's two micro-batches as
    one forward (other dropout masks). This Trainer leaves each micro-batch's mean loss
    undivided (the model takes `num_items_in_batch` and ignores it): its log prints 2× the
    cross-entropy, and so must the replay."""
    pytest.importorskip("transformers")  # in the test extra; skipped only where absent
    import logging

    from losslens.replay import replay
    from losslens.replay.adapters.hf import HFTrainerRun

    logging.getLogger("transformers").setLevel(logging.ERROR)
    out = tmp_path / "out"
    walk = HFTrainerRun(out, make_classifier_trainer(out))  # the sampler's order, re-walked
    bad = walk.indices(HF_BAD_STEP)
    make_classifier_trainer(out, bad).train()
    monkeypatch.setitem(sys.modules, "test_replay_cases", sys.modules[__name__])
    plug = tmp_path / "hf_plugin.py"
    plug.write_text("from losslens.replay.adapters import hf_trainer\n"
                    "from test_replay_cases import make_classifier_trainer\n"
                    f"plugin = hf_trainer({str(out)!r}, "
                    f"make_classifier_trainer({str(out)!r}, {bad!r}))\n")
    log = out / "checkpoint-30" / "trainer_state.json"
    rep = replay(str(plug), log, device="cpu")
    [r] = [x for x in rep.results if x.flagged[0] <= HF_BAD_STEP <= x.flagged[1]]
    assert (r.verdict, r.checkpoint) == ("bad_batch", 20), "\n".join(r.evidence)
    m = r.measurements
    assert m["log"]["pre_match"] is True and m["log"]["event_match"] is True
    assert m["log"]["pre_max_rel_diff"] < 1e-5
    assert {s["sample_id"] for s in r.samples[:8]} <= set(bad)
