"""An independent family of grokking-like runs: floors decades deep, slingshots and collapses
with known recoveries, collapses to chance, sudden generalisation; scored from construction.

    python benchmarks/grok_family.py [--runs 60] [--seed 1] [--fails 20]

Written from the plots of public grokking runs (modular arithmetic transformers: Nanda et al.,
Thilak et al.'s slingshots, Muon/AdamW/SGD sweeps), not from losslens.synthetic or the
detectors' code; only losslens's public API (`losslens.analyze` on a CSV it writes) is used.

How a run is made (one CSV row every `every` steps: step, train_loss, test_loss, train_acc,
test_acc)
- Train loss starts at ln(C) (C, the number of classes: 59-127), memorises (falls
  exponentially to 1e-2..1e-1 within the first 2-6 % of the run), then falls log-linearly to a
  floor of 1e-3..1e-7 at the end, with log-normal flicker (sd 0.02-0.6 in log units; "loud"
  floors up to 1.5).
- Test loss climbs to 10-40 while train memorises, sits there (memorised, test acc ~1/C), then
  (grokking runs) falls within 3-12 points by decades to near the train loss: `grokking` at
  the fall's start. Some runs generalise at once (no label).
- Slingshots on the train loss (the test loss jumps with them): from the floor to a height of
  0.05 .. 2 x ln(C) nats at one point, then
  `fast`: the next point back within 1-5 % of the height and decaying to the floor;
  `slow`: the excess decays exponentially and is down to 10 % of the height only after 4-12
  points (and more than 250 steps);
  `none` (at most one per run, the last event): the loss settles at 10-40 % of ln(C) for good
  (noisy, a run that does not come back); or a collapse to chance: the loss jumps to ln(C)
  and stays there to 1e-3 (a dead network). Both are labelled `divergence` (an unrecovered
  spike starting there counts too, as in real_quality.py).
- Storm runs: 8-25 slingshots 3-30 points apart; others 0-4; clean runs none.
Recovery convention (docs/quality.md, spike_floor.py): a spike is back once its excess over the
pre-spike level is down to 10 % of its height in the loss's own units (nats).

Scores: spike recall (a `spike` event on train_loss starting within one logged point of an
injected slingshot), recovery class accuracy of the found ones, false spikes (train-loss spike
events of warning or worse that match nothing), divergence recall, grokking recall, and the
clean runs flagged (anything warning-or-worse on a run with no slingshot or collapse besides
`grokking`/`overfitting`, which memorisation shows).
"""
from __future__ import annotations

import argparse
import csv
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Injected:
    kind: str  # "spike" or "divergence"
    step: int
    recovery: str | None = None


@dataclass
class Run:
    name: str
    steps: np.ndarray
    train: np.ndarray
    test: np.ndarray
    labels: list[Injected] = field(default_factory=list)
    grok: int | None = None
    clean: bool = False
    events: list[Any] = field(default_factory=list)
    error: str | None = None


def make_run(i: int, seed: int) -> Run:
    rng = np.random.default_rng([seed, i, 7919])
    kind = ["clean", "few", "few", "storm", "end-bad"][i % 5]
    n = int(rng.integers(300, 900))
    every = int(rng.choice([10, 25, 50, 100]))
    steps = np.arange(n) * every
    classes = int(rng.integers(59, 128))
    chance = math.log(classes)
    t = np.arange(n, dtype=float)
    mem = max(3, int(n * rng.uniform(0.02, 0.06)))
    top = math.log(rng.uniform(1e-2, 1e-1))
    end = math.log(10 ** rng.uniform(-7, -3))
    lc = math.log(chance)
    logl = np.where(t < mem, lc + (top - lc) * (1 - np.exp(-4 * t / mem)) / (1 - math.exp(-4)),
                    top + (end - top) * (t - mem) / max(1, n - 1 - mem))
    flick = rng.uniform(0.02, 0.6) if rng.random() < 0.8 else rng.uniform(0.6, 1.5)
    noise = rng.normal(0, flick, n)
    noise[:mem] *= 0.05
    train = np.exp(logl + noise)
    # test: climbs while memorising, plateau, then (maybe) grokks
    peak = rng.uniform(10, 40)
    test = np.where(t < mem, chance + (peak - chance) * t / mem, peak) * np.exp(rng.normal(0, 0.01, n))
    grok = None
    if rng.random() < 0.7:
        g = int(rng.integers(mem + 10, max(mem + 11, int(n * 0.5))))
        width = int(rng.integers(3, 13))
        lo = np.exp(logl) * rng.uniform(2, 10)
        frac = 1 / (1 + np.exp(-(t - g - width / 2) / (width / 6)))
        test = np.exp(np.log(test) * (1 - frac) + np.log(lo) * frac) * np.exp(rng.normal(0, 0.01, n))
        grok = int(steps[g])
    else:
        test = test * np.exp(-0.3 * t / n)  # memorised for good, no generalisation
    run = Run(f"grok{i:03d}-{kind}", steps, train, test, grok=grok, clean=kind == "clean")
    if kind == "clean":
        return run
    count = int(rng.integers(8, 26)) if kind == "storm" else int(rng.integers(1, 5))
    first = max(mem + 20, int(n * 0.1))
    last = int(n * 0.85) if kind == "end-bad" else n - 15
    spots: list[int] = []
    gap = (3, 30) if kind == "storm" else (15, 120)
    c = int(rng.integers(first, first + 20))
    while c < last and len(spots) < count:
        spots.append(c)
        c += int(rng.integers(*gap))
    for c in spots:
        base = float(train[c - 1])
        h = rng.uniform(0.05, 2.0) * chance
        rec = "slow" if rng.random() < 0.25 else "fast"
        after = np.arange(n - c, dtype=float)
        if rec == "fast":
            share = rng.uniform(0.01, 0.05)
            k = -math.log(share)  # down to `share` at the next point
        else:
            pts = int(rng.integers(max(4, math.ceil(260 / every)), max(5, math.ceil(260 / every)) + 9))
            k = -math.log(0.1) / pts * rng.uniform(0.8, 0.95)  # 10 % after more than `pts`
            back_at = math.ceil(-math.log(0.1) / k)
            if c + back_at + 2 >= n or any(c < s <= c + back_at + 2 for s in spots):
                continue  # the next slingshot would come first: not placed
        excess = h * np.exp(-k * after)
        train[c:] = train[c:] + excess
        test[c:] = test[c:] + excess * rng.uniform(0.5, 1.5)
        run.labels.append(Injected("spike", int(steps[c]), rec))
    if kind == "end-bad":
        c = int(rng.integers(last + 5, n - 20))
        if rng.random() < 0.5:
            level = chance * (1 + rng.normal(0, 2e-4, n - c))
        else:
            level = chance * rng.uniform(0.1, 0.4) * np.exp(rng.normal(0, 0.15, n - c))
        train[c:] = level
        test[c:] = level * rng.uniform(1.0, 1.2)
        run.labels.append(Injected("divergence", int(steps[c])))
    return run


