"""Out-of-order lines: a 20k-line llm.c `main.log` analysed in order and shuffled.

Several ranks appending to one file, or a log reassembled out of order, make the step counter
go back thousands of times. Each step-back once became a segment (a resume), and the segment
code cost grew faster than linearly in their number (over 10 minutes for this log). The frame
now recognises a run written out of order (see `frame._OUT_OF_ORDER_MIN`) and the rollback
coverage is a segment tree; this script checks the result is the same and the time within 2x.

    python benchmarks/shuffled_lines.py [--lines 20000] [--repeat 3] [--seed 0]

Prints the best-of-N wall time of read + analyze for both files, their ratio and whether
the events agree.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main_log(lines: int, seed: int) -> list[str]:
    """llm.c `main.log` lines: `s:N trl:X lr:Y norm:Z`, a `tel:` line every 20 steps, and a
    spike that recovers at 60% of the run."""
    rng = random.Random(seed)
    out: list[str] = []
    steps = int(lines / 1.05)
    for s in range(steps):
        loss = 3 + 8 * math.exp(-s / 2000) + rng.gauss(0, 0.02)
        if s in range(int(steps * 0.6), int(steps * 0.6) + 5):
            loss *= 1.8
        out.append(f"s:{s} trl:{loss:.4f} lr:0.000600 norm:{1 + rng.random():.2f}")
        if s % 20 == 0:
            out.append(f"s:{s} tel:{3.1 + 8 * math.exp(-s / 2000):.4f}")
    return out[:lines]


def timed(path: Path, repeat: int) -> tuple[float, list]:
    import warnings

    import losslens
    from losslens.pipeline import analyze_frame

    best, events = math.inf, []
    for _ in range(repeat):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = analyze_frame(losslens.read(path))
        best = min(best, time.perf_counter() - t)
        events = [(e.kind, e.tag, e.start_step, e.peak_step) for r in analysis.runs
                  for e in r.events]
    return best, events


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    lines = main_log(args.lines, args.seed)
    shuffled = list(lines)
    random.Random(args.seed).shuffle(shuffled)
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "in_order" / "main.log", Path(tmp) / "shuffled" / "main.log"
        for p, ls in ((a, lines), (b, shuffled)):
            p.parent.mkdir()
            p.write_text("\n".join(ls) + "\n")
        timed(a, 1)  # imports and first-call costs out of the comparison
        t_in, ev_in = timed(a, args.repeat)
        t_sh, ev_sh = timed(b, args.repeat)
    print(f"lines: {len(lines):,} (seed {args.seed}), best of {args.repeat}")
    print(f"in order : {t_in:.3f} s  events {ev_in}")
    print(f"shuffled : {t_sh:.3f} s  events {ev_sh}")
    print(f"ratio    : {t_sh / t_in:.2f}x  (limit 2x)  events agree: {ev_in == ev_sh}")


if __name__ == "__main__":
    main()
