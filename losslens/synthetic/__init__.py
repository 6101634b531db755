"""Labelled synthetic training curves and runs, for tests and the quality benchmark.

`curves` (this package's own): loss curves with injected spikes, divergence, NaN, rounding,
sign changes, and whole runs (loss, grad norm, fp16 loss scale, validation) as a Frame.
`scenarios` (written alongside): grokking pairs, rollback/resume runs, regime curves; its
public names are re-exported here when the module is present, except those curves already
uses (its `Truth` stays `losslens.synthetic.scenarios.Truth`).
"""
from __future__ import annotations

from .curves import (RECOVERY_CLASSES, TAGS, Spike, SyntheticRun, Truth, log_steps,
                     make_curve, make_frame, make_run)

__all__ = ["RECOVERY_CLASSES", "TAGS", "Spike", "SyntheticRun", "Truth", "log_steps",
           "make_curve", "make_frame", "make_run"]

try:
    from . import scenarios  # noqa: F401
except ModuleNotFoundError as exc:  # not written yet; anything else broken should surface
    if exc.name != f"{__name__}.scenarios":
        raise
else:
    # its own public functions and classes, except names curves already uses (Truth)
    _names = getattr(scenarios, "__all__", None) or [
        n for n, obj in vars(scenarios).items() if not n.startswith("_")
        and getattr(obj, "__module__", None) == scenarios.__name__]
    _names = [n for n in _names if n not in globals()]
    globals().update({n: getattr(scenarios, n) for n in _names})
    __all__ += ["scenarios", *_names]
