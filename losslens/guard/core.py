"""The guard: the causal detectors' streaming form inside the training loop.

`Guard.step(step, loss, grad_norm=None, lr=None, loss_scale=None)` is called once per
optimizer step and answers what to do: nothing (a falsy `Decision`), `alert`, `skip_step`
(do not apply this update: a non-finite loss or grad norm, or an extreme outlier; as OLMo-core
skips a step) or `stop_and_restart` with the PaLM plan (the checkpoint to restart from and the
batches to skip). The events behind each decision are the ones `losslens analyze` finds on
the same series (`Guard.events()`), with the same detectors and configuration.

Cost: a step appends to Python lists and compares the loss (and grad norm) with a bar; the
detectors' streams run every `check_every` steps, and at once when a value is non-finite or
above the bar (the trailing median in log space plus `screen_z` robust scales, at least the
spike detector's `min_ratio`: well under where the spike statistic flags a point, so a spike
is seen at its first point). A subtler spike the bar lets through is seen at the next
periodic check; the events end up the same either way. While a spike is still out there is
no bar (its later high points change no decision; its stop is scheduled), so a plateau does
not run the detectors at every step.

By default (`asynchronous`) all of that runs in a worker process (`.worker`) on exactly the
calls `step` got: `step` only buffers and ships its numbers and returns the worker's
decisions (the synchronous guard's, step for step) when they arrive, at most `max_lag`
calls late; a NaN/inf `skip_step` is answered at once, in the loop.
"""
from __future__ import annotations

import atexit
import math
import os
import weakref
from collections import deque
from dataclasses import replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..detectors.filters import median
from ..detectors.stream import LiveRun
from ..errors import InvalidParameterError
from ..events import Event, SkipPlan
from .inputs import number, step_number
from .policy import ACTIONS, NOTHING, SEVERITIES, TAGS, Decision, GuardPolicy

__all__ = ["ACTIONS", "NOTHING", "SEVERITIES", "TAGS", "Decision", "Guard", "GuardPolicy"]


