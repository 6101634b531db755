"""Cost of one `losslens watch` update on a big live log, and latency from write to report.

Writes a Megatron-LM log (`read_text.write_log`: argument dump, training lines with a
microsecond timestamp, a validation block and a checkpoint line every 1000 iterations) of
`--lines` + the lines appended later, cuts it at `--lines`, then measures with
`losslens.watch.Follower`:

- the first look (the whole file read and analysed);
- `--updates` updates of `--batch` new lines each (default 1,000 lines on a 1,000,000-line
  log): wall time per `poll()`, split into reading/parsing and detection;
- latency: `follow()` runs in a thread at the default 0.5 s interval while this thread
  appends a batch holding a spike; the time from the write to the spike's report.

    python benchmarks/watch_update.py                   # 1,000,000 lines (~330 MB)
    python benchmarks/watch_update.py --lines 100000 --updates 10
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from read_text import write_log  # noqa: E402

_LOSS = re.compile(rb"lm loss: (\S+) \|")


def spiked(block: bytes, at: int, factor: float = 3.0) -> bytes:
    """The block with the lm loss of its `at`-th training line multiplied by `factor`."""
    lines = block.split(b"\n")
    train = [i for i, ln in enumerate(lines) if _LOSS.search(ln)]
    i = train[at]
    m = _LOSS.search(lines[i])
    value = float(m.group(1)) * factor
    lines[i] = lines[i][:m.start(1)] + f"{value:.6E}".encode() + lines[i][m.end(1):]
    return b"\n".join(lines)


def prepare(folder: Path, lines: int, extra: int) -> tuple[Path, list[bytes]]:
    """The log cut at `lines` lines, and the rest as batches of lines (bytes)."""
    src = folder / "source.log"
    t0 = time.perf_counter()
    write_log(src, lines + extra)
    data = src.read_bytes()
    pos, cut = -1, 0
    for _ in range(lines):  # the byte offset after line `lines`
        pos = data.find(b"\n", pos + 1)
    cut = pos + 1
    log = folder / "train.log"
    log.write_bytes(data[:cut])
    rest = data[cut:]
    src.unlink()
    print(f"wrote {lines:,} lines ({cut / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return log, rest.split(b"\n")[:-1]


def timed_source(follower) -> list[float]:
    """Wrap the follower's source so that each read/parse is timed."""
    spent: list[float] = []
    inner = follower.source.poll

    def poll(notices):
        t0 = time.perf_counter()
        out = inner(notices)
        spent.append(time.perf_counter() - t0)
        return out

    follower.source.poll = poll
    return spent


def updates(log: Path, rest: list[bytes], n: int, batch: int) -> list[bytes]:
    from losslens.watch import Follower

    with Follower(log) as f:
        t0 = time.perf_counter()
        first = f.poll()
        print(f"first look: {first.units:,} lines, {time.perf_counter() - t0:.2f} s, "
              f"{len(first.events)} events", flush=True)
        spent = timed_source(f)
        total, units, cpu = [], [], []
        for k in range(n):
            block = b"\n".join(rest[k * batch:(k + 1) * batch]) + b"\n"
            with open(log, "ab") as fh:
                fh.write(block)
            c0 = time.process_time()
            u = f.poll()
            cpu.append(time.process_time() - c0)
            total.append(u.seconds)
            units.append(u.units)
        parse = spent
        detect = [t - p for t, p in zip(total, parse)]
        ms = lambda xs: (f"median {1e3 * statistics.median(xs):.1f} ms, "  # noqa: E731
                         f"p90 {1e3 * sorted(xs)[int(0.9 * (len(xs) - 1))]:.1f} ms, "
                         f"max {1e3 * max(xs):.1f} ms")
        print(f"update of {statistics.median(units):.0f} new lines ({n} updates): {ms(total)}")
        print(f"  reading + parsing: {ms(parse)}")
        print(f"  detection:         {ms(detect)}")
        print(f"  CPU time (process): {ms(cpu)}; load average {os.getloadavg()[0]:.1f}",
              flush=True)
    return rest[n * batch:]


def latency(log: Path, rest: list[bytes], batch: int, tries: int) -> None:
    from losslens.watch import follow

    seen: list[tuple[int, float]] = []
    stop, ready = threading.Event(), threading.Event()

    def watcher() -> None:
        for update in follow(log, interval=0.5, stop=stop, from_end=True):
            ready.set()  # the first look (the whole log, as history) is done
            for r in update.events:
                if r.event.kind == "spike" and not r.update:
                    seen.append((r.event.start_step, time.monotonic()))

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    ready.wait(600)
    waits = []
    for k in range(tries):
        block = b"\n".join(rest[k * batch:(k + 1) * batch]) + b"\n"
        block = spiked(block, batch // 2)
        before = len(seen)
        with open(log, "ab") as fh:
            fh.write(block)
        written = time.monotonic()
        deadline = written + 10
        while len(seen) == before and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(seen) > before:
            waits.append(seen[-1][1] - written)
        time.sleep(0.7 + 0.3 * (k % 2))  # writes land at different phases of the interval
    stop.set()
    thread.join(timeout=10)
    if waits:
        print(f"write -> spike reported ({len(waits)}/{tries} spikes, interval 0.5 s): "
              f"median {statistics.median(waits):.2f} s, max {max(waits):.2f} s")
    else:
        print("no spike reported")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--updates", type=int, default=30)
    ap.add_argument("--latency", type=int, default=6, help="spikes for the latency test")
    args = ap.parse_args()
    extra = args.batch * (args.updates + args.latency + 1)
    with tempfile.TemporaryDirectory(prefix="losslens-watch-bench-") as tmp:
        log, rest = prepare(Path(tmp), args.lines, extra)
        rest = updates(log, rest, args.updates, args.batch)
        if args.latency:
            latency(log, rest, args.batch, args.latency)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
