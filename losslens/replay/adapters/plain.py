"""Plain PyTorch checkpoints as a replay plug-in: state-dict files, your model, your batches.

    plugin = torch_checkpoints("runs/x/ckpt/step_*.pt", build_model=lambda device: Net().to(device),
                               build_optimizer=lambda m: torch.optim.AdamW(m.parameters(), 3e-4),
                               get_batch=my_get_batch, loss_fn=per_sample_cross_entropy)

A checkpoint file holds `{"model": state_dict, "optimizer": state_dict, "rng": ByteTensor}`
(keys configurable; a bare model state dict works too). Its iteration is the file name's last
number (`step_000300.pt` → 300), or the file's `step_key` entry when it has one. Files are read
with `torch.load(weights_only=True)`: a checkpoint is data, not code. The model is loaded
strictly — a `strict=False` load that matches nothing is the classic way a replay silently
runs on random weights — except for the keys of tied parameters (an output embedding that is
the input embedding), which many savers leave out.
"""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any, Callable

import torch

from ..plugin import PluginError


def per_sample_cross_entropy(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    """Per-sample loss of an (inputs, targets) batch for a model returning logits: the mean
    token cross-entropy of each row (targets −100 ignored), Tensor[n]."""
    x, y = batch
    dev = next(model.parameters()).device
    logits = model(x.to(dev))
    y = y.to(dev)
    if logits.dim() == 2:
        return torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")
    ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, -1), y,
                                           ignore_index=-100, reduction="none")
    mask = (y != -100).float()
    return (ce * mask).sum(1) / mask.sum(1).clamp_min(1)


def tied_names(model: torch.nn.Module) -> set[str]:
    """Names of parameters that share their tensor with an earlier-named one (tied weights)."""
    seen: dict[int, str] = {}
    tied = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
        else:
            seen[id(p)] = name
    return tied


def load_model_state(model: torch.nn.Module, state: dict[str, Any], what: str) -> None:
    """load_state_dict, strict but for tied parameters; a `_orig_mod.` (torch.compile) or
    `module.` (DDP) prefix is removed first. A one-line PluginError otherwise."""
    for prefix in ("_orig_mod.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    res = model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if k not in tied_names(model)]
    if missing or res.unexpected_keys:
        raise PluginError(
            f"{what}: the checkpoint does not fit the model — missing "
            f"{', '.join(missing[:5]) or 'nothing'}{' …' if len(missing) > 5 else ''}; "
            f"unexpected {', '.join(res.unexpected_keys[:5]) or 'nothing'}"
            f"{' …' if len(res.unexpected_keys) > 5 else ''}")


class TorchCheckpoints:
    """The plug-in: every name replay looks for, from files and your functions."""

    def __init__(self, pattern: str | Path, *, build_model: Callable, get_batch: Callable,
                 loss_fn: Callable = per_sample_cross_entropy,
                 build_optimizer: Callable | None = None, model_key: str | None = "model",
                 optimizer_key: str = "optimizer", rng_key: str = "rng",
                 step_key: str = "step", **settings: Any) -> None:
        self.pattern = str(pattern)
        if Path(self.pattern).is_dir():
            self.pattern = str(Path(self.pattern) / "*.pt")
        self._build_model, self._get_batch, self._loss_fn = build_model, get_batch, loss_fn
        self.build_optimizer = build_optimizer
        self.keys = (model_key, optimizer_key, rng_key, step_key)
        self._files: dict[int, Path] | None = None
        # lr_at, grad_clip, autocast_dtype, sample_ids, log_loss, ...: passed through
        for k, v in settings.items():
            setattr(self, k, v)

    def build_model(self, device: Any) -> torch.nn.Module:
        return self._build_model(device)

    def get_batch(self, step: int) -> Any:
        return self._get_batch(step)

    def loss_fn(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return self._loss_fn(model, batch)

    def files(self) -> dict[int, Path]:
        if self._files is None:
            out: dict[int, Path] = {}
            for f in sorted(glob.glob(self.pattern)):
                nums = re.findall(r"\d+", Path(f).stem)
                if nums:
                    out[int(nums[-1])] = Path(f)
            if not out:
                raise PluginError(f"no checkpoint file matches {self.pattern}")
            self._files = out
        return self._files

    def checkpoints(self) -> list[int]:
        return sorted(self.files())

    def load_checkpoint(self, step: int, model: torch.nn.Module, optimizer: Any = None) -> None:
        model_key, opt_key, rng_key, _ = self.keys
        path = self.files()[step]
        dev = next(model.parameters()).device
        state = torch.load(path, map_location=dev, weights_only=True)
        if not isinstance(state, dict):
            raise PluginError(f"{path}: not a dict of state dicts")
        weights = state.get(model_key) if model_key and model_key in state else state
        load_model_state(model, weights, str(path))
        if optimizer is not None:
            if opt_key not in state:
                raise PluginError(f"{path}: no {opt_key!r} entry (optimizer state): replay "
                                  "would restart Adam's moments from zero")
            optimizer.load_state_dict(state[opt_key])
        if rng_key in state:
            torch.set_rng_state(state[rng_key].cpu())
