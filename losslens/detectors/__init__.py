"""Detectors: one small frozen dataclass per loss pattern, and the explicit registry.

The contract (one test in tests/test_detector_contract.py runs it on every entry):

- A detector is a frozen dataclass; its fields are its parameters, all with documented
  defaults, stored verbatim, no logic at construction. `validate()` raises
  `InvalidParameterError` naming the field, the value and the allowed range; `detect*` calls it.
- Series detectors (`scope = "series"`) implement `detect(series: Series) -> list[Event]` on one
  stitched series of the roles in `roles`. Run detectors (`scope = "run"`) implement
  `detect_run(frame: Frame, run: RunInfo) -> list[Event]` and may look at several series
  (train + validation, loss + grad norm) and at the raw segments. A run detector may keep a
  series stage of its own as `detect(series)` (divergence: each train loss, then what the
  train and validation losses show together).
- Pure: no I/O, input untouched, events sorted by start_step, steps taken from the input,
  `[]` for empty / too-short / constant / all-NaN input, NaN/inf handled explicitly.
- Causal detectors (`causal = True`: spike, divergence, nonfinite, grad_spike, overflow,
  rollback) use only trailing statistics, and each owns a streaming form
  (`losslens.detectors.stream`: feed new points, get events and their revisions) whose events
  over any prefix equal the batch detector's on that prefix; `watch` and the in-training
  guard use it.

Event ids are assigned by `analysis.detect_run`, not by detectors.
"""
from __future__ import annotations

import importlib
from typing import Any, Mapping

#: name -> "module:ClassName" (imported lazily; ruptures alone takes 1.6 s to import).
DETECTORS: dict[str, str] = {
    "spike": "losslens.detectors.spike:SpikeDetector",
    "divergence": "losslens.detectors.divergence:DivergenceDetector",
    "nonfinite": "losslens.detectors.nonfinite:NonFiniteDetector",
    "grad_spike": "losslens.detectors.gradspike:GradSpikeDetector",
    "overflow": "losslens.detectors.overflow:OverflowDetector",
    "grokking": "losslens.detectors.grokking:GrokkingDetector",
    "sudden_drop": "losslens.detectors.grokking:SuddenDropDetector",
    "overfitting": "losslens.detectors.overfitting:OverfittingDetector",
    "changepoint": "losslens.detectors.changepoint:ChangepointDetector",
    "rollback": "losslens.detectors.segments:RollbackDetector",
    "resume_spike": "losslens.detectors.segments:ResumeSpikeDetector",
    "repeat_data": "losslens.detectors.segments:RepeatDataDetector",
}


def detector_class(name: str) -> type:
    module, _, cls = DETECTORS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def default_detectors(**overrides: dict[str, Any]) -> dict[str, Any]:
    """One instance of every registered detector; `overrides[name]` sets its fields."""
    return {name: detector_class(name)(**overrides.get(name, {})) for name in DETECTORS}


def resolve_detectors(detectors: Any = None) -> list[Any]:
    """Detector instances from None (all registered), a name -> instance mapping, or a list
    of instances and registered names."""
    if detectors is None:
        return list(default_detectors().values())
    if isinstance(detectors, Mapping):
        return list(detectors.values())
    out = []
    for d in detectors:
        if isinstance(d, str):
            if d not in DETECTORS:
                from ..errors import InvalidParameterError

                raise InvalidParameterError(
                    f"unknown detector {d!r}; known detectors: {', '.join(DETECTORS)}")
            d = detector_class(d)()
        out.append(d)
    return out
