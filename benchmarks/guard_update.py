"""CPU and wall time of the in-process guard's window updates, by stream, with and without the
spike streams' incremental path (`SpikeStream.incremental`), bottleneck's trailing medians
(`filters.BOTTLENECK`, with the head's kept verdicts `spike_early.MEMO_SIZE`) and the bounded
updates on long series (`DivergenceStream.deferred`: divergence run again only where a new
point can change its events; `Regrow.spread`: arrays grown without one call copying all of
them, the large ones in 4 KiB pages).

The in-process guard (`asynchronous = false`, `slice-ms = 0`) runs its detectors' streams
every `check-every` calls (and at once on a NaN or a loss over the bar): that call carries
the update. This feeds `benchmarks/guard_step.py`'s series (a decaying loss with log-normal
noise, six fast spikes, a slow one, a NaN, a grad norm) to a guard with the default policy
that never stops, and gives each update's own CPU time (the thread's) and wall time, in total,
apart for the quiet updates (no spike stream judged its window again) and the others, and by
stream (spike, grad_spike, divergence, ...), as median / p99 / max, and the calls over
1 ms, and what the costliest updates spent by stream (`--top`). The modes (MODES,
`--modes`) run in one process, alternating (`--repeat`), so they see the same load (the load
average is printed: on a shared machine every number is inflated); the events of all of them
are checked equal.

    python benchmarks/guard_update.py
    python benchmarks/guard_update.py --steps 50000 --repeat 2
    python benchmarks/guard_update.py --steps 1000000 --modes before,default
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guard_step import series  # noqa: E402

from losslens.detectors import filters, spike_early  # noqa: E402
from losslens.detectors.stream_base import Regrow  # noqa: E402
from losslens.detectors.stream_misc import DivergenceStream  # noqa: E402
from losslens.detectors.stream_spike import SpikeStream  # noqa: E402
from losslens.guard import Guard, GuardPolicy  # noqa: E402

#: key -> (label, the spike streams' incremental path, bottleneck's medians and the kept
#: head verdicts, bounded updates: divergence on a long series run again only where a new
#: point can change its events, and arrays doubled without one call copying all of them)
MODES = {
    "window": ("window each time, SciPy/pandas medians", False, False, True),
    "scipy": ("incremental, SciPy/pandas medians", True, False, True),
    "before": ("incremental, bottleneck medians, divergence at every rise, arrays doubled "
               "in one copy (as before)", True, True, False),
    "default": ("incremental, bottleneck medians, bounded (the default)", True, True, True),
}


def run(n: int, incremental: bool, fast: bool, bounded: bool
        ) -> tuple[np.ndarray, np.ndarray, dict[str, list[int]], list, dict, np.ndarray]:
    SpikeStream.incremental = incremental
    DivergenceStream.deferred = Regrow.spread = bounded
    filters.BOTTLENECK = fast
    spike_early.MEMO_SIZE = 64 if fast else 0
    spike_early.early_spikes(np.zeros(0), 6.0, 0.05)  # (empties the memo when off)
    steps, loss, grad = series(n)
    g = Guard(GuardPolicy(stop_on=()), asynchronous=False)
    live = g.live
    by: dict[str, list[int]] = {}
    clock = time.thread_time_ns
    for stream in live.streams.streams:  # time each stream's update
        name = stream.kind
        update = stream.update

        def timed(st, update=update, name=name):
            c0 = clock()
            update(st)
            by.setdefault(name, []).append(clock() - c0)
        stream.update = timed
    own = np.empty(n, np.int64)
    wall = np.empty(n, np.int64)
    updates = np.zeros(n, bool)
    judged = np.zeros(n, bool)  # a spike stream judged its window (not the incremental path)
    spikes = [getattr(s, "grad", s) for s in live.streams.streams
              if isinstance(s, SpikeStream) or hasattr(s, "grad")]
    wclock = time.perf_counter_ns
    for i in range(n):
        tick = live.tick
        before = sum(s.judged_updates for s in spikes)
        w0, c0 = wclock(), clock()
        g.step(steps[i], loss[i], grad_norm=grad[i], lr=3e-4)
        own[i] = clock() - c0
        wall[i] = wclock() - w0
        updates[i] = live.tick != tick
        judged[i] = sum(s.judged_updates for s in spikes) != before
    counts = {s.kind: (s.quiet_updates, s.judged_updates) if isinstance(s, SpikeStream) else
              (s.grad.quiet_updates, s.grad.judged_updates) for s in live.streams.streams
              if hasattr(s, "grad") or isinstance(s, SpikeStream)}
    events = [e.to_dict() for e in g.flush()]
    SpikeStream.incremental, filters.BOTTLENECK, spike_early.MEMO_SIZE = True, True, 64
    DivergenceStream.deferred = Regrow.spread = True
    return (own[updates], wall[updates], by, events, counts, np.asarray(steps)[updates],
            judged[updates])


def show(name: str, ns: np.ndarray) -> str:
    us = np.asarray(ns) / 1000.0
    return (f"{name}: median {np.median(us):.0f} us, p99 {np.percentile(us, 99):.0f} us, "
            f"max {us.max():.0f} us, {int((us > 1000).sum())} of {us.shape[0]} over 1 ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES),
                    help="which, comma-separated, in order: " + ", ".join(MODES))
    ap.add_argument("--top", type=int, default=5, help="the costliest updates, by stream")
    a = ap.parse_args()
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    print(f"In-process guard, {a.steps:,} calls of guard_step.py's series; each window "
          f"update's own CPU time (load average {os.getloadavg()[0]:.1f} at the start):")
    events = {}
    for r in range(a.repeat):
        for key in modes:
            label, incremental, fast, bounded = MODES[key]
            t0, c0 = time.perf_counter(), time.process_time()
            own, wall_ns, by, ev, counts, at, judged = run(a.steps, incremental, fast, bounded)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            events.setdefault(label, ev)
            print(f"  [{r + 1}] {label}: " + show("update calls' CPU", own)
                  + f"; the whole run {cpu:.2f} s CPU, {wall:.2f} s wall "
                  f"(load {os.getloadavg()[0]:.1f})")
            print("      " + show("update calls' wall time", wall_ns))
            if (~judged).any() and judged.any():
                print("      " + show("quiet updates' CPU (no spike window judged)", own[~judged]))
                print("      " + show("updates that judged a spike window, CPU", own[judged]))
            for kind, ns in by.items():
                print("      " + show(kind, ns))
            print("      spike streams (incremental / window judged): " + ", ".join(
                f"{k} {q}/{j}" for k, (q, j) in counts.items()))
            for j in np.argsort(own)[::-1][:a.top]:  # what the worst updates are made of
                parts = sorted(((by[k][j], k) for k in by if j < len(by[k])), reverse=True)
                print(f"      update at step {int(at[j]):,}: {own[j] / 1000:.0f} us = "
                      + ", ".join(f"{k} {ns / 1000:.0f}" for ns, k in parts[:3])
                      + f", the rest {(own[j] - sum(ns for ns, _ in parts[:3])) / 1000:.0f}")
    first = next(iter(events.values()))
    same = all(ev == first for ev in events.values())
    print(f"  the same {len(first)} events in every mode: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
