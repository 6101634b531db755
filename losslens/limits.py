"""Resource limits for one unit of work: a wall-clock deadline that turns into an error.

A folder of runs is read and analysed unit by unit; one unit that hangs (a reader meeting
an input shape nobody foresaw, a detector on a pathological series) must not stall the rest.
`deadline(seconds, what)` raises `UnitTimeout` (a `LossLensError`) in the calling thread
once the time is up, using the interval timer (SIGALRM), which only the main thread of a
process can own; elsewhere (a Dask worker's thread) it does nothing and the caller relies on
its own limit. An enclosing deadline (a test harness, a fuzzer) is saved and put back with
the time it has left. Worker processes (`parallel`) are limited from outside instead.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import LossLensError

#: Seconds one unit (a file or folder of a walked path) may take to be read and analysed.
UNIT_TIMEOUT = 600.0


class UnitTimeout(LossLensError, TimeoutError):
    """A unit of work ran past its deadline."""


@contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Raise `UnitTimeout("<what>: gave up after N s ...")` if the block runs past `seconds`
    (None, 0 or inf: no limit)."""
    if (not seconds or math.isinf(seconds) or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def expired(signum, frame):  # noqa: ARG001
        raise UnitTimeout(f"{what}: gave up after {seconds:g} s (--unit-timeout)")

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, expired)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    if outer and outer < seconds:  # an enclosing deadline comes first: keep it
        signal.signal(signal.SIGALRM, old_handler)
        signal.setitimer(signal.ITIMER_REAL, outer)
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if outer:
            left = outer - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3))
