"""The limits of one replay (no torch: the CLI and the tests build them before torch loads)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    """Limits of one replay; defaults suit a single-GPU model."""

    max_steps: int = 256  # checkpoint → last flagged step, at most
    max_flagged: int = 32
    neighbours: int = 8
    top_samples: int = 8
    counterfactuals: bool = True
    ablations: int = 3  # earlier checkpoints tried (nearest, then twice as far, ...)
    reruns: int = 2  # re-runs of the flagged steps from the same state
    second_device: str | None = "auto"  # re-run reproduced events there ("auto": another GPU)
    deterministic: bool | None = None  # torch deterministic algorithms (None: on CUDA only)
    budget_s: float | None = None  # wall-clock seconds for the whole replay; then "budget"
    threads: int | None = None  # CPU: torch threads (None: the faster of the default and 1)
    deadline: float | None = None  # time.perf_counter() value derived from budget_s by replay()
