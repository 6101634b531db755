"""A losslens replay plug-in for a tiny GPT, and the model and data that `make_tiny_run.py` trains.

The plug-in contract (docs/replay.md) is the set of module-level names below: `build_model`,
`build_optimizer`, `checkpoints`, `load_checkpoint`, `get_batch`, `loss_fn`, `autocast_dtype`,
plus the optional `lr_at`, `grad_clip`, `sample_ids`. Use it as

    python examples/make_tiny_run.py runs/bad --scenario bad_batch
    LOSSLENS_TINY_RUN=runs/bad losslens replay --plugin examples/tiny_gpt_plugin.py runs/bad/train.log

The run folder (default `./tiny_run`, or `$LOSSLENS_TINY_RUN`) holds `config.json`, the log and
`checkpoints/step_000050.pt` ... written by `make_tiny_run.py`.

Data: real English text, byte-level (vocabulary 256): the Python reference manual's help
topics that ship with CPython (`pydoc_data.topics`, ~466 KB), so nothing is downloaded. The
loss falls from log(256) = 5.5 nats to about 2.5 within 300 steps. Batch `step`
(the batch consumed by iteration `step`, 1-based) is drawn from a generator seeded by
(seed, step): deterministic random access, as replay needs. In the `bad_batch` scenario some
samples of batch `bad_step` are uniform random bytes ("a corrupted shard"): that is part of the
data, so `get_batch` returns it too. In the `sdc` scenario one step's forward pass ran with a
corrupted weight (a simulated silent data corruption on the accelerator): not in the data, not
in any checkpoint, so a faithful replay does not see it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULTS = {
    "scenario": "bad_batch", "seed": 0, "steps": 300, "ckpt_every": 50,
    "bad_step": 180, "bad_samples": [1, 2, 5, 9, 13, 14], "sdc_step": 230,
    "vocab": 256, "block": 32, "d_model": 48, "n_head": 4, "n_layer": 2, "batch": 16,
    "lr": 3e-3, "warmup": 20, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.0,
    "grad_clip": 1.0, "precision": "fp32",
}


# --------------------------------------------------------------------------- the model

class Attention(nn.Module):
    def __init__(self, d: int, n_head: int, block: int) -> None:
        super().__init__()
        self.n_head, self.d_head = n_head, d // n_head
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        # a hook point: replay watches the abs-max of the pre-softmax attention logits here
        self.attn_logits = nn.Identity()
        self.register_buffer("mask", torch.tril(torch.ones(block, block, dtype=torch.bool)),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.n_head, self.d_head).transpose(1, 2) for z in (q, k, v))
        scores = self.attn_logits((q @ k.transpose(-2, -1)) / math.sqrt(self.d_head))
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        y = F.softmax(scores.float(), dim=-1).to(v.dtype) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d: int, n_head: int, block: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = Attention(d, n_head, block)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, block: int, d_model: int, n_head: int, n_layer: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d_model), nn.Embedding(block, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, block) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[-1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


# --------------------------------------------------------------------------- run folder

def run_dir() -> Path:
    return Path(os.environ.get("LOSSLENS_TINY_RUN", "tiny_run"))

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



_CONFIG: dict | None = None


def config() -> dict:
    """The run's config.json (cached), over the defaults."""
    global _CONFIG
    if _CONFIG is None:
        path = run_dir() / "config.json"
        _CONFIG = {**DEFAULTS, **(json.loads(path.read_text()) if path.exists() else {})}
    return _CONFIG


def set_config(cfg: dict) -> None:
    """Used by make_tiny_run.py (and tests) to share one config without a file."""
    global _CONFIG
    _CONFIG = {**DEFAULTS, **cfg}


def ckpt_path(step: int, folder: Path | None = None) -> Path:
    return (folder or run_dir()) / "checkpoints" / f"step_{step:06d}.pt"


# --------------------------------------------------------------------------- data

_TEXT: dict[str, torch.Tensor] = {}


def corpus() -> torch.Tensor:
    """Real English text as bytes: the Python reference manual's help topics, which ship with
    CPython itself (`pydoc_data.topics`, ~466 KB of PSF-licensed documentation), in sorted
    topic order so that every machine gets the same byte stream. LongTensor[n] of byte values."""
    if "text" not in _TEXT:
        from pydoc_data.topics import topics

        text = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
        _TEXT["text"] = torch.frombuffer(bytearray(text), dtype=torch.uint8).long()
    return _TEXT["text"]


def clean_batch(step: int, cfg: dict | None = None) -> torch.Tensor:
    """Batch `step` of the clean stream: `batch` windows of `block + 1` bytes at offsets drawn
    from a generator seeded by (seed, step) — random access, as replay needs. LongTensor."""
    cfg = cfg or config()
    text = corpus()
    g = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + step)
    n, t = cfg["batch"], cfg["block"] + 1
    starts = torch.randint(len(text) - t, (n,), generator=g)
    return text[starts[:, None] + torch.arange(t)]


def get_batch(step: int) -> torch.Tensor:
    """The batch iteration `step` trained on, exactly (including injected bad samples)."""
    cfg = config()
    tok = clean_batch(step, cfg)
    if cfg["scenario"] == "bad_batch" and step == cfg["bad_step"]:
        g = torch.Generator().manual_seed(cfg["seed"] + 99)
        for i in cfg["bad_samples"]:
            tok[i] = torch.randint(cfg["vocab"], (tok.shape[1],), generator=g)
    return tok


def sample_ids(step: int) -> list[int]:
    """Global sample index of each row of batch `step` (what a data pipeline would log)."""
    n = config()["batch"]
    return list(range((step - 1) * n, step * n))


# --------------------------------------------------------------------------- the plug-in

def build_model(device: str | torch.device) -> nn.Module:
    cfg = config()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)  # as in training: same reduction order, no thread contention
    pin_tf32(torch.device(device))
    torch.manual_seed(cfg["seed"])
    model = TinyGPT(cfg["vocab"], cfg["block"], cfg["d_model"], cfg["n_head"], cfg["n_layer"])
    return model.to(device)


def build_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    cfg = config()
    return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=tuple(cfg["betas"]),
                             eps=cfg["eps"], weight_decay=cfg["weight_decay"])


def lr_at(step: int) -> float:
    """Linear warmup, then constant."""
    cfg = config()
    return cfg["lr"] * min(1.0, step / max(1, cfg["warmup"]))


def loss_fn(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Per-sample loss: mean next-token cross-entropy of each sequence, Tensor[n]."""
    batch = batch.to(next(model.parameters()).device)
    logits = model(batch[:, :-1])
    tok = F.cross_entropy(logits.float().transpose(1, 2), batch[:, 1:], reduction="none")
    return tok.mean(dim=1)


def checkpoints() -> list[int]:
    folder = run_dir() / "checkpoints"
    return sorted(int(p.stem.split("_")[1]) for p in folder.glob("step_*.pt"))


def load_checkpoint(step: int, model: nn.Module, optimizer=None) -> None:
    """Weights, optimizer state and RNG state saved after `step` iterations."""
    device = next(model.parameters()).device
    state = torch.load(ckpt_path(step), map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"].cpu())


def save_checkpoint(step: int, model: nn.Module, optimizer, folder: Path) -> None:
    path = ckpt_path(step, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": torch.get_rng_state()}, path)


def grad_clip() -> float | None:
    """Max global grad norm (clip_grad_norm_), as in training."""
    return config()["grad_clip"]


def autocast_dtype() -> torch.dtype | None:
    """The run's precision: None = fp32 (the example trains in fp32 on CPU)."""
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config()["precision"]]