class Guard:
    """Feed it every step; it says when to alert, skip a step, or stop and restart.

    Args:
        policy: a GuardPolicy (default: its defaults; `load_guard_config` reads the file).
        detectors: as `detectors.resolve_detectors` takes them (the causal ones run).
        checkpoints: steps saved so far (more via `checkpoint_saved`), or `checkpoint_every`.
        alert: callables called with each Decision that is not nothing (Slack, pager, W&B,
            TensorBoard: see `losslens.guard.alerts`).
        run: the run's name in the events.
    """

    def __init__(self, policy: GuardPolicy | None = None, *, detectors: Any = None,
                 checkpoints: Iterable[int] = (), checkpoint_every: int | None = None,
                 alert: Callable[[Decision], Any] | Sequence[Callable[[Decision], Any]] = (),
                 run: str = "train", asynchronous: bool | None = None) -> None:
        self.policy = policy or GuardPolicy()
        self.policy.validate()
        self.asynchronous = (self.policy.asynchronous and self.policy.skip_z == 0
                             and os.name == "posix") if asynchronous is None else asynchronous
        self.checkpoints = sorted(set(int(c) for c in checkpoints))
        self.checkpoint_every = checkpoint_every
        self.alerts = [alert] if callable(alert) else list(alert)
        self.decisions: list[Decision] = []
        self.stopped: Decision | None = None
        self._last_step: int | None = None
        self._link: Any = None
        self._slices: Any = None  # in process with slice_ms: the update's slices
        if self.asynchronous:
            self._start(dict(policy=self.policy, detectors=detectors,
                             checkpoints=self.checkpoints, checkpoint_every=checkpoint_every,
                             run=run))
            return
        self.live = LiveRun(run, detectors=detectors, roles=TAGS, source="guard",
                            format="guard")
        spike = next((s.det for s in self.live.streams.streams if s.kind == "spike"), None)
        self._min_ratio = math.log(float(getattr(spike, "min_ratio", 1.05)))
        grad = next((s.det for s in self.live.streams.streams if s.kind == "grad_spike"), None)
        self._grad_ratio = math.log(float(getattr(grad, "min_ratio", 1.5)))
        self._pending: dict[str, tuple[list[int], list[float]]] = {t: ([], []) for t in TAGS}
        self._bar = math.inf  # a loss above it makes the detectors run now
        self._gbar = math.inf
        self._next = self.policy.check_every
        self._said: dict[tuple, str] = {}  # event key -> "stop_and_restart" once stopped
        self._ranks: dict[tuple, int] = {}  # event key -> severity rank last alerted
        if self.policy.slice_ms > 0 and self.policy.skip_z == 0:
            self._slice_start()

    # -- the hot path ---------------------------------------------------------------------

    def step(self, step: int, loss: float, grad_norm: float | None = None,
             lr: float | None = None, loss_scale: float | None = None) -> Decision:
        """One optimizer step's numbers; what to do about them."""
        step, loss = step_number(step), number("loss", loss)
        if grad_norm is not None:
            grad_norm = number("grad_norm", grad_norm)
        if lr is not None:
            lr = number("lr", lr)
        if loss_scale is not None:
            loss_scale = number("loss_scale", loss_scale)
        if not self._take_in(step, loss, grad_norm, lr, loss_scale):
            return NOTHING
        return self._record(self._check(step, loss, grad_norm))

    def _take_in(self, step: int, loss: float, grad_norm: float | None, lr: float | None,
                 loss_scale: float | None) -> bool:
        """File one call's numbers; whether the detectors are due now."""
        p = self._pending
        p["loss"][0].append(step)
        p["loss"][1].append(loss)
        due = step >= self._next or not loss < self._bar  # NaN compares False: due
        if grad_norm is not None:
            p["grad_norm"][0].append(step)
            p["grad_norm"][1].append(grad_norm)
            due = due or not grad_norm < self._gbar
        if lr is not None:
            p["lr"][0].append(step)
            p["lr"][1].append(float(lr))
        if loss_scale is not None:
            p["loss_scale"][0].append(step)
            p["loss_scale"][1].append(float(loss_scale))
        self._last_step = step
        return due

    # -- checks ---------------------------------------------------------------------------

    def checkpoint_saved(self, step: int) -> None:
        """A checkpoint was saved at `step` (the state after that step)."""
        step = step_number(step, "Guard.checkpoint_saved: step")
        if self._slices is not None and (self._slices.busy
                                         or self._head < len(self._queue[0])):
            self._enqueue(step, None, None, None, None)  # in order with the calls
        elif step not in self.checkpoints:
            self.checkpoints.append(step)
            self.checkpoints.sort()
            if self._link is not None:
                self._link.checkpoint(step)

    def flush(self) -> list[Event]:
        """Run the detectors on every step fed so far; the events (as `events()`)."""
        if self.asynchronous:
            return self._ask(True)
        self._catch_up()
        self._feed()
        self.live.detect()
        return self.events()

    def events(self) -> list[Event]:
        """The events so far as `analyze` gives them: severities settled by the findings
        that cite them (`pipeline.settle_events`), ids `<kind>-<n>` in order."""
        if self.asynchronous:
            return self._ask(False)
        self._catch_up()
        from ..pipeline import settle_events

        counters: dict[str, int] = {}
        out = []
        for e in settle_events(self.live.info(), self.live.current()):
            counters[e.kind] = counters.get(e.kind, 0) + 1
            out.append(replace(e, id=f"{e.kind}-{counters[e.kind]}"))
        return out

    def _feed(self) -> None:
        batches = [(tag, steps, values) for tag, (steps, values) in self._pending.items()
                   if steps]
        if batches:
            self.live.add_many([(t, np.array(s, np.int64), np.array(v, np.float64))
                                for t, s, v in batches])
            for _, steps, values in batches:
                steps.clear()
                values.clear()

    def _check(self, step: int, loss: float, grad_norm: float | None) -> Decision:
        """Run the streams on what came since the last check; the decision at `step`."""
        self._feed()
        rev = self.live.update()
        self._next = step + self.policy.check_every
        for e in rev.events:  # be there when an open spike has been out for stop_after
            if e.kind == "spike" and e.end_step is None and "spike" in self.policy.stop_on:
                due = e.start_step + self.policy.stop_after
                if due > step:
                    self._next = min(self._next, due)
        self._bars(rev.events)
        return self._decide(step, loss, grad_norm, rev.new, rev.revised, rev.events)

    def _record(self, decision: Decision) -> Decision:
        """A decision made: kept, `stopped` when it stops, told to the alert sinks."""
        if decision:
            self.decisions.append(decision)
            if decision.action == "stop_and_restart":
                self.stopped = decision
            for sink in self.alerts:
                sink(decision)
        return decision

    def _bars(self, events: list[Event]) -> None:
        """The bars until the next check, from the trailing points of loss and grad norm.
        While a spike of the series is still out, more high values change no decision (its
        return is a value coming down, its stop is scheduled): no bar, the periodic checks."""
        out = {e.tag for e in events if e.kind in ("spike", "grad_spike") and e.end_step is None}
        self._bar = math.inf if "loss" in out else self._bar_of("loss", self._min_ratio)
        self._gbar = math.inf if "grad_norm" in out else self._bar_of("grad_norm",
                                                                      self._grad_ratio)

    def _bar_of(self, tag: str, min_log_ratio: float) -> float:
        s = self.live.series.get(tag)
        if s is None or s.n < 8:
            return -math.inf if s is not None else math.inf  # too few points: check each
        v = s.value[max(0, s.n - 128):s.n]
        v = v[np.isfinite(v)]
        if v.shape[0] < 8:
            return -math.inf
        if (v <= 0).any():  # additive: the spike statistic is too, then
            med = median(v)
            mad = 1.4826 * median(np.abs(v - med))
            return med + self.policy.screen_z * mad
        y = np.log(v)
        med = median(y)  # (np.median's numbers by a sort: ~4x less a call on 128 values)
        mad = 1.4826 * median(np.abs(y - med))
        return math.exp(med + max(self.policy.screen_z * mad, min_log_ratio))

    # -- policy ---------------------------------------------------------------------------

    def _decide(self, step: int, loss: float, grad_norm: float | None, new: list[Event],
                revised: list[Event], current: list[Event]) -> Decision:
        pol = self.policy
        stop = self._stop_event(step, current)
        if stop is not None:
            key = (stop.kind, stop.tag, stop.start_step)
            if self._said.get(key) != "stop_and_restart":
                self._said[key] = "stop_and_restart"
                return Decision("stop_and_restart", step, self._why(stop, step), (stop,),
                                self._plan(stop, step))
        if pol.skip_nonfinite and not (math.isfinite(loss) and (
                grad_norm is None or math.isfinite(grad_norm))):
            what = "loss" if not math.isfinite(loss) else "grad norm"
            value = loss if what == "loss" else grad_norm
            return self._told(Decision(
                "skip_step", step, f"the {what} is {value} at step {step}: do not apply "
                "this update", tuple(e for e in current if e.kind == "nonfinite")))
        if pol.skip_z > 0:
            hit = [e for e in current if e.kind == "spike" and e.start_step == step
                   and e.details.get("z_start", 0.0) >= pol.skip_z]
            if hit:
                return self._told(Decision(
                    "skip_step", step, f"the loss at step {step} is "
                    f"{hit[0].details['z_start']:.1f} robust scales over its level "
                    f"(skip_z {pol.skip_z:g}): do not apply this update", tuple(hit)))
        level = SEVERITIES.index(pol.alert_severity)
        loud = []
        for e in new + revised:
            key = (e.kind, e.tag, e.start_step)
            rank = SEVERITIES.index(e.severity) if e.severity in SEVERITIES else 0
            if e.kind in ("spike", "grad_spike") and e.end_step is None:
                rank = 0  # not back yet: judged when it is back (slow: a warning) or stays
                #           out `stop_after` steps (stop_and_restart)
            if rank < level or rank <= self._ranks.get(key, -1):
                continue
            self._ranks[key] = rank
            loud.append(e)
        if loud:
            what = "; ".join(f"{e.kind} on {e.tag or 'the run'} from step {e.start_step}"
                             + (" (not back yet)" if e.kind in ("spike", "grad_spike")
                                and e.end_step is None else f" ({e.severity})")
                             for e in loud)
            return Decision("alert", step, what, tuple(loud))
        return NOTHING

    def _told(self, decision: Decision) -> Decision:
        """The decision, its events marked as told (no alert repeats them)."""
        for e in decision.events:
            key = (e.kind, e.tag, e.start_step)
            self._ranks[key] = max(self._ranks.get(key, -1), SEVERITIES.index(e.severity)
                                   if e.severity in SEVERITIES else 0)
        return decision

    def _stop_event(self, step: int, current: list[Event]) -> Event | None:
        pol = self.policy
        for e in current:
            if e.kind not in pol.stop_on:
                continue
            if e.kind == "divergence" and not e.details.get("recovered"):
                return e
            if e.kind == "nonfinite" and e.details.get("points", 0) >= pol.stop_nonfinite \
                    and e.tag == "loss":
                return e
            if e.kind == "spike" and e.tag == "loss" and e.end_step is None \
                    and step - e.start_step >= pol.stop_after:
                return e
        return None

    def _why(self, e: Event, step: int) -> str:
        if e.kind == "spike":
            return (f"the loss spiked at step {e.start_step} (x{e.magnitude:.2f}) and has not "
                    f"come back in {step - e.start_step} steps")
        if e.kind == "divergence":
            return f"the loss is diverging since step {e.start_step}"
        return f"{e.details.get('points')} non-finite losses since step {e.start_step}"

    def _plan(self, e: Event, step: int) -> SkipPlan | None:
        from ..skipplan import SkipPolicy, plan

        pol = self.policy
        ckpts = list(self.checkpoints)
        if self.checkpoint_every:
            ckpts += list(range(self.checkpoint_every, step + 1, self.checkpoint_every))
        skip, _ = plan([e], ckpts or None, SkipPolicy(pol.before, pol.min_skip, pol.max_skip))
        if skip is None:
            return None
        (first, last), rest = skip.skip[-1], skip.skip[:-1]
        cap = first + pol.max_skip - 1 if pol.max_skip else step
        last = max(last, min(step, cap))  # through the step it stopped at
        return replace(skip, skip=rest + ((first, last),))

    def _skip_at_once(self, step: int, loss: float, grad_norm: float | None) -> Decision:
        """The O(1) NaN/inf rule, answered by the call that brought it (in slices and in
        the asynchronous mode): noted in `_early`, handed to the alert sinks. The update's or
        the worker's own copy, with its events, goes into `decisions` and is not returned
        again."""
        what = "loss" if not math.isfinite(loss) else "grad norm"
        value = loss if what == "loss" else grad_norm
        early = Decision("skip_step", step, f"the {what} is {value} at step {step}: do "
                         "not apply this update")
        self._early[step] = early
        for sink in self.alerts:
            sink(early)
        return early

    # -- in process, the window update in slices (.slices) --------------------------------

    def _slice_start(self) -> None:
        from . import slices

        if not slices.HAS_GREENLET:
            import warnings

            from ..errors import LossLensWarning
            warnings.warn(LossLensWarning(
                "guard slice-ms needs the greenlet package (pip install 'losslens[slices]'); "
                "without it each window update runs whole, in the call it is due at"),
                stacklevel=3)
        self._slices = slices.Slices(self.policy.slice_ms / 1000.0)
        #: the calls that came while an update was under way (a checkpoint: loss None),
        #: taken in by it in order; parallel lists of numbers, so that `step` allocates no
        #: object the garbage collector tracks (no collection can start in it)
        self._queue: tuple[list, ...] = ([], [], [], [], [])
        self._head = 0  # of the queue, taken in
        self._due: list[Any] = [0, 0.0, None, False]  # step, loss, grad norm of the call
        #                         whose check an update starts with, and whether there is one
        self._driver = self._drive  # (one bound method: `step` allocates none)
        self._ready: deque[Decision] = deque()  # made, not yet returned by step
        self._early: dict[int, Decision] = {}  # skip_step answered at once, by step
        self._given = 0  # of `decisions`, those handed to the alert sinks
        self.waits = 0  # calls of `step` that waited for the update (max_lag)
        # what an update imports lazily, imported now: a suspended import holds its lock
        from .. import diagnosis, pipeline, skipplan  # noqa: F401
        from ..detectors import filters  # noqa: F401
        self.step = self._step_sliced  # type: ignore[method-assign]

    def _step_sliced(self, step: int, loss: float, grad_norm: float | None = None,
                     lr: float | None = None, loss_scale: float | None = None) -> Decision:
        """`step` in process with `slice_ms`: the update runs in slices of the calls after
        the one it is due at; the decisions are those of `step` (same steps, events, plans),
        each returned by the first call after it is made."""
        step, loss = step_number(step), number("loss", loss)
        if grad_norm is not None:
            grad_norm = number("grad_norm", grad_norm)
        if lr is not None:
            lr = number("lr", lr)
        if loss_scale is not None:
            loss_scale = number("loss_scale", loss_scale)
        early = None
        if self.policy.skip_nonfinite and not (math.isfinite(loss) and (
                grad_norm is None or math.isfinite(grad_norm))):
            early = self._skip_at_once(step, loss, grad_norm)
        work, q = self._slices, self._queue
        if work.busy or self._head < len(q[0]):  # (calls left as an update ended: theirs)
            self._enqueue(step, loss, grad_norm, lr, loss_scale)
            if len(q[0]) - self._head >= self.policy.max_lag:
                self.waits += 1  # too far behind: no more calls before it has caught up
                self._catch_up()
            else:
                work.run(self._driver)
        else:
            if q[0]:  # all taken in by the update that ended (only it reads the queue);
                q[0].clear()  # (one by one: a loop over them would allocate an iterator)
                q[1].clear()
                q[2].clear()
                q[3].clear()
                q[4].clear()
                self._head = 0
            if self._take_in(step, loss, grad_norm, lr, loss_scale):
                due = self._due
                due[0], due[1], due[2], due[3] = step, loss, grad_norm, True
                work.run(self._driver)
        if len(self.decisions) > self._given:
            self._tell()
        if early is not None:
            return early
        return self._ready.popleft() if self._ready else NOTHING

    def _enqueue(self, step: int, loss: float | None, grad_norm: float | None,
                 lr: float | None, loss_scale: float | None) -> None:
        q = self._queue
        q[0].append(step)
        q[1].append(loss)
        q[2].append(grad_norm)
        q[3].append(lr)
        q[4].append(loss_scale)

    def _drive(self) -> None:
        """The update (in a greenlet): the check due at `self._due` (if any), then the
        queued calls and checkpoints in order, each check where `step` would make it, until
        none is left. The loop only appends to the queue meanwhile (what comes as this
        ends is left there: the next `step` starts another update for it)."""
        q, first = self._queue, self._due
        due = tuple(first[:3]) if first[3] else None
        first[3] = False
        while True:
            if due is not None:
                d = self._check(*due)
                if d:
                    self.decisions.append(d)
                    if d.action == "stop_and_restart":
                        self.stopped = d
                due = None
            i = self._head
            if i == len(q[0]):
                return
            step, loss, grad_norm = q[0][i], q[1][i], q[2][i]
            if loss is None:
                if step not in self.checkpoints:
                    self.checkpoints.append(step)
                    self.checkpoints.sort()
            elif self._take_in(step, loss, grad_norm, q[3][i], q[4][i]):
                due = (step, loss, grad_norm)
            self._head = i + 1

    def _tell(self) -> None:
        """The decisions made since the last call: to the alert sinks, and to be returned
        (a skip_step answered at once is not returned again)."""
        for d in self.decisions[self._given:]:
            if d.action == "skip_step" and self._early.pop(d.step, None) is not None:
                continue
            self._ready.append(d)
            for sink in self.alerts:
                sink(d)
        self._given = len(self.decisions)

    def _catch_up(self) -> None:
        """Finish the update under way (in process, `slice_ms`) and every call queued."""
        work = self._slices
        if work is None:
            return
        while work.busy or self._head < len(self._queue[0]):
            if not work.busy:
                work.run(self._driver)
            work.finish()
        if len(self.decisions) > self._given:
            self._tell()

    # -- the asynchronous mode (the detectors in a worker process: .worker, .serve) -------

    def _start(self, kwargs: dict[str, Any]) -> None:
        from .worker import Link

        self._ready: deque[Decision] = deque()  # the worker's, not yet returned by step
        self._early: dict[int, Decision] = {}  # skip_step answered at once, by step
        #: calls of `step` that waited for the worker (it was over `max_lag` calls behind)
        self.waits = 0
        self._link = Link(kwargs, self.policy.max_lag)
        self.live = None
        self.step = self._step_async  # type: ignore[method-assign]
        ref = weakref.ref(self)
        self._atexit = lambda: (lambda g: g is not None and g.close())(ref())
        atexit.register(self._atexit)

    def _step_async(self, step: int, loss: float, grad_norm: float | None = None,
                    lr: float | None = None, loss_scale: float | None = None) -> Decision:
        """`step` in the asynchronous mode: pack the numbers (shipped in batches), look
        for an answer without waiting; never waits for a window update unless the worker
        is more than `max_lag` calls behind."""
        link = self._link
        if link is None:
            raise InvalidParameterError("the guard is closed")
        step, loss = step_number(step), number("loss", loss)
        if grad_norm is not None:
            grad_norm = number("grad_norm", grad_norm)
        answered = link.call(step, loss, grad_norm, None if lr is None else number("lr", lr),
                             None if loss_scale is None
                             else number("loss_scale", loss_scale))
        self._last_step = step
        early = None
        if self.policy.skip_nonfinite and not (math.isfinite(loss) and (
                grad_norm is None or math.isfinite(grad_norm))):
            early = self._skip_at_once(step, loss, grad_norm)
        while answered:
            self._take(link.take())
            answered = link.ready()
        if link.queued - link.acked > self.policy.max_lag:
            while link.ready():  # what the worker has said since the last batch went
                self._take(link.take())
        if link.queued - link.acked > self.policy.max_lag:
            self.waits += 1
            self._wait(link.queued - self.policy.max_lag)
        if early is not None:
            return early
        return self._ready.popleft() if self._ready else NOTHING

    def _take(self, msg: tuple) -> Any:
        """One answer of the worker: an ack (its decisions; None) or an events answer."""
        if msg[0] != "ack":
            return msg[1]
        for d in msg[2]:
            self.decisions.append(d)
            if d.action == "stop_and_restart":
                self.stopped = d
            if d.action == "skip_step" and self._early.pop(d.step, None) is not None:
                continue  # returned at once already
            self._ready.append(d)
            for sink in self.alerts:
                sink(d)
        return None

    def _wait(self, upto: int) -> None:
        """Block until the worker has decided about the first `upto` calls."""
        link = self._link
        link.ring()
        while link.acked < upto:
            self._take(link.take())

    def _ask(self, flush: bool) -> list[Event]:
        if self._link is None:
            raise InvalidParameterError("the guard is closed")
        from .worker import EVENTS

        self._link.ask(EVENTS, flush)
        while True:
            out = self._take(self._link.take())
            if out is not None:
                return out

    def drain(self) -> list[Decision]:
        """Wait until the worker has caught up (nothing in the synchronous mode); the
        decisions not yet returned by `step`, which then returns nothing of them."""
        if self._link is None:
            if self._slices is None:
                return []
            self._catch_up()
            out = list(self._ready)
            self._ready.clear()
            return out
        from .worker import SYNC

        self._link.ask(SYNC)
        self._wait(self._link.queued)
        out = list(self._ready)
        self._ready.clear()
        return out

    def close(self) -> None:
        """Stop the worker process (asynchronous mode); a no-op otherwise. `atexit` and the
        context manager call it."""
        link, self._link = self._link, None
        if link is not None:
            link.close()
            atexit.unregister(self._atexit)

    def __enter__(self) -> "Guard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
