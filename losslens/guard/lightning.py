"""The guard as a Lightning `Callback`.

`GuardCallback()` feeds the guard each training step's loss (the `loss` that
`training_step` returns) and learning rate, records the checkpoints Lightning saves, and on
`stop_and_restart` writes the plan file (into `plan_dir`, default the trainer's
`default_root_dir`) and stops the trainer. A run started with a plan file there (resumed
with `fit(..., ckpt_path=...)`) leaves out the planned batches: the sampler of the training
loader is wrapped in a `SkippingSampler` (the order must be the stopped run's: no shuffling,
or a seeded sampler). Lightning starts an epoch's data over on a mid-epoch resume; the
steps of the epoch already run are left out as well.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    from pytorch_lightning import Callback  # type: ignore[no-redef]

from .core import Guard
from .resume import install_skipping, read_plan, write_plan


class GuardCallback(Callback):
    """Runs a `Guard` inside `Trainer.fit()`; see the module docstring."""

    def __init__(self, guard: Guard | None = None, plan_dir: str | Path | None = None) -> None:
        if guard is None:
            from .config import guard_from_settings

            guard = guard_from_settings()
        self.guard, self.plan_dir = guard, plan_dir
        self.plan = None
        self.skipping = False
        self.plan_path: Path | None = None

    def _dir(self, trainer: Any) -> Path:
        return Path(self.plan_dir or trainer.default_root_dir)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.plan = read_plan(self._dir(trainer))
        loader = trainer.train_dataloader
        if self.plan is not None and loader is not None:
            per_step = loader.batch_size * trainer.accumulate_grad_batches
            ranges = [tuple(r) for r in self.plan.skip]
            done = trainer.global_step
            if done > 0:
                # Lightning restarts an epoch's data from its start on a mid-epoch resume
                # (a loader without state): the steps already run come again unless left out
                per_epoch = max(1, len(loader) // trainer.accumulate_grad_batches)
                first = trainer.current_epoch * per_epoch + 1
                if first <= done:
                    ranges.append((first, done))
            self.skipping = install_skipping(loader, ranges, per_step)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        self.guard.checkpoint_saved(trainer.global_step)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        lr = None
        if trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0].get("lr")
        decision = self.guard.step(trainer.global_step, float(loss), lr=lr)
        if decision.action == "stop_and_restart":
            self.plan_path = write_plan(self._dir(trainer), decision)
            trainer.should_stop = True

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        # asynchronous guard: the worker's last decisions (a stop it made in the last steps
        # still writes its plan)
        for decision in self.guard.drain():
            if decision.action == "stop_and_restart" and self.plan_path is None:
                self.plan_path = write_plan(self._dir(trainer), decision)
