"""Speed of losslens's Megatron text reader against a per-line Python regex, in one run.

Writes a Megatron-LM log in the current (2026) format — an argument dump, then `--lines`
lines in all (default 1,000,000): training lines with a microsecond timestamp, a validation
block (rule, result, rule) and a "saving checkpoint" line every 1000 iterations — and times,
each in a fresh process so that peak memory is its own:

- `losslens.read` (reader + Frame), MB/s, wall, CPU, peak RSS;
- the reader alone (`losslens.readers.read_records`);
- the baseline users write first: `for line in f: m = rx.search(line)` with one regex pulling
  iteration, learning rate, lm loss, loss scale and grad norm out of every line (floats
  appended to lists).

Ratios are baseline wall / losslens wall, medians of `--repeat` runs (interleaved, so that load
on a shared machine hits both alike).

    python benchmarks/read_text.py                   # 1,000,000 lines (~320 MB)
    python benchmarks/read_text.py --lines 100000 --repeat 1
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE_RE = (r"iteration\s+(\d+)/\s*\d+ \|.*?learning rate: (\S+) \|.*?lm loss: (\S+) \|"
               r".*?loss scale: (\S+) \|(?:.*?grad norm: (\S+) \|)?")


def write_log(path: Path, lines: int, seed: int = 0) -> None:
    """A Megatron-LM (2026 format) log of `lines` lines."""
    import datetime
    import random

    rnd = random.Random(seed)
    t0 = datetime.datetime(2026, 3, 4, 10, 0, 0)
    args = {"hidden_size": "4096", "num_layers": "32", "num_attention_heads": "32",
            "seq_length": "4096", "init_method_std": "0.006", "adam_eps": "1e-08",
            "adam_beta1": "0.9", "adam_beta2": "0.95", "bf16": "True", "fp16": "False",
            "global_batch_size": "512", "micro_batch_size": "1", "lr": "0.0003",
            "min_lr": "3e-05", "lr_decay_style": "cosine", "lr_warmup_iters": "2000",
            "save_interval": "1000", "log_interval": "1", "train_iters": "1000000"}
    head = ["------------------------ arguments ------------------------"]
    head += [f"  {k} {'.' * (48 - len(k))} {v}" for k, v in sorted(args.items())]
    head.append("-------------------- end of arguments ---------------------")
    with open(path, "w") as fh:
        fh.write("\n".join(head) + "\n")
        n, it, buf = len(head), 0, []
        while n < lines:
            it += 1
            ts = (t0 + datetime.timedelta(seconds=1.5 * it)).strftime("%Y-%m-%d %H:%M:%S.%f")
            loss = 2.5 + 8 * math.exp(-it / 20000) + rnd.random() * 0.05
            buf.append(
                f" [{ts}] iteration {it:8d}/ 1000000 | consumed samples: {it * 512:12d} | "
                f"elapsed time per iteration (ms): {1500 + rnd.random() * 50:.1f} | "
                f"learning rate: {3e-4 * min(1.0, it / 2000):.6E} | global batch size: {512:5d} | "
                f"lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: {0.2 + rnd.random():.3f} | "
                f"number of skipped iterations: {0:3d} | number of nan iterations: {0:3d} |")
            n += 1
            if it % 1000 == 0 and n + 4 <= lines:
                res = (f" validation loss at iteration {it} on validation set | lm loss value: "
                       f"{loss:.6E} | lm loss PPL: {math.exp(min(20.0, loss)):.6E} | ")
                rule = "-" * (len(res) + 1)
                buf += [f" [{ts}] saving checkpoint at iteration {it:7d} to /ckpt in torch_dist "
                        "format", rule, res, rule]
                n += 4
            if len(buf) >= 10000:
                fh.write("\n".join(buf) + "\n")
                buf = []
        if buf:
            fh.write("\n".join(buf) + "\n")


# ---------------------------------------------------------------- measurements (subprocess)


def _baseline(path: str) -> list[list]:
    import re

    rx = re.compile(BASELINE_RE)
    its, lrs, losses, scales, norms = [], [], [], [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = rx.search(line)
            if m:
                its.append(int(m[1]))
                lrs.append(float(m[2]))
                losses.append(float(m[3]))
                scales.append(float(m[4]))
                norms.append(float(m[5]) if m[5] else math.nan)
    return [its, lrs, losses, scales, norms]  # kept by the caller: freeing them is not timed


def _measure(kind: str, path: str) -> dict:
    import resource

    if kind != "baseline":  # what the reader imports, as the baseline's `re`: not timed
        import losslens
        from losslens.readers import megatron, megatron_fast, read_records  # noqa: F401
        import pandas  # noqa: F401
        import pyarrow.compute  # noqa: F401
        import pyarrow.pandas_compat  # noqa: F401  (pyarrow imports it at a first to_numpy)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t1, c1 = time.perf_counter(), time.process_time()
    if kind == "losslens":
        frame = losslens.read(path, format="megatron")
        n = len(frame)
    elif kind == "reader":
        records = read_records(path, format="megatron")  # kept: freeing it is not timed
        n = sum(len(r) for r in records)
    else:
        columns = _baseline(path)
        n = len(columns[0])
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "points": n, "wall_s": wall, "cpu_s": cpu,
            "rss_before_mb": rss0 / 1024, "peak_rss_mb": rss / 1024}


def _run(kind: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (median is shown)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the log (kept)")
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        log = root / f"megatron_{args.lines}.log"
        if not log.exists():
            t = time.perf_counter()
            write_log(log, args.lines)
            print(f"wrote {log} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        size_mb = log.stat().st_size / 1e6
        runs: dict[str, list[dict]] = {"baseline": [], "reader": [], "losslens": []}
        for _ in range(args.repeat):
            for kind in runs:
                runs[kind].append(_run(kind, log))
        rows = {k: sorted(v, key=lambda r: r["wall_s"])[len(v) // 2] for k, v in runs.items()}
        _table(rows, size_mb, args.lines, args.repeat)


def _table(rows: dict[str, dict], size_mb: float, lines: int, repeat: int) -> None:
    base, base_cpu = rows["baseline"]["wall_s"], rows["baseline"]["cpu_s"]
    print(f"file: {lines:,} lines, {size_mb:.0f} MB; medians of {repeat} run(s)")
    print(f"{'parser':<10} {'points':>10} {'wall s':>8} {'cpu s':>7} {'MB/s':>7} "
          f"{'× baseline':>10} {'cpu ×':>6} {'peak RSS MB':>11}")
    for kind in ("baseline", "reader", "losslens"):
        r = rows[kind]
        print(f"{kind:<10} {r['points']:>10,} {r['wall_s']:>8.2f} {r['cpu_s']:>7.2f} "
              f"{size_mb / r['wall_s']:>7.0f} {base / r['wall_s']:>10.2f} "
              f"{base_cpu / r['cpu_s']:>6.2f} {r['peak_rss_mb']:>11.0f}")
    print("(baseline: per-line regex for 5 fields; reader: read_records, every field; "
          "losslens: losslens.read = reader + Frame; × baseline on wall time, cpu × on CPU "
          "time of all threads — the steadier one on a shared machine)")


if __name__ == "__main__":
    main()
