"""Run a piece of Python work in time slices, resumed call after call (the in-process guard).

The in-process guard's window update (the detectors' streams on the points since the last
check) costs milliseconds; a training loop's `step` should cost microseconds, and at most
~1 ms. `Slices` runs the update unchanged, in a greenlet, and lets each `Guard.step` give it
at most `budget` seconds of wall time: a one-shot real-time timer (`setitimer`) rings when
the slice is spent, and its signal handler switches from the update back to the loop, in
the middle of whatever Python code the update runs (the next call resumes it where it was).
The detectors are not written as generators, so nothing in them has to know: the same code
runs, on the same points, to the same result; only the moment it is done moves (the guard
then returns its decision a few calls later, as the asynchronous guard does).

What bounds a slice: the handler runs between two bytecodes of the update, so a single C
call (one numpy / SciPy / pandas operation on a window of a few thousand points, tens of
microseconds) finishes first. What it needs: the main thread (only it runs signal
handlers), SIGALRM's timer free (`usable()`: nobody else's alarm armed; the guard's handler
is in place only during its slice and the previous one is put back), `setitimer` (POSIX)
and the `greenlet` package. Where any of that is missing the work runs to its end at once.

Every module the work imports lazily must be imported before it is sliced (`Guard` does
that): an import suspended half-way holds the module's import lock for the loop's thread.
"""
from __future__ import annotations

import gc
import signal
import threading
from typing import Any, Callable

try:
    import greenlet as _greenlet
except ImportError:  # pragma: no cover - a dependency; the guard then runs work to its end
    _greenlet = None



HAS_TIMER = hasattr(signal, "setitimer") and hasattr(signal, "SIGALRM")
#: whether the `greenlet` package (the `slices` extra) is installed
HAS_GREENLET = _greenlet is not None


def usable() -> bool:
    """Whether work can be sliced here and now: greenlet importable, a POSIX real-time
    timer, the main thread, and no alarm of someone else's armed."""
    return (_greenlet is not None and HAS_TIMER
            and threading.current_thread() is threading.main_thread()
            and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0))


class Slices:
    """One piece of work at a time, run in slices of `budget` seconds by `run(fn)` (starts
    `fn`) and `run()` (goes on with it); `finish()` runs the rest without a timer. A slice
    runs with the garbage collector's automatic collections off (one is a single C call of
    up to 100s of ms in a large process: it comes at the loop's next allocation instead),
    and allocates nothing it tracks before and after the work, so none starts there either.
    An exception of the work comes out of the `run` / `finish` that met it."""

    def __init__(self, budget: float) -> None:
        self.budget = float(budget)
        self.task: Any = None
        self.total = 0  # slices run
        self._fn: Callable[[], Any] | None = None
        self._handler = self._ring  # one bound method, not one a slice
        self._timed = False  # in a slice: the guard's handler is in place

    @property
    def busy(self) -> bool:
        return self.task is not None

    def _arm(self) -> None:
        """Start the slice's timer, from inside the work: the time the loop spends before
        switching to it (descheduled, on a busy machine) is not taken from the slice."""
        if self._timed:
            signal.setitimer(signal.ITIMER_REAL, self.budget)

    def _body(self) -> Any:
        self._arm()
        fn, self._fn = self._fn, None
        return fn()

    def _ring(self, signum: int, frame: Any) -> None:
        task = self.task
        if task is not None and _greenlet.getcurrent() is task:
            task.parent.switch()  # back to the loop
            self._arm()  # resumed here by the next slice (or `finish`: no timer then)

    def run(self, fn: Callable[[], Any] | None = None) -> bool:
        """Start `fn` as the work (when given and none is under way) or go on with the work,
        for at most `budget` seconds (plus the C call under way); whether it is done."""
        collect = gc.isenabled()
        gc.disable()
        try:
            if fn is not None and self.task is None:
                self._fn = fn
                self.task = _greenlet.greenlet(self._body)
            task = self.task
            if task is None:
                return True
            if not usable():
                return self._to_end(task)
            self.total += 1
            before = signal.signal(signal.SIGALRM, self._handler)
            try:
                self._timed = True
                try:
                    task.switch()
                finally:
                    self._timed = False
                    signal.setitimer(signal.ITIMER_REAL, 0.0)  # disarmed before it goes
            except BaseException:
                self.task = None
                raise
            finally:
                signal.signal(signal.SIGALRM, before)
            if task.dead:
                self.task = None
            return self.task is None
        finally:
            if collect:
                gc.enable()

    def finish(self) -> bool:
        """Run the rest of the work now, to its end (no timer)."""
        if self.task is None:
            return True
        return self._to_end(self.task)

    def _to_end(self, task: Any) -> bool:
        self.total += 1
        collect = gc.isenabled()
        gc.disable()
        try:
            while not task.dead:
                task.switch()
        finally:
            self.task = None
            if collect:
                gc.enable()
        return True
