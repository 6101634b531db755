"""Speed of losslens's TensorBoard reader against EventAccumulator and tbparse, in one run.

Writes its own event files (4 tags × N/4 steps of `simple_value` scalars, the torch
`add_scalar` layout, with valid CRCs; with `--values-per-event 4`, TF1 `merge_all` style: one
event per step carrying all 4 values, N events = 4N points) and times, each in a fresh process so that peak memory
is its own: `losslens.read` (reader + Frame), the reader alone, tensorboard's
EventAccumulator with size_guidance 0 (every point) and tbparse's SummaryReader. The slow
baselines read a smaller file (`--baseline-events`); ratios are taken on events/s.

    python benchmarks/read_tensorboard.py                 # 4,000,000 events
    python benchmarks/read_tensorboard.py --events 400000 --baseline-events 40000
    python benchmarks/read_tensorboard.py --values-per-event 4 --events 250000 \
        --baseline-events 250000                          # multi-value events, one file
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TAGS = ("lm loss", "learning-rate", "grad-norm", "loss-scale")


def _varint_bytes(values: np.ndarray, nbytes: int) -> np.ndarray:
    out = np.empty((values.shape[0], nbytes), dtype=np.uint8)
    v = values.astype(np.uint64)
    for j in range(nbytes):
        out[:, j] = (v & 0x7F) | (0x80 if j < nbytes - 1 else 0)
        v >>= np.uint64(7)
    return out


def _records(tag: bytes | tuple[bytes, ...], steps: np.ndarray, values: np.ndarray,
             walls: np.ndarray) -> np.ndarray:
    """Framed records (n, 16 + L) for steps that share one varint byte count; with several
    tags, each record's Summary holds one value per tag (`values` of shape (n, tags))."""
    from losslens.readers import tfrecord

    tags = (tag,) if isinstance(tag, bytes) else tag
    values = values.reshape(steps.shape[0], len(tags))
    n = steps.shape[0]
    nb = max(1, (int(steps.max()).bit_length() + 6) // 7) if int(steps.max()) else 0
    parts = [np.full((n, 1), 0x09, np.uint8), walls.astype("<f8").view(np.uint8).reshape(n, 8)]
    if nb:
        parts += [np.full((n, 1), 0x10, np.uint8), _varint_bytes(steps, nb)]
    summary_len = sum(2 + 2 + len(t) + 5 for t in tags)
    parts.append(np.broadcast_to(np.frombuffer(bytes([0x2A, summary_len]), np.uint8), (n, 2)))
    for j, t in enumerate(tags):
        value_len = 2 + len(t) + 5
        head = bytes([0x0A, value_len, 0x0A, len(t)]) + t + b"\x15"
        parts += [np.broadcast_to(np.frombuffer(head, np.uint8), (n, len(head))),
                  values[:, j].astype("<f4").view(np.uint8).reshape(n, 4)]
    payload = np.concatenate(parts, axis=1)
    size = payload.shape[1]
    g = tfrecord.tables()

    def crc(m: np.ndarray) -> np.ndarray:
        acc = np.full(m.shape[0], 0xFFFFFFFF, np.uint32)
        for i in range(m.shape[1]):
            acc ^= g[m.shape[1] - 1 - i][m[:, i] ^ (0xFF if i < 4 else 0)]
        return tfrecord.mask(acc)

    length = np.full(n, size, "<u8").view(np.uint8).reshape(n, 8)
    return np.concatenate([length, crc(length).astype("<u4").view(np.uint8).reshape(n, 4),
                           payload, crc(payload).astype("<u4").view(np.uint8).reshape(n, 4)],
                          axis=1)


def write_events(path: Path, events: int, seed: int = 0, block: int = 200_000,
                 per_event: int = 1) -> None:
    """An event file: a file_version record, then `events` scalars (4 tags per step); with
    `per_event` 4, `events` records of 4 values each (one per step)."""
    from tensorboard.compat.proto import event_pb2

    from losslens.readers import tfrecord

    rng = np.random.default_rng(seed)
    head = event_pb2.Event(wall_time=1.7e9, file_version="brain.Event:2").SerializeToString()
    length = len(head).to_bytes(8, "little")
    with open(path, "wb") as fh:
        fh.write(length + tfrecord.mask(tfrecord.crc32c(length)).to_bytes(4, "little") + head
                 + tfrecord.mask(tfrecord.crc32c(head)).to_bytes(4, "little"))
        if per_event > 1:
            for start in range(0, events, block):
                steps = np.arange(start, min(start + block, events), dtype=np.int64)
                _write_multi(fh, steps, rng)
            return
        steps_total = -(-events // len(TAGS))
        for start in range(0, steps_total, block):
            steps = np.arange(start, min(start + block, steps_total), dtype=np.int64)
            _write_block(fh, steps, rng, events - start * len(TAGS))


def _write_multi(fh, steps: np.ndarray, rng: np.random.Generator) -> None:
    """One record per step holding all TAGS' values (TF1 `merge_all`)."""
    walls = 1.7e9 + steps * 0.731 + rng.random(steps.shape[0]) * 0.01
    values = np.stack([3.0 * np.exp(-steps / 2e5) + rng.normal(0, 0.05, steps.shape[0])
                       for _ in TAGS], axis=1)
    nbytes = (steps > 0).astype(np.int64)
    for k in range(1, 9):
        nbytes += steps >= (1 << (7 * k))
    tags = tuple(t.encode() for t in TAGS)
    for nb in np.unique(nbytes).tolist():  # steps ascend: byte-count classes are contiguous
        sel = np.flatnonzero(nbytes == nb)
        fh.write(_records(tags, steps[sel], values[sel], walls[sel]).tobytes())


def _write_block(fh, steps: np.ndarray, rng: np.random.Generator, left: int) -> None:
    """Write the records of `steps` (all tags per step, at most `left` records)."""
    walls = 1.7e9 + steps * 0.731 + rng.random(steps.shape[0]) * 0.01
    nbytes = (steps > 0).astype(np.int64)  # the step field is omitted for step 0
    for k in range(1, 9):
        nbytes += steps >= (1 << (7 * k))
    rows = []  # (positions in write order, framed records)
    for t, tag in enumerate(TAGS):
        values = 3.0 * np.exp(-steps / 2e5) + rng.normal(0, 0.05, steps.shape[0])
        for nb in np.unique(nbytes).tolist():
            sel = np.flatnonzero(nbytes == nb)
            pos = sel * len(TAGS) + t
            sel, pos = sel[pos < left], pos[pos < left]
            if sel.shape[0]:
                rows.append((pos, _records(tag.encode(), steps[sel], values[sel], walls[sel])))
    total = sum(p.shape[0] for p, _ in rows)
    sizes = np.zeros(total, np.int64)
    for pos, r in rows:
        sizes[pos] = r.shape[1]
    offs = np.cumsum(sizes) - sizes
    out = np.empty(int(sizes.sum()), np.uint8)
    for pos, r in rows:
        out[offs[pos][:, None] + np.arange(r.shape[1])] = r
    fh.write(out.tobytes())


# ---------------------------------------------------------------- measurements (subprocess)


def _measure(kind: str, path: str) -> dict:
    import resource

    t0 = time.perf_counter()
    if kind in ("losslens", "reader"):  # imports are not what is timed
        import pandas  # noqa: F401

        import losslens
        import losslens.frame  # noqa: F401
        import losslens.readers.tensorboard  # noqa: F401
    if kind == "losslens":
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t1, c1 = time.perf_counter(), time.process_time()
        frame = losslens.read(path)
        n, extra = len(frame), {"frame_mb": frame.data.memory_usage(deep=True).sum() / 2**20}
    elif kind == "reader":
        from losslens.readers import tensorboard as tb
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t1, c1 = time.perf_counter(), time.process_time()
        rec = tb.read(Path(path), "bench")[0]
        n, extra = len(rec), {}
    elif kind == "ea":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t1, c1 = time.perf_counter(), time.process_time()
        ea = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0}).Reload()
        n, extra = sum(len(ea.Scalars(t)) for t in ea.Tags()["scalars"]), {}
    else:
        from tbparse import SummaryReader
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t1, c1 = time.perf_counter(), time.process_time()
        n, extra = len(SummaryReader(path).scalars), {}
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "events": n, "wall_s": wall, "cpu_s": cpu, "import_s": t1 - t0,
            "rss_before_mb": rss0 / 1024, "peak_rss_mb": rss / 1024, **extra}


