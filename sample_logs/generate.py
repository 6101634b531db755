"""Writes the bundled sample logs (deterministic). Run: python sample_logs/generate.py

- megatron_gpt_spikes.log: a Megatron-LM (2023-era, fp16) run of 3,000 iterations with an
  argument dump (hidden 4096, init std 0.02, Adam eps 1e-8), checkpoints every 500, a spike at
  820 that recovers fast, a crash after 1,650 resumed from the 1,500 checkpoint (iterations
  1,501-1,650 logged twice), fp16 overflows, and a spike at 2,410 that never recovers, led by the grad
  norm growing from 2,370.
- nanogpt_clean.log: a clean nanoGPT run (5,000 iterations, eval every 250).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _loss(it: int, rng: np.random.Generator) -> float:
    base = 2.2 + 8.8 * (1 + it / 60.0) ** -0.55
    return base * math.exp(rng.normal(0, 0.012))


def megatron() -> str:
    rng = np.random.default_rng(7)
    out = ["using world size: 64, data-parallel-size: 8, tensor-model-parallel size: 8",
           "------------------------ arguments ------------------------"]
    args = {"adam_beta1": "0.9", "adam_beta2": "0.95", "adam_eps": "1e-08", "bf16": "False",
            "clip_grad": "1.0", "fp16": "True", "global_batch_size": "512",
            "hidden_size": "4096", "init_method_std": "0.02", "log_interval": "10",
            "lr": "0.00015", "lr_decay_style": "cosine", "micro_batch_size": "4",
            "min_lr": "1e-05", "num_attention_heads": "32", "num_layers": "32",
            "save_interval": "500", "seq_length": "2048", "train_iters": "3000",
            "weight_decay": "0.1"}
    out += [f"  {k} {'.' * (48 - len(k))} {v}" for k, v in args.items()]
    out.append("-------------------- end of arguments ---------------------")
    scale = 65536.0

    def line(it: int) -> str:
        nonlocal scale
        loss = _loss(it, rng)
        skipped, gnorm = 0, 0.9 + 0.1 * rng.random()
        if 820 <= it <= 840:
            loss *= {820: 1.9, 830: 1.25, 840: 1.05}[it]
            gnorm *= 6
        if it in (1100, 1110):
            skipped, scale = 1, scale / 2
        if 2370 <= it < 2410:  # the grad norm runs away first (the Adam-epsilon mechanism, docs/playbook.md)
            gnorm *= 1.0 + (it - 2360) / 10.0
        if it >= 2410:  # a spike that settles higher and never comes back
            loss += 2.6 if it < 2480 else 1.1
            gnorm *= 4 if it < 2480 else 1.5
        lr = 1.5e-4 * 0.5 * (1 + math.cos(math.pi * it / 3000))
        g = "" if skipped else f" grad norm: {gnorm:.3f} |"
        return (f" iteration {it:8d}/{3000:8d} | consumed samples: {it * 512:12d} | "
                f"elapsed time per iteration (ms): {1523.4 + rng.normal(0, 5):.1f} | "
                f"learning rate: {lr:.3E} | global batch size: {512:5d} | "
                f"lm loss: {loss:.6E} | loss scale: {scale:.1f} |{g} "
                f"number of skipped iterations: {skipped:3d} | "
                f"number of nan iterations: {0:3d} |")

    def validation(it: int) -> list[str]:
        v = _loss(it, rng) + 0.05
        text = (f" validation loss at iteration {it} | lm loss value: {v:.6E} | "
                f"lm loss PPL: {math.exp(min(20, v)):.6E} | ")
        rule = "-" * (len(text) + 1)
        return [rule, text, rule]

    for it in range(10, 1651, 10):
        out.append(line(it))
        if it % 500 == 0:
            out.append(f"  successfully saved checkpoint at iteration {it:7d} to /ckpt/gpt")
        if it % 250 == 0:
            out += validation(it)
    out += ["Traceback (most recent call last):", "RuntimeError: NCCL communicator was aborted",
            "using world size: 64, data-parallel-size: 8, tensor-model-parallel size: 8",
            "  successfully loaded checkpoint from /ckpt/gpt at iteration 1500"]
    for it in range(1510, 3001, 10):
        out.append(line(it))
        if it % 500 == 0:
            out.append(f"  successfully saved checkpoint at iteration {it:7d} to /ckpt/gpt")
        if it % 250 == 0:
            out += validation(it)
    return "\n".join(out) + "\n"


def nanogpt() -> str:
    rng = np.random.default_rng(3)
    out = ["Overriding config with config/train_gpt2.py:", "tokens per iteration will be: 491,520"]
    for it in range(0, 5001, 10):
        if it % 250 == 0:
            t, v = _loss(it, rng) - 0.05, _loss(it, rng)
            out.append(f"step {it}: train loss {t:.4f}, val loss {v:.4f}")
        mfu = -100.0 if it < 50 else 38.5 + rng.normal(0, 0.3)
        out.append(f"iter {it}: loss {_loss(it, rng):.4f}, time {412 + rng.normal(0, 4):.2f}ms, "
                   f"mfu {mfu:.2f}%")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    (HERE / "megatron_gpt_spikes.log").write_text(megatron())
    (HERE / "nanogpt_clean.log").write_text(nanogpt())
