"""Speed of losslens's JSON-lines reader on an ordinary file and on a wide, sparse one, in one run.

Writes two files and times, each in a fresh process (so that peak memory is its own):

- ordinary: `--lines` lines (default 500,000) of `step, loss, lr, grad_norm`, and every 1000th
  line 300 evaluation keys more (`eval/task_K/loss`);
- sparse: `--sparse-lines` lines (default 5,000) with a new key on each (`metric_N`), the
  shape pyarrow's lines x keys table is quadratic on.

Timed: `losslens.readers.read_records` (the reader), and the baseline users write first,
`pandas.read_json(path, lines=True)` (ordinary file only: on the sparse one it builds the same
lines x keys frame). With `--before DIR` the reader is also timed from another checkout
(`PYTHONPATH=DIR`, e.g. the main branch) in the same run, interleaved, to compare before/after
under the same load.

    python benchmarks/read_jsonl.py --before /path/to/main/checkout
    python benchmarks/read_jsonl.py --lines 100000 --sparse-lines 2000 --repeat 1
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

ROOT = Path(__file__).resolve().parent.parent


def write_files(root: Path, lines: int, sparse: int) -> tuple[Path, Path]:
    ordinary, wide = root / f"ordinary_{lines}.jsonl", root / f"sparse_{sparse}.jsonl"
    if not ordinary.exists():
        with open(ordinary, "w") as fh:
            for i in range(lines):
                row = {"step": i, "loss": 3.0 - i * 1e-6, "lr": 1e-4, "grad_norm": 1.0 + i % 7}
                if i % 1000 == 0:
                    row.update({f"eval/task_{k}/loss": 2.0 + k / 1000 for k in range(300)})
                fh.write(json.dumps(row) + "\n")
    if not wide.exists():
        with open(wide, "w") as fh:
            for i in range(sparse):
                fh.write(json.dumps({"step": i, f"metric_{i}": 1.0 + i}) + "\n")
    return ordinary, wide


def _measure(kind: str, path: str) -> dict:
    import resource

    if kind == "pandas":
        import pandas
    else:
        from losslens.readers import jsonl, read_records  # noqa: F401
        import pyarrow.json  # noqa: F401
    t1, c1 = time.perf_counter(), time.process_time()
    if kind == "pandas":
        n = int(pandas.read_json(path, lines=True).count().sum())
    else:
        records = read_records(path, format="jsonl")
        n = sum(len(r) for r in records)
    wall, cpu = time.perf_counter() - t1, time.process_time() - c1
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"points": n, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": rss / 1024}


def _run(kind: str, path: Path, pythonpath: str, timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    try:
        out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)],
                             check=True, capture_output=True, text=True, env=env,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"points": None, "wall_s": float("inf"), "cpu_s": float("nan"),
                "peak_rss_mb": float("nan")}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument("--sparse-lines", type=int, default=5_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each (median is shown)")
    ap.add_argument("--before", default=None, help="another checkout to time the reader from")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the files (kept)")
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(_measure(*args.measure)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        ordinary, wide = write_files(root, args.lines, args.sparse_lines)
        plans = [("ordinary", ordinary, "reader", str(ROOT)),
                 ("ordinary", ordinary, "pandas", str(ROOT)),
                 ("sparse", wide, "reader", str(ROOT))]
        if args.before:
            plans += [("ordinary", ordinary, "reader (before)", args.before),
                      ("sparse", wide, "reader (before)", args.before)]
        runs: dict[tuple[str, str], list[dict]] = {(f, k): [] for f, _, k, _ in plans}
        for _ in range(args.repeat):
            for name, path, kind, pp in plans:
                runs[(name, kind)].append(_run(kind.split(" ")[0], path, pp, args.timeout))
        print(f"ordinary: {args.lines:,} lines, {ordinary.stat().st_size / 1e6:.0f} MB; sparse: "
              f"{args.sparse_lines:,} lines, {wide.stat().st_size / 1e6:.1f} MB; medians of "
              f"{args.repeat} run(s)")
        print(f"{'file':9} {'what':16} {'points':>9} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
        for (name, kind), rs in runs.items():
            r = sorted(rs, key=lambda x: x["wall_s"])[len(rs) // 2]
            print(f"{name:9} {kind:16} {r['points'] or '-':>9} {r['wall_s']:8.2f} "
                  f"{r['cpu_s']:8.2f} {r['peak_rss_mb']:8.0f}")


if __name__ == "__main__":
    main()
