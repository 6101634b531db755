"""A third, independent labelled family: curves made the way training makes them, written as
real log files, read back by losslens's readers and scored against labels from construction.

    python benchmarks/indep2_family.py [--per-stratum 40] [--seed 1] [--fails 40] [--plot DIR]
                                       [--strata a,b] [--json PATH]

Written without reading losslens.synthetic, benchmarks/indep_family.py or losslens/detectors
(only losslens's public API and benchmarks/quality.py's peer rules are used), so its choices
are not shaped by the detectors it grades.

How a run is made (per optimizer step, then logged)
- Loss = c + a * (S1 + s0)^-b - C * anneal, where S1 is the LR area (cumulative LR / peak:
  the loss barely moves during warm-up, as in real runs) and `anneal` the smoothed LR decay
  (cosine, linear, WSD or constant schedules: the late drop of a decayed LR). Pre-training
  starts near ln(vocab); fine-tunes start at 1-3 nats.
- Multi-epoch runs: train loss drops by a factor at each epoch boundary (memorisation);
  validation follows the generalisation curve, evaluated every few hundred steps.
- Noise per step: sd = rel * L^p (p 0.5-1), rel set by the batch size (6 % at 8 sequences,
  0.4 % at 2048), Gaussian or Student-t (6-10 df), larger early in training for some runs; a
  slow data-mixture wander (sd 0.2-0.5 % of the level, clean-hard up to 1 %, widths 100-800
  steps); optional bf16 rounding of each step's loss.
- Logging every 1, 10, 50 or 100 steps. Megatron, HF Trainer and the CSV runs log the MEAN of
  the steps since the last log (a one-step spike is diluted k times); nanoGPT logs the step's
  own loss. Printed as each framework prints (nanoGPT and HF 4 decimals, Megatron %.6E); some
  nanoGPT/CSV runs in bits (loss / ln 2).
- Files: nanoGPT `iter N: loss X, time ..` + `step N: train loss X, val loss Y`; Megatron lines
  (`lm loss`, `loss scale`, `grad norm`, skipped / nan iteration counts, validation blocks);
  HF `trainer_state.json` (log_history with loss, grad_norm, eval_loss); a generic CSV.

Events and their labels (all from construction, never from a detector)
- spike `fast`: a bad batch (1-3 steps at 1.5-30x) or a short hump back within
  max(50 steps, 2 log intervals); `slow`: a PaLM-style jump that decays exponentially and is
  back (excess < max(2 % of the level, 2 logged noise sd)) only after max(300, 10 intervals)
  to max(3000, 30 intervals) steps, and not back at its pre-spike level sooner than
  max(300, 10 intervals) (the trend keeps falling); `none`: a jump settling 5-60 % above the
  trend for good and staying >= max(5 %, 6 noise sd) above its pre-spike level to the end.
  A spike is LABELLED only when its LOGGED excess (after interval averaging and rounding,
  computed noise-free) is >= 6 sd of the logged noise at that point (the sd known from the
  generating noise, interval mean and rounding) AND >= 1.2x the largest noise excursion of
  the run's logged series in sd units. An injected spike below that is neutral (a detection
  there counts neither way).
- divergence: from step d the loss rises exponentially (1 % excess growing to the cap in
  100-3000 steps) to a plateau at ln(vocab), or into NaN (then also `nonfinite`); no spike is
  placed in the max(1000, n/10) steps before d (it would be the divergence's onset).
  Labelled only when >= 3 logged points before its NaN stand >= max(10 % of the level, 6
  logged sd) above where the loss would have been; else neutral (the NaN still labelled).
- nonfinite: NaN bursts of 1-5 logged points (Megatron: the `lm loss` field dropped, as
  Megatron prints a NaN average), training continuing after them; NaN ends of divergences.
- overfitting: validation U-curve (rising >= 5 % and >= 6 val sd over >= 3 evals after its
  minimum) while train keeps falling; `grokking`: train memorised early, validation flat then
  a sigmoid drop late.
- rollback: a crash at step X and a resume from checkpoint C < X; steps C+1.. logged again.
- overflow (fp16 Megatron runs): a burst of 3-10 consecutive skipped iterations with the loss
  scale halving each time. The routine skipped iterations of dynamic loss scaling (the
  initial scale search and the probe every 1000 steps) are neutral for `overflow`.
- clean runs (>= 40 % of every stratum) have no labels: early noise 1-4x larger, warm-up
  bumps (+3-12 % humps around the end of warm-up), LR-decay drops, epoch staircases, bf16.

Strata: pretraining-dense (log every 1-10 steps), interval-averaged (50-100, means),
fine-tune-short (20-200 points), multi-epoch (epoch drops, val curves, grokking),
fp16-overflow (Megatron fp16), clean-hard (clean only).

Matching rules (k = the run's log interval, e = its eval interval)
- spike: a spike event on the run's main train-loss series (role train_loss, most points)
  matches a label when its start_step lies in [label start - 2k, body end + 2k] (body end:
  the last logged point whose excess is >= half the peak excess); each label takes the
  earliest such event; further events in a matched window are duplicates (not false).
  Spike events inside a divergence (from its start - 2k) or within 2k of a NaN burst, or in
  an unlabelled (too faint) injected spike's window, are neutral.
- divergence: start in [d - max(10k, 200), last step]; nonfinite: start in [first NaN - k,
  last NaN + k], for each burst a nonfinite event lists in `details.bursts` (losslens merges
  bursts within 1,000 steps into one event and lists them there); overfitting (on a
  val-loss series): start in [val minimum - 2e, last];
  grokking: start in [onset - 3e, end + 3e]; rollback: start in [C - 2k, C + 2k];
  overflow: [start, end] overlapping [first - 2k, last + 2k].
- Every other event of these kinds on the series scored is a false positive. `clean
  flagged` counts clean runs with any warning-or-worse event or finding.
- Recovery accuracy: matched spikes whose `recovery` equals the label's.
- Peers (benchmarks/quality.py's rules) see the logged train-loss points (last write per
  step) and are scored by the same spike windows, on the cases where they can have warmed up
  before the first labelled spike; n/a where none can (ratio rules never on negative losses).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
STRATA = ("pretraining-dense", "interval-averaged", "fine-tune-short", "multi-epoch",
          "fp16-overflow", "clean-hard")
KINDS = ("spike", "divergence", "nonfinite", "overfitting", "grokking", "rollback", "overflow")
SEVERE = ("warning", "critical")
LN2 = math.log(2.0)


@dataclass
class Label:
    kind: str
    start: int  # logged step
    end: int | None  # logged step, None: to the end
    lo: int  # a detection's start_step must lie in [lo, hi] (overflow: its range overlap)
    hi: int
    recovery: str | None = None
    what: str = ""


@dataclass
class Case:
    name: str
    stratum: str
    fmt: str
    k: int  # log interval
    n: int  # optimizer steps
    desc: str = ""
    steps: np.ndarray = field(default_factory=lambda: np.empty(0, int))  # logged, stitched
    values: np.ndarray = field(default_factory=lambda: np.empty(0))
    raw: list[tuple[int, float]] = field(default_factory=list)  # as written, with repeats
    val_steps: np.ndarray = field(default_factory=lambda: np.empty(0, int))
    val_values: np.ndarray = field(default_factory=lambda: np.empty(0))
    eval_k: int = 0
    grad: np.ndarray | None = None
    lr: np.ndarray | None = None
    scale: np.ndarray | None = None  # fp16 loss scale per logged point
    skipped: np.ndarray | None = None  # skipped iterations per logged point
    nan_steps: np.ndarray | None = None  # NaN steps per logged point (Megatron)
    noise_sd: np.ndarray = field(default_factory=lambda: np.empty(0))  # logged noise sd
    labels: list[Label] = field(default_factory=list)
    neutral: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, lo, hi)
    bits: bool = False
    vocab: int = 50257
    resume: tuple[int, int] | None = None  # (crash step X, checkpoint C)
    events: list = field(default_factory=list)
    findings: list = field(default_factory=list)
    main_tag: str | None = None
    val_tags: tuple[str, ...] = ()
    error: str | None = None

    @property
    def clean(self) -> bool:
        return not self.labels


# -- the curve, per optimizer step -------------------------------------------------------

def lr_schedule(rng: np.random.Generator, n: int, warmup: int) -> tuple[np.ndarray, str]:
    s = np.arange(1, n + 1, dtype=float)
    kind = str(rng.choice(["cosine", "cosine", "linear", "wsd", "constant"]))
    floor = float(rng.uniform(0.0, 0.1))
    frac = np.clip((s - warmup) / max(1, n - warmup), 0, 1)
    if kind == "cosine":
        lr = floor + (1 - floor) * 0.5 * (1 + np.cos(np.pi * frac))
    elif kind == "linear":
        lr = 1 - (1 - floor) * frac
    elif kind == "wsd":
        at = float(rng.uniform(0.8, 0.9))
        lr = np.where(frac < at, 1.0, 1 - (1 - floor) * (frac - at) / (1 - at))
    else:
        lr = np.ones(n)
    if warmup:
        lr[:warmup] = s[:warmup] / warmup * lr[warmup - 1 if warmup < n else 0]
    return lr, kind


def smooth(x: np.ndarray, width: float) -> np.ndarray:
    """Gaussian filter (FFT), reflected at the ends."""
    if width < 1 or x.shape[0] < 3:
        return x.copy()
    pad = min(x.shape[0] - 1, int(4 * width))
    y = np.concatenate((x[pad:0:-1], x, x[-2:-pad - 2:-1]))
    f = np.fft.rfftfreq(y.shape[0])
    out = np.fft.irfft(np.fft.rfft(y) * np.exp(-2 * (np.pi * f * width) ** 2), y.shape[0])
    return out[pad:pad + x.shape[0]]


@dataclass
class Curve:
    base: np.ndarray  # noise-free loss without events
    sd: np.ndarray  # per-step noise sd
    noise: np.ndarray  # the realised per-step noise (without events)
    lr: np.ndarray
    mult: np.ndarray  # event factor on the level (spikes)
    add: np.ndarray  # event excess (divergence)
    nan: np.ndarray  # per-step NaN
    bf16: bool = False
    p: float = 1.0  # noise sd grows as level ** p

    def loss(self, noise_scale: np.ndarray | None = None) -> np.ndarray:
        level = self.base * self.mult + self.add
        sd_ratio = np.sqrt(np.maximum(self.mult, 1.0)) if noise_scale is None else noise_scale
        x = level + self.noise * sd_ratio
        x = np.maximum(x, 0.05 * level)
        if self.bf16:
            x = to_bf16(x)
        return np.where(self.nan, np.nan, x)


def to_bf16(x: np.ndarray) -> np.ndarray:
    m, e = np.frexp(x)
    return np.ldexp(np.round(m * 256) / 256, e)


def make_curve(rng: np.random.Generator, n: int, *, pretrain: bool, batch: int,
               warmup: int, early: float, bump: float, wander: float,
               heavy: bool, bf16: bool, vocab: int) -> tuple[Curve, str]:
    lr, sched = lr_schedule(rng, n, warmup)
    s1 = np.cumsum(lr)
    if pretrain:
        start = math.log(vocab) * float(rng.uniform(0.92, 1.0))
        c = float(rng.uniform(1.6, 3.2))
    else:
        start = float(rng.uniform(1.0, 3.0))
        c = float(rng.uniform(0.15, 0.6)) * start
    b = float(rng.uniform(0.25, 0.6))
    s0 = float(rng.uniform(5, 60)) * max(1.0, n / 5000)
    a = (start - c) * s0 ** b
    base = c + a * (s1 + s0) ** -b
    decay = np.clip(1 - lr, 0, 1)
    decay[:warmup] = 0
    base = base - float(rng.uniform(0.01, 0.05)) * base * smooth(decay, n / 100)
    if bump > 0 and warmup > 0:
        centre = warmup * float(rng.uniform(0.8, 1.6))
        width = max(5.0, warmup * float(rng.uniform(0.25, 0.8)))
        t = np.arange(1, n + 1)
        base = base * (1 + bump * np.exp(-0.5 * ((t - centre) / width) ** 2))
    if wander > 0:
        w = smooth(rng.standard_normal(n), min(n / 8, float(rng.uniform(100, 800))))
        w = (w - w.mean()) / max(1e-12, float(np.std(w)))
        base = base * (1 + wander * np.clip(w, -3, 3))
    rel = 0.06 * math.sqrt(8 / batch) * float(rng.uniform(0.7, 1.3))
    p = float(rng.uniform(0.5, 1.0))
    ref = float(np.median(base))
    sd = rel * ref * (base / ref) ** p
    if early > 0:
        sd = sd * (1 + early * np.exp(-np.arange(n) / max(10.0, n / 30)))
    if heavy:
        df = float(rng.uniform(6, 10))
        z = rng.standard_t(df, n) / math.sqrt(df / (df - 2))
    else:
        z = rng.standard_normal(n)
    curve = Curve(base, sd, sd * z, lr, np.ones(n), np.zeros(n), np.zeros(n, bool), bf16, p)
    return curve, f"{sched} LR, warm-up {warmup}, batch {batch}, noise {rel:.3f}"


# -- logging ------------------------------------------------------------------------------

def log_points(n: int, k: int) -> np.ndarray:
    pts = np.arange(k, n + 1, k)
    return pts if k == 1 or pts.shape[0] == 0 or pts[0] == 1 else np.concatenate(([1], pts))


def logged(x: np.ndarray, pts: np.ndarray, mean: bool, skip: np.ndarray | None = None) -> np.ndarray:
    """The logged value at each step of pts (1-based): the mean of the steps since the previous
    log (non-skipped ones only) or the step's own value."""
    if not mean:
        return x[pts - 1]
    out = np.empty(pts.shape[0])
    prev = 0
    for j, p in enumerate(pts):
        seg = x[prev:p]
        if skip is not None:
            keep = ~skip[prev:p]
            seg = seg[keep] if keep.any() else seg
        out[j] = seg.mean() if seg.shape[0] else np.nan
        prev = p
    return out


