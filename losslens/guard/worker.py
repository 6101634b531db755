"""The guard's asynchronous mode: the detectors run in a worker process, off the training
loop's thread.

The window update behind a guard decision (the streaming detectors over a ~1,650-point
horizon, divergence over the whole series) takes tens of milliseconds every `check_every`
steps; in a worker *process* (not a thread: a thread holds the GIL for up to its switch
interval) it costs the training loop nothing but the shipping of its numbers. The worker
runs a synchronous `Guard` on exactly the calls the loop made, in the same order
(checkpoints included), so its decisions, their steps and their plans are the synchronous
guard's; only their delivery to the loop comes later (`Link.lag` bounds it).

Protocol (pickles over two pipes, `multiprocessing.connection.Connection`): the parent sends
`("init", kwargs)`, then `("calls", n, [call, ...])` batches (a call is the `step` arguments,
or `(None, step)` for a saved checkpoint), `("events", flush)` and `("close",)`; the worker
answers each batch with `("ack", n, [Decision, ...])` and each events request with
`("events", [Event, ...])`; it says `("ready",)` once its guard is made (the parent
waits for that in `Guard()`, so no `step` waits for the start-up). The worker exits on "close" or when the parent's pipe closes
(the parent died): no orphan.
"""
from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..errors import LossLensError


def main(rfd: int, wfd: int) -> None:
    """The worker's loop (run as `python -c`; see `Link`)."""
    from .core import Guard

    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    try:
        _, kwargs = inbox.recv()
        guard = Guard(asynchronous=False, **kwargs)
        outbox.send(("ready",))
        while True:
            msg = inbox.recv()
            if msg[0] == "calls":
                out = []
                for call in msg[2]:
                    if call[0] is None:
                        guard.checkpoint_saved(call[1])
                    else:
                        d = guard.step(*call)
                        if d:
                            out.append(d)
                outbox.send(("ack", msg[1], out))
            elif msg[0] == "events":
                outbox.send(("events", guard.flush() if msg[1] else guard.events()))
            else:
                break
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        inbox.close()
        outbox.close()


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


class Link:
    """The parent's end: a worker process and its two pipes."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        root = str(Path(__file__).resolve().parent.parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                    if env.get("PYTHONPATH") else "")
        code = f"from losslens.guard.worker import main; main({to_r}, {from_w})"
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(to_r, from_w),
                                         env=env, stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            os.close(to_r)
            os.close(from_w)
        _OPEN.add(self)
        self.out = Connection(to_w, readable=False)
        self.inp = Connection(from_r, writable=False)
        self.out.send(("init", kwargs))
        # wait for it here, once: a step() never waits for the worker's start-up
        try:
            ok = self.inp.poll(120) and self.inp.recv() == ("ready",)
        except (EOFError, OSError):
            ok = False
        if not ok:
            self.close(1.0)
            raise LossLensError("the guard's worker process did not start (see its stderr); "
                                "Guard(asynchronous=False) runs the detectors in this process")

    def send(self, msg: Any) -> None:
        self.out.send(msg)

    def ready(self) -> bool:
        return self.inp.poll()

    def recv(self) -> Any:
        return self.inp.recv()

    def close(self, timeout: float = 5.0) -> None:
        _OPEN.discard(self)
        try:
            self.out.send(("close",))
        except (OSError, ValueError):
            pass
        for c in (self.out, self.inp):
            try:
                c.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
