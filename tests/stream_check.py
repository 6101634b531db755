"""Streaming against batch on one loss series: feed a LiveRun in chunks and, at checked
prefixes, compare its events with `detect_run` over exactly those points (the property every
streaming rule must keep; shared by the spike tests)."""
from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from losslens.analysis import detect_run
from losslens.detectors import DETECTORS, detector_class
from losslens.detectors.stream import LiveRun
from losslens.frame import build
from losslens.records import RecordsBuilder

CAUSAL = sorted(n for n in DETECTORS if getattr(detector_class(n), "causal", False))


def batch_events(steps: np.ndarray, values: np.ndarray, n: int) -> list[tuple]:
    """(kind, start, end, recovery) of every causal detector over the first `n` points."""
    sub = RecordsBuilder()
    for o in range(n):
        sub.add("loss", int(steps[o]), float(values[o]), order=o)
    frame = build([sub.build("run", "mem", "test")])
    return [(e.kind, e.start_step, e.end_step, e.recovery)
            for e in detect_run(frame, frame.runs[0], CAUSAL)]


def streamed_equals_batch(steps: np.ndarray, values: np.ndarray, seed: int | None = None,
                          sizes: Sequence[int] = (1,), share: float = 1.0) -> list[tuple]:
    """Feed the series in chunks of random `sizes` (rng `seed`) and check a random `share` of
    the prefixes (and the whole series) against batch; returns the final events."""
    live = LiveRun("run", detectors=CAUSAL, source="mem", format="test")
    rnd = random.Random(seed)
    lo, checked, got = 0, 0, []
    while lo < len(steps):
        hi = min(len(steps), lo + rnd.choice(list(sizes)))
        live.add("loss", steps[lo:hi].tolist(), values[lo:hi].tolist())
        lo = hi
        if rnd.random() < share or lo == len(steps):
            got = [(e.kind, e.start_step, e.end_step, e.recovery) for e in live.detect()]
            assert got == batch_events(steps, values, lo), lo
            checked += 1
    assert checked >= min(3, len(steps))
    return got
