"""A loss spike made by Adam's state alone (Molybog et al., arXiv 2304.09871): trainer and plug-in.

    python examples/adam_spike.py RUN_DIR                    # ~5 s on one CPU core
    losslens analyze RUN_DIR/train.log                       # spike-1 at iteration ~11.8k
    LOSSLENS_ADAM_RUN=RUN_DIR losslens replay --plugin examples/adam_spike.py RUN_DIR/train.log

A linear regression (64 samples, 8 features, noiseless targets) trained full-batch with Adam
(lr 1e-3, betas 0.9/0.999, eps 1e-8) in float64. The loss falls by ~30 decades; once the
gradient has been tiny for about a thousand steps (β2's time constant), Adam's second moment
v has decayed with it, the update m/(sqrt(v) + eps) is no longer small, the weights overshoot
and the loss jumps by orders of magnitude — with the batch unchanged, because there is only one.
Replay gives `optimizer_state`: the spike comes back from the checkpoint, "other batches" (the
same full batch) do not remove it, and the update RMS/lr jumps.

The same module is the replay plug-in (docs/replay.md): `build_model`, `build_optimizer`,
`checkpoints`, `load_checkpoint`, `get_batch` (every step trains on the full batch), `loss_fn`.
The run folder is `$LOSSLENS_ADAM_RUN` (default `./adam_run`); it holds `train.log` (Megatron-LM
lines) and `checkpoints/step_NNNNNN.pt` every `ckpt_every` iterations.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

CFG = {"seed": 0, "n": 64, "d": 8, "lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
       "steps": 11999, "ckpt_every": 100}
DTYPE = torch.float64


def run_dir() -> Path:
    return Path(os.environ.get("LOSSLENS_ADAM_RUN", "adam_run"))

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


_DATA: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The full batch (every iteration trains on all 64 samples): x, y = x @ w*."""
    if "xy" not in _DATA:
        g = torch.Generator().manual_seed(CFG["seed"])
        x = torch.randn(CFG["n"], CFG["d"], generator=g, dtype=DTYPE)
        w = torch.randn(CFG["d"], 1, generator=g, dtype=DTYPE)
        _DATA["xy"] = (x, x @ w)
    return _DATA["xy"]


def build_model(device: str | torch.device) -> nn.Module:
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    pin_tf32(torch.device(device))
    torch.manual_seed(CFG["seed"])
    return nn.Linear(CFG["d"], 1).to(device=device, dtype=DTYPE)


def build_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=CFG["lr"], betas=CFG["betas"], eps=CFG["eps"])


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Per-sample squared error, Tensor[n]; the trainer's loss is its mean."""
    dev = next(model.parameters()).device
    x, y = (t.to(dev) for t in batch)
    return ((model(x) - y) ** 2).squeeze(1)


def checkpoints() -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir() / "checkpoints").glob("step_*.pt"))


def load_checkpoint(step: int, model: nn.Module, optimizer=None) -> None:
    state = torch.load(ckpt_path(step), map_location=next(model.parameters()).device,
                       weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])


def save_checkpoint(step: int, model: nn.Module, opt, folder: Path) -> None:
    path = ckpt_path(step, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)


grad_clip = None
autocast_dtype = None


# --------------------------------------------------------------------------- the trainer

def megatron_line(step: int, loss: float, gnorm: float, ms: float) -> str:
    """A Megatron-LM training line (the format of Megatron-LM's `training_log`)."""
    return (f" iteration {step:8d}/{CFG['steps']:8d} | consumed samples: {step * CFG['n']:12d} |"
            f" elapsed time per iteration (ms): {ms:.3f} | learning rate: {CFG['lr']:.6E} |"
            f" global batch size: {CFG['n']:5d} | lm loss: {loss:.6E} | loss scale: 1.0 |"
            f" grad norm: {gnorm:.6E} | number of skipped iterations:   0 |"
            f" number of nan iterations:   0 |")


def argument_dump() -> list[str]:
    args = {"lr": CFG["lr"], "adam_beta1": CFG["betas"][0], "adam_beta2": CFG["betas"][1],
            "adam_eps": CFG["eps"], "global_batch_size": CFG["n"], "train_iters": CFG["steps"],
            "save_interval": CFG["ckpt_every"], "fp16": False, "bf16": False}
    rows = [f"  {k} {'.' * max(3, 40 - len(k))} {v}" for k, v in sorted(args.items())]
    return ["------------------------ arguments ------------------------", *rows,
            "-------------------- end of arguments ---------------------"]


def train(folder: Path) -> Path:
    """Train full-batch for CFG['steps'] iterations into `folder`; returns the log path."""
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(train_device())
    opt = build_optimizer(model)
    batch = get_batch(1)
    lines = argument_dump()
    for step in range(1, CFG["steps"] + 1):
        if (step - 1) % CFG["ckpt_every"] == 0:
            save_checkpoint(step - 1, model, opt, folder)
            lines.append(f"saving checkpoint at iteration {step - 1:7d} to {folder / 'checkpoints'}")
        t0 = time.perf_counter()
        loss = loss_fn(model, batch).mean()
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
