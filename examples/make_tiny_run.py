"""Train the tiny GPT of `tiny_gpt_plugin.py` on CPU and write a Megatron-format log with a spike.

    python examples/make_tiny_run.py RUN_DIR [--scenario bad_batch|sdc|clean] [--steps 300]

Writes RUN_DIR/config.json, RUN_DIR/train.log (Megatron-LM training lines, one per iteration,
plus "saving checkpoint" lines so that losslens finds the checkpoints) and
RUN_DIR/checkpoints/step_NNNNNN.pt every `--ckpt-every` iterations (and at 0).

Scenarios (the spike is injected at a known iteration):
- bad_batch: samples `bad_samples` of batch `bad_step` are uniform random tokens. The loss of
  that batch is high at any trained state, so replay confirms `bad_batch`.
- sdc: at iteration `sdc_step` the forward pass runs with one MLP weight multiplied by 40 (a
  simulated silent data corruption), the corrupted gradient is applied, and the weight restored.
  Nothing of it is in the data or the checkpoints: replay gives `not_reproducible`.
- clean: no injection.

The training step is the standard loop replay assumes: mean of the per-sample losses, backward,
clip_grad_norm_, lr from lr_at(step), AdamW step (skipped when the gradient is not finite).
About 300 iterations take a few seconds on one CPU core.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import tiny_gpt_plugin as tg  # noqa: E402


def megatron_line(step: int, total: int, cfg: dict, lr: float, loss: float, gnorm: float,
                  ms: float, nan: bool) -> str:
    """One Megatron-LM training line (the format of Megatron-LM's `training_log`); a NaN loss is omitted, as Megatron does."""
    fields = [f" iteration {step:8d}/{total:8d} |",
              f" consumed samples: {step * cfg['batch']:12d} |",
              f" elapsed time per iteration (ms): {ms:.1f} |",
              f" learning rate: {lr:.6E} |",
              f" global batch size: {cfg['batch']:5d} |"]
    if not nan:
        fields.append(f" lm loss: {loss:.6E} |")
    fields.append(" loss scale: 1.0 |")
    if math.isfinite(gnorm):
        fields.append(f" grad norm: {gnorm:.3f} |")
    fields.append(f" number of skipped iterations: {int(nan):3d} |")
    fields.append(f" number of nan iterations: {int(nan):3d} |")
    return "".join(fields)


def argument_dump(cfg: dict) -> list[str]:
    args = {"hidden_size": cfg["d_model"], "num_layers": cfg["n_layer"],
            "num_attention_heads": cfg["n_head"], "seq_length": cfg["block"],
            "global_batch_size": cfg["batch"], "lr": cfg["lr"], "adam_eps": cfg["eps"],
            "adam_beta1": cfg["betas"][0], "adam_beta2": cfg["betas"][1],
            "clip_grad": cfg["grad_clip"], "save_interval": cfg["ckpt_every"],
            "train_iters": cfg["steps"], "fp16": cfg["precision"] == "fp16",
            "bf16": cfg["precision"] == "bf16", "init_method_std": 0.02}
    rows = [f"  {k} {'.' * max(3, 40 - len(k))} {v}" for k, v in sorted(args.items())]
    return ["------------------------ arguments ------------------------", *rows,
            "-------------------- end of arguments ---------------------"]


def corrupted(model: torch.nn.Module):
    """The sdc scenario: one weight multiplied by 40 for one forward/backward pass."""
    weight = model.blocks[-1].mlp[2].weight

    class _Ctx:
        def __enter__(self):
            self.saved = weight.detach().clone()
            with torch.no_grad():
                weight.mul_(40.0)

        def __exit__(self, *exc):
            with torch.no_grad():
                weight.copy_(self.saved)
    return _Ctx()


def train_step(step: int, model, opt, cfg: dict) -> tuple[float, float, bool]:
    lr = tg.lr_at(step)
    for group in opt.param_groups:
        group["lr"] = lr
    batch = tg.get_batch(step)
    if cfg["scenario"] == "sdc" and step == cfg["sdc_step"]:
        with corrupted(model):
            loss = tg.loss_fn(model, batch).mean()
            loss.backward()
    else:
        loss = tg.loss_fn(model, batch).mean()
        loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"]))
    nan = not (math.isfinite(gnorm) and math.isfinite(float(loss.detach())))
    if not nan:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach()), gnorm, nan


def train(folder: Path, cfg: dict, out=None) -> Path:
    """Train per `cfg` into `folder`; returns the log path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    tg.set_config(cfg)
    torch.set_num_threads(1)  # bitwise-reproducible and fair to a shared machine
    model, log = tg.build_model(tg.train_device()), folder / "train.log"
    opt = tg.build_optimizer(model)
    lines = argument_dump(cfg)
    tg.save_checkpoint(0, model, opt, folder)
    lines.append(f"saving checkpoint at iteration {0:7d} to {folder / 'checkpoints'}")
    for step in range(1, cfg["steps"] + 1):
        t0 = time.perf_counter()
        loss, gnorm, nan = train_step(step, model, opt, cfg)
        ms = 1000 * (time.perf_counter() - t0)
        lines.append(megatron_line(step, cfg["steps"], cfg, tg.lr_at(step), loss, gnorm, ms, nan))
        if step % cfg["ckpt_every"] == 0:
            tg.save_checkpoint(step, model, opt, folder)
            lines.append(f"saving checkpoint at iteration {step:7d} to {folder / 'checkpoints'}")
        if out is not None and step % 50 == 0:
            out.write(f"iteration {step}: loss {loss:.4f}\n")
    log.write_text("\n".join(lines) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--scenario", choices=["bad_batch", "sdc", "clean"], default="bad_batch")
    ap.add_argument("--steps", type=int, default=tg.DEFAULTS["steps"])
    ap.add_argument("--ckpt-every", type=int, default=tg.DEFAULTS["ckpt_every"])
    ap.add_argument("--bad-step", type=int, default=tg.DEFAULTS["bad_step"])
    ap.add_argument("--sdc-step", type=int, default=tg.DEFAULTS["sdc_step"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    cfg = {**tg.DEFAULTS, "scenario": a.scenario, "steps": a.steps, "ckpt_every": a.ckpt_every,
           "bad_step": a.bad_step, "sdc_step": a.sdc_step, "seed": a.seed}
    t0 = time.perf_counter()
    log = train(a.folder, cfg, out=sys.stderr)
    sys.stderr.write(f"wrote {log} and {a.folder / 'checkpoints'} in "
                     f"{time.perf_counter() - t0:.1f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
