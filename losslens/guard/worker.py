"""The guard's asynchronous mode, the training loop's end: a worker process that runs the
detectors off the loop, and the cheap channel `step` feeds it through.

The window update behind a guard decision (the streaming detectors over a ~1,650-point
horizon, divergence over the whole series) takes milliseconds every `check_every` steps; in
a worker *process* (not a thread: a thread's Python holds the GIL for up to its switch
interval) it costs the loop only the handing over of its numbers. The worker
(`.serve`) runs a synchronous `Guard` on exactly the calls the loop made, in the same order
(checkpoints included), so its decisions, their steps and their plans are the synchronous
guard's; only their delivery to the loop comes later (at most `max_lag` calls).

What a call costs the loop, and why it is built so (measured: benchmarks/guard_step.py):
- A call packs six numbers into a preallocated buffer (`struct.pack_into`: no object the
  garbage collector tracks, so no collection can start inside `step`); the buffer goes down
  a pipe in one `os.write` every `BATCH` calls, or at once when the last write is
  `SHIP_S` (50 ms) old (a slow loop: every call).
- That write wakes nobody: the worker does not wait on the data pipe but sleeps on a timer
  (`select` on a separate "bell" pipe, timed to the loop's pace: `.serve`), reading whatever
  has come at each wake-up. Waking a process blocked on the pipe cost the writing call 30-100 us of
  CPU (measured in this VM) and, on a machine whose cores are all busy, often its core.
- The worker is `SCHED_BATCH` where the OS has it: its wake-ups never preempt the training
  loop (it still gets its fair share of CPU).
- The loop polls the answer pipe (one `select`, no wait); the worker answers with an ack of
  how many calls it has decided on and the decisions among them, every `ack_every` calls
  (a quarter of `max_lag`) or when it has a decision, so answers are rare.
- Only when the loop must wait (it is `max_lag` calls ahead, or `flush`/`events`/`drain`
  /`close`) does it ring the bell, so the worker wakes at once.

Protocol: the parent writes the `Guard` arguments as one `Connection` message on the data
pipe, the worker answers `("ready",)`; then the data pipe carries fixed 48-byte records
(`RECORD`: kind and flags, step, loss, grad norm, lr, loss scale) and the answer pipe
pickles (`multiprocessing.connection.Connection`): `("ack", n, [Decision, ...])` and
`("events", [Event, ...])`. The worker exits on a CLOSE record, or when either pipe from
the parent closes (the parent died): no orphan.
"""
from __future__ import annotations

import os
import select
import struct
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..errors import LossLensError

#: One record on the data pipe: kind | flags, step, loss, grad norm, lr, loss scale.
RECORD = struct.Struct("<qqdddd")
CALL, CHECKPOINT, EVENTS, SYNC, CLOSE = range(5)
HAS_GRAD, HAS_LR, HAS_SCALE = 1 << 8, 1 << 9, 1 << 10


def decode(kind: int, step: int, loss: float, grad: float, lr: float, scale: float
           ) -> tuple[int, tuple]:
    """A record as (kind, the arguments of `Guard.step` or the step of the others)."""
    if kind & 0xFF != CALL:
        return kind & 0xFF, (step,)
    return CALL, (step, loss, grad if kind & HAS_GRAD else None,
                  lr if kind & HAS_LR else None, scale if kind & HAS_SCALE else None)


#: The links whose worker has been started and not closed yet (`running`).
_OPEN: set["Link"] = set()


def running() -> list[int]:
    """The process ids of the guard workers this process started and has not closed (a test
    suite checks that none is left behind)."""
    return sorted(link.proc.pid for link in _OPEN)


def close_workers(pids: list[int]) -> None:
    """Close the links of these running workers (what their guards' `close()` does)."""
    for link in [k for k in _OPEN if k.proc.pid in pids]:
        link.close()


def _pipe_size(fd: int, size: int) -> None:
    """Ask for a pipe buffer of `size` bytes (Linux; elsewhere the default stays)."""
    try:
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        pass


