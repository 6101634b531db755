"""Detection quality of the regime and resume detectors on a seeded labelled set, and the
changepoint detector's time at 10k / 100k / 1M points.

    python benchmarks/quality_regimes.py [--seed 0]

The set (`losslens.synthetic.scenarios`, every case drawn from the seed): regime curves (LR
step drops, plateaus, level shifts) and clean power-law curves at 300-20,000 points, logged
every 1-100 steps, noise 0.5-5% per logged point (0.5-2% when logged every 50-100 steps:
such logs are usually the mean over the interval; the 5% corner at 300-500 points is scored
apart, in its own rows `cp hard` / `drop hard`, since a plateau's corners there are below
what any test can see without false alarms); grokking, overfitting and clean train/validation
pairs as loss and as accuracy; LLM curves with a sudden drop after a slow stretch, with and
without an LR drop at the same step; resumed runs (clean resume, resume spike, a spike at
every resume, rollback with replayed data, rollback without, a resume without overlap).

Matching (`scenarios.score`): a found event matches a true one of the same kind, run and tag
when its start step is within the truth's tolerance (1% of the run for changepoints and
sudden drops, 4% for a plateau's corners, the width of the improvement for grokking, 0-2 log
intervals for resume artefacts) and its required details agree (`from_step`, `lr_drop`,
`every_resume`); one match per truth. Every other event of the kind is a false positive,
so the clean cases count against precision. `overfitting` scores the overfitting detector
(kind `overfitting`) on the same train/validation pairs.

`evaluate(seed)` returns one row per kind (kind, n_true, n_found, precision, recall, f1,
notes; plus true/tp/fp/fn for benchmarks/quality.py's table); run alone it prints the table.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from losslens.detectors.changepoint import ChangepointDetector
from losslens.detectors.grokking import GrokkingDetector, SuddenDropDetector
from losslens.detectors.overfitting import OverfittingDetector
from losslens.detectors.segments import (RepeatDataDetector, ResumeSpikeDetector,
                                         RollbackDetector)
from losslens.events import Event
from losslens.frame import Series
from losslens.synthetic import scenarios as sc

SHAPES = ((300, 100), (500, 50), (2000, 10), (20000, 1))  # (points, log interval)
#: noise per logged point: 0.5-5% at fine logging; a log every 50-100 steps is usually the
#: mean over the interval (Megatron, HF Trainer), so it is quieter: 0.5-2%.
COARSE_NOISE = (0.005, 0.01, 0.02)
#: the corner left out of the scores and reported apart: 300-500 points at 5% per point.
HARD = (((300, 100), (500, 50)), 0.05)


def noise_levels(log_interval: int) -> tuple[float, ...]:
    return COARSE_NOISE if log_interval >= 50 else sc.NOISE_LEVELS


@dataclass
class Tally:
    kind: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    cases: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, events: list[Event], scenario: sc.Scenario, kind: str | None = None) -> None:
        tp, fp, fn = sc.score(events, scenario, kind or self.kind)
        self.tp, self.fp, self.fn, self.cases = self.tp + tp, self.fp + fp, self.fn + fn, \
            self.cases + 1

    def row(self) -> dict[str, Any]:
        found, true = self.tp + self.fp, self.tp + self.fn
        p = self.tp / found if found else 1.0
        r = self.tp / true if true else 1.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        return {"kind": self.kind, "n_true": true, "n_found": found, "precision": round(p, 3),
                "recall": round(r, 3), "f1": round(f1, 3),
                "notes": "; ".join([f"{self.cases} cases"] + self.notes),
                "true": true, "tp": self.tp, "fp": self.fp, "fn": self.fn}


def _run_events(scenario: sc.Scenario, detectors: list[Any]) -> list[Event]:
    out: list[Event] = []
    for info in scenario.frame.runs:
        for det in detectors:
            if det.scope == "run":
                out.extend(det.detect_run(scenario.frame, info))
            else:
                for s in info.series:
                    if s.role in det.roles:
                        out.extend(det.detect(scenario.frame.series(info.run, s.tag)))
    return out


def _changepoints(rng: np.random.Generator) -> tuple[Tally, Tally]:
    t, hard = Tally("changepoint"), Tally("cp hard")
    det = [ChangepointDetector()]
    clean_fp = 0
    for pattern in ("lr_drop", "plateau", "level_shift", "clean"):
        for n, iv in SHAPES:
            for noise in noise_levels(iv):
                seed = int(rng.integers(1 << 30))
                s = (sc.clean_curve(seed, n, iv, noise) if pattern == "clean"
                     else sc.regime_curve(pattern, seed, n, iv, noise))
                ev = _run_events(s, det)
                t.add(ev, s)
                clean_fp += len(ev) if pattern == "clean" else 0
        for n, iv in HARD[0]:
            if pattern != "clean":
                s = sc.regime_curve(pattern, int(rng.integers(1 << 30)), n, iv, HARD[1])
                hard.add(_run_events(s, det), s, "changepoint")
    t.notes.append(f"{clean_fp} on 12 clean power-law curves")
    t.notes.append(_hard_note(hard))
    hard.notes.append("the hard corner, apart: 300-500 points at 5% noise per point")
    return t, hard


def _hard_note(hard: Tally) -> str:
    return (f"apart, 300-500 pts at 5%/pt: {hard.tp}/{hard.tp + hard.fn} found, "
            f"{hard.fp} false")


def _grokking(rng: np.random.Generator) -> tuple[Tally, Tally]:
    grok, over = Tally("grokking"), Tally("overfitting")
    det = [GrokkingDetector(), OverfittingDetector()]
    false_grok = 0
    for pattern in ("grokking", "overfitting", "clean"):
        for metric in ("loss", "acc"):
            for noise in sc.NOISE_LEVELS:
                for n, iv in ((200, 100), (400, 50), (2000, 10)):
                    s = sc.grokking_pair(pattern, int(rng.integers(1 << 30)), n, iv, noise,
                                         metric)
                    ev = _run_events(s, det)
                    grok.add(ev, s)
                    over.add(ev, s, "overfitting")
                    if pattern == "overfitting":
                        false_grok += sum(e.kind == "grokking" for e in ev)
    grok.notes.append(f"{false_grok} false grokking on 18 overfitting pairs")
    return grok, over


def _sudden(rng: np.random.Generator) -> tuple[Tally, Tally]:
    t = Tally("sudden_drop")
    det = [SuddenDropDetector()]
    flags = [0, 0]
    hard = Tally("drop hard")
    for lr_drop in (False, True):
        for n, iv in SHAPES:
            for noise in noise_levels(iv):
                s = sc.sudden_drop_curve(int(rng.integers(1 << 30)), n, iv, noise, lr_drop)
                ev = _run_events(s, det)
                t.add(ev, s)
                flags[lr_drop] += sum(bool(e.details.get("lr_drop")) == lr_drop for e in ev)
        for n, iv in HARD[0]:
            s = sc.sudden_drop_curve(int(rng.integers(1 << 30)), n, iv, HARD[1], lr_drop)
            hard.add(_run_events(s, det), s, "sudden_drop")
    negatives = 0
    for n, iv in SHAPES:
        for noise in noise_levels(iv):
            s = sc.clean_curve(int(rng.integers(1 << 30)), n, iv, noise)
            ev = _run_events(s, det)
            negatives += len(ev)
            t.add(ev, s)
    t.notes.append(f"lr_drop flag right on {flags[0] + flags[1]} found; "
                   f"{negatives} on 12 clean curves")
    t.notes.append(_hard_note(hard))
    hard.notes.append("the hard corner, apart: 300-500 points at 5% noise per point")
    return t, hard


def _resumes(rng: np.random.Generator) -> list[Tally]:
    kinds = ("rollback", "resume_spike", "repeat_data")
    tallies = {k: Tally(k) for k in kinds}
    det = [RollbackDetector(), ResumeSpikeDetector(), RepeatDataDetector()]
    for pattern in sc.RESUME_PATTERNS:
        for n, iv in ((1000, 50), (3000, 10), (3000, 1)):
            for noise in sc.NOISE_LEVELS:
                s = sc.resumed_run(pattern, int(rng.integers(1 << 30)), n, iv, noise)
                ev = _run_events(s, det)
                for k in kinds:
                    tallies[k].add(ev, s)
    return list(tallies.values())


def _power_law_series(n: int, seed: int) -> Series:
    rng = np.random.default_rng(seed)
    step = np.arange(1, n + 1, dtype=np.int64)
    clean = sc.power_law(step, n) * np.where(step >= n // 2, 0.9, 1.0)
    value = clean * np.exp(0.02 * rng.standard_normal(n))
    return Series("timing", "lm loss", "train_loss", step, value, np.full(n, np.nan),
                  np.zeros(n, np.int32))


def changepoint_timing(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
                       repeats: int = 3) -> dict[int, float]:
    """Median wall seconds of ChangepointDetector.detect (ruptures already imported) on a
    power law with one LR drop, 2% noise, one point per step."""
    det = ChangepointDetector()
    det.detect(_power_law_series(1000, 0))  # imports ruptures and scipy outside the clock
    out = {}
    for n in sizes:
        series = _power_law_series(n, n)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            found = det.detect(series)
            times.append(time.perf_counter() - t0)
        assert any(abs(e.start_step - n // 2) <= n // 100 for e in found), found
        out[n] = statistics.median(times)
    return out


def evaluate(seed: int = 0, timing: bool = True) -> list[dict[str, Any]]:
    """One row per kind on the labelled set drawn from `seed` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    cp, cp_hard = _changepoints(rng)
    if timing:
        secs = changepoint_timing()
        cp.notes.append("detect " + ", ".join(f"{n // 1000}k pts {t:.2f} s"
                                              for n, t in secs.items()))
    grok, over = _grokking(rng)
    drop, drop_hard = _sudden(rng)
    tallies: list[Tally] = [cp, cp_hard, grok, over, drop, drop_hard, *_resumes(rng)]
    return [t.row() for t in tallies]


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'kind':<13}{'true':>6}{'found':>7}{'prec':>7}{'recall':>8}{'F1':>7}  notes"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['kind']:<13}{r['n_true']:>6}{r['n_found']:>7}{r['precision']:>7.3f}"
              f"{r['recall']:>8.3f}{r['f1']:>7.3f}  {r['notes']}")


def _import_seconds(module: str) -> float:
    import subprocess
    import sys

    code = f"import time; t = time.perf_counter(); import {module}; " \
           "print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return float(out.stdout.strip() or "nan")


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = evaluate(args.seed)
    print(f"regime and resume detectors, seed {args.seed} "
          f"({time.perf_counter() - t0:.1f} s; `import ruptures` alone takes "
          f"{_import_seconds('ruptures'):.2f} s, paid once per process)\n")
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
