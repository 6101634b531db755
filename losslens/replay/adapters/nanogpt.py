"""A nanoGPT run (karpathy/nanoGPT `train.py`) as a replay plug-in.

    plugin = nanogpt("out", data_dir="data/openwebtext", model_py="model.py")

What it reads and the traps it handles:
- **Checkpoints.** `train.py` overwrites one `out/ckpt.pt`; replay needs one from before the
  event. Every `ckpt*.pt` in the folder is used (copy them, e.g. `ckpt_2000.pt`, or save
  under `f"ckpt_{iter_num}.pt"`); each file's own `iter_num` says where it is. A checkpoint
  saved at `iter_num` N holds the state before `iter N` (nanoGPT saves at the top of the loop),
  so it is replay's checkpoint N − 1 and replay's iteration s is nanoGPT's `iter s`.
- **Batches.** nanoGPT's `get_batch` draws offsets with the global `torch.randint`, unseeded per
  step. The adapter re-walks that stream: `torch.manual_seed(1337)`, the model's own
  initialisation (it consumes the generator), the first batch, then per iteration the
  `estimate_loss` batches (`eval_iters` × train and val, every `eval_interval`) and one batch
  per micro-step. Valid for a run started from scratch on one process (or rank 0's stream,
  `seed_offset`), with dropout 0 or on a GPU (CPU dropout draws from the same generator).
- **The logged loss** is the last micro-batch's loss × gradient-accumulation steps, i.e. the
  last micro-batch's mean: `logged_rows` points replay at those rows.
- **The model** is your `model.py` (`GPTConfig`, `GPT`, `configure_optimizers`) built from the
  checkpoint's `model_args`; a `torch.compile` state dict (`_orig_mod.` keys) loads as well.
- **The schedule** is train.py's `get_lr` (linear warmup, cosine decay to `min_lr`), from the
  checkpoint's `config`; pass `lr_at=` for a modified train.py.
- **Precision and TF32.** On CUDA the run's `dtype` becomes the autocast dtype and TF32 is
  switched on for matmul and cuDNN, as train.py does (recorded in `tf32`); on CPU train.py
  runs without autocast, and so does replay.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..plugin import PluginError
from .plain import load_model_state


class NanoGPTRun:
    """The plug-in for one nanoGPT out_dir."""

    def __init__(self, out_dir: str | Path, data_dir: str | Path, model_py: str | Path | None = None,
                 *, seed_offset: int = 0, lr_at: Callable[[int], float] | None = None) -> None:
        self.out_dir, self.data_dir = Path(out_dir), Path(data_dir)
        self.model_py = Path(model_py) if model_py else self.out_dir.parent / "model.py"
        self.seed_offset = seed_offset
        if lr_at is not None:
            self.lr_at = lr_at  # type: ignore[method-assign]
        self._files: dict[int, Path] | None = None
        self._meta: dict[str, Any] | None = None
        self._walk: dict[int, list[int]] | None = None
        self._walk_to = -1
        self.device = torch.device("cpu")
        self.tf32: bool | None = None
        self.log_loss = "step"

    # ---- what the checkpoints say

    def files(self) -> dict[int, Path]:
        if self._files is None:
            out = {}
            for f in sorted(self.out_dir.glob("ckpt*.pt")):
                st = torch.load(f, map_location="cpu", weights_only=True, mmap=True)
                out[int(st["iter_num"]) - 1] = f
                if self._meta is None:
                    self._meta = {"config": dict(st.get("config") or {}),
                                  "model_args": dict(st["model_args"])}
            if not out:
                raise PluginError(f"{self.out_dir}: no ckpt*.pt (nanoGPT overwrites ckpt.pt: "
                                  "keep copies from before the event)")
            self._files = out
        return self._files

    @property
    def config(self) -> dict[str, Any]:
        self.files()
        return self._meta["config"]  # type: ignore[index]

    def _module(self) -> Any:
        if not self.model_py.is_file():
            raise PluginError(f"nanoGPT model.py not found at {self.model_py} (model_py=...)")
        name = "losslens_nanogpt_model"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, self.model_py)
            mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[name] = mod
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        return sys.modules[name]

    def _new_model(self) -> torch.nn.Module:
        mod = self._module()
        return mod.GPT(mod.GPTConfig(**self._meta["model_args"]))  # type: ignore[index]

    # ---- the plug-in

    def checkpoints(self) -> list[int]:
        return sorted(self.files())

    def build_model(self, device: Any) -> torch.nn.Module:
        self.files()
        self.device = torch.device(device)
        if self.device.type == "cuda":  # as train.py does
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            self.tf32 = True
        with torch.random.fork_rng(devices=[]):
            model = self._new_model()
        return model.to(self.device)

    def build_optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.config
        return model.configure_optimizers(c.get("weight_decay", 0.1), c.get("learning_rate", 6e-4),
                                          (c.get("beta1", 0.9), c.get("beta2", 0.95)),
                                          self.device.type)

    def load_checkpoint(self, step: int, model: torch.nn.Module, optimizer: Any = None) -> None:
        path = self.files()[step]
        st = torch.load(path, map_location=self.device, weights_only=True)
        load_model_state(model, st["model"], str(path))
        if optimizer is not None:
            optimizer.load_state_dict(st["optimizer"])

    def lr_at(self, step: int) -> float:
        """train.py's get_lr(iter)."""
        c = self.config
        lr = c.get("learning_rate", 6e-4)
        if not c.get("decay_lr", True):
            return lr
        warm, decay, min_lr = c.get("warmup_iters", 2000), c.get("lr_decay_iters", 600000), \
            c.get("min_lr", 6e-5)
        if step < warm:
            return lr * (step + 1) / (warm + 1)
        if step > decay:
            return min_lr
        ratio = (step - warm) / (decay - warm)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    @property
    def grad_clip(self) -> float | None:
        return self.config.get("grad_clip", 1.0) or None

    @property
    def autocast_dtype(self) -> Any:
        if self.device.type != "cuda":
            return None
        return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            self.config.get("dtype", "bfloat16"))

    # ---- batches: the re-walked random stream

    def _data(self, split: str) -> np.memmap:
        path = self.data_dir / f"{split}.bin"
        if not path.is_file():
            raise PluginError(f"nanoGPT data file {path} not found (data_dir=...)")
        return np.memmap(path, dtype=np.uint16, mode="r")

    def offsets(self, step: int) -> list[list[int]]:
        """The window offsets into train.bin of each micro-batch of `iter step`."""
        c = self.config
        gas, bs, block = (int(c.get("gradient_accumulation_steps", 1)), int(c["batch_size"]),
                          int(self._meta["model_args"]["block_size"]))  # type: ignore[index]
        if c.get("dropout", 0.0) and c.get("device", "cuda") == "cpu":
            raise PluginError("nanoGPT run on CPU with dropout > 0: dropout drew from the same "
                              "generator as get_batch, which cannot be re-walked")
        if self._walk is None or step > self._walk_to:
            self._rewalk(max(step, self._walk_to) + 64, gas, bs, block)
        return self._walk[step]  # type: ignore[index]

    def _rewalk(self, upto: int, gas: int, bs: int, block: int) -> None:
        c = self.config
        n_train = len(self._data("train")) - block
        n_val = len(self._data("val")) - block if (self.data_dir / "val.bin").is_file() else 0
        every, evals = int(c.get("eval_interval", 2000)), int(c.get("eval_iters", 200))
        walk: dict[int, list[int]] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1337 + self.seed_offset)
            self._new_model()  # train.py initialises the model from the same generator

            def draw(n: int) -> list[int]:
                return torch.randint(n, (bs,)).tolist()
            nxt = draw(n_train)
            for it in range(upto + 1):
                if it % every == 0:
                    for _ in range(evals):
                        draw(n_train)
                    for _ in range(evals):
                        draw(n_val)
                micro = []
                for _ in range(gas):
                    micro.append(nxt)
                    nxt = draw(n_train)
                walk[it] = [o for m in micro for o in m]
        self._walk, self._walk_to = walk, upto

    def get_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        data = self._data("train")
        block = int(self._meta["model_args"]["block_size"])  # type: ignore[index]
        ix = self.offsets(step)
        x = torch.stack([torch.from_numpy(data[i:i + block].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(data[i + 1:i + 1 + block].astype(np.int64)) for i in ix])
        return x, y

    def sample_ids(self, step: int) -> list[int]:
        """Each row's offset in train.bin."""
        return self.offsets(step)

    def logged_rows(self, step: int, n: int) -> list[int]:
        """train.py prints the last micro-batch's loss (× gradient accumulation steps)."""
        bs = int(self.config["batch_size"])
        return list(range(max(0, n - bs), n))

    def loss_fn(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        x, y = (t.to(self.device) for t in batch)
        logits, _ = model(x, y)
        ce = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), y,
                                               ignore_index=-1, reduction="none")
        return ce.mean(dim=1)
