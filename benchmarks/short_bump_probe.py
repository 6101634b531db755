"""Spikes on series too short for a noise scale (3-7 evaluations): false alarms and recall.

    python benchmarks/short_bump_probe.py [--seeds 400]

Curves (drawn here, not from `losslens.synthetic`): a validation loss of n = 3..7
evaluations with log-normal noise of 1-20 % a point, in shapes an evaluation loss takes:

- falling: 1 + A exp(-i / tau), A in 0.2..5, tau in 0.5..n (a steep first fall included);
- flat: a constant level;
- U: a fall to its best at 40-70 % of the evaluations, then a rise of 10-50 % to the last;
- step: one step up of 10-40 % that stays.

Each clean curve that gets any spike is a false alarm. Bumps: a falling or flat curve with one
interior evaluation (not the first, not the last) multiplied by x1.6, x2 or x3: found when a
spike starts there. Each cell is the share of curves; noise of 20 % a point is louder than
most evaluation losses (a whole validation set averages it out), and there a x1.6 bump is
within reach of the noise.
"""
from __future__ import annotations

import argparse

import numpy as np

from losslens.detectors.spike import SpikeDetector
from losslens.frame import Series

NOISE = (0.01, 0.05, 0.1, 0.2)
COUNTS = (3, 4, 5, 6, 7)
BUMPS = (1.6, 2.0, 3.0)


def series(values: np.ndarray) -> Series:
    n = values.shape[0]
    steps = np.arange(1, n + 1, dtype=np.int64) * 1000
    return Series("r", "val_loss", "val_loss", steps, values, np.full(n, np.nan),
                  np.zeros(n, np.int32))


def shape(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    i = np.arange(n, dtype=float)
    if kind == "falling":
        return 1 + rng.uniform(0.2, 5) * np.exp(-i / rng.uniform(0.5, n))
    if kind == "flat":
        return np.full(n, rng.uniform(0.1, 10))
    if kind == "U":
        best = max(1, int(round(rng.uniform(0.4, 0.7) * (n - 1))))
        fall = 1 + np.maximum(best - i, 0) / best
        return fall * (1 + rng.uniform(0.1, 0.5) * np.maximum(i - best, 0) / max(n - 1 - best, 1))
    at = int(rng.integers(1, n))
    return np.where(i >= at, 1 + rng.uniform(0.1, 0.4), 1.0)


def spikes(values: np.ndarray) -> list[int]:
    return [int(e.start_step) // 1000 - 1 for e in SpikeDetector().detect(series(values))
            if e.kind == "spike"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=400)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    print("false alarms (share of clean curves with a spike), by noise:")
    print("shape    n  " + "  ".join(f"{s:>6.0%}" for s in NOISE))
    for kind in ("falling", "flat", "U", "step"):
        for n in COUNTS:
            cells = []
            for sd in NOISE:
                bad = sum(bool(spikes(shape(rng, kind, n) * np.exp(rng.normal(0, sd, n))))
                          for _ in range(args.seeds))
                cells.append(bad / args.seeds)
            print(f"{kind:8s} {n}  " + "  ".join(f"{c:6.3f}" for c in cells))
    print("recall of one interior bump (falling or flat curve), by noise:")
    print("bump   n  " + "  ".join(f"{s:>6.0%}" for s in NOISE))
    for bump in BUMPS:
        for n in COUNTS:
            cells = []
            for sd in NOISE:
                hit = 0
                for _ in range(args.seeds // 2):
                    v = shape(rng, ("falling", "flat")[int(rng.integers(2))], n)
                    at = int(rng.integers(1, n - 1))
                    v[at] *= bump
                    hit += at in spikes(v * np.exp(rng.normal(0, sd, n)))
                cells.append(hit / (args.seeds // 2))
            print(f"x{bump:<4} {n}  " + "  ".join(f"{c:6.3f}" for c in cells))


if __name__ == "__main__":
    main()
