"""The guard as an HF `TrainerCallback`.

`GuardCallback()` feeds the guard every logged training loss (`logging_steps=1` gives it
every step) with the grad norm and learning rate, records the checkpoints the Trainer saves,
sends alerts to the guard's sinks, and on `stop_and_restart` writes the plan file next to the
checkpoints (`args.output_dir`) and stops training. A run started with the plan file in its
output folder (resumed with `resume_from_checkpoint`) leaves out the planned batches
(`install_skipping` on the Trainer's data loader: the sampler's order must be the stopped
run's: `train_sampling_strategy="sequential"`, or a seeded random sampler).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .core import Guard
from .resume import install_skipping, read_plan, write_plan

_CKPT = re.compile(r"^checkpoint-(\d+)$")


class GuardCallback(TrainerCallback):
    """Runs a `Guard` inside `Trainer.train()`; see the module docstring.

    Args:
        guard: the Guard to feed (default: one with the settings file's policy and
            detectors, `load_guard_config`).
        plan_dir: where the plan file goes and is looked for (default: args.output_dir).
    """

    def __init__(self, guard: Guard | None = None, plan_dir: str | Path | None = None) -> None:
        if guard is None:
            from .config import guard_from_settings

            guard = guard_from_settings()
        self.guard, self.plan_dir = guard, plan_dir
        self.plan = None
        self.skipping = False
        self.plan_path: Path | None = None

    def _dir(self, args: Any) -> Path:
        return Path(self.plan_dir or args.output_dir)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = self._dir(args)
        if folder.is_dir():
            for d in folder.iterdir():
                m = _CKPT.match(d.name)
                if m and d.is_dir():
                    self.guard.checkpoint_saved(int(m.group(1)))
        self.plan = read_plan(folder)
        loader = kwargs.get("train_dataloader")
        if self.plan is not None and loader is not None:
            per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
            self.skipping = install_skipping(loader, self.plan, per_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.guard.checkpoint_saved(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None,
               **kwargs: Any) -> None:
        if not logs or "loss" not in logs:
            return
        decision = self.guard.step(state.global_step, logs["loss"],
                                   grad_norm=logs.get("grad_norm"),
                                   lr=logs.get("learning_rate"))
        if decision.action == "stop_and_restart":
            self.plan_path = write_plan(self._dir(args), decision)
            control.should_training_stop = True
            control.should_save = False

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # asynchronous guard: the worker's last decisions (a stop it made in the last steps
        # still writes its plan)
        for decision in self.guard.drain():
            if decision.action == "stop_and_restart" and self.plan_path is None:
                self.plan_path = write_plan(self._dir(args), decision)
