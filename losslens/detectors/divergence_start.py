"""Divergence of a loss that never trained: it rose over where it started and stayed up.

Ratios over a best level (`rise_ratio`, 1.5 x) are made for a loss that trained down and came
back up. A loss that never fell from its start (its best level within `INIT_NEAR` x of its
initial level: an LM at lr 20 whose first logged loss, 12.3, is already above the uniform guess
ln(33278) = 10.4) has no trained level to come back to: when it then rises over its start for
good (`START_RISE` x, 1.1, and `LEVEL_Z` standard errors of its level, as before a NaN), the run
is getting worse than an untrained model, for a sustain span: it diverged, though it never rose
1.5 x. Such a rise needs no growth after it crossed (a step up of a trained loss that stays is
a plateau; of a loss that never trained it is the run getting worse), and a hump of it that
comes back only to the untrained start has recovered nothing.

Log space only (a signed loss has no ratio to its start). A loss that fell 10 % or more below
its start at any time has trained: the usual rule judges it.
"""
from __future__ import annotations

import numpy as np

#: "Never trained": the best level so far stays within this factor of the initial level.
INIT_NEAR = 1.1
#: The rise over the best level that counts for a loss that never trained.
START_RISE = 1.1


def untrained_rise(level: np.ndarray, best: np.ndarray, init: float,
                   wander: np.ndarray) -> np.ndarray:
    """Per point of the log-space trailing `level` (with its running `best` and the `init`
    level of its first points): True where the loss never fell `INIT_NEAR` x below its start
    and its level is over the best by `START_RISE` x and by `wander` (LEVEL_Z standard errors
    of the level, in log units)."""
    fresh = best >= init - np.log(INIT_NEAR)
    return fresh & (level - best >= np.maximum(np.log(START_RISE), wander))
