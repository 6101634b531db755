"""An fp16 overflow in attention: Q·K computed before the 1/sqrt(d) scaling: trainer and plug-in.

    python examples/fp16_attention.py RUN_DIR                # ~5 s on one CPU core
    losslens analyze RUN_DIR/train.log                       # nonfinite-1 at iteration 150
    LOSSLENS_FP16_RUN=RUN_DIR losslens replay --plugin examples/fp16_attention.py RUN_DIR/train.log

A one-block attention regressor (sequences of 16 vectors of 8 features, d_model 32, one head)
trained with Adam under fp16 autocast, the way a mixed-precision trainer runs: an iteration
whose loss or gradient is not finite is skipped (no update, "number of nan iterations" in the
log). Iteration `bad_step` (150) trains on a batch of unnormalised features (×`bad_scale`, 200):
the activations are large, each entry of Q and K is still well inside fp16's range (max 65504),
but their dot products over 32 dimensions are not — `q @ k.T` overflows to inf *before* the
division by sqrt(32) that would have brought it back into range, and softmax of inf is NaN.
Replay gives `numerics`: the NaN comes back from the checkpoint in fp16, the same step in fp32
is finite, and the first module whose output held inf is `attn.attn_logits` (the hook point
on the scores). The cure: scale Q and K by d**-0.25 each before the product.

The module is also the replay plug-in; the run folder is `$LOSSLENS_FP16_RUN` (default
`./fp16_run`) with `train.log` (Megatron-LM lines) and `checkpoints/step_NNNNNN.pt`.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

CFG = {"seed": 0, "batch": 16, "seq": 16, "d_in": 8, "d_model": 32, "lr": 1e-3,
       "steps": 200, "ckpt_every": 50, "bad_step": 150, "bad_scale": 200.0}


class Attention(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.d = d
        self.qkv = nn.Linear(d, 3 * d)
        self.attn_logits = nn.Identity()  # hook point: replay watches the scores here
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split(self.d, dim=-1)
        # the overflow: the product first, the scaling after it
        scores = self.attn_logits((q @ k.transpose(-2, -1)) / math.sqrt(self.d))
        return self.proj(torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v)


class Regressor(nn.Module):
    def __init__(self, d_in: int, d: int) -> None:
        super().__init__()
        self.embed = nn.Linear(d_in, d)
        self.attn = Attention(d)
        self.head = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        h = h + self.attn(h)
        return self.head(h.mean(dim=1)).squeeze(-1)


def run_dir() -> Path:
    return Path(os.environ.get("LOSSLENS_FP16_RUN", "fp16_run"))

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


def get_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `step`: x [batch, seq, d_in] from a generator seeded by step, y = a fixed
    nonlinear function of x; batch `bad_step` holds the same kind of data ×bad_scale."""
    g = torch.Generator().manual_seed(CFG["seed"] * 1_000_003 + step)
    x = torch.randn(CFG["batch"], CFG["seq"], CFG["d_in"], generator=g)
    y = torch.tanh(x[..., 0] * x[..., 1]).mean(dim=1) + x[..., 2].mean(dim=1)
    if step == CFG["bad_step"]:
        x = x * CFG["bad_scale"]
    return x, y


def build_model(device: str | torch.device) -> nn.Module:
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    pin_tf32(torch.device(device))
    torch.manual_seed(CFG["seed"])
    return Regressor(CFG["d_in"], CFG["d_model"]).to(device)


def build_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=CFG["lr"])


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    dev = next(model.parameters()).device
    x, y = (t.to(dev) for t in batch)
    return (model(x).float() - y) ** 2


def checkpoints() -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir() / "checkpoints").glob("step_*.pt"))


def load_checkpoint(step: int, model: nn.Module, optimizer=None) -> None:
    state = torch.load(ckpt_path(step), map_location=next(model.parameters()).device,
                       weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])


autocast_dtype = torch.float16
grad_clip = None


# --------------------------------------------------------------------------- the trainer

def megatron_line(step: int, loss: float, gnorm: float, ms: float) -> str:
    """A Megatron-LM training line; a non-finite iteration drops `lm loss`, as Megatron does."""
    bad = not (math.isfinite(loss) and math.isfinite(gnorm))
    fields = [f" iteration {step:8d}/{CFG['steps']:8d} |",
              f" consumed samples: {step * CFG['batch']:12d} |",
              f" elapsed time per iteration (ms): {ms:.1f} |",
              f" learning rate: {CFG['lr']:.6E} |", f" global batch size: {CFG['batch']:5d} |"]
    if not bad:
        fields += [f" lm loss: {loss:.6E} |", " loss scale: 1.0 |", f" grad norm: {gnorm:.3f} |"]
    else:
        fields.append(" loss scale: 1.0 |")
    fields.append(f" number of skipped iterations: {int(bad):3d} |")
    fields.append(f" number of nan iterations: {int(bad):3d} |")
    return "".join(fields)


def train(folder: Path) -> Path:
    """Train under fp16 autocast into `folder`, skipping non-finite iterations."""
    model = build_model(train_device())
    opt = build_optimizer(model)
    lines = ["------------------------ arguments ------------------------",
             "  fp16 .................................... True",
             f"  global_batch_size ....................... {CFG['batch']}",
             f"  hidden_size ............................. {CFG['d_model']}",
             f"  lr ...................................... {CFG['lr']}",
             f"  save_interval ........................... {CFG['ckpt_every']}",
             f"  train_iters ............................. {CFG['steps']}",
             "-------------------- end of arguments ---------------------"]
    for step in range(1, CFG["steps"] + 1):
        if (step - 1) % CFG["ckpt_every"] == 0:
            path = ckpt_path(step - 1, folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, path)
            lines.append(f"saving checkpoint at iteration {step - 1:7d} to {path.parent}")
        t0 = time.perf_counter()
        with torch.autocast(device_type=train_device().type, dtype=autocast_dtype):
            loss = loss_fn(model, get_batch(step)).mean()
        loss.backward()
        gnorm = float(torch.linalg.vector_norm(torch.stack(
            [torch.linalg.vector_norm(p.grad.float()) for p in model.parameters()])))
        if math.isfinite(float(loss.detach())) and math.isfinite(gnorm):
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
