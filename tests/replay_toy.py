"""A toy run for replay's scenario tests: trainer and plug-in in one module (tiny MLP, CPU, seconds).

The run folder is `$LOSSLENS_TOY_RUN` with `config.json`, `train.log` (Megatron-LM lines: every
`log_every` iterations the mean loss over them, as Megatron prints it, and that iteration's LR)
and `checkpoints/step_NNNNNN.pt`. Scenarios, from the config:
- `bad_step`: rows `bad_rows` of that batch have targets ×`bad_scale` (a corrupted shard);
- `lr_jump`: [first, n, factor]: the LR is ×factor for n iterations (a schedule bug);
- `lr_at`: whether the plug-in gives `lr_at` (it is removed from the module when false).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.nn as nn

DEFAULTS = {"seed": 0, "steps": 400, "ckpt_every": 50, "log_every": 1, "batch": 16, "d": 8,
            "lr": 1e-3, "bad_step": None, "bad_rows": [2, 7, 11], "bad_scale": 30.0,
            "lr_jump": None, "lr_at": True}


def run_dir() -> Path:
    return Path(os.environ.get("LOSSLENS_TOY_RUN", "toy_run"))


def config() -> dict:
    path = run_dir() / "config.json"
    return {**DEFAULTS, **(json.loads(path.read_text()) if path.exists() else {})}


def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = config()
    g = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step)
    x = torch.randn(cfg["batch"], cfg["d"], generator=g)
    y = torch.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * torch.randn(cfg["batch"], generator=g)
    if step == cfg["bad_step"]:
        y[cfg["bad_rows"]] *= cfg["bad_scale"]
    return x, y


def build_model(device):
    torch.set_num_threads(1)
    torch.manual_seed(config()["seed"])
    return nn.Sequential(nn.Linear(config()["d"], 32), nn.Tanh(), nn.Linear(32, 1)).to(device)


def build_optimizer(model):
    return torch.optim.Adam(model.parameters(), lr=config()["lr"])


def lr_at(step: int) -> float:
    cfg = config()
    jump = cfg["lr_jump"]
    if jump and jump[0] <= step < jump[0] + jump[1]:
        return cfg["lr"] * jump[2]
    return cfg["lr"]


def loss_fn(model, batch):
    x, y = batch
    return (model(x).squeeze(1) - y) ** 2


def checkpoints() -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir() / "checkpoints").glob("*.pt"))


def load_checkpoint(step, model, optimizer=None):
    st = torch.load(run_dir() / "checkpoints" / f"step_{step:06d}.pt", weights_only=True)
    model.load_state_dict(st["model"])
    if optimizer is not None:
        optimizer.load_state_dict(st["optimizer"])


def sample_ids(step: int) -> list[int]:
    n = config()["batch"]
    return list(range((step - 1) * n, step * n))


def train(folder: Path, **overrides) -> Path:
    cfg = {**DEFAULTS, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    old = os.environ.get("LOSSLENS_TOY_RUN")
    os.environ["LOSSLENS_TOY_RUN"] = str(folder)
    threads = torch.get_num_threads()
    try:
        model = build_model("cpu")
        opt = build_optimizer(model)
        lines = ["------------------------ arguments ------------------------",
                 f"  log_interval ............................ {cfg['log_every']}",
                 f"  save_interval ........................... {cfg['ckpt_every']}",
                 "-------------------- end of arguments ---------------------"]
        acc = []
        for step in range(1, cfg["steps"] + 1):
            if (step - 1) % cfg["ckpt_every"] == 0:
                path = folder / "checkpoints" / f"step_{step - 1:06d}.pt"
                path.parent.mkdir(exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
                lines.append(f"saving checkpoint at iteration {step - 1:7d} to {path.parent}")
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            t0 = time.perf_counter()
            loss = loss_fn(model, get_batch(step)).mean()
            loss.backward()
            gnorm = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten()
                                                              for p in model.parameters()])))
            opt.step()
            opt.zero_grad(set_to_none=True)
            acc.append(float(loss.detach()))
            if step % cfg["log_every"] == 0:
                ms = 1000 * (time.perf_counter() - t0)
                lines.append(
                    f" iteration {step:8d}/{cfg['steps']:8d} | consumed samples: "
                    f"{step * cfg['batch']:12d} | elapsed time per iteration (ms): {ms:.1f} |"
                    f" learning rate: {lr_at(step):.6E} | global batch size: {cfg['batch']:5d} |"
                    f" lm loss: {sum(acc) / len(acc):.6E} | loss scale: 1.0 |"
                    f" grad norm: {gnorm:.6E} | number of skipped iterations:   0 |"
                    f" number of nan iterations:   0 |")
                acc = []
        (folder / "train.log").write_text("\n".join(lines) + "\n")
    finally:
        torch.set_num_threads(threads)
        if old is None:
            os.environ.pop("LOSSLENS_TOY_RUN", None)
        else:
            os.environ["LOSSLENS_TOY_RUN"] = old
    return folder / "train.log"
