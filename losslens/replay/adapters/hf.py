"""An HF `transformers.Trainer` run (its `checkpoint-N` folders) as a replay plug-in.

    # my_plugin.py
    from losslens.replay.adapters import hf_trainer
    from my_training import make_trainer        # the code that builds your Trainer (not .train())
    plugin = hf_trainer("out", make_trainer())

    losslens replay --plugin my_plugin.py out/checkpoint-500/trainer_state.json

The Trainer you pass brings the model, the TrainingArguments, the dataset and the collator; the
adapter does what the Trainer did, and handles the traps of doing it by hand:
- **Checkpoints** are `output_dir/checkpoint-N` (N = global step: the state after N updates):
  weights from `model.safetensors` (or `pytorch_model.bin`, weights only), optimizer from
  `optimizer.pt`, RNG from `rng_state.pth`. safetensors leaves out tied weights (GPT-2's
  `lm_head` is `wte`): the load is strict except for them. `rng_state.pth` holds numpy's state,
  which `torch.load(weights_only=True)` refuses without transformers' allowlist: it is used.
- **The optimizer** is `trainer.create_optimizer()` — the Trainer's parameter groups (no weight
  decay on biases and LayerNorm), the `optim` and its arguments.
- **The schedule** is the Trainer's own scheduler (`create_scheduler` for `max_steps`),
  evaluated at step − 1. The LR the Trainer logs at step s is, depending on the transformers
  version, the LR of step s or of step s + 1: `lr_log_offset` is read off the log itself
  (`trainer_state.json`'s `log_history` against the scheduler).
- **Batches** re-walk the Trainer's sampler: `get_train_dataloader()`, `set_epoch(epoch)` as
  the training loop does, the index batches of its batch sampler, collated by its collator;
  a step is `gradient_accumulation_steps` consecutive micro-batches. `sample_ids` are dataset
  indices.
- **The loss** is the Trainer's normalisation: causal-LM token cross-entropy summed over the
  step's micro-batches and divided by `num_items_in_batch` (the label tokens ≠ −100 of the whole
  step, counted as the Trainer counts them: for GPT-2 under transformers 5.25 the unshifted
  labels, so every loss is ×(t − 1)/t), not the mean of per-sample means: `batch_loss` weights
  each row by its token count.
  Per-sample losses (what the samples are ranked on) are each row's mean token loss.
  One label per row (`*ForSequenceClassification`): the head's loss of each row; the step's
  loss is the sum of its micro-batch means, divided by their number unless the Trainer leaves
  it undivided (a model taking `**kwargs` is given `num_items_in_batch`, ignores it, and the
  Trainer does not divide: its log prints `gradient_accumulation_steps` × the cross-entropy).
- **Micro-batches** run one forward each, in order, inside `loss_fn`: dropout draws its masks
  per forward pass, as in training.
- **The log** (`trainer_state.json` or the console) prints the mean over `logging_steps`.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch

from ..plugin import PluginError
from .plain import load_model_state


class HFTrainerRun:
    """The plug-in for one Trainer output_dir."""

    def __init__(self, output_dir: str | Path, trainer: Any) -> None:
        self.dir = Path(output_dir)
        self.trainer = trainer
        self.args = trainer.args
        self.gas = int(getattr(self.args, "gradient_accumulation_steps", 1) or 1)
        self.dl = trainer.get_train_dataloader()  # now: its sampler's seed is the run's
        self.per_epoch = len(self.dl) // self.gas
        if self.per_epoch <= 0:
            raise PluginError("the Trainer's dataloader has fewer batches than "
                              "gradient_accumulation_steps")
        self._epoch: tuple[int, list[list[int]]] | None = None
        self._offset: int | None = None
        self.device = torch.device("cpu")
        self.log_loss = "mean"
        clip = getattr(self.args, "max_grad_norm", None)
        self.grad_clip = float(clip) if clip and clip > 0 else None

    # ---- checkpoints

    def _ckpt_dirs(self) -> dict[int, Path]:
        out = {}
        for d in self.dir.glob("checkpoint-*"):
            m = re.fullmatch(r"checkpoint-(\d+)", d.name)
            if m and d.is_dir():
                out[int(m.group(1))] = d
        if not out:
            raise PluginError(f"{self.dir}: no checkpoint-N folder")
        return out

    def checkpoints(self) -> list[int]:
        return sorted(self._ckpt_dirs())

    def build_model(self, device: Any) -> torch.nn.Module:
        self.device = torch.device(device)
        return self.trainer.model.to(self.device)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        if model is not self.trainer.model:
            raise PluginError("build_optimizer: not the Trainer's model")
        opt = self.trainer.create_optimizer()
        steps = self.args.max_steps if self.args.max_steps and self.args.max_steps > 0 else \
            self.per_epoch * math.ceil(self.args.num_train_epochs)
        self.scheduler = self.trainer.create_scheduler(num_training_steps=steps, optimizer=opt)
        self._base = [float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]
        return opt

    def load_checkpoint(self, step: int, model: torch.nn.Module, optimizer: Any = None) -> None:
        d = self._ckpt_dirs()[step]
        if (d / "model.safetensors").is_file():
            from safetensors.torch import load_file

            state = load_file(str(d / "model.safetensors"), device=str(self.device))
        elif (d / "pytorch_model.bin").is_file():
            state = torch.load(d / "pytorch_model.bin", map_location=self.device, weights_only=True)
        else:
            raise PluginError(f"{d}: no model.safetensors or pytorch_model.bin (a sharded "
                              "checkpoint needs its own load_checkpoint)")
        load_model_state(model, state, str(d))
        if optimizer is not None:
            if not (d / "optimizer.pt").is_file():
                raise PluginError(f"{d}: no optimizer.pt (save_only_model=True?): replay "
                                  "would restart the optimizer's moments from zero")
            optimizer.load_state_dict(torch.load(d / "optimizer.pt", map_location=self.device,
                                                 weights_only=True))
        if (d / "rng_state.pth").is_file():
            self._load_rng(d / "rng_state.pth")

    def _load_rng(self, path: Path) -> None:
        import random

        import numpy as np

        try:
            from transformers.trainer_pt_utils import safe_globals
        except ImportError:  # older transformers: numpy's state needs its allowlist
            safe_globals = None
        if safe_globals is not None:
            with safe_globals():
                st = torch.load(path, weights_only=True)
        else:
            st = torch.load(path, weights_only=True)
        random.setstate(st["python"])
        np.random.set_state(st["numpy"])
        torch.random.set_rng_state(st["cpu"])
        if self.device.type == "cuda" and "cuda" in st:
            cuda = st["cuda"]
            torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, (list, tuple)) else cuda,
                                     self.device)

    # ---- the schedule

    def lr_at(self, step: int) -> list[float]:
        lam = getattr(self.scheduler, "lr_lambdas", None)
        if lam is None:
            raise PluginError("the Trainer's scheduler has no lr_lambdas: give lr_at yourself")
        return [b * f(step - 1) for b, f in zip(self._base, lam)]

    @property
    def lr_log_offset(self) -> int:
        """0 when the Trainer logs the LR of the logged step, 1 when the one after it."""
        if self._offset is None:
            self._offset = 0
            hist = self._history()
            if hist and hasattr(self, "scheduler"):
                pts = [(int(h["step"]), float(h["learning_rate"])) for h in hist
                       if "learning_rate" in h and "step" in h][:20]

                def err(off: int) -> float:
                    return sum(abs(self.lr_at(s + off)[0] - v) / max(v, 1e-30) for s, v in pts)
                if pts and err(1) < err(0):
                    self._offset = 1
        return self._offset

    def _history(self) -> list[dict[str, Any]]:
        dirs = self._ckpt_dirs()
        state = dirs[max(dirs)] / "trainer_state.json"
        if not state.is_file():
            return []
        return json.loads(state.read_text()).get("log_history", [])

    # ---- batches and the loss

    def indices(self, step: int) -> list[int]:
        """Dataset indices of global step `step`'s micro-batches, in order."""
        epoch, k = divmod(step - 1, self.per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            if hasattr(self.dl, "set_epoch"):
                self.dl.set_epoch(epoch)
            self._epoch = (epoch, [list(b) for b in self.dl.batch_sampler])
        batches = self._epoch[1][k * self.gas:(k + 1) * self.gas]
        return [i for b in batches for i in b]

    def sample_ids(self, step: int) -> list[int]:
        return self.indices(step)

    def get_batch(self, step: int) -> dict[str, torch.Tensor]:
        ds = self.dl.dataset
        return self.dl.collate_fn([ds[i] for i in self.indices(step)])

    def _tokens(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor,
                                                                            torch.Tensor]:
        b = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        labels = b.pop("labels")
        logits = model(**b).logits
        lab = labels[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), lab,
                                               ignore_index=-100, reduction="none")
        mask = (lab != -100)
        return (ce * mask).sum(1), mask.sum(1)

    @staticmethod
    def _per_row(batch: dict[str, Any]) -> bool:
        """One label per row (sequence classification or regression), not token labels."""
        labels = batch.get("labels")
        return isinstance(labels, torch.Tensor) and labels.dim() == 1

    def _row_losses(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """The model's own loss of each row, as its `*ForSequenceClassification` head computes
        it (problem_type from the config: regression, single- or multi-label)."""
        b = {k: v.to(self.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
        labels = b.pop("labels")
        logits = model(**b).logits.float()
        cfg = getattr(model, "config", None)
        kind = getattr(cfg, "problem_type", None)
        if kind is None:
            kind = ("regression" if getattr(cfg, "num_labels", 2) == 1 else
                    "single_label_classification" if not labels.is_floating_point() else
                    "multi_label_classification")
        if kind == "regression":
            return (logits.reshape(labels.shape) - labels.float()) ** 2
        if kind == "single_label_classification":
            return torch.nn.functional.cross_entropy(logits, labels.long(), reduction="none")
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, labels.float(), reduction="none").reshape(len(labels), -1).mean(1)

    def loss_fn(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Each row's mean token loss (shifted labels, −100 ignored); for one label per row,
        the row's loss as the model's classification/regression head computes it. A step of
        several micro-batches runs one forward per micro-batch, in order, as the Trainer does:
        dropout draws its masks per forward pass, so one pass over the whole step would draw
        other masks (and round differently under bf16)."""
        n = len(batch["labels"]) if isinstance(batch.get("labels"), torch.Tensor) else 0
        bs = int(getattr(self.args, "per_device_train_batch_size", 0) or 0)
        if self.gas > 1 and bs and n > bs:
            parts = [{k: (v[i:i + bs] if isinstance(v, torch.Tensor) and v.dim() and
                          len(v) == n else v) for k, v in batch.items()}
                     for i in range(0, n, bs)]
            return torch.cat([self._loss_rows(model, part) for part in parts])
        return self._loss_rows(model, batch)

    def _loss_rows(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        if self._per_row(batch):
            return self._row_losses(model, batch)
        total, count = self._tokens(model, batch)
        return total / count.clamp_min(1)

    def _scaled_for_ga(self, batch: dict[str, Any], device: Any) -> bool:
        """Whether the Trainer leaves each micro-batch's loss undivided by the accumulation
        steps: it does when the model takes `num_items_in_batch` (or a compute_loss_func is
        set) — even when, like a sequence classifier, the model then ignores it and returns a
        mean: the step's loss is then the sum of its micro-batch means (HF's own log shows it)."""
        fixed = getattr(self.trainer, "loss_is_scaled_for_ga", None)
        if fixed is not None:
            return bool(fixed)
        if getattr(self.trainer, "compute_loss_func", None) is not None:
            return True
        if not getattr(self.trainer, "model_accepts_loss_kwargs", False):
            return False
        counter = getattr(self.trainer, "_get_num_items_in_batch", None)
        return counter is None or counter([batch], device) is not None

    def batch_loss(self, losses: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """The Trainer's loss: summed token losses / num_items_in_batch, counted the way this
        Trainer counts it (its own `_get_num_items_in_batch` when it has one: some versions and
        models count the unshifted labels, a factor (t − 1)/t on every loss and gradient);
        the token mean when the model does not take `num_items_in_batch`. One label per row:
        the mean of each micro-batch's rows (what the model returns), summed over the step's
        micro-batches, divided by their number unless the Trainer leaves it undivided."""
        if self._per_row(batch):
            bs = int(getattr(self.args, "per_device_train_batch_size", 0) or len(losses))
            means = torch.stack([part.mean() for part in losses.split(bs)])
            total = means.sum()
            return total if self._scaled_for_ga(batch, losses.device) else total / len(means)
        count = (batch["labels"][:, 1:] != -100).sum(1).to(losses.device)
        total = (losses * count).sum()
        items = None
        counter = getattr(self.trainer, "_get_num_items_in_batch", None)
        if counter is not None:
            items = counter([batch], losses.device)
        if items is None:
            items = count.sum().clamp_min(1)
        return total / items
