"""Skip the batches of a skip plan in a plain PyTorch loop or an HF Trainer.

Megatron and metaseq take a skip list as a flag; a plain loop or an HF `Trainer` does not, so
this small module does the skipping on the data side. `losslens skiplist LOG --target hf`
writes the plan (`{"skip_steps": [[2001, 2420]], ...}`); steps are optimizer steps, 1-based,
inclusive, as the log counts them.

- `SkipBatches(batches, plan, first_step=1, accumulation_steps=1)`: wraps any iterable of
  batches (a DataLoader) and leaves out every batch of a skipped step; with gradient
  accumulation the `accumulation_steps` micro-batches of a step go together. Restarted from
  the checkpoint at step R, pass `first_step=R + 1`.
- `skipping_trainer(Trainer, plan)`: an HF `Trainer` subclass whose training DataLoader is
  wrapped that way (the batches of the skipped steps are consumed and dropped, so the data
  after them is what the run would have seen; the step counter does not advance for them).

No torch or transformers import here: the wrappers work on whatever the caller passes.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

from .errors import InvalidParameterError


def skip_ranges(plan: Any) -> tuple[tuple[int, int], ...]:
    """The inclusive step ranges of a plan: a `--target hf` JSON file path, its dict, a
    `SkipPlan`, or a list of [first, last] pairs."""
    if isinstance(plan, (str, os.PathLike)):
        with open(plan, encoding="utf-8") as fh:
            plan = json.load(fh)
    if isinstance(plan, Mapping):
        plan = plan.get("skip_steps", plan.get("skip"))
    elif hasattr(plan, "skip"):
        plan = plan.skip
    try:
        ranges = tuple(sorted((int(a), int(b)) for a, b in plan))
    except (TypeError, ValueError):
        raise InvalidParameterError(
            f"a skip plan is a list of [first, last] step pairs, got {plan!r}") from None
    bad = [r for r in ranges if r[0] < 1 or r[1] < r[0]]
    if bad:
        raise InvalidParameterError(f"skip ranges must be 1 <= first <= last, got {bad}")
    return ranges


class SkipBatches:
    """An iterable of batches without those of the skipped optimizer steps."""

    def __init__(self, batches: Iterable[Any], plan: Any, first_step: int = 1,
                 accumulation_steps: int = 1) -> None:
        if accumulation_steps < 1 or first_step < 1:
            raise InvalidParameterError("first_step and accumulation_steps must be >= 1")
        self.batches = batches
        self.ranges = skip_ranges(plan)
        self.first_step = first_step
        self.accumulation_steps = accumulation_steps

    def skipped(self, step: int) -> bool:
        return any(a <= step <= b for a, b in self.ranges)

    def _step_of(self, k: int) -> int:
        return self.first_step + k // self.accumulation_steps

    def __iter__(self) -> Iterator[Any]:
        for k, batch in enumerate(self.batches):
            if not self.skipped(self._step_of(k)):
                yield batch

    def __len__(self) -> int:
        n = len(self.batches)  # type: ignore[arg-type]
        return sum(1 for k in range(n) if not self.skipped(self._step_of(k)))

    def __getattr__(self, name: str) -> Any:  # sampler, dataset, set_epoch, ...
        return getattr(self.__dict__["batches"], name)


def skipping_trainer(trainer_cls: type, plan: Any, first_step: int = 1) -> type:
    """A subclass of an HF `Trainer` class that skips the plan's steps.

    `first_step`: the optimizer step the first training batch belongs to (R + 1 when the
    run restarts from the checkpoint of step R with a fresh data order; 1 when the Trainer
    itself fast-forwards the data on resume, as `resume_from_checkpoint` does)."""
    ranges = skip_ranges(plan)

    class SkippingTrainer(trainer_cls):  # type: ignore[misc, valid-type]
        losslens_skip = ranges

        def get_train_dataloader(self):  # noqa: D401  (HF's name)
            loader = super().get_train_dataloader()
            return SkipBatches(loader, ranges, first_step=first_step,
                               accumulation_steps=self.args.gradient_accumulation_steps)

    SkippingTrainer.__name__ = f"Skipping{trainer_cls.__name__}"
    return SkippingTrainer


__all__: Sequence[str] = ("skip_ranges", "SkipBatches", "skipping_trainer")
