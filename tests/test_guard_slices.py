"""The in-process guard's window update in time slices (`slice_ms`, losslens.guard.slices):
the same decisions, plans and events as running each check to its end, each returned at
most `max_lag` calls after its step (a NaN's skip_step at once); the update really is cut
into slices; the loop's signal handler, timer and garbage collector are left as they were."""
from __future__ import annotations

import gc
import math
import signal
import threading
from dataclasses import replace

import numpy as np
import pytest

from losslens.guard import Guard, GuardPolicy
from losslens.guard import slices


def _calls(n, seed, stay_at=None, nan_at=None, diverge_at=None):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-s / 300)) * np.exp(rng.normal(0, 0.02, n))
    for at in range(250, n, 400):  # fast spikes
        loss[at:at + 2] *= 2.0
    if stay_at:
        loss[stay_at - 1:] *= 2.5  # a spike that never comes back
    if diverge_at:
        loss[diverge_at - 1:] *= np.linspace(1, 3, n - diverge_at + 1)
    if nan_at:
        loss[nan_at - 1] = math.nan
    grad = np.exp(rng.normal(0, 0.1, n))
    return [(int(a), float(b), float(c)) for a, b, c in zip(s, loss, grad)]


def _feed(calls, policy, every=100):
    g = Guard(policy, asynchronous=False)
    got = []
    for step, loss, grad in calls:
        d = g.step(step, loss, grad_norm=grad, lr=1e-3)
        if d:
            got.append((step, d))
        if step % every == 0:
            g.checkpoint_saved(step)  # (queued in order while an update is under way)
    events = g.flush()
    got += [(None, d) for d in g.drain()]
    return g, got, events


@pytest.mark.parametrize("case", [
    dict(n=1600, seed=1, stay_at=1001, nan_at=500),
    dict(n=2600, seed=2, diverge_at=1500, nan_at=300),
])
def test_sliced_decides_as_the_whole_check_does_within_max_lag(case):
    policy = GuardPolicy(stop_after=40, check_every=25, max_lag=20, slice_ms=0.05)
    calls = _calls(**case)
    whole, whole_got, whole_events = _feed(calls, replace(policy, slice_ms=0))
    cut, cut_got, cut_events = _feed(calls, policy)
    assert whole._slices is None and cut._slices is not None
    # the update was cut: more slices than updates (the live run's ticks)
    assert cut._slices.total > cut.live.tick > 20
    assert [d.to_dict() for d in cut.decisions] == [d.to_dict() for d in whole.decisions]
    assert [e.to_dict() for e in cut_events] == [e.to_dict() for e in whole_events]
    assert cut.stopped is not None and cut.stopped.plan == whole.stopped.plan
    assert cut.checkpoints == whole.checkpoints
    assert {"skip_step", "stop_and_restart"} <= {d.action for d in whole.decisions}
    assert [s for s, d in whole_got] == [d.step for d in whole.decisions]  # at their step
    assert [(d.action, d.step) for _, d in cut_got] == [(d.action, d.step)
                                                       for d in whole.decisions]
    for at, d in cut_got:
        if d.action == "skip_step":  # the O(1) rule: at once
            assert at == d.step == case["nan_at"]
        else:
            assert at is not None and d.step <= at <= d.step + policy.max_lag


def test_plans_see_the_checkpoints_saved_before_the_step_they_stop_at():
    calls = _calls(700, 3, stay_at=560)
    policy = GuardPolicy(stop_after=30, check_every=10, before=20, min_skip=50,
                         slice_ms=0.02)
    whole, _, _ = _feed(calls, replace(policy, slice_ms=0), every=10)
    cut, _, _ = _feed(calls, policy, every=10)
    assert whole.stopped.plan.restart_from_step == 540
    assert cut.stopped.to_dict() == whole.stopped.to_dict()


def test_the_loop_gets_its_signal_handler_timer_and_collector_back():
    def mine(signum, frame):
        pass

    before = signal.signal(signal.SIGALRM, mine)
    try:
        g, _, _ = _feed(_calls(900, 4), GuardPolicy(slice_ms=0.02))
        assert g._slices.total > 50
        assert signal.getsignal(signal.SIGALRM) is mine
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        assert gc.isenabled()
        gc.disable()
        try:  # a loop that turned the collector off keeps it off
            g.step(901, 2.0)
            g.step(950, 9.0)  # over the bar: an update
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        signal.signal(signal.SIGALRM, before)


def test_where_it_cannot_slice_it_runs_each_update_to_its_end():
    calls = _calls(900, 5, nan_at=600)
    whole, _, whole_events = _feed(calls, GuardPolicy(slice_ms=0))
    out = {}

    def in_a_thread():  # signals are the main thread's: no slices there
        assert not slices.usable()
        out["g"], out["got"], out["events"] = _feed(calls, GuardPolicy(slice_ms=0.02))

    t = threading.Thread(target=in_a_thread)
    t.start()
    t.join()
    assert [e.to_dict() for e in out["events"]] == [e.to_dict() for e in whole_events]
    assert [d.to_dict() for d in out["g"].decisions] == [d.to_dict()
                                                          for d in whole.decisions]
    # someone else's alarm armed: not touched, no slices either
    signal.setitimer(signal.ITIMER_REAL, 3600.0)
    try:
        assert not slices.usable()
        g, _, events = _feed(calls, GuardPolicy(slice_ms=0.02))
        assert 3000 < signal.getitimer(signal.ITIMER_REAL)[0] <= 3600
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
    assert [e.to_dict() for e in events] == [e.to_dict() for e in whole_events]


def test_no_collection_starts_inside_step():
    """With the threshold at 1, any tracked allocation in `step` outside the work would run
    a collection there; the work's slices run with collections off."""
    runs = []
    inside = [False]

    def seen(phase, info):
        if phase == "start" and inside[0]:
            runs.append(info["generation"])

    def watched(g, calls):
        """Feed `calls` with the threshold at 1, noting any collection started in `step`."""
        old = gc.get_threshold()
        gc.callbacks.append(seen)
        gc.set_threshold(1)
        try:
            for step, loss, grad in calls:
                inside[0] = True
                g.step(step, loss, grad_norm=grad, lr=1e-3)
                inside[0] = False
        finally:
            inside[0] = False
            gc.set_threshold(*old)
            gc.callbacks.remove(seen)

    calls = _calls(600, 6)
    g = Guard(GuardPolicy(slice_ms=0.2, max_lag=1000), asynchronous=False)
    for step, loss, grad in calls[:300]:
        g.step(step, loss, grad_norm=grad, lr=1e-3)
    g.flush()  # (the queue then empty: the next update's first call clears it)
    watched(g, calls[300:])
    assert g.live.tick > 5 and g._slices.total > g.live.tick and g.waits == 0
    assert runs == []
    # a wait for the update (max_lag) allocates nothing tracked outside the work either
    g = Guard(GuardPolicy(slice_ms=0.01, max_lag=2), asynchronous=False)
    for step, loss, grad in calls[:300]:
        g.step(step, loss, grad_norm=grad, lr=1e-3)
    watched(g, calls[300:])
    assert g.waits > 0 and runs == []