def write(run: Run, folder: Path) -> Path:
    path = folder / f"{run.name}.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["step", "train_loss", "test_loss"])
        for s, a, b in zip(run.steps, run.train, run.test):
            w.writerow([int(s), f"{a:.6g}", f"{b:.6g}"])
    return path


def analyze(run: Run, folder: Path) -> Run:
    import losslens

    try:
        result = losslens.analyze(write(run, folder))
    except Exception as exc:  # a failure is a result too
        run.error = f"{type(exc).__name__}: {exc}"
        return run
    run.events = list(result.runs[0].events)
    return run


def score(runs: list[Run], fails: list[str]) -> dict[str, Any]:
    tp = fn = fp = right = cls = dtp = dfn = gtp = gfn = clean_bad = 0
    for run in runs:
        every = int(run.steps[1] - run.steps[0])
        spikes = [e for e in run.events if e.kind == "spike" and e.tag == "train_loss"]
        used: set[int] = set()
        for lab in run.labels:
            if lab.kind == "spike":
                hit = [e for e in spikes if abs(e.start_step - lab.step) <= every]
                if hit:
                    tp += 1
                    used.update(id(e) for e in hit)
                    cls += 1
                    if hit[0].recovery == lab.recovery:
                        right += 1
                    else:
                        fails.append(f"{run.name}: spike@{lab.step} {lab.recovery} got "
                                     f"{hit[0].recovery}")
                else:
                    fn += 1
                    fails.append(f"{run.name}: spike@{lab.step} {lab.recovery} not found")
            else:
                hit = [e for e in run.events if e.tag == "train_loss" and (
                    e.kind == "divergence" or (e.kind == "spike" and e.recovery == "none"))
                    and abs(e.start_step - lab.step) <= 2 * every]
                dtp, dfn = dtp + bool(hit), dfn + (not hit)
                used.update(id(e) for e in hit)
                if not hit:
                    fails.append(f"{run.name}: divergence@{lab.step} not found")
        for e in spikes:
            if id(e) not in used and e.severity in ("warning", "critical"):
                fp += 1
                fails.append(f"{run.name}: false spike@{e.start_step} ({e.severity}, "
                             f"{e.recovery})")
        if run.grok is not None:
            hit = [e for e in run.events if e.kind == "grokking"
                   and abs(e.start_step - run.grok) <= 15 * every]
            gtp, gfn = gtp + bool(hit), gfn + (not hit)
            if not hit:
                fails.append(f"{run.name}: grokking@{run.grok} not found")
        if run.clean and not run.labels:
            bad = [e for e in run.events if e.severity in ("warning", "critical")
                   and e.kind not in ("grokking", "overfitting")]
            clean_bad += bool(bad)
            if bad:
                fails.append(f"{run.name}: clean, got " + ", ".join(
                    f"{e.kind}@{e.start_step}({e.tag},{e.severity})" for e in bad[:4]))
    div = lambda a, b: a / b if b else 1.0  # noqa: E731
    return {"spike_recall": div(tp, tp + fn), "spikes": tp + fn, "false_spikes": fp,
            "spike_precision": div(tp, tp + fp), "recovery_class": div(right, cls),
            "divergence_recall": div(dtp, dtp + dfn), "divergences": dtp + dfn,
            "grokking_recall": div(gtp, gtp + gfn), "grokkings": gtp + gfn,
            "clean_flagged": clean_bad, "clean": sum(r.clean for r in runs),
            "errors": sum(r.error is not None for r in runs)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fails", type=int, default=20)
    args = ap.parse_args(argv)
    fails: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        runs = [analyze(make_run(i, args.seed), Path(tmp)) for i in range(args.runs)]
    res = score(runs, fails)
    for k, v in res.items():
        print(f"{k:<18} {v:.3f}" if isinstance(v, float) else f"{k:<18} {v}")
    for line in fails[:args.fails]:
        print("  " + line)
    if len(fails) > args.fails:
        print(f"  ... {len(fails) - args.fails} more")
    return res


if __name__ == "__main__":
    main()