def _run(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=4_000_000)
    ap.add_argument("--baseline-events", type=int, default=400_000)
    ap.add_argument("--repeat", type=int, default=1, help="losslens runs (median is shown)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the files")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--values-per-event", type=int, default=1, choices=(1, 4),
                    help="4: TF1 merge_all style, every event carries all 4 tags' values")
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        big, small = root / "big", root / "small"
        for d, n in ((big, args.events), (small, args.baseline_events)):
            d.mkdir(parents=True, exist_ok=True)
            f = d / "events.out.tfevents.1700000000.bench.1.0"
            # the marker sits beside the folder: a file in it would be sniffed by every reader
            mark = root / f"{d.name}-{n}x{args.values_per_event}.ok"
            if not f.exists() or f.stat().st_size == 0 or not mark.exists():
                write_events(f, n, per_event=args.values_per_event)
                mark.touch()
        size_mb = (big / "events.out.tfevents.1700000000.bench.1.0").stat().st_size / 2**20
        rows = []
        for kind in ("losslens", "reader"):
            runs = sorted((_run(kind, big) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
            rows.append(runs[len(runs) // 2])
        if not args.no_baselines:
            rows += [_run("ea", small), _run("tbparse", small)]
        _table(rows, size_mb, args.events)


def _table(rows: list[dict], size_mb: float, events: int) -> None:
    """Events/s on wall and on CPU time (the latter steadier on a shared machine)."""
    ll_wall = rows[0]["events"] / rows[0]["wall_s"]
    ll_cpu = rows[0]["events"] / rows[0]["cpu_s"]
    print(f"file: {events:,} events, {size_mb:.0f} MB (baselines on a smaller file, see events;"
          " the events column counts points)")
    print(f"{'loader':<10} {'events':>10} {'wall s':>7} {'cpu s':>7} {'events/s':>10} "
          f"{'ll ×':>6} {'ev/s cpu':>10} {'ll × cpu':>8} {'peak RSS MB':>11} {'before':>7}")
    for r in rows:
        wall, cpu = r["events"] / r["wall_s"], r["events"] / r["cpu_s"]
        print(f"{r['kind']:<10} {r['events']:>10,} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f} "
              f"{wall:>10,.0f} {ll_wall / wall:>6.1f} {cpu:>10,.0f} {ll_cpu / cpu:>8.1f} "
              f"{r['peak_rss_mb']:>11.0f} {r['rss_before_mb']:>7.0f}")
    if "frame_mb" in rows[0]:
        grow = rows[0]["peak_rss_mb"] - rows[0]["rss_before_mb"]
        print(f"Frame: {rows[0]['frame_mb']:.0f} MB; losslens.read peak RSS growth "
              f"{grow:.0f} MB = {grow / rows[0]['frame_mb']:.2f}× the Frame")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