class Link:
    """The parent's end: the worker process, its pipes, the calls not shipped yet, and
    how far the worker has got (`queued` calls and checkpoints fed, `acked` decided)."""

    #: Ship every BATCH calls, or at once when the last write is SHIP_S old (and then look
    #: for answers).
    BATCH, SHIP_S = 32, 0.05

    def __init__(self, kwargs: dict[str, Any], max_lag: int) -> None:
        data_r, data_w = os.pipe()
        bell_r, bell_w = os.pipe()
        ans_r, ans_w = os.pipe()
        # what may be in the pipe at once: max_lag calls and a batch, twice over
        _pipe_size(data_w, min(1 << 20, max(1 << 16, 2 * (max_lag + 2 * self.BATCH)
                                            * RECORD.size)))
        root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
        ack_every = max(1, max_lag // 4)
        code = (f"from losslens.guard.serve import main; "
                f"main({data_r}, {bell_r}, {ans_w}, {ack_every})")
        try:
            # -P (3.11+): not the current folder first, this package's root (PYTHONPATH)
            flags = ["-P"] if sys.version_info >= (3, 11) else []
            self.proc = subprocess.Popen([sys.executable, *flags, "-c", code],
                                         pass_fds=(data_r, bell_r, ans_w), env=env,
                                         stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            for fd in (data_r, data_w, bell_r, bell_w, ans_r, ans_w):
                os.close(fd)
            raise
        for fd in (data_r, bell_r, ans_w):
            os.close(fd)
        _OPEN.add(self)
        self.data, self.bell = data_w, bell_w
        os.set_blocking(bell_w, False)
        self.ans = Connection(ans_r, writable=False)
        self.answers = select.poll()  # Connection.poll builds a selector each call: ~20 us
        self.answers.register(ans_r, select.POLLIN)
        self.buf = bytearray(RECORD.size * self.BATCH)
        self.view = memoryview(self.buf)
        self.n = 0  # records in buf
        self.queued = 0  # calls and checkpoints fed
        self.acked = 0  # of which the worker has decided on
        self.t_ship = 0.0
        self.closed = False
        self.pid = os.getpid()  # a forked child (a data loader's worker) must not close it
        ok = False
        try:
            # the settings, as one Connection message on a copy of the data pipe's end
            first = Connection(os.dup(data_w), readable=False)
            try:
                first.send(kwargs)
            finally:
                first.close()
            # wait for it here, once: a step() never waits for the worker's start-up
            ok = self.ans.poll(120) and self.ans.recv() == ("ready",)
        except (EOFError, OSError):
            pass
        if not ok:
            self.close(1.0)
            raise LossLensError("the guard's worker process did not start (see its stderr); "
                                "Guard(asynchronous=False) runs the detectors in this process")

    # -- the hot path ---------------------------------------------------------------------

    def call(self, step: int, loss: float, grad: float | None, lr: float | None,
             scale: float | None) -> bool:
        """One `Guard.step` call, packed; shipped with its batch. Whether an answer has
        come (looked at when a batch is shipped, not at every call: a system call there
        is most of a plain call's cost)."""
        kind = CALL
        if grad is None:
            grad = 0.0
        else:
            kind |= HAS_GRAD
        if lr is None:
            lr = 0.0
        else:
            kind |= HAS_LR
        if scale is None:
            scale = 0.0
        else:
            kind |= HAS_SCALE
        RECORD.pack_into(self.buf, self.n * RECORD.size, kind, step, loss, grad, lr, scale)
        self.n += 1
        self.queued += 1
        if self.n < self.BATCH and time.perf_counter() - self.t_ship < self.SHIP_S:
            return False
        self.ship()
        return bool(self.answers.poll(0))

    def ready(self) -> bool:
        """Whether an answer has come (no wait)."""
        return bool(self.answers.poll(0))

    # -- the rest -------------------------------------------------------------------------

    def checkpoint(self, step: int) -> None:
        self._record(CHECKPOINT, step)
        self.queued += 1

    def _record(self, kind: int, step: int) -> None:
        RECORD.pack_into(self.buf, self.n * RECORD.size, kind, step, 0.0, 0.0, 0.0, 0.0)
        self.n += 1
        if self.n == self.BATCH:
            self.ship()

    def ship(self) -> None:
        """Write the buffered records (a pipe write that wakes nobody)."""
        if self.n:
            self._write(self.view[:self.n * RECORD.size])
            self.n = 0
        self.t_ship = time.perf_counter()

    def _write(self, data: Any) -> None:
        view = memoryview(data)
        try:
            while view.nbytes:
                view = view[os.write(self.data, view):]
        except BrokenPipeError:
            raise self.died() from None

    def died(self) -> LossLensError:
        """The error for a worker that has gone (a bug in it, or killed): training stops
        with one clear line rather than a pipe error, or going on unguarded unnoticed."""
        try:
            code = self.proc.wait(5.0)
        except subprocess.TimeoutExpired:
            code = None
        _OPEN.discard(self)
        return LossLensError(f"the guard's worker process ended (exit code {code}; its "
                             "stderr says why): the run is no longer guarded; "
                             "Guard(asynchronous=False) runs the detectors in this process")

    def ring(self) -> None:
        """Wake the worker now (the loop is about to wait for it)."""
        self.ship()
        try:
            os.write(self.bell, b"!")
        except BlockingIOError:  # a full bell still rings
            pass

    def take(self) -> tuple:
        """The next answer: `("ack", n, [Decision, ...])` (acked moves on to n) or
        `("events", [Event, ...])`."""
        try:
            msg = self.ans.recv()
        except (EOFError, ConnectionResetError):
            raise self.died() from None
        if msg[0] == "ack":
            self.acked = msg[1]
        return msg

    def ask(self, kind: int, flush: bool = False) -> None:
        """Send a request (EVENTS, SYNC) after every call fed, and wake the worker."""
        self._record(kind, int(flush))
        self.ring()

    def close(self, timeout: float = 5.0) -> None:
        _OPEN.discard(self)
        if self.closed:
            return
        self.closed = True
        mine = os.getpid() == self.pid
        try:
            if not mine:
                raise ValueError("a forked copy: leave the worker to the parent")
            os.set_blocking(self.data, False)  # a stuck worker's full pipe: its EOF will do
            self.n = 0
            self._record(CLOSE, 0)
            self.ring()
        except (OSError, ValueError, LossLensError):
            pass
        for fd in (self.data, self.bell):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.ans.close()
        except OSError:
            pass
        if not mine:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
