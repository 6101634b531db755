"""losslens inside the training loop: `Guard.step(...)` after each optimizer step says
whether to alert, skip the step, or stop and restart with the PaLM plan, from the same
streaming detectors and configuration as `analyze` and `watch`.

Integrations: `losslens.guard.hf.GuardCallback` (HF Trainer), `losslens.guard.lightning.
GuardCallback` (Lightning), and for a plain loop `SkippingSampler` / `skip_planned`, which
leave out the planned batches on resume (`write_plan` / `read_plan`: the plan file).
"""
from __future__ import annotations

from .alerts import message, tensorboard_text, wandb_alert
from .config import load_guard_config, policy_from_mapping
from .core import ACTIONS, NOTHING, Decision, Guard, GuardPolicy
from .resume import (PLAN_FILE, SkippingSampler, install_skipping, planned, read_plan,
                     skip_planned, write_plan)

__all__ = ["ACTIONS", "NOTHING", "Decision", "Guard", "GuardPolicy", "PLAN_FILE",
           "SkippingSampler", "install_skipping", "load_guard_config", "message", "planned",
           "policy_from_mapping", "read_plan", "skip_planned", "tensorboard_text",
           "wandb_alert", "write_plan"]
