"""Ready-made replay plug-ins for common trainers: name the run, get a plug-in.

    # my_plugin.py — the whole plug-in for an HF Trainer run
    from losslens.replay.adapters import hf_trainer
    from my_training import make_trainer          # your code that builds the Trainer
    plugin = hf_trainer("out", make_trainer())

    # a nanoGPT run (its out_dir, its data folder, its model.py)
    from losslens.replay.adapters import nanogpt
    plugin = nanogpt("out-shakespeare", data_dir="data/shakespeare_char", model_py="model.py")

    # plain PyTorch checkpoints: model/optimizer state dicts + your get_batch and loss
    from losslens.replay.adapters import torch_checkpoints
    plugin = torch_checkpoints("ckpt/step_*.pt", build_model=..., build_optimizer=...,
                               get_batch=..., loss_fn=...)

Each returns an object with the plug-in's names (`build_model`, `checkpoints`,
`load_checkpoint`, `get_batch`, `loss_fn`, ...); `losslens replay --plugin my_plugin.py` uses
the module's `plugin`. What each adapter reads, and the traps it handles, is in its module.
torchtitan (DCP) and Megatron runs: docs/replay.md says what a plug-in for them must do.
Importing this package needs torch; the HF adapter also needs transformers.
"""
from __future__ import annotations

from typing import Any


def hf_trainer(output_dir: Any, trainer: Any, **kw: Any) -> Any:
    from .hf import HFTrainerRun

    return HFTrainerRun(output_dir, trainer, **kw)


def nanogpt(out_dir: Any, data_dir: Any, model_py: Any = None, **kw: Any) -> Any:
    from .nanogpt import NanoGPTRun

    return NanoGPTRun(out_dir, data_dir, model_py, **kw)


def torch_checkpoints(pattern: Any, **kw: Any) -> Any:
    from .plain import TorchCheckpoints

    return TorchCheckpoints(pattern, **kw)


__all__ = ["hf_trainer", "nanogpt", "torch_checkpoints"]
