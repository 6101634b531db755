"""The overfitting detector's false alarms on validation curves that do not overfit, and its
recall on ones that do, by evaluation count and noise.

    python benchmarks/overfitting_noise.py [--seeds 200]

Curves (drawn here, not from `losslens.synthetic`): evaluations of a validation loss every
100 steps with log-normal noise of 0.3-10 % a point, beside a training loss that falls
(so the detector's train check never excuses a curve):

- flat: a constant level (6, 10, 25, 50 evaluations);
- falling: 1 + 0.5 exp(-i / (n/2)), still falling at the end;
- jump: a fall to the best at eval 0 or 1, then one step up that stays (flat, noisy);
- rise: a quadratic fall to the bottom at 70 % of the evaluations (at least 3 after it),
  then a straight climb of +1.5 %, 3 %, 5 %, 10 %, 30 % to the last (8, 13, 25, 50).

One event on a flat or falling curve is a false alarm; on a rise, a find. Each cell is the
share of `--seeds` curves (half as many for rises) that fire. A rise of a few noise scales
cannot be told from a flat curve's wander: the cells where the rise is under ~3 noise
scales are there to show where recall ends, not as a target.
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np

from losslens.detectors.overfitting import OverfittingDetector
from losslens.frame import Series

COUNTS = (6, 10, 25, 50)
RISE_COUNTS = (8, 13, 25, 50)
NOISE = (0.003, 0.01, 0.03, 0.1)
RISE_NOISE = (0.003, 0.01, 0.03)
RISES = (0.015, 0.03, 0.05, 0.1, 0.3)
JUMP_COUNTS = (6, 8)
JUMPS = (0.1, 0.2, 0.3)


def series(tag: str, role: str, steps: np.ndarray, values: np.ndarray) -> Series:
    n = steps.shape[0]
    return Series("r", tag, role, np.asarray(steps, np.int64), np.asarray(values, float),
                  np.full(n, np.nan), np.zeros(n, np.int32))


def train_for(n_eval: int, rng: np.random.Generator, every: int = 100) -> Series:
    steps = np.arange(10, n_eval * every + 1, 10)
    vals = 2.0 * (0.3 + 0.7 * np.exp(-steps / (n_eval * every / 3)))
    return series("train/loss", "train_loss", steps,
                  vals * np.exp(rng.normal(0, 0.02, steps.shape[0])))


def val_curve(kind: str, n: int, sigma: float, rng: np.random.Generator,
              rise: float = 0.0, turn: float = 0.7) -> np.ndarray:
    i = np.arange(n)
    if kind == "flat":
        base = np.ones(n)
    elif kind == "falling":
        base = 1 + 0.5 * np.exp(-i / (n / 2))
    elif kind == "jump":  # falls to its best at eval `turn`, one step up of `rise`, flat
        b = int(turn)
        base = np.where(i <= b, 1 + 0.3 * (b - i) / max(b, 1), 1 + rise)
    else:
        b = max(1, min(n - 4, int(round(turn * (n - 1)))))
        base = np.where(i <= b, 1 + 0.3 * ((b - i) / max(b, 1)) ** 2,
                        1 + rise * (i - b) / (n - 1 - b))
    return 2.0 * base * np.exp(rng.normal(0, sigma, n))


def fires(det: OverfittingDetector, kind: str, n: int, sigma: float, seed: int,
          rise: float = 0.0, severe: bool = False, turn: float = 0.7) -> bool:
    """Whether the detector fires on the curve (`severe`: with a warning, not a drift)."""
    rng = np.random.default_rng(seed)
    y = val_curve(kind, n, sigma, rng, rise, turn)
    val = series("val/loss", "val_loss", np.arange(1, n + 1) * 100, y)
    frame_run = _OneRun(val, train_for(n, rng))
    return any(e.severity != "info" or not severe
               for e in det.detect_run(frame_run, frame_run.info))


class _OneRun:
    """The little of a Frame and RunInfo that the overfitting detector reads."""

    def __init__(self, val: Series, train: Series) -> None:
        self._s = {val.tag: val, train.tag: train}
        roles = {val.tag: "val_loss", train.tag: "train_loss"}
        self.info = _Info(roles)

    def series(self, run: str, tag: str, raw: bool = False) -> Series:
        return self._s[tag]


class _Info:
    def __init__(self, roles: dict[str, str]) -> None:
        self.run, self._roles = "r", roles

    def tags_with_role(self, role: str) -> list[str]:
        return [t for t, r in self._roles.items() if r == role]


def table(det: OverfittingDetector, seeds: int) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    for kind in ("flat", "falling"):
        for n, s in itertools.product(COUNTS, NOISE):
            out[(kind, n, s)] = float(np.mean([fires(det, kind, n, s, k) for k in range(seeds)]))
            out[(kind + "!", n, s)] = float(np.mean(
                [fires(det, kind, n, s, k, severe=True) for k in range(seeds)]))
    for n, s, r in itertools.product(RISE_COUNTS, RISE_NOISE, RISES):
        out[("rise", n, s, r)] = float(np.mean(
            [fires(det, "rise", n, s, 1000 + k, r) for k in range(max(seeds // 2, 1))]))
    for n, b, s, r in itertools.product(JUMP_COUNTS, (0, 1), RISE_NOISE, JUMPS):
        out[("jump", n, b, s, r)] = float(np.mean(
            [fires(det, "jump", n, s, 2000 + k, r, turn=b) for k in range(max(seeds // 2, 1))]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    args = ap.parse_args()
    t = table(OverfittingDetector(), args.seeds)
    fa = {k: v for k, v in t.items() if k[0] in ("flat", "falling")}
    warn = {k: v for k, v in t.items() if k[0] in ("flat!", "falling!")}
    print(f"false alarms ({args.seeds} curves a cell): mean {np.mean(list(fa.values())):.3f}, "
          f"worst {max(fa.values()):.3f}; as warnings (not drifts): mean "
          f"{np.mean(list(warn.values())):.3f}, worst {max(warn.values()):.3f}")
    print("            noise " + " ".join(f"{s:>6}" for s in NOISE) + "   (as warnings)")
    for kind in ("flat", "falling"):
        for n in COUNTS:
            print(f"{kind:>8} {n:>3} evals " + " ".join(f"{t[(kind, n, s)]:6.3f}"
                                                      for s in NOISE)
                  + "   " + " ".join(f"{t[(kind + '!', n, s)]:6.3f}" for s in NOISE))
    print(f"\nrecall ({max(args.seeds // 2, 1)} curves a cell), rise to the last evaluation:")
    print("   evals  noise " + " ".join(f"{'+' + format(r, '.1%'):>6}" for r in RISES))
    for n, s in itertools.product(RISE_COUNTS, RISE_NOISE):
        print(f"{n:>8} {s:>6} " + " ".join(f"{t[('rise', n, s, r)]:6.2f}" for r in RISES))
    print(f"\nrecall, a jump up that stays after the best at eval 0 / 1 (of 6 or 8):")
    print("   evals best  noise " + " ".join(f"{'+' + format(r, '.0%'):>6}" for r in JUMPS))
    for n, b, s in itertools.product(JUMP_COUNTS, (0, 1), RISE_NOISE):
        print(f"{n:>8} {b:>4} {s:>6} " + " ".join(f"{t[('jump', n, b, s, r)]:6.2f}"
                                                  for r in JUMPS))


if __name__ == "__main__":
    main()