def logged_sd(sd: np.ndarray, pts: np.ndarray, mean: bool, quantum: float, bf16: bool,
              level: np.ndarray) -> np.ndarray:
    if mean:
        prev = np.concatenate(([0], pts[:-1]))
        c = np.concatenate(([0.0], np.cumsum(sd ** 2)))
        cnt = np.maximum(1, pts - prev)
        var = (c[pts] - c[prev]) / cnt ** 2
        bq = (level * 2.0 ** -8) ** 2 / 12 / cnt if bf16 else 0.0
    else:
        var = sd[pts - 1] ** 2
        bq = (level * 2.0 ** -8) ** 2 / 12 if bf16 else 0.0
    return np.sqrt(var + bq + quantum ** 2 / 12)


# -- a run being built ----------------------------------------------------------------------

class Build:
    """One run: the per-step curve, the logging, the events injected and their labels."""

    def __init__(self, rng: np.random.Generator, case: Case, *, pretrain: bool, batch: int,
                 warmup: int, early: float = 0.0, bump: float = 0.0, wander: float = 0.0,
                 heavy: bool = False, bf16: bool = False, mean: bool = True,
                 quantum: float = 0.0):
        self.rng, self.case = rng, case
        self.curve, desc = make_curve(rng, case.n, pretrain=pretrain, batch=batch,
                                      warmup=warmup, early=early, bump=bump, wander=wander,
                                      heavy=heavy, bf16=bf16, vocab=case.vocab)
        self.trend = self.curve.base.copy()
        self.mean, self.quantum, self.warmup = mean, quantum, warmup
        self.pts = log_points(case.n, case.k)
        self.skip = np.zeros(case.n, bool)
        self.spikes: list[tuple[int, np.ndarray, str, int | None, str]] = []
        self.busy: list[tuple[int, int]] = []
        self.val: tuple[np.ndarray, np.ndarray] | None = None
        case.desc = desc + (", bf16" if bf16 else "") + (", t-noise" if heavy else "") \
            + (f", warm-up bump {bump:.0%}" if bump else "") + (f", early noise x{1 + early:.1f}" if early else "")

    # where events may go: after warm-up and the early noise, away from each other
    def free_step(self, lo_frac: float = 0.15, hi_frac: float = 0.9, gap: int = 0) -> int | None:
        n, k = self.case.n, self.case.k
        gap = min(gap or max(300, 40 * k), max(2 * k, n // 20))  # short runs: in proportion
        lo = max(int(lo_frac * n), 3 * self.warmup, 2 * k + 1)
        hi = int(hi_frac * n)
        for _ in range(50):
            if hi <= lo:
                return None
            s = int(self.rng.integers(lo, hi))
            if all(s < a - gap or s > b + gap for a, b in self.busy):
                return s
        return None

    def first_logged(self, s: int) -> int:
        j = int(np.searchsorted(self.pts, s))
        return int(self.pts[min(j, self.pts.shape[0] - 1)])

    def spike(self, kind: str) -> bool:
        """Inject a spike of recovery class `kind` ('fast', 'slow', 'none'); label later."""
        rng, n, k = self.rng, self.case.n, self.case.k
        t = np.arange(n, dtype=float)
        noise_rel = float(np.median(self.curve.sd / self.curve.base)) / math.sqrt(k if self.mean else 1)
        if kind == "fast":
            long = max(50, 2 * k)
            s = self.free_step(gap=long + 20 * k)
            if s is None:
                return False
            h = float(np.exp(rng.uniform(np.log(1.5), np.log(30))))
            m = np.ones(n)
            if rng.random() < 0.6:
                w = int(rng.choice([1, 1, 1, 2, 3]))
                m[s - 1:s - 1 + w] = h
                what, back = f"bad batch x{h:.1f} over {w} step(s)", w
            else:
                tau = float(rng.uniform(1.5, max(2.0, long / 8)))
                m[s - 1:] = 1 + (h - 1) * np.exp(-(t[s - 1:] - (s - 1)) / tau)
                back = int(math.ceil(tau * math.log((h - 1) / 0.02)))
                if back > long:
                    m[s - 1 + long:] = 1.0
                    back = long
                what = f"fast hump x{h:.1f}, tau {tau:.0f}"
            end: int | None = self.first_logged(min(n, s + back))
            self.busy.append((s, s + back))
        else:
            lo_r, hi_r = max(300, 10 * k), max(3000, 30 * k)
            R = int(rng.integers(lo_r, hi_r + 1)) if kind == "slow" else int(rng.integers(10, 300))
            h = float(np.exp(rng.uniform(np.log(1.3), np.log(8))))
            thr = max(0.02, 2 * noise_rel)
            if h - 1 < 3 * thr:
                h = 1 + 3 * thr
            base = self.curve.base
            for _ in range(5):
                s = self.free_step(lo_frac=0.4 if kind == "none" else 0.15,
                                   hi_frac=0.9 if kind == "none" else 0.95 - R / n, gap=R + 20 * k)
                if s is None or s + R > 0.97 * n:
                    return False
                pre = float(base[max(0, s - 2)])
                m = np.ones(n)
                if kind == "slow":
                    # back (excess < thr of the trend) after R steps, and not back at the
                    # pre-spike level (the trend keeps falling) before max(300, 10 k) steps
                    tau = R / math.log((h - 1) / thr)
                    m[s - 1:] = 1 + (h - 1) * np.exp(-(t[s - 1:] - (s - 1)) / tau)
                    below = np.flatnonzero(base[s - 1:] * m[s - 1:] <= pre)
                    if below.shape[0] == 0 or below[0] >= lo_r:
                        end = self.first_logged(s + R)
                        what = f"PaLM-style x{h:.1f}, back after {R} steps"
                        break
                else:
                    # settles delta above the trend, and above the pre-spike level to the end
                    margin = max(0.05, 6 * noise_rel)
                    need = pre * (1 + margin) / float(base[s - 1:].min()) - 1
                    delta = max(float(rng.uniform(0.05, 0.3)), 8 * noise_rel, need)
                    if delta <= 0.6:
                        h = max(h, 1 + 2 * delta)
                        tau = R / 4
                        m[s - 1:] = 1 + delta + (h - 1 - delta) * np.exp(-(t[s - 1:] - (s - 1)) / tau)
                        end = None
                        what = f"x{h:.1f} settling {delta:.0%} higher for good"
                        break
            else:
                return False
            self.busy.append((s, s + R))
        self.spikes.append((s, m, kind, end, what))
        self.curve.mult = self.curve.mult * m
        return True

    def diverge(self, nan_end: bool) -> bool:
        rng, n = self.rng, self.case.n
        D = int(rng.integers(100, 3000))
        D = min(D, int(0.3 * n))
        s = self.free_step(lo_frac=0.4, hi_frac=0.9, gap=200)
        if s is None or s + D > 0.97 * n or D < 20:
            return False
        cap = math.log(self.case.vocab) * float(rng.uniform(0.95, 1.0))
        lvl = float(self.curve.base[s - 1])
        if cap < 2 * lvl:
            cap = lvl * float(rng.uniform(2.5, 5))
        r = math.log((cap - lvl) / (0.01 * lvl)) / D
        t = np.arange(n, dtype=float)
        add = np.zeros(n)
        add[s - 1:] = np.minimum(cap - self.curve.base[s - 1:], 0.01 * lvl * np.exp(np.minimum(50, r * (t[s - 1:] - (s - 1)))))
        self.curve.add = self.curve.add + add
        self.busy.append((s - max(1000, n // 10), n))  # no spike just before: it would be its start
        what = f"exponential rise to {cap:.2f} over {D} steps"
        if nan_end:
            at = s + int(D * float(rng.uniform(0.5, 1.0)))
            self.curve.nan[at - 1:] = True
            what += f", NaN from {at}"
        self.div = (s, what)
        return True

    def nan_burst(self) -> bool:
        s = self.free_step(gap=max(100, 10 * self.case.k))
        if s is None:
            return False
        j = int(np.searchsorted(self.pts, s))
        m = int(self.rng.integers(1, 6))
        if j + m >= self.pts.shape[0]:
            return False
        a = int(self.pts[j - 1]) if j else 0
        b = int(self.pts[j + m - 1])
        self.curve.nan[a:b] = True
        self.busy.append((a, b))
        self.case.labels.append(Label("nonfinite", int(self.pts[j]), b, int(self.pts[j]) - self.case.k,
                                      b + self.case.k, what=f"NaN burst, {m} logged point(s)"))
        return True

    def epochs(self, count: int, mu: float) -> np.ndarray:
        """Train loss drops by `mu` at each epoch boundary (memorised data); returns the
        per-step generalisation curve (what validation follows, before the drops)."""
        n = self.case.n
        gen = self.trend.copy()
        E = n / count
        e = np.floor(np.arange(n) / E)
        drop = smooth(mu ** e, max(1.0, E / 200))
        self.curve.base = self.curve.base * drop
        # memorised data: the per-batch noise shrinks with the loss it rides on
        self.curve.sd = self.curve.sd * drop ** self.curve.p
        self.curve.noise = self.curve.noise * drop ** self.curve.p
        self.epoch_len = E
        for j in range(1, count):
            pad = int(min(20 * self.case.k, E / 10))
            self.busy.append((int(j * E) - pad, int(j * E) + pad))
        return gen

    def evaluate(self, every: int, curve: np.ndarray, rel: float) -> None:
        steps = np.arange(every, self.case.n + 1, every)
        self.val = (steps, curve[steps - 1], rel)
        self.case.eval_k = every

    def overfit_curve(self, gen: np.ndarray, every: int) -> np.ndarray:
        """A validation U-curve: rises after epoch 1-2 (>= 5 % and >= 6 val sd over >= 3
        evals after the minimum); labels it."""
        n, rng = self.case.n, self.rng
        t = np.arange(1, n + 1)
        t_o = float(rng.uniform(0.25, 0.6)) * n
        gam = float(rng.uniform(1.0, 2.0))
        kap = float(rng.uniform(0.08, 0.4))
        rel = float(rng.uniform(0.002, 0.01))
        steps = np.arange(every, n + 1, every)
        for _ in range(30):
            v = gen + kap * gen.min() * np.maximum(0, (t - t_o) / n) ** gam / (1 - t_o / n) ** gam
            vs = v[steps - 1]
            j = int(np.argmin(vs))
            rise = vs[-1] - vs[j]
            if steps.shape[0] - 1 - j >= 3 and rise >= max(0.05 * vs[j], 6 * rel * vs[j]):
                self.case.labels.append(Label("overfitting", int(steps[j]), None,
                                              int(steps[j]) - 2 * every, n,
                                              what=f"validation +{rise / vs[j]:.0%} after its minimum"))
                self.evaluate(every, v, rel)
                return v
            kap *= 1.5
            t_o = max(0.15 * n, t_o * 0.9)
        self.evaluate(every, gen, rel)
        return gen

    def finish(self, fp16: bool = False, rollback: bool = False) -> Case:
        case, curve, pts, k = self.case, self.curve, self.pts, self.case.k
        rng = self.rng
        scale_at = None
        if fp16:
            scale_at = self.loss_scale()
        q, u = self.quantum, (1 / LN2 if case.bits else 1.0)  # printed units
        plain = Curve(curve.base, curve.sd, curve.noise, curve.lr, np.ones(case.n),
                      np.zeros(case.n), np.zeros(case.n, bool), curve.bf16)
        base_log = logged(curve.base, pts, self.mean, self.skip) * u
        sd_log = logged_sd(curve.sd * u, pts, self.mean, q, curve.bf16, base_log)
        resid = printed(logged(plain.loss(), pts, self.mean, self.skip) * u, q) - base_log
        zmax = float(np.max(resid / sd_log))
        for s, m, kind, end, what in self.spikes:
            ex = logged(curve.base * m, pts, self.mean, self.skip) * u - base_log
            j = int(np.argmax(ex))
            z = float(ex[j] / sd_log[j])
            body = j
            while body + 1 < ex.shape[0] and ex[body + 1] >= 0.5 * ex[j]:
                body += 1
            start = self.first_logged(s)
            lo, hi = start - 2 * k, int(pts[body]) + 2 * k
            if z >= max(6.0, 1.2 * zmax):
                case.labels.append(Label("spike", start, end, lo, hi, kind,
                                         f"{what} (logged {z:.0f} sd)"))
            else:
                case.neutral.append(("spike", lo, hi))
        if hasattr(self, "div"):
            s, what = self.div
            start = self.first_logged(s)
            lo = start - max(10 * k, 200)
            case.neutral.append(("spike", lo, case.n))
            tail = case.n + 1  # first step of the NaN stretch that runs to the end
            if curve.nan[-1]:
                tail = case.n
                while tail > 1 and curve.nan[tail - 2]:
                    tail -= 1
                first = self.first_logged(tail)
                case.labels.append(Label("nonfinite", first, None, first - k, case.n,
                                         what="NaN to the end"))
            # labelled only when the logged series shows the rise: >= 3 logged points before
            # the NaN >= max(10 % of the level, 6 logged sd) above where it would have been
            level = logged(curve.base * curve.mult, pts, self.mean, self.skip) * u
            rise = logged(curve.base * curve.mult + curve.add, pts, self.mean, self.skip) * u - level
            seen = (pts >= start) & (pts < tail) & (rise >= np.maximum(0.1 * level, 6 * sd_log))
            if int(seen.sum()) >= 3:
                case.labels.append(Label("divergence", start, None, lo, case.n, what=what))
            else:
                case.neutral.append(("divergence", lo, case.n))
                self.faint_div = True
        for lab in case.labels:
            if lab.kind == "nonfinite":
                case.neutral.append(("spike", lab.start - 2 * k, (lab.end or case.n) + 2 * k))
        x = curve.loss()
        vals = printed(logged(x, pts, self.mean, self.skip) * u, q)
        case.noise_sd = sd_log
        case.raw = [(int(p), float(v)) for p, v in zip(pts, vals)]
        if rollback:
            self.rollback(q, u)
        st: dict[int, float] = {}
        for p, v in case.raw:
            st[p] = v
        case.steps = np.array(sorted(st), dtype=int)
        case.values = np.array([st[p] for p in case.steps])
        case.lr = curve.lr[pts - 1] * float(rng.choice([3e-4, 1e-4, 6e-4, 2e-5]))
        g0 = float(rng.uniform(0.2, 2.0))
        gm = np.maximum(curve.mult, 1.0) ** 1.5 * (1 + curve.add / curve.base)
        case.grad = g0 * gm[pts - 1] * np.exp(0.15 * rng.standard_normal(pts.shape[0]))
        if scale_at is not None:
            case.scale = scale_at[pts - 1]
            prev = np.concatenate(([0], pts[:-1]))
            c = np.concatenate(([0], np.cumsum(self.skip)))
            case.skipped = c[pts] - c[prev]
        if self.val is not None:
            vs, vv, rel = self.val
            noisy = vv * (1 + rel * rng.standard_normal(vs.shape[0]))
            case.val_steps = vs
            case.val_values = printed(noisy * u, q)
        return case

    def rollback(self, q: float, u: float) -> None:
        """A crash at X, a resume from checkpoint C < X: steps C+1.. logged again."""
        case, rng, k = self.case, self.rng, self.case.k
        save = k * int(rng.choice([10, 20, 50]))
        for _ in range(30):
            X = int(rng.integers(int(0.3 * case.n), int(0.85 * case.n)))
            C = (X // save) * save
            if C > 3 * k and X - C >= 2 * k and all(X < a - 5 * k or C > b + 5 * k for a, b in self.busy):
                break
        else:
            return
        again = self.curve.loss(None).copy()
        fresh = self.curve.sd * rng.standard_normal(case.n) * np.sqrt(np.maximum(self.curve.mult, 1))
        again[C:X] = (self.curve.base * self.curve.mult + self.curve.add)[C:X] + fresh[C:X]
        again[C:X] = np.where(self.curve.nan[C:X], np.nan, again[C:X])
        vals2 = printed(logged(again, self.pts, self.mean, self.skip) * u, q)
        first = [(p, v) for p, v in case.raw if p <= X]
        second = [(int(p), float(v)) for p, v in zip(self.pts, vals2) if p > C]
        case.raw = first + second
        case.resume = (X, C)
        case.labels.append(Label("rollback", C, None, C - 2 * k, C + 2 * k,
                                 what=f"crash at {X}, resumed from checkpoint {C}"))

    def loss_scale(self) -> np.ndarray:
        """fp16 dynamic loss scaling (Megatron: initial 2^32, halve on overflow, double after
        1000 clean steps); bursts of 3-10 overflows where the safe scale drops for a moment."""
        case, rng, k = self.case, self.rng, self.case.k
        n = case.n
        safe = np.full(n, 2.0 ** int(rng.integers(14, 19)))
        force = np.zeros(n, bool)
        bursts = []
        for _ in range(int(rng.integers(1, 3)) if self.bursts else 0):
            s = self.free_step(gap=max(200, 20 * k))
            if s is None:
                continue
            j = int(rng.integers(3, 11))
            force[s - 1:s - 1 + j] = True  # gradients overflow whatever the scale
            bursts.append((s, j))
            self.busy.append((s, s + j))
        scale, good = 2.0 ** 32, 0
        out = np.empty(n)
        for t in range(n):
            if scale > safe[t] or force[t]:
                scale = max(1.0, scale / 2)
                self.skip[t] = True
                good = 0
            else:
                good += 1
                if good == 1000:
                    scale *= 2
                    good = 0
            out[t] = scale
        for s, j in bursts:
            sk = np.flatnonzero(self.skip[s - 1:s - 1 + j + 40]) + s
            a, b = int(sk[0]), int(sk[-1])
            case.labels.append(Label("overflow", self.first_logged(a), self.first_logged(b),
                                     a - 2 * k, b + 2 * k, what=f"{len(sk)} skipped iterations"))
        routine = np.flatnonzero(self.skip) + 1
        for s in routine:
            if not any(a <= s <= a + j + 40 for a, j in bursts):
                case.neutral.append(("overflow", int(s) - 2 * k, int(s) + 2 * k))
        case.neutral.append(("overflow", 0, 100 + 2 * k))
        return out


def printed(x: np.ndarray, q: float) -> np.ndarray:
    return np.round(x / q) * q if q > 0 else x


# -- the strata -----------------------------------------------------------------------------

FORMAT_MEAN = {"nanogpt": False, "megatron": True, "hf": True}
QUANTUM = {"nanogpt": 1e-4, "megatron": 0.0, "hf": 1e-4, "csv": 0.0}


def _choice(rng: np.random.Generator, xs: list[Any]) -> Any:
    return xs[int(rng.integers(len(xs)))]


def make_case(stratum: str, i: int, seed: int) -> Case:
    rng = np.random.default_rng([seed, STRATA.index(stratum), i])
    clean = stratum == "clean-hard" or i % 5 in (1, 3)  # 40 % of every stratum
    if stratum == "clean-hard":
        stratum_like = _choice(rng, ["pretraining-dense", "interval-averaged", "fine-tune-short",
                                     "multi-epoch", "fp16-overflow"])
    else:
        stratum_like = stratum
    fmt = {"pretraining-dense": ["nanogpt", "megatron", "csv"],
           "interval-averaged": ["megatron", "hf"],
           "fine-tune-short": ["hf", "hf", "csv"],
           "multi-epoch": ["hf", "csv", "nanogpt"],
           "fp16-overflow": ["megatron"]}[stratum_like]
    fmt = _choice(rng, fmt)
    if stratum_like == "pretraining-dense":
        k = _choice(rng, [1, 10])
        n = int(rng.integers(3000, 10000)) * (1 if k == 1 else 4)
    elif stratum_like == "interval-averaged":
        k = _choice(rng, [50, 100])
        n = int(rng.integers(300, 2000)) * k
    elif stratum_like == "fine-tune-short":
        k = _choice(rng, [1, 5, 10, 25])
        n = int(rng.integers(20, 201)) * k
    elif stratum_like == "multi-epoch":
        k = _choice(rng, [1, 10, 50])
        n = int(rng.integers(2000, 30000)) // k * k
        n = max(n, 400 * k)
    else:
        k = _choice(rng, [1, 10, 100])
        n = int(rng.integers(5000, 50000)) // k * k
        n = max(n, 300 * k)
    grok = stratum_like == "multi-epoch" and not clean and rng.random() < 0.25
    if grok:
        fmt = "csv"
    mean = FORMAT_MEAN.get(fmt, bool(rng.random() < 0.5))
    pretrain = stratum_like in ("pretraining-dense", "interval-averaged", "fp16-overflow")
    case = Case(f"{stratum}-{i:03d}", stratum, fmt, k, n)
    case.vocab = _choice(rng, [32000, 50257, 128256])
    case.bits = fmt in ("nanogpt", "csv") and rng.random() < 0.2
    hard = stratum == "clean-hard"
    batch = _choice(rng, [8, 16, 32, 64] if not pretrain else [32, 128, 512, 2048])
    warmup = int(n * _choice(rng, [0.0, 0.01, 0.03, 0.06]))
    b = Build(rng, case, pretrain=pretrain, batch=batch, warmup=warmup,
              early=float(rng.uniform(1, 4)) if (hard or rng.random() < 0.4) else 0.0,
              bump=float(rng.uniform(0.03, 0.12 if hard else 0.06)) if (rng.random() < (0.7 if hard else 0.25)) else 0.0,
              wander=float(rng.uniform(0.002, 0.01 if hard else 0.005)) if rng.random() < 0.5 else 0.0,
              heavy=bool(rng.random() < (0.5 if hard else 0.3)),
              bf16=bool(rng.random() < (0.5 if hard else 0.25)), mean=mean, quantum=QUANTUM[fmt])
    b.bursts = stratum_like == "fp16-overflow" and not clean
    what: list[str] = []
    val_rel = float(rng.uniform(0.002, 0.008))
    every = max(k, (n // int(rng.integers(8, 30))) // k * k)
    if stratum_like in ("fine-tune-short", "multi-epoch") and not grok:
        count = int(rng.integers(2, 6)) if stratum_like == "fine-tune-short" else int(rng.integers(3, 21))
        gen = b.epochs(count, float(rng.uniform(0.7, 0.95)))
        what.append(f"{count} epochs")
        if not clean and rng.random() < 0.5:
            b.overfit_curve(gen, every)
            what.append("overfitting")
        else:
            b.evaluate(every, gen * (1 + float(rng.uniform(0, 0.1))), val_rel)
    elif grok:
        grokking(b, every)
        what.append("grokking")
    if not clean and not grok:
        plan = []
        if stratum_like in ("pretraining-dense", "interval-averaged"):
            plan = list(rng.choice(["spike", "spike", "spike", "diverge", "nan", "rollback"],
                                   size=int(rng.integers(1, 5))))
        elif stratum_like == "fine-tune-short" and "overfitting" not in what:
            plan = [_choice(rng, ["spike", "spike", "spike", "nan", "diverge"])]
        elif stratum_like == "multi-epoch" and "overfitting" not in what:
            plan = ["spike"] * int(rng.integers(1, 4))
        elif stratum_like in ("fine-tune-short", "multi-epoch") and rng.random() < 0.3:
            plan = ["spike"]  # an overfitting run with a spike too
        elif stratum_like == "fp16-overflow" and rng.random() < 0.6:
            plan = ["spike"] * int(rng.integers(1, 3))
        if "diverge" in plan and b.diverge(bool(rng.random() < 0.4)):
            what.append("divergence")
        for p in plan:
            if p == "spike":
                kinds = ["fast", "none"] if stratum_like == "fine-tune-short" else ["fast", "fast", "slow", "none"]
                kind = _choice(rng, kinds)
                if b.spike(kind):
                    what.append(f"{kind} spike")
                elif kind != "fast" and b.spike("fast"):  # no room for a long one
                    what.append("fast spike")
            elif p == "nan" and b.nan_burst():
                what.append("NaN burst")
        rollback = "rollback" in plan and fmt in ("megatron", "nanogpt")
    else:
        rollback = False
    if pretrain and b.val is None:
        v = (b.trend * (1 + float(rng.uniform(0.0, 0.05))))
        b.evaluate(every, v, val_rel)
    b.finish(fp16=stratum_like == "fp16-overflow", rollback=rollback)
    if any(lab.kind == "overflow" for lab in case.labels):
        what.append("overflow burst(s)")
    if case.resume:
        what.append("rollback")
    if getattr(b, "faint_div", False):
        what.append("divergence not visible before its NaN (neutral)")
    faint = sum(kd == "spike" for kd, _, _ in case.neutral)
    faint -= hasattr(b, "div") + sum(lab.kind == "nonfinite" for lab in case.labels)
    if faint > 0:
        what.append(f"{faint} spike(s) too faint to label")
    if b.val is not None and pretrain:  # validation follows the model's state
        vs = case.val_steps
        state = (b.curve.mult + b.curve.add / b.curve.base)[vs - 1]
        case.val_values = case.val_values * np.where(b.curve.nan[vs - 1], np.nan, state)
    case.desc = f"{fmt}, every {k}, {n} steps, " + case.desc + ("; " + ", ".join(what) if what else "; clean")
    if case.bits:
        case.desc += ", bits"
    return case


def grokking(b: Build, every: int) -> None:
    """Train memorised early; validation flat and high, then a sigmoid drop late."""
    rng, case = b.rng, b.case
    n = case.n
    t = np.arange(1, n + 1, dtype=float)
    start = float(rng.uniform(2.0, 4.5))
    floor = float(np.exp(rng.uniform(np.log(1e-3), np.log(2e-2))))
    tau = float(rng.uniform(0.02, 0.08)) * n
    train = floor + (start - floor) * np.exp(-t / tau)
    rel = float(rng.uniform(0.05, 0.2))
    b.curve.base = train
    b.curve.sd = rel * train
    b.curve.noise = b.curve.sd * rng.standard_normal(n)
    b.trend = train.copy()
    g = float(rng.uniform(0.5, 0.8)) * n
    w = float(rng.uniform(0.01, 0.04)) * n
    high = start * float(rng.uniform(0.9, 1.2))
    low = high * float(rng.uniform(0.02, 0.2))
    val = low + (high - low) / (1 + np.exp((t - g) / w))
    b.evaluate(every, val, float(rng.uniform(0.003, 0.01)))
    onset, end = int(g - 2 * w), int(g + 2 * w)
    case.labels.append(Label("grokking", onset, end, onset - 3 * every, end + 3 * every,
                             what=f"validation {high:.2f} -> {low:.2f} around step {int(g)}"))


# -- the log files ------------------------------------------------------------------------

def _f4(x: float) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.4f}"


def write_case(case: Case, folder: Path) -> Path:
    """Write the run as its framework would; returns the path losslens reads."""
    folder.mkdir(parents=True, exist_ok=True)
    val = dict(zip(case.val_steps.tolist(), case.val_values.tolist()))
    if case.fmt == "nanogpt":
        path = folder / f"{case.name}.log"
        lines = [f"tokens per iteration will be: {case.k * 1000:,}"]
        prev = 0
        for p, v in case.raw:
            if case.resume and p <= prev:
                lines.append(f"Resuming training from out-{case.name}")
            for e in sorted(s for s in val if prev < s <= p):
                lines.append(f"step {e}: train loss {_f4(v)}, val loss {_f4(val[e])}")
                if case.resume and e == case.resume[1]:
                    lines.append(f"saving checkpoint to out-{case.name}")
            lines.append(f"iter {p}: loss {_f4(v)}, time {40 + (p % 7):.2f}ms, mfu {31 + (p % 5) / 10:.2f}%")
            prev = p
        path.write_text("\n".join(lines) + "\n")
        return path
    if case.fmt == "megatron":
        path = folder / f"{case.name}.log"
        idx = {int(p): j for j, p in enumerate(case.steps)}
        lines = [" using world size: 8, data-parallel size: 8, tensor-model-parallel size: 1",
                 f"  fp16 ............................................ {case.scale is not None}"]
        gbs = 256
        prev = 0
        for p, v in case.raw:
            if case.resume and p <= prev:
                lines += [" using world size: 8, data-parallel size: 8, tensor-model-parallel size: 1",
                          f"  successfully loaded checkpoint from ckpt at iteration {case.resume[1]}"]
            j = idx[p]
            fields = [f" iteration {p:8d}/{case.n:8d}", f" consumed samples: {p * gbs:12d}",
                      f" elapsed time per iteration (ms): {1500 + (p % 13):.1f}",
                      f" learning rate: {case.lr[min(j, case.lr.shape[0] - 1)]:.6E}",
                      f" global batch size: {gbs:5d}"]
            if np.isfinite(v):
                fields.append(f" lm loss: {v:.6E}")
            sk = int(case.skipped[j]) if case.skipped is not None else 0
            fields.append(f" loss scale: {case.scale[j] if case.scale is not None else 1.0:.1f}")
            if np.isfinite(v):
                fields.append(f" grad norm: {case.grad[j]:.3f}")
            fields += [f" number of skipped iterations: {sk:3d}", " number of nan iterations:   0"]
            lines.append(" |".join(fields) + " |")
            for e in sorted(s for s in val if prev < s <= p):
                res = f" validation loss at iteration {e} on validation set | lm loss value: {val[e]:.6E} | lm loss PPL: {math.exp(min(20, val[e])) if np.isfinite(val[e]) else 4.851652e8:.6E} | "
                rule = "-" * (len(res) + 1)
                lines += [rule, res, rule]
            prev = p
        path.write_text("\n".join(lines) + "\n")
        return path
    if case.fmt == "hf":
        path = folder / case.name / "trainer_state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        hist: list[dict[str, Any]] = []
        for j, (p, v) in enumerate(case.raw):
            hist.append({"epoch": round(p / case.n * max(1, case.n // 1000), 4),
                         "grad_norm": float(case.grad[j]),
                         "learning_rate": float(case.lr[j]), "loss": v, "step": p})
            if p in val:
                hist.append({"epoch": round(p / case.n, 4), "eval_loss": val[p], "eval_runtime": 12.3,
                             "eval_samples_per_second": 81.0, "eval_steps_per_second": 10.1, "step": p})
        state = {"best_metric": None, "epoch": 1.0, "eval_steps": case.eval_k or None,
                 "global_step": case.n, "log_history": hist, "logging_steps": case.k,
                 "max_steps": case.n, "num_train_epochs": 1, "save_steps": 500,
                 "train_batch_size": 8}
        path.write_text(json.dumps(state, indent=2, sort_keys=True))
        return path
    path = folder / f"{case.name}.csv"
    steps = sorted(set(p for p, _ in case.raw) | set(val))
    tr = dict(case.raw)
    rows = ["step,loss,val_loss"]
    for s in steps:
        a = repr(float(tr[s])) if s in tr else ""
        b = repr(float(val[s])) if s in val else ""
        rows.append(f"{s},{a},{b}")
    path.write_text("\n".join(rows) + "\n")
    return path


# -- analysis and scoring -------------------------------------------------------------------

def analyze_case(case: Case, folder: Path) -> Case:
    import losslens

    path = write_case(case, folder)
    try:
        result = losslens.analyze(path)
    except Exception as exc:  # a reader or detector failure is a result too
        case.error = f"{type(exc).__name__}: {exc}"
        return case
    run = result.runs[0]
    if run.error:
        case.error = str(run.error)
        return case
    trains = [s for s in run.info.series if s.role == "train_loss"]
    case.main_tag = max(trains, key=lambda s: s.points).tag if trains else None
    case.val_tags = tuple(s.tag for s in run.info.series if s.role == "val_loss")
    case.events = list(run.events)
    case.findings = list(run.findings)
    return case


def scored_events(case: Case, kind: str) -> list:
    out = []
    for e in case.events:
        if e.kind != kind:
            continue
        if kind in ("spike", "divergence", "nonfinite") and e.tag != case.main_tag:
            continue
        if kind == "overfitting" and e.tag not in case.val_tags:
            continue
        out.append(e)
    return out


def detections(case: Case, kind: str) -> list[tuple[int, int | None, Any]]:
    """(start, end, event) of each detection scored: one per event, or for `nonfinite` one
    per burst its event lists (losslens merges NaN bursts within 1,000 steps into one event
    and names each burst in `details.bursts`)."""
    events = scored_events(case, kind)
    if kind == "nonfinite":
        return [(int(a), int(b), e) for e in events
                for a, b in e.details.get("bursts") or [(e.start_step, e.end_step)]]
    return [(e.start_step, e.end_step, e) for e in events]


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    dup: int = 0
    right: int = 0
    graded: int = 0
    fp_severe: int = 0  # false positives at warning or critical

    def prf(self) -> tuple[float, float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _hits(kind: str, lab: Label, start: int, end: int | None, last: int) -> bool:
    if kind == "overflow":
        return start <= lab.hi and (end if end is not None else last) >= lab.lo
    return lab.lo <= start <= lab.hi


def match(case: Case, kind: str, found: list[tuple[int, int | None, Any]], tally: Tally,
          fails: list[str] | None = None, who: str = "losslens") -> None:
    """Score detections (start, end, event-or-None) of one kind against the labels."""
    last = int(case.steps[-1]) if case.steps.shape[0] else case.n
    labels = [lab for lab in case.labels if lab.kind == kind]
    used = [False] * len(found)
    order = sorted(range(len(found)), key=lambda j: found[j][0])
    for lab in labels:
        j = next((j for j in order if not used[j] and _hits(kind, lab, found[j][0], found[j][1], last)), None)
        if j is None:
            tally.fn += 1
            if fails is not None:
                fails.append(f"{case.name} [{case.desc}]: {kind} at {lab.start} ({lab.what}) not found by {who}")
            continue
        used[j] = True
        tally.tp += 1
        ev = found[j][2]
        if kind == "spike" and ev is not None:
            tally.graded += 1
            ok = ev.recovery == lab.recovery
            tally.right += ok
            if not ok and fails is not None:
                fails.append(f"{case.name} [{case.desc}]: spike at {lab.start} ({lab.what}) recovery "
                             f"{ev.recovery}, label {lab.recovery}")
    for j, (s, e, ev) in enumerate(found):
        if used[j]:
            continue
        if any(_hits(kind, lab, s, e, last) for lab in labels):
            tally.dup += 1
        elif any(nk == kind and lo <= s <= hi for nk, lo, hi in case.neutral):
            continue
        else:
            tally.fp += 1
            tally.fp_severe += ev is not None and ev.severity in SEVERE
            if fails is not None:
                sev = f", {ev.severity}" if ev is not None else ""
                fails.append(f"{case.name} [{case.desc}]: false {kind} at {s}{sev} by {who}")


def clean_flagged(case: Case) -> list[str]:
    if not case.clean:
        return []
    bad = [f"{e.kind}@{e.start_step}({e.severity})" for e in case.events if e.severity in SEVERE]
    bad += [f"finding '{f.title}'({f.severity})" for f in case.findings if f.severity in SEVERE]
    return bad


def load_peers() -> dict[str, tuple[Any, int, bool]]:
    path = HERE / "quality.py"
    spec = importlib.util.spec_from_file_location("quality_peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_peers"] = module
    spec.loader.exec_module(module)
    return module.PEER_RULES


def evaluate(cases: list[Case], fails: list[str]) -> dict[str, Any]:
    peers = load_peers()
    kinds = {k: Tally() for k in KINDS}
    strata: dict[str, dict[str, Any]] = {}
    for case in cases:
        row = strata.setdefault(case.stratum, {"cases": 0, "clean": 0, "flagged": 0, "errors": 0,
                                               "spike": Tally(), "peers": {}})
        row["cases"] += 1
        row["clean"] += case.clean
        if case.error:
            row["errors"] += 1
            fails.append(f"{case.name} [{case.desc}]: losslens failed: {case.error}")
            continue
        bad = clean_flagged(case)
        if bad:
            row["flagged"] += 1
            fails.append(f"{case.name} [{case.desc}]: clean run flagged: {', '.join(bad[:4])}")
        last = int(case.steps[-1])
        for kind in KINDS:
            found = detections(case, kind)
            match(case, kind, found, kinds[kind], fails)
            if kind == "spike":
                match(case, kind, found, row["spike"])
        first = min([lab.start for lab in case.labels if lab.kind == "spike"], default=last + 1)
        negative = bool(np.nanmin(case.values) < 0) if np.isfinite(case.values).any() else False
        for name, (rule, need, ratio) in peers.items():
            warm = int(np.isfinite(case.values[case.steps < first]).sum()) >= need
            pair = row["peers"].setdefault(name, [Tally(), Tally(), 0])
            if not warm or (ratio and negative):
                continue
            grad = case.grad if case.grad is not None and case.grad.shape == case.values.shape else None
            theirs = [(a, b, None) for a, b in rule(case.steps, case.values, grad)]
            match(case, "spike", theirs, pair[0])
            ours = [(e.start_step, e.end_step, e) for e in scored_events(case, "spike")]
            match(case, "spike", ours, pair[1])
            pair[2] += 1
    return {"kinds": kinds, "strata": strata}


def print_tables(res: dict[str, Any], cases: list[Case]) -> None:
    print(f"{'stratum':<19}{'runs':>5}{'clean':>6}{'flag':>5}{'spikes':>7}{'P':>7}{'R':>7}{'F1':>7}"
          f"{'rec.acc':>8}   peers: their F1 / losslens F1 (runs where the peer warmed up)")
    tot = Tally()
    for name in STRATA:
        r = res["strata"].get(name)
        if not r:
            continue
        t = r["spike"]
        for a in ("tp", "fp", "fn", "dup", "right", "graded"):
            setattr(tot, a, getattr(tot, a) + getattr(t, a))
        p, rc, f1 = t.prf()
        acc = f"{t.right / t.graded:.3f}" if t.graded else "  -  "
        peers = []
        for pn, (th, ou, cnt) in r["peers"].items():
            if cnt == 0:
                peers.append(f"{pn}: n/a")
            elif th.tp + th.fn == 0:  # no labelled spike on its runs: count false flags
                peers.append(f"{pn}: {th.fp}fp/{ou.fp}fp ({cnt})")
            else:
                peers.append(f"{pn}: {th.prf()[2]:.2f}/{ou.prf()[2]:.2f} ({cnt})")
        prf = (f"{p:>7.3f}{rc:>7.3f}{f1:>7.3f}" if t.tp + t.fn else f"{'-':>7}{'-':>7}{f'{t.fp}fp':>7}")
        print(f"{name:<19}{r['cases']:>5}{r['clean']:>6}{r['flagged']:>5}{t.tp + t.fn:>7}{prf}"
              f"{acc:>8}   " + "; ".join(peers))
    p, rc, f1 = tot.prf()
    acc = f"{tot.right / tot.graded:.3f}" if tot.graded else "-"
    print(f"{'all spikes':<19}{len(cases):>5}{sum(c.clean for c in cases):>6}"
          f"{sum(r['flagged'] for r in res['strata'].values()):>5}{tot.tp + tot.fn:>7}{p:>7.3f}{rc:>7.3f}{f1:>7.3f}{acc:>8}")
    print(f"\n{'kind':<13}{'true':>6}{'tp':>6}{'fp':>6}{'(warn+)':>8}{'fn':>6}{'dup':>6}{'prec':>8}{'recall':>8}{'F1':>8}")
    for kind, t in res["kinds"].items():
        p, rc, f1 = t.prf()
        print(f"{kind:<13}{t.tp + t.fn:>6}{t.tp:>6}{t.fp:>6}{t.fp_severe:>8}{t.fn:>6}{t.dup:>6}{p:>8.3f}{rc:>8.3f}{f1:>8.3f}")
    print("(flag: clean runs with a warning-or-worse event or finding; (warn+): false positives at "
          "warning or critical;\n 'Nfp/Mfp': no spike labelled on those runs, false spikes of the "
          "peer / of losslens; n/a: the peer warmed up on none)")


def plot_case(case: Case, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(case.steps, case.values, lw=0.6, label="train (logged)")
    if case.val_steps.shape[0]:
        ax.plot(case.val_steps, case.val_values, "o-", ms=3, lw=1, label="val")
    for lab in case.labels:
        ax.axvspan(lab.lo, lab.hi, color="green", alpha=0.15)
        ax.axvline(lab.start, color="green", lw=1)
        ax.text(lab.start, ax.get_ylim()[1], f"{lab.kind}{'/' + lab.recovery if lab.recovery else ''}",
                color="green", fontsize=8, va="top")
    for e in case.events:
        if e.kind in KINDS:
            ax.axvline(e.start_step, color="red", ls="--", lw=0.8)
            ax.text(e.start_step, ax.get_ylim()[0], f"{e.kind}/{e.recovery or ''}/{e.severity}",
                    color="red", fontsize=7, rotation=90, va="bottom")
    fin = case.values[np.isfinite(case.values)]
    if fin.shape[0] and fin.min() > 0 and fin.max() / fin.min() > 20:
        ax.set_yscale("log")
    ax.set_title(f"{case.name}: {case.desc}"[:150], fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-stratum", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fails", type=int, default=40, help="failing cases to print (0: all)")
    ap.add_argument("--plot", type=Path, default=None, help="folder for PNGs of failing runs")
    ap.add_argument("--strata", default=",".join(STRATA))
    ap.add_argument("--json", type=Path, default=None, help="also write the tallies and failing cases here")
    args = ap.parse_args(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    cases = []
    with tempfile.TemporaryDirectory(prefix="indep2-") as tmp:
        for name in args.strata.split(","):
            for i in range(args.per_stratum):
                cases.append(analyze_case(make_case(name, i, args.seed), Path(tmp)))
    fails: list[str] = []
    res = evaluate(cases, fails)
    pts = sum(c.steps.shape[0] for c in cases)
    print(f"{len(cases)} runs ({args.per_stratum} per stratum, seed {args.seed}), {pts} train-loss "
          f"points; {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU\n")
    print_tables(res, cases)
    shown = fails if args.fails == 0 else fails[:args.fails]
    print(f"\nfailing cases ({len(fails)}{'' if len(shown) == len(fails) else f', first {len(shown)}'}):")
    for line in shown:
        print("  " + line)
    if args.plot:
        args.plot.mkdir(parents=True, exist_ok=True)
        names = []
        for line in fails:
            nm = line.split(" ", 1)[0]
            if nm not in names:
                names.append(nm)
        for c in cases:
            if c.name in names[:12]:
                plot_case(c, args.plot / f"{c.name}.png")
    if args.json:
        args.json.write_text(json.dumps(to_json(res, args, fails), indent=1))
    res["cases"] = cases
    res["fails"] = fails
    return res


def to_json(res: dict[str, Any], args: argparse.Namespace, fails: list[str]) -> dict[str, Any]:
    def tally(t: Tally) -> dict[str, Any]:
        p, r, f1 = t.prf()
        return dict(vars(t), precision=p, recall=r, f1=f1)

    strata = {}
    for name, row in res["strata"].items():
        strata[name] = {"cases": row["cases"], "clean": row["clean"], "flagged": row["flagged"],
                        "errors": row["errors"], "spike": tally(row["spike"]),
                        "peers": {pn: None if cnt == 0 else {"peer": tally(th), "losslens": tally(ou), "cases": cnt}
                                  for pn, (th, ou, cnt) in row["peers"].items()}}
    return {"seed": args.seed, "per_stratum": args.per_stratum, "strata": strata,
            "kinds": {k: tally(t) for k, t in res["kinds"].items()}, "fails": fails}


if __name__ == "__main__":
    main()
