"""A batch × state interaction: an idle weight, Adam's decayed second moment, a normal block of data.

    python examples/adam_idle.py RUN_DIR                     # ~3 s on one CPU core
    losslens analyze RUN_DIR/train.log                       # spike-1 at iterations 2501-2505
    LOSSLENS_IDLE_RUN=RUN_DIR losslens replay --plugin examples/adam_idle.py RUN_DIR/train.log

A linear regression (8 features, batches of 64, targets = sum of the features + noise 0.01)
trained with AdamW (lr 6e-3, betas 0.9/0.999, weight decay 0.01) in float64. Feature 7 is
present for the first 1500 iterations, then absent (zero) for 1000: its weight gets no
gradient, so weight decay alone pulls it away from its value, and Adam's second moment for it
decays (β2 = 0.999: ×0.37 in 1000 steps). Iterations 2501–2504 are a normal block of data —
the same distribution as the first 1500 — with feature 7 back. At this state the block's loss
is high (the weight has drifted) and its gradient meets a decayed sqrt(v): the corrections are
full-size Adam steps that overshoot, and the loss jumps ×38 over 2501–2504. From an earlier
checkpoint, where the weight was in place and v fresh, the same four batches are harmless
(×1.5 from checkpoint 1500; from 2000, with the weight already drifting, they spike ×12): the spike needs these batches *and* this state — PaLM's batch-state interaction
(arXiv 2204.02311 §5.1). Replay gives `batch_state_interaction`, with the block's loss outlier
at the checkpoint's weights kept as contributing evidence.

The same module is the replay plug-in: `build_model`, `build_optimizer`, `checkpoints`,
`load_checkpoint`, `get_batch`, `loss_fn`. The run folder is `$LOSSLENS_IDLE_RUN` (default
`./idle_run`): `train.log` (Megatron-LM lines, every iteration) and
`checkpoints/step_NNNNNN.pt` every 500 iterations.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

CFG = {"seed": 0, "batch": 64, "d": 8, "noise": 0.01, "lr": 6e-3, "betas": (0.9, 0.999),
       "eps": 1e-8, "weight_decay": 0.01, "active": 1500, "idle": 1000, "block": 4,
       "steps": 2560, "ckpt_every": 500}
DTYPE = torch.float64


def run_dir() -> Path:
    return Path(os.environ.get("LOSSLENS_IDLE_RUN", "idle_run"))

def train_device() -> torch.device:
    """Where the trainer runs: $LOSSLENS_TRAIN_DEVICE (default cpu; benchmarks/replay_gpu.sh
    trains on the GPU and replays there)."""
    return torch.device(os.environ.get("LOSSLENS_TRAIN_DEVICE", "cpu"))


def pin_tf32(device: torch.device) -> None:
    """On CUDA, TF32 as $LOSSLENS_TF32 says (1 on, default 0 off): the same in training and in
    replay, which records it."""
    if device.type == "cuda":
        on = os.environ.get("LOSSLENS_TF32", "0") == "1"
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on



def ckpt_path(step: int, folder: Path | None = None) -> Path:
    return (folder or run_dir()) / "checkpoints" / f"step_{step:06d}.pt"


def feature_on(step: int) -> bool:
    """Feature 7 is in the data for the first `active` iterations and in the block after the
    idle stretch; absent otherwise."""
    idle_end = CFG["active"] + CFG["idle"]
    return step <= CFG["active"] or idle_end < step <= idle_end + CFG["block"]


def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step`: x ~ N(0, 1) (feature 7 zeroed while absent), y = sum(x) + noise."""
    g = torch.Generator().manual_seed(CFG["seed"] * 1_000_003 + step)
    x = torch.randn(CFG["batch"], CFG["d"], generator=g, dtype=DTYPE)
    if not feature_on(step):
        x[:, 7] = 0
    y = x.sum(1) + CFG["noise"] * torch.randn(CFG["batch"], generator=g, dtype=DTYPE)
    return x, y


def build_model(device: str | torch.device) -> nn.Module:
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    pin_tf32(torch.device(device))
    torch.manual_seed(CFG["seed"])
    return nn.Linear(CFG["d"], 1).to(device=device, dtype=DTYPE)


def build_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=CFG["lr"], betas=CFG["betas"],
                             eps=CFG["eps"], weight_decay=CFG["weight_decay"])


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-sample squared error, Tensor[n]; the trainer's loss is its mean."""
    dev = next(model.parameters()).device
    x, y = (t.to(dev) for t in batch)
    return (model(x).squeeze(1) - y) ** 2


def checkpoints() -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir() / "checkpoints").glob("step_*.pt"))


def load_checkpoint(step: int, model: nn.Module, optimizer=None) -> None:
    state = torch.load(ckpt_path(step), map_location=next(model.parameters()).device,
                       weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])


def lr_at(step: int) -> float:
    return CFG["lr"]


grad_clip = None
autocast_dtype = None


# --------------------------------------------------------------------------- the trainer

def megatron_line(step: int, loss: float, gnorm: float, ms: float) -> str:
    """A Megatron-LM training line."""
    return (f" iteration {step:8d}/{CFG['steps']:8d} | consumed samples: "
            f"{step * CFG['batch']:12d} | elapsed time per iteration (ms): {ms:.3f} |"
            f" learning rate: {CFG['lr']:.6E} | global batch size: {CFG['batch']:5d} |"
            f" lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: {gnorm:.6E} |"
            f" number of skipped iterations:   0 | number of nan iterations:   0 |")


def train(folder: Path) -> Path:
    """Train for CFG['steps'] iterations into `folder`; returns the log path."""
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(train_device())
    opt = build_optimizer(model)
    lines = ["------------------------ arguments ------------------------",
             f"  adam_beta1 .............................. {CFG['betas'][0]}",
             f"  adam_beta2 .............................. {CFG['betas'][1]}",
             f"  adam_eps ................................ {CFG['eps']}",
             f"  global_batch_size ....................... {CFG['batch']}",
             f"  lr ...................................... {CFG['lr']}",
             f"  save_interval ........................... {CFG['ckpt_every']}",
             f"  train_iters ............................. {CFG['steps']}",
             f"  weight_decay ............................ {CFG['weight_decay']}",
             "-------------------- end of arguments ---------------------"]
    for step in range(1, CFG["steps"] + 1):
        if (step - 1) % CFG["ckpt_every"] == 0:
            path = ckpt_path(step - 1, folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
            lines.append(f"saving checkpoint at iteration {step - 1:7d} to {path.parent}")
        t0 = time.perf_counter()
        loss = loss_fn(model, get_batch(step)).mean()
        loss.backward()
        gnorm = float(torch.linalg.vector_norm(torch.cat([p.grad.flatten()
                                                          for p in model.parameters()])))
        opt.step()
        opt.zero_grad(set_to_none=True)
        lines.append(megatron_line(step, float(loss.detach()), gnorm,
                                   1000 * (time.perf_counter() - t0)))
    log = folder / "train.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    a = ap.parse_args(argv)
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    try:
        log = train(a.folder)
    finally:
        torch.set_num_threads(threads)
    sys.stderr.write(f"wrote {log} and {a.folder / 'checkpoints'} in "
                     f"{time.perf_counter() - t0:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
