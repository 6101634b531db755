"""The time bound of a replay (`--budget`): a deadline checked at every replayed step, and the
cost of an event's counterfactuals estimated from the replay's own seconds per step.

An event the budget stops is `inconclusive`, and its evidence says where it stopped and what
the measurements so far point at; later events are not started. No torch here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass


class OutOfBudget(Exception):
    """Raised between two replayed steps once the deadline has passed."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


@dataclass(frozen=True)
class BudgetStop:
    """Why an event stopped: the stage it was in (or the estimate that made it not start)."""

    budget_s: float
    where: str

    def sentence(self) -> str:
        return (f"budget: {self.where} (--budget {self.budget_s:g} s); raise --budget, or "
                "replay fewer events (--events) or fewer steps (--max-steps)")


def left(deadline: float | None) -> float | None:
    """Seconds left before the deadline (None: no budget)."""
    return None if deadline is None else deadline - time.perf_counter()


def check(deadline: float | None, stage: str) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise OutOfBudget(stage)


def counterfactual_steps(n_flagged: int, reruns: int, fp32: bool, ablation_spans: list[int]
                         ) -> int:
    """Replayed steps the counterfactuals take: the flagged steps per re-run, in fp32 and with
    other batches (all from the pre-event snapshot), and each earlier checkpoint's replay."""
    return n_flagged * (reruns + int(fp32) + 1) + sum(ablation_spans)
