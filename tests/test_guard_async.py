"""The guard's asynchronous mode (the default): the same decisions, plans and events as the
synchronous guard on the same calls, delivered at most `max_lag` calls late (a NaN's
skip_step at once); the worker process never outlives the guard or its parent."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from losslens.guard import Guard, GuardPolicy


def _run(n, seed, spike_at=None, nan_at=None, diverge_at=None):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-s / 300)) * np.exp(rng.normal(0, 0.02, n))
    if spike_at:
        loss[spike_at - 1:] *= 2.5  # a spike that never comes back
    if diverge_at:
        loss[diverge_at - 1:] *= np.linspace(1, 3, n - diverge_at + 1)
    if nan_at:
        loss[nan_at - 1] = math.nan
    grad = np.exp(rng.normal(0, 0.1, n))
    return [(int(a), float(b), float(c)) for a, b, c in zip(s, loss, grad)]


def _feed(calls, asynchronous, policy):
    g = Guard(policy, checkpoint_every=100, asynchronous=asynchronous)
    delivered = []
    for step, loss, grad in calls:
        d = g.step(step, loss, grad_norm=grad, lr=1e-3)
        if d:
            delivered.append((step, d))
        if step % 100 == 0:
            g.checkpoint_saved(step)
    events = g.flush()
    delivered += [(None, d) for d in g.drain()]
    g.close()
    return g, delivered, events


@pytest.mark.parametrize("case", [
    dict(n=1600, seed=1, spike_at=1001, nan_at=500),  # NaN, then a spike that stays up
    dict(n=2600, seed=2, diverge_at=1500, nan_at=300),  # a NaN, a divergence, no spike
])
def test_async_decides_as_sync_does_and_delivers_within_max_lag(case):
    policy = GuardPolicy(stop_after=40, check_every=25, max_lag=20)  # waits: a tight loop
    calls = _run(**case)
    # in process, each check to its end at its own step (not in slices: test_guard_slices)
    sync, sync_got, sync_events = _feed(calls, False, replace(policy, slice_ms=0))
    asyn, asyn_got, asyn_events = _feed(calls, True, policy)
    assert sync.asynchronous is False and asyn.asynchronous is True
    # the same decisions (steps, reasons, events, plans) and the same events
    assert [d.to_dict() for d in asyn.decisions] == [d.to_dict() for d in sync.decisions]
    assert [e.to_dict() for e in asyn_events] == [e.to_dict() for e in sync_events]
    assert asyn.stopped is not None and asyn.stopped.plan == sync.stopped.plan
    kinds = {d.action for d in sync.decisions}
    assert {"skip_step", "stop_and_restart"} <= kinds
    stop = sync.stopped.events[0]
    assert stop.kind == ("spike" if "spike_at" in case else "divergence")
    # synchronous: each returned at its own step; asynchronous: the NaN's skip_step at
    # once, each other decision once, at most max_lag calls after its step
    assert [s for s, d in sync_got] == [d.step for d in sync.decisions]
    assert [(d.action, d.step) for _, d in asyn_got] == [(d.action, d.step)
                                                         for d in sync.decisions]
    for at, d in asyn_got:
        if d.action == "skip_step":
            assert at == d.step == case["nan_at"] and d.reason == next(
                x.reason for x in sync.decisions if x.action == "skip_step")
        else:
            assert at is not None and d.step <= at <= d.step + policy.max_lag


def _gone(pid, within=10.0):
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a child not reaped yet is a zombie: gone for our purpose
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_no_worker_outlives_close_the_context_or_the_parent():
    g = Guard()
    pid = g._link.proc.pid
    assert g.step(1, 2.0) is not None and not _gone(pid, 0.2)
    g.close()
    assert _gone(pid)
    with pytest.raises(Exception, match="closed"):
        g.step(2, 2.0)
    g.close()  # twice is fine
    with Guard() as g2:
        pid2 = g2._link.proc.pid
        g2.step(1, 2.0)
    assert _gone(pid2)
    # a parent that ends without closing (atexit), and one killed outright (the worker
    # sees its pipe close)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for end in ("pass", "os._exit(0)"):
        code = ("import os; from losslens.guard import Guard; g = Guard(); "
                f"print(g._link.proc.pid, flush=True); g.step(1, 2.0); {end}")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": root}, timeout=120)
        assert out.returncode == 0, out.stderr
        assert _gone(int(out.stdout.split()[0])), end


def test_synchronous_mode_and_skip_z_stay_in_process():
    assert Guard(GuardPolicy(asynchronous=False)).asynchronous is False
    assert Guard(GuardPolicy(skip_z=6.0)).asynchronous is False  # a late skip is no use
    g = Guard(GuardPolicy(asynchronous=False))
    assert g.live is not None and g._link is None
    g.close()  # a no-op


def test_a_nan_skip_is_returned_once_even_when_the_worker_answers_in_the_same_call():
    with Guard(GuardPolicy(max_lag=1)) as g:  # waits for the worker on every call
        got = [(s, g.step(s, math.nan if s in (21, 22) else 2.0 + 0.01 * (s % 3)))
               for s in range(1, 41)]
        assert [(s, d.action) for s, d in got if d] == [(21, "skip_step"), (22, "skip_step")]
        g.flush()
        assert [(d.action, d.step) for d in g.decisions] == [("skip_step", 21),
                                                             ("skip_step", 22)]
        assert g.decisions[0].events[0].kind == "nonfinite"  # the worker's copy


def test_a_plain_call_allocates_nothing_the_garbage_collector_tracks(monkeypatch):
    """No collection can start inside `step` (with torch imported a full one takes ~0.2 s):
    with the threshold at 1, any tracked allocation would run one."""
    import gc

    from losslens.guard import worker

    monkeypatch.setattr(worker.Link, "SHIP_S", 1e9)  # no batch shipped within 30 calls
    runs = []

    def seen(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    with Guard() as g:
        g.step(1, 2.0, grad_norm=1.0, lr=1e-3)
        g._link.ship()
        old = gc.get_threshold()
        gc.callbacks.append(seen)
        gc.set_threshold(1)
        try:
            for s in range(2, 30):
                g.step(s, 2.0 + 0.01 * (s % 3), grad_norm=1.0, lr=1e-3, loss_scale=1024.0)
        finally:
            gc.set_threshold(*old)
            gc.callbacks.remove(seen)
        assert runs == []
        assert g._link.n == 28  # buffered, not shipped
        g.step(30, 2.0)
        assert [e.kind for e in g.flush()] == []


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")
def test_the_worker_never_preempts_the_loop_on_waking():
    with Guard() as g:
        assert os.sched_getscheduler(g._link.proc.pid) == os.SCHED_BATCH


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_copy_of_the_guard_leaves_the_worker_alone():
    """A data loader's forked worker inherits the guard; its exit must not close the
    parent's worker (it would stop guarding the run)."""
    with Guard() as g:
        g.step(1, 2.0)
        pid = os.fork()
        if pid == 0:  # the child: close its copy (as its garbage collection would)
            try:
                g.close()
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert not _gone(g._link.proc.pid, 0.3)
        for s in range(2, 60):
            g.step(s, 2.0 + 0.01 * (s % 3))
        assert g.flush() == [] and g.waits == 0


def test_a_worker_that_died_stops_the_loop_with_one_clear_error():
    import signal

    from losslens.errors import LossLensError

    g = Guard()
    try:
        g.step(1, 2.0)
        g._link.proc.send_signal(signal.SIGKILL)
        g._link.proc.wait(10)
        time.sleep(0.06)  # the next call ships (its batch is 50 ms old)
        with pytest.raises(LossLensError, match=r"worker process ended \(exit code -9"):
            g.step(2, 2.0)
        with pytest.raises(LossLensError, match="no longer guarded"):
            g.flush()
    finally:
        g.close()  # no error: it is gone already
