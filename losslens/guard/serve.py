"""The guard's worker process: a synchronous `Guard` fed the training loop's calls.

Started by `.worker.Link` (as `python -c`, with the three pipe ends it inherits; not
multiprocessing's spawn, which would re-run a training script's unguarded top level, and
not fork). It sleeps on a timer rather than on the data pipe, so the loop's writes wake
nobody (see `.worker`), and reads whatever has come at each wake-up: a short wait while
calls keep coming (the time in which half of `ack_every` calls come, so a fast loop does
not run `max_lag` calls ahead of it), doubling to `IDLE_MAX_S` when none do, and at once
when the loop rings the bell because it is about to wait. Each call goes through
`Guard.step` in order; the decisions go back with acks (every `ack_every` calls, at the end
of a read that found a decision, and on request).
"""
from __future__ import annotations

import os
import select
import time
from dataclasses import replace
from multiprocessing.connection import Connection

from .core import Guard
from .worker import CALL, CHECKPOINT, CLOSE, EVENTS, RECORD, SYNC, decode

#: The timer between reads: the time in which half of `ack_every` calls come at the rate
#: of the last read, within [IDLE_MIN_S, IDLE_MAX_S]; doubling when none came. (What the
#: loop sees of the worker's progress lags by a batch, the timer and an ack: ~32 + 12 + 25
#: calls at max_lag 100, under the lag that makes it wait.)
IDLE_MIN_S, IDLE_MAX_S = 0.001, 0.05


def main(data_fd: int, bell_fd: int, ans_fd: int, ack_every: int) -> None:
    """The worker's life: read the guard's settings, say ready, serve until told to close
    or until the parent's pipes close (it died)."""
    try:  # never preempt the training loop on waking up (Linux; elsewhere a no-op)
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        pass
    out = Connection(ans_fd, readable=False)
    try:
        first = Connection(os.dup(data_fd), writable=False)  # reads just that message
        try:
            kwargs = first.recv()
        finally:
            first.close()
        # the worker's guard runs each check to its end (no one waits on its calls)
        kwargs["policy"] = replace(kwargs["policy"], slice_ms=0)
        guard = Guard(asynchronous=False, **kwargs)
        out.send(("ready",))
        os.set_blocking(data_fd, False)
        os.set_blocking(bell_fd, False)
        _serve(guard, data_fd, bell_fd, out, ack_every)
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        out.close()
        for fd in (data_fd, bell_fd):
            try:
                os.close(fd)
            except OSError:
                pass


def _drain(fd: int) -> bytes | None:
    """What has come on a non-blocking pipe (b"" for nothing); None once it is closed."""
    parts = []
    while True:
        try:
            part = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not part:
            if parts:
                break  # seen as closed at the next read
            return None
        parts.append(part)
    return b"".join(parts)


def _serve(guard: Guard, data_fd: int, bell_fd: int, out: Connection, ack_every: int) -> None:
    pending = bytearray()
    done = acked = 0  # calls and checkpoints decided on; of which acked
    found: list = []
    idle = IDLE_MAX_S
    size = RECORD.size
    last = time.monotonic()
    while True:
        if select.select([bell_fd], [], [], idle)[0] and _drain(bell_fd) is None:
            return
        chunk = _drain(data_fd)
        if chunk is None:
            return
        if not chunk:
            idle = min(IDLE_MAX_S, 2 * idle)
            continue
        now = time.monotonic()
        idle = min(IDLE_MAX_S, max(IDLE_MIN_S, (now - last) * ack_every * size
                                   / (2 * len(chunk))))
        last = now
        pending += chunk
        whole = len(pending) // size
        for i in range(whole):
            kind, args = decode(*RECORD.unpack_from(pending, i * size))
            if kind == CALL:
                d = guard.step(*args)
                if d:
                    found.append(d)
                done += 1
            elif kind == CHECKPOINT:
                guard.checkpoint_saved(args[0])
                done += 1
            elif kind == CLOSE:
                return
            if kind in (EVENTS, SYNC) or done - acked >= ack_every:
                out.send(("ack", done, found))
                found, acked = [], done
            if kind == EVENTS:
                out.send(("events", guard.flush() if args[0] else guard.events()))
        del pending[:whole * size]
        if found:
            out.send(("ack", done, found))
            found, acked = [], done
