"""Where the guard's decisions go besides its return value: any callable, W&B alerts, and
TensorBoard text summaries (so the event shows up where people already look)."""
from __future__ import annotations

from typing import Any, Callable

LEVELS = {"alert": "WARN", "skip_step": "WARN", "stop_and_restart": "ERROR"}


def message(decision: Any) -> str:
    """One paragraph about a decision (title line, reason, plan)."""
    text = f"losslens guard: {decision.action} at step {decision.step}: {decision.reason}"
    if decision.plan is not None:
        ranges = ", ".join(f"{a}-{b}" for a, b in decision.plan.skip)
        text += (f". Restart from the checkpoint at step {decision.plan.restart_from_step} "
                 f"and skip steps {ranges}.")
    return text


def wandb_alert(run: Any = None) -> Callable[[Any], None]:
    """A sink calling `run.alert` (the active `wandb.run` when `run` is None; nothing when
    wandb is not installed or no run is active)."""

    def sink(decision: Any) -> None:
        target = run
        if target is None:
            try:
                import wandb
            except ImportError:
                return
            target = wandb.run
        if target is None:
            return
        target.alert(title=f"losslens: {decision.action} at step {decision.step}",
                     text=message(decision), level=LEVELS.get(decision.action, "INFO"))

    return sink


def tensorboard_text(writer: Any, tag: str = "losslens/guard") -> Callable[[Any], None]:
    """A sink writing each decision as a text summary at its step. `writer`: anything with
    `add_text(tag, text, step)` (torch's SummaryWriter, tensorboardX), or a log folder (a
    torch SummaryWriter is opened there)."""
    if not hasattr(writer, "add_text"):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(writer))

    def sink(decision: Any) -> None:
        writer.add_text(tag, message(decision), decision.step)
        if hasattr(writer, "flush"):
            writer.flush()

    return sink
