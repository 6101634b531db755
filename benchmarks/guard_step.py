"""Cost of `losslens.guard.Guard.step` per call, and of the HF callback in a Trainer run.

1. `Guard.step` on a synthetic run (`--steps`, default 20,000: a decaying loss with
   log-normal noise, a grad norm, a learning rate; fast spikes, a slow one, a NaN) with the
   default policy, in process (each check whole in the call it is due at; in time slices,
   `slice_ms` = 0.5, an opt-in) then asynchronous (the default), `--work-ms` (default 2) of
   sleep between calls standing for the training step (the asynchronous guard's worker
   needs ~1 ms a step on average to keep up; a tighter loop makes `step` wait for it at
   `max_lag`): wall time of every call (perf_counter_ns) and its own CPU time (the
   thread's), median / p99 / p99.9 / max, and (synchronous) the calls that ran the
   detectors' window update; the in-process mode also as it was before bottleneck's
   medians and before the streams' bounded updates on long series (MODES; `--modes`), in
   the same run. The load average is printed: on a shared machine the
   wall times carry other processes' turns.
   Goal: median <= 20 us, worst <= 1 ms.
2. (`--hf-steps N`, default 2,000; 0 skips it) an HF Trainer run of N steps of a tiny model
   (one linear layer, logging every step) without `GuardCallback`, with it (asynchronous
   guard, the default) and with an in-process guard (a policy that never stops, so every
   step is fed): seconds each.

    python benchmarks/guard_step.py
    python benchmarks/guard_step.py --steps 5000 --hf-steps 0
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from losslens.detectors import filters, spike_early  # noqa: E402
from losslens.guard import Guard, GuardPolicy  # noqa: E402


def series(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-s / (n / 10))) * np.exp(rng.normal(0, 0.02, n))
    for at in range(n // 7, n, n // 7):
        loss[at:at + 3] *= 2.0
    loss[n // 2:n // 2 + 300] *= 1.5
    loss[int(n * 0.8)] = math.nan
    grad = np.exp(rng.normal(0, 0.1, n))
    return s.tolist(), loss.tolist(), grad.tolist()


def bench_step(n: int, work_ms: float, max_lag: int = 100, modes: str = "") -> None:
    steps, loss, grad = series(n)
    print(f"Guard.step, {n:,} calls (loss, grad norm, lr; default policy but never stops), "
          f"{work_ms:g} ms of sleep between calls (a training step's time), max-lag {max_lag}:")
    picked = [MODES[int(i)] for i in modes.split(",")] if modes else MODES
    for name, asynchronous, slice_ms, fast, bounded in picked:
        medians(fast, bounded)
        g = Guard(GuardPolicy(stop_on=(), max_lag=max_lag, slice_ms=slice_ms),
                  asynchronous=asynchronous)
        sliced = g._slices
        lr = 3e-4
        times = np.empty(n, np.int64)
        own = np.empty(n, np.int64)  # the call's own CPU time (this thread)
        checks = np.zeros(n, bool)  # calls that ran (a slice of) a window update
        late: list[int] = []  # calls between a decision's step and the call returning it
        clock, tclock = time.perf_counter_ns, time.thread_time_ns
        live = g.live
        cpu0 = time.process_time()
        for i in range(n):
            before = (live.tick if live is not None else 0,
                      sliced.total if sliced is not None else 0)
            c0 = tclock()
            t0 = clock()
            d = g.step(steps[i], loss[i], grad_norm=grad[i], lr=lr)
            times[i] = clock() - t0
            if d:
                late.append(steps[i] - d.step)
            own[i] = tclock() - c0
            checks[i] = live is not None and (live.tick, sliced.total if sliced is not None
                                              else 0) != before
            if work_ms:
                time.sleep(work_ms / 1000)
        cpu = time.process_time() - cpu0  # this process only (not the worker)
        events = len(g.flush())
        medians(True)
        waits = getattr(g, "waits", 0)
        g.close()
        us, cu = times / 1000.0, own / 1000.0
        slow = us > 1000
        print(f"  {name}: median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us, "
              f"p99.9 {np.percentile(us, 99.9):.0f} us, max {us.max():.0f} us; "
              f"{int(slow.sum())} call(s) over 1 ms"
              + (f" ({waits} waited for the worker)" if asynchronous else
                 f" ({waits} waited for the update: max-lag)" if sliced is not None else "")
              + f"; {events} events; CPU time of the loop's process {cpu:.2f} s "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"    the calls' own CPU time: median {np.median(cu):.1f} us, "
              f"p99 {np.percentile(cu, 99):.1f} us, p99.9 {np.percentile(cu, 99.9):.0f} us, "
              f"max {cu.max():.0f} us; of the calls over 1 ms, {int((slow & (cu < 1000)).sum())}"
              " used under 1 ms of CPU (the rest of their time the loop was not running: "
              "the scheduler)")
        if late:
            print(f"    {len(late)} decision(s) returned, {np.median(late):.0f} calls after "
                  f"their step at the median, {max(late)} at most")
        if checks.any():
            window, plain = us[checks], us[~checks]
            what = "slices of" if sliced is not None else ""
            print(f"    calls that ran {what} window updates: {window.shape[0]:,} "
                  f"({window.shape[0] / n:.1%}), median {np.median(window):.0f} us, "
                  f"max {window.max():.0f} us (own CPU: median {np.median(cu[checks]):.0f} "
                  f"us, max {cu[checks].max():.0f} us); the other calls: max "
                  f"{plain.max():.0f} us" + (f"; {live.tick} updates in {sliced.total} "
                                             "slices" if sliced is not None else ""))


#: the slices' length in the sliced mode (an opt-in: `slice-ms` is 0 by default)
SLICE_MS = 0.5
#: (name, asynchronous, slice_ms, bottleneck's medians and the kept head verdicts) of each
#: mode measured: the first is the second as it was before bottleneck (the same events).
#: The fifth: the streams' bounded updates on long series (divergence run again only where a
#: new point can change its events, arrays grown without one call copying all of them; the
#: default), off in the mode as before them. `--modes` picks some by their number (0-4).
MODES = (("in-process, whole checks, SciPy/pandas medians", False, 0.0, False, True),
         ("in-process, whole checks, divergence at every rise, arrays doubled in one copy "
          "(as before)", False, 0.0, True, False),
         ("in-process, whole checks", False, 0.0, True, True),
         ("in-process, in slices", False, SLICE_MS, True, True),
         ("asynchronous", True, 0.0, True, True))


def medians(fast: bool, bounded: bool = True) -> None:
    """bottleneck's trailing medians and the kept head verdicts on (the default) or off; the
    bounded updates on (the default) or off."""
    from losslens.detectors.stream_base import Regrow
    from losslens.detectors.stream_misc import DivergenceStream

    DivergenceStream.deferred = Regrow.spread = bounded
    filters.BOTTLENECK = fast
    spike_early.MEMO_SIZE = 64 if fast else 0
    spike_early.early_spikes(np.zeros(0), 6.0, 0.05)  # (empties the memo when off)


def bench_hf(n: int) -> None:
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from losslens.guard.hf import GuardCallback

    torch.set_num_threads(1)

    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return n * 4

        def __getitem__(self, i):
            x = torch.full((4,), float(i % 7) / 7)
            return {"x": x, "labels": x.sum() * 0.5 + 0.01 * ((i * 7919) % 13 - 6)}

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x, labels):
            return {"loss": ((self.lin(x).squeeze(-1) - labels) ** 2).mean()}

    import tempfile

    out, cpu = {}, {}
    for name, cbs in (("without", []), ("with", None), ("in-process", "sync"),
                      ("in-process whole", "whole"), ("without again", [])):
        with tempfile.TemporaryDirectory() as d:
            args = TrainingArguments(output_dir=d, max_steps=n, per_device_train_batch_size=4,
                                     logging_steps=1, save_strategy="no", report_to=[],
                                     use_cpu=True, disable_tqdm=True, log_level="error")
            # never stops: the cost of feeding it every step is what is measured
            guard = None
            if cbs is None or cbs in ("sync", "whole"):
                guard = Guard(GuardPolicy(stop_on=(), slice_ms=0.0 if cbs == "whole" else
                                          SLICE_MS), asynchronous=cbs is None)
            callbacks = [] if guard is None else [GuardCallback(guard)]
            t = Trainer(model=Model(), args=args, train_dataset=Data(), callbacks=callbacks)
            t.remove_callback(PrinterCallback)
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0, c0 = time.perf_counter(), time.process_time()
            t.train()
            out[name] = time.perf_counter() - t0
            cpu[name] = time.process_time() - c0
            assert t.state.global_step == n
            if guard is not None:
                guard.close()  # (its worker's CPU time counts once it has exited)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[name] += (kids.ru_utime + kids.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    print(f"HF Trainer, {n:,} steps of a one-layer model, logging every step: "
          f"{out['without']:.1f} s without the callback, {out['with']:.1f} s with it "
          f"({(out['with'] / out['without'] - 1):+.1%}; asynchronous guard), "
          f"{out['in-process']:.1f} s with an in-process guard in slices "
          f"({(out['in-process'] / out['without'] - 1):+.1%}), "
          f"{out['in-process whole']:.1f} s in-process with whole checks, "
          f"{out['without again']:.1f} s without it again; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("  CPU time (the run's process and its guard worker): " + ", ".join(
        f"{k} {v:.1f} s" for k, v in cpu.items())
          + f"; the guard costs {(cpu['with'] - cpu['without']) / n * 1e3:.2f} ms a step "
          f"(asynchronous), {(cpu['in-process'] - cpu['without']) / n * 1e3:.2f} ms "
          f"(in-process, slices), {(cpu['in-process whole'] - cpu['without']) / n * 1e3:.2f}"
          " ms (in-process, whole checks), against the first run without it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--work-ms", type=float, default=2.0)
    ap.add_argument("--max-lag", type=int, default=100)
    ap.add_argument("--hf-steps", type=int, default=2_000)
    ap.add_argument("--modes", default="", help="the modes' numbers in MODES, e.g. 1,2 "
                    "(default: all)")
    ap.add_argument("--heavy", action="store_true",
                    help="import torch and transformers first (a training process's heap: "
                         "a full garbage collection then takes ~0.2 s)")
    a = ap.parse_args()
    if a.heavy:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers import Trainer  # noqa: F401
    if a.steps:
        bench_step(a.steps, a.work_ms, a.max_lag, a.modes)
    if a.hf_steps:
        bench_hf(a.hf_steps)


if __name__ == "__main__":
    main()
