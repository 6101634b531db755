"""An independent family of labelled synthetic runs, to grade losslens out of its own family.

    python benchmarks/indep_family.py [--per-stratum 60] [--seed 11] [--strata sign] [--fails 0]

Written apart from `losslens.synthetic` (none of its code, curves or rules): every label comes
from how the curve was made. Six strata:

- `dense`: 800-4000 points logged every 1-10 steps;
- `sparse`: 40-160 points logged every 500 steps;
- `short`: 12-70 points;
- `sign`: losses around 0 that change sign (policy / RL losses), additive noise and events;
- `nearzero`: a loss that falls over six or more decades to a floor of 1e-8..1e-6 and sits there
  with log-normal flicker; its spikes are collapses to 1e-3..6;
- `rounded`: HF-style values rounded to 4 decimals, falling below 1e-3 (a staircase).

Noise (positive strata, in log units): AR(1) (phi 0.5-0.9), heteroscedastic (the scale
swings x0.2-x1.8 over the run), heavy-tailed (Student t, 2.5-5 degrees of freedom) or per-batch
(i.i.d., 5-20 %). Events and their labels:

- spike, `fast`: an exponential decay (or a multi-step hump: linear rise, plateau, decay) whose
  excess falls under 2 % of its height within D = 1-120 steps (sparse: D < the log interval);
- spike, `slow`: the same with D = 1500-4000 steps (sparse: 3000-8000, at least 6 points);
- spike, `none`: the level steps up x1.5-x4 (sign: +6-15 noise scales) for good, with or
  without an overshoot;
- heights: at least x1.3, 8 noise scales and 1.2 x the largest excursion the run's own noise
  made (taller than anything the noise did: what tells an engineer a spike from a tail), or
  x1e3-1e7 for near-zero collapses (which decay in log space); a hump needs D >= 10 log
  intervals (shorter ones are decays: a hump between two logged points is not seen);
- divergence: from its start the log-level stops falling and rises linearly to x3-x20 by the end
  (some end in NaN);
- NaN after a plateau: the curve goes flat, then NaN from a step to the end (nonfinite only;
  a plateau is no divergence);
- overfitting: a validation series of 5-12 evals falls, then rises 3-8 % at each of the last
  3+ evals while the train loss keeps falling (half of the validation series stay clean, and
  so do those of runs whose train loss steps up for good after the turn).

A third of the dense/sparse/rounded runs carry a grad-norm series that spikes with each loss
spike, plus grad-only outliers the loss does not follow.

Scoring: spikes match when their [start, end] overlap (an open end runs to the last step),
one detection per true spike; detections inside a true divergence or NaN stretch are ignored
for every method. Recovery class accuracy over the matched spikes. Divergence matches a
detection whose start lies in [start - 10 % of the run, end]; nonfinite within one log
interval; overfitting a detection on the validation tag starting within one eval interval of
the turn or later. Peers (benchmarks/quality.py's rules) run on the train loss of the cases
where they can have warmed up before the first true spike ("n/a" where none can); ratio rules
(llm-foundry, Lightning, Megatron) do not run on sign-changing losses. Their F1 is shown beside
losslens's F1 on the same cases. A peer's flag at a labelled grad-norm blip the loss did not
follow is neutral (OLMo-core's grad half skips such steps by design; losslens reports them as
`grad_spike` events, which the loss-spike score does not count either); where a peer's cases
hold no true spike, the false alarms (theirs/losslens's) are shown instead of an F1.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STRATA = ("dense", "sparse", "short", "sign", "nearzero", "rounded")
TRAIN, VAL, GRAD = "train/loss", "eval/loss", "train/grad_norm"


@dataclass(frozen=True)
class Label:
    kind: str  # spike, divergence, nonfinite, overfitting
    tag: str
    start: int
    end: int | None = None  # spikes: step the excess is gone (None: never)
    recovery: str | None = None


@dataclass
class Case:
    stratum: str
    seed: int
    interval: int
    steps: np.ndarray
    values: np.ndarray
    labels: list[Label]
    val: tuple[np.ndarray, np.ndarray] | None = None
    grad: tuple[np.ndarray, np.ndarray] | None = None
    events: list = field(default_factory=list)
    noise: str = ""


# -- noise ------------------------------------------------------------------------------------

def _noise(rng: np.random.Generator, n: int, kind: str, sigma: float) -> np.ndarray:
    z = rng.standard_normal(n)
    if kind == "ar1":
        phi = rng.uniform(0.5, 0.9)
        out = np.empty(n)
        acc = 0.0
        for i in range(n):
            acc = phi * acc + np.sqrt(1 - phi * phi) * z[i]
            out[i] = acc
        return sigma * out
    if kind == "hetero":
        swing = 1 + 0.8 * np.sin(2 * np.pi * (np.arange(n) / n * rng.uniform(1, 4)
                                              + rng.uniform()))
        return sigma * swing * z
    if kind == "heavy":
        df = rng.uniform(2.5, 5)
        t = rng.standard_t(df, n)
        return sigma * t / np.sqrt(df / (df - 2))
    return sigma * z  # per-batch i.i.d.


def _robust_sigma(kind: str, sigma: float) -> float:
    return sigma * (1.8 if kind == "hetero" else 1.0)


# -- events -------------------------------------------------------------------------------------

def _spike_profile(rng: np.random.Generator, t: np.ndarray, t0: int, dur: int,
                   shape: str) -> np.ndarray:
    """Excess in [0, 1] over steps t: 1 at the top, < 2 % of it from t0 + dur on; a hump
    rises over at most 5 log intervals, stays up a fifth of its length, then decays."""
    out = np.zeros(t.shape[0])
    step = int(t[1] - t[0]) if t.shape[0] > 1 else 1
    if shape == "hump" and dur >= 20:
        rise, flat = min(int(dur * 0.1), 5 * step) + 1, int(dur * 0.2)
        tau = (dur - rise - flat) / np.log(50)
        up = (t >= t0) & (t < t0 + rise)
        out[up] = (t[up] - t0 + 1) / rise
        out[(t >= t0 + rise) & (t < t0 + rise + flat)] = 1.0
        d = t >= t0 + rise + flat
        out[d] = np.exp(-(t[d] - t0 - rise - flat) / max(tau, 1e-9))
    else:
        tau = dur / np.log(50)
        d = t >= t0
        out[d] = np.exp(-(t[d] - t0) / max(tau, 1e-9))
    out[t >= t0 + dur] = 0.0
    return out


def _positions(rng: np.random.Generator, steps: np.ndarray, count: int, first_frac: float,
               gap_points: int, span: list[int]) -> list[int]:
    n = steps.shape[0]
    lo = max(int(n * first_frac), 3)
    out: list[int] = []
    i = lo
    for _ in range(count):
        i += int(rng.integers(0, max(1, gap_points)))
        if i >= n - 3:
            break
        out.append(i)
        i += span[len(out) - 1] + gap_points
    return out


def make_case(stratum: str, seed: int) -> Case:
    rng = np.random.default_rng([seed, STRATA.index(stratum)])
    if stratum == "dense":
        n, iv = int(rng.integers(800, 4000)), int(rng.choice([1, 5, 10]))
    elif stratum == "sparse":
        n, iv = int(rng.integers(40, 160)), 500
    elif stratum == "short":
        n, iv = int(rng.integers(12, 70)), int(rng.choice([1, 10, 100]))
    elif stratum == "rounded":
        n, iv = int(rng.integers(200, 1500)), int(rng.choice([10, 25, 50]))
    else:
        n, iv = int(rng.integers(600, 3000)), int(rng.choice([1, 5, 10]))
    steps = (np.arange(n) + int(rng.integers(0, 2))) * iv
    t = steps.astype(float)
    sign = stratum == "sign"
    noise_kind = str(rng.choice(["ar1", "hetero", "heavy", "batch"]))
    if stratum == "nearzero":
        floor = 10 ** rng.uniform(-8, -6)
        sigma = rng.uniform(0.1, 0.5)
        level = np.log(floor) + (np.log(rng.uniform(0.5, 3)) - np.log(floor)) * np.exp(
            -t / (t[-1] * rng.uniform(0.03, 0.1)))
        noise_kind = "batch" if noise_kind == "ar1" else noise_kind
    elif sign:
        sigma = rng.uniform(0.02, 0.2)
        level = 0.3 * sigma * np.sin(2 * np.pi * t / t[-1] * rng.uniform(0.5, 3)) \
            - rng.uniform(0, 1) * sigma * t / t[-1]
    else:
        sigma = float(rng.uniform(0.05, 0.2) if noise_kind == "batch"
                      else rng.uniform(0.005, 0.04))
        a, alpha = rng.uniform(1, 8), rng.uniform(0.3, 1.2)
        scale_t = t[-1] * rng.uniform(0.01, 0.2) + 1
        if stratum == "rounded":
            bottom = 10 ** rng.uniform(-4, -2.5)
            level = np.log(bottom + a * np.exp(-t / (t[-1] * rng.uniform(0.1, 0.3))))
        else:
            level = np.log(rng.uniform(0, 2) + a * (1 + t / scale_t) ** -alpha)
    noise = _noise(rng, n, noise_kind, sigma)
    rs = _robust_sigma(noise_kind, sigma)
    labels: list[Label] = []
    mult = np.zeros(n)  # added to the log level (positive) or to the value (sign)
    # what happens
    r = rng.random()
    plan = ("clean" if r < 0.25 else "spikes" if r < 0.7 else "diverge" if r < 0.85
            else "nanplateau")
    if stratum == "short" and plan == "nanplateau":
        plan = "spikes"
    end_events = n
    if plan == "spikes":
        count = int(rng.integers(1, 2 if stratum == "short" else 4))
        classes = [str(rng.choice(["fast", "slow", "none"], p=[0.5, 0.3, 0.2]))
                   for _ in range(count)]
        classes = [c if c != "none" or k == count - 1 else "fast" for k, c in enumerate(classes)]
        if stratum == "short":
            classes = [c if c != "slow" else "fast" for c in classes]
        durs = []
        for c in classes:
            if c == "fast":
                durs.append(int(rng.integers(50, iv)) if iv >= 100 else
                            int(rng.integers(max(1, iv), 121)))
            elif c == "slow":
                durs.append(int(rng.integers(3000, 8001)) if iv >= 500 else
                            int(rng.integers(1500, 4001)))
            else:
                durs.append(0)
        span = [max(1, d // iv) + 2 for d in durs]
        gap = {"short": 2, "sparse": 6}.get(stratum, 60)
        first = 0.3 if stratum != "nearzero" else 0.45
        for k, i0 in enumerate(_positions(rng, steps, count, first, gap, span)):
            t0, c, d = int(steps[i0]), classes[k], durs[k]
            room = int(steps[-1]) - 3 * iv - t0  # a recovery must be seen inside the run
            if c == "slow" and d > room:
                c, d = "fast", min(120 if iv < 100 else iv - 1, max(1, room))
            if c == "fast" and d > room:
                d = max(1, room)
            if c != "none" and d < 1:
                continue
            if stratum == "nearzero":
                top = np.log(10 ** rng.uniform(3, 7))
                if c == "none":
                    c = "fast"
                    d = int(rng.integers(max(1, iv), 121))
                prof = _spike_profile(rng, t, t0, d, "exp")
                mult += top * prof
            elif c == "none":
                step_up = (np.log(rng.uniform(1.5, 4)) if not sign
                           else rng.uniform(6, 15) * rs)
                mult[i0:] += step_up
                if rng.random() < 0.5:  # an overshoot first
                    over = step_up * rng.uniform(0.5, 1.5)
                    mult += over * _spike_profile(rng, t, t0, int(rng.integers(iv, 60 * iv + 1)),
                                                  "exp")
            else:
                shape = str(rng.choice(["exp", "hump"])) if d >= 10 * iv else "exp"
                visible = max(8 * rs, 1.2 * float(np.abs(noise).max()))
                if sign:
                    height = max(visible, rng.uniform(8, 30) * rs)
                else:
                    height = min(rng.uniform(8, 16) * rs, np.log(rng.uniform(1.3, 20)) + 6 * rs)
                    height = max(height, visible, np.log(1.3))
                mult += height * _spike_profile(rng, t, t0, d, shape)
            labels.append(Label("spike", TRAIN, t0, None if c == "none" else t0 + d, c))
    elif plan == "diverge":
        i0 = int(n * rng.uniform(0.5, 0.85)) if stratum != "short" else int(n * 0.5)
        t0 = int(steps[i0])
        # the run stops improving where it starts to diverge: without this the rise is added
        # to a level still falling (the rounded stratum's decades-long decline outran a x3
        # rise, and its curve never went up although labelled a divergence)
        level[i0:] = level[i0]
        rise = (np.log(rng.uniform(3, 20)) if not sign else rng.uniform(10, 40) * rs)
        mult[i0:] += rise * (t[i0:] - t0) / max(1.0, t[-1] - t0)
        labels.append(Label("divergence", TRAIN, t0))
        if rng.random() < 0.3 and n - i0 > 8:
            j = i0 + int((n - i0) * 0.8)
            labels.append(Label("nonfinite", TRAIN, int(steps[j])))
            end_events = j
        else:
            end_events = n
    elif plan == "nanplateau":
        i0 = int(n * rng.uniform(0.4, 0.7))
        j = i0 + int((n - i0) * rng.uniform(0.4, 0.8))
        level[i0:] = level[i0]
        labels.append(Label("nonfinite", TRAIN, int(steps[j])))
        end_events = j
    if sign:
        values = level + noise + mult
    else:
        values = np.exp(level + noise + mult)
    if end_events < n:
        values[end_events:] = np.nan
    if stratum == "rounded":
        values = np.round(values, 4)
    case = Case(stratum, seed, iv, steps, values, sorted(labels, key=lambda x: x.start),
                noise=noise_kind)
    if stratum in ("dense", "rounded", "sparse", "short") and rng.random() < 0.6 \
            and plan != "diverge":
        case.val = _validation(rng, steps, values, case.labels)
    if stratum in ("dense", "sparse", "rounded") and rng.random() < 0.33:
        case.grad = _grad(rng, steps, case.labels)
    return case


def _validation(rng: np.random.Generator, steps: np.ndarray, train: np.ndarray,
                labels: list[Label]) -> tuple[np.ndarray, np.ndarray]:
    k = int(rng.integers(5, 13))
    idx = np.linspace(len(steps) // (k + 1), len(steps) - 1, k).astype(int)
    vsteps = steps[idx]
    base = np.exp(np.log(1.1) + np.linspace(np.log(2.0), np.log(1.0), k))
    base *= np.exp(rng.normal(0, 0.005, k))
    if rng.random() < 0.5 and not any(lb.kind in ("divergence", "nonfinite") for lb in labels):
        turn = int(rng.integers(1, k - 3))
        up = rng.uniform(0.03, 0.08)
        # overfitting is validation rising while train keeps falling: not after the train
        # loss stepped up for good (a spike that never recovers), when validation rising
        # with it is the run getting worse (then validation keeps falling here, unlabelled)
        if not any(lb.kind == "spike" and lb.recovery == "none" and lb.start >= vsteps[turn]
                   for lb in labels):
            base[turn + 1:] = base[turn] * np.exp(up * np.arange(1, k - turn))
            labels.append(Label("overfitting", VAL, int(vsteps[turn])))
            labels.sort(key=lambda x: x.start)
    return vsteps, np.round(base, 4)


def _grad(rng: np.random.Generator, steps: np.ndarray,
          labels: list[Label]) -> tuple[np.ndarray, np.ndarray]:
    g = np.exp(rng.normal(0, 0.15, steps.shape[0])) * rng.uniform(0.5, 3)
    for lb in labels:
        if lb.kind == "spike":
            g[np.searchsorted(steps, lb.start)] *= rng.uniform(5, 50)
    quiet = [i for i in range(steps.shape[0] // 4, steps.shape[0])
             if not any(abs(int(steps[i]) - lb.start) < 50 * max(1, int(steps[1] - steps[0]))
                        for lb in labels)]
    for i in rng.choice(quiet, size=min(len(quiet), int(rng.integers(0, 4))), replace=False):
        g[i] *= rng.uniform(5, 50)  # a grad blip the loss does not follow
        labels.append(Label("grad_spike", GRAD, int(steps[i]), int(steps[i])))
    labels.sort(key=lambda x: x.start)
    return steps, g


def frame_of(case: Case) -> Any:
    from losslens.frame import build
    from losslens.records import RecordsBuilder

    b = RecordsBuilder()
    b.add_array(TRAIN, case.steps, case.values)
    if case.val is not None:
        b.add_array(VAL, *case.val)
    if case.grad is not None:
        b.add_array(GRAD, *case.grad)
    return build([b.build(f"{case.stratum}-{case.seed}", "indep", "indep")])


def run_losslens(case: Case) -> Case:
    from losslens.pipeline import analyze_frame

    analysis = analyze_frame(frame_of(case))
    case.events = [e for ra in analysis.runs for e in ra.events]
    return case


# -- scoring -----------------------------------------------------------------------------------

@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    right: int = 0
    graded: int = 0

    def f1(self) -> float:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def pr(self) -> tuple[float, float]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        r = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        return p, r


def _neutral(case: Case) -> int:
    starts = [lb.start for lb in case.labels if lb.kind in ("divergence", "nonfinite")]
    return min(starts) if starts else 1 << 62


def grad_only_neutral(case: Case, found: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """A peer's flags without those at a labelled grad-norm blip the loss did not follow:
    OLMo-core's grad half skips such a step by design, and losslens reports it as a
    `grad_spike` (on the grad tag, not scored as a loss spike); in the loss-spike score
    neither counts. Flags that also cover a true loss spike stay."""
    blips = [lb.start for lb in case.labels if lb.kind == "grad_spike"]
    spikes = [lb for lb in case.labels if lb.kind == "spike"]
    last = int(case.steps[-1])
    return [f for f in found
            if not any(f[0] <= b <= f[1] for b in blips)
            or any(f[0] <= (last if lb.end is None else lb.end) and lb.start <= f[1]
                   for lb in spikes)]


def score_spikes(sc: Score, case: Case, found: list[tuple[int, int, str | None]]) -> None:
    last = int(case.steps[-1])
    truth = [lb for lb in case.labels if lb.kind == "spike"]
    used = [False] * len(found)
    for lb in truth:
        t1 = last if lb.end is None else lb.end
        j = next((k for k, (a, b, _) in enumerate(found)
                  if not used[k] and a <= t1 and lb.start <= b), None)
        if j is None:
            sc.fn += 1
            continue
        used[j] = True
        sc.tp += 1
        if found[j][2] is not None:
            sc.graded += 1
            sc.right += found[j][2] == lb.recovery
    neutral = _neutral(case)
    for k, (a, b, _) in enumerate(found):
        if used[k] or a >= neutral:
            continue
        if any(a <= (last if lb.end is None else lb.end) and lb.start <= b for lb in truth):
            continue  # a duplicate of a matched spike
        sc.fp += 1


def score_kind(sc: Score, case: Case, kind: str) -> None:
    last = int(case.steps[-1])
    truth = [lb for lb in case.labels if lb.kind == kind]
    found = [e for e in case.events if e.kind == kind
             and e.tag == (VAL if kind == "overfitting" else TRAIN)]
    used = [False] * len(found)
    span = last - int(case.steps[0])
    for lb in truth:
        if kind == "divergence":
            ok = lambda e: lb.start - 0.1 * span <= e.start_step <= last  # noqa: E731
        elif kind == "nonfinite":
            ok = lambda e: abs(e.start_step - lb.start) <= case.interval  # noqa: E731
        else:
            gap = int(np.median(np.diff(case.val[0]))) if case.val is not None else 0
            ok = lambda e: e.start_step >= lb.start - gap  # noqa: E731
        j = next((k for k, e in enumerate(found) if not used[k] and ok(e)), None)
        if j is None:
            sc.fn += 1
        else:
            used[j] = True
            sc.tp += 1
    sc.fp += sum(not u for u in used)


def _peers() -> dict[str, Any]:
    path = Path(__file__).with_name("quality.py")
    spec = importlib.util.spec_from_file_location("quality_peers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_peers"] = module
    spec.loader.exec_module(module)
    return module


def evaluate(cases: list[Case]) -> dict[str, Any]:
    q = _peers()
    out: dict[str, Any] = {}
    for stratum in STRATA:
        group = [c for c in cases if c.stratum == stratum]
        ours = Score()
        kinds = {k: Score() for k in ("divergence", "nonfinite", "overfitting")}
        for c in group:
            found = [(e.start_step, int(c.steps[-1]) if e.end_step is None else e.end_step,
                      e.recovery) for e in c.events if e.kind == "spike" and e.tag == TRAIN]
            score_spikes(ours, c, found)
            for k, s in kinds.items():
                score_kind(s, c, k)
        peers: dict[str, tuple[Score, Score] | None] = {}
        for name, (rule, warm, ratio) in q.PEER_RULES.items():
            if ratio and stratum == "sign":
                peers[name] = None
                continue
            able = [c for c in group if _can_warm(c, warm)]
            if not able:
                peers[name] = None
                continue
            theirs, mine = Score(), Score()
            for c in able:
                grad = c.grad[1] if c.grad is not None else None
                score_spikes(theirs, c, grad_only_neutral(
                    c, [(a, b, None) for a, b in rule(c.steps, c.values, grad)]))
                score_spikes(mine, c, [(e.start_step, int(c.steps[-1]) if e.end_step is None
                                        else e.end_step, e.recovery) for e in c.events
                                       if e.kind == "spike" and e.tag == TRAIN])
            peers[name] = (theirs, mine, len(able))  # type: ignore[assignment]
        out[stratum] = {"cases": len(group), "spike": ours, "kinds": kinds, "peers": peers}
    return out


def _can_warm(case: Case, warm: int) -> bool:
    spikes = [lb.start for lb in case.labels if lb.kind == "spike"]
    first = min(spikes) if spikes else int(case.steps[-1]) + 1
    return int(np.isfinite(case.values[case.steps < first]).sum()) >= warm


def report(res: dict[str, Any]) -> dict[str, float]:
    total, kinds = Score(), {k: Score() for k in ("divergence", "nonfinite", "overfitting")}
    print(f"{'stratum':<10}{'cases':>6}{'spikes':>7}{'P':>7}{'R':>7}{'F1':>7}{'rec.acc':>8}"
          "   peers (their F1 / losslens F1 on the cases they can run)")
    for stratum, r in res.items():
        s = r["spike"]
        p, rc = s.pr()
        acc = s.right / s.graded if s.graded else float("nan")
        peers = []
        for name, v in r["peers"].items():
            if v is None:
                peers.append(f"{name}: n/a")
            elif v[0].tp + v[0].fn == 0:  # F1 means nothing without a true spike
                peers.append(f"{name}: no spike in its {v[2]} cases (false alarms "
                             f"{v[0].fp}/{v[1].fp})")
            else:
                peers.append(f"{name}: {v[0].f1():.2f}/{v[1].f1():.2f} ({v[2]})")
        print(f"{stratum:<10}{r['cases']:>6}{s.tp + s.fn:>7}{p:>7.3f}{rc:>7.3f}{s.f1():>7.3f}"
              f"{acc:>8.3f}   " + "; ".join(peers))
        for f in ("tp", "fp", "fn", "right", "graded"):
            setattr(total, f, getattr(total, f) + getattr(s, f))
        for k, sc in r["kinds"].items():
            for f in ("tp", "fp", "fn"):
                setattr(kinds[k], f, getattr(kinds[k], f) + getattr(sc, f))
    p, rc = total.pr()
    acc = total.right / total.graded if total.graded else float("nan")
    print(f"{'all':<10}{'':>6}{total.tp + total.fn:>7}{p:>7.3f}{rc:>7.3f}{total.f1():>7.3f}"
          f"{acc:>8.3f}")
    print(f"\n{'kind':<13}{'true':>6}{'tp':>5}{'fp':>5}{'fn':>5}{'prec':>8}{'recall':>8}")
    summary = {"spike_f1": total.f1(), "recovery_acc": acc}
    for k, sc in kinds.items():
        p, rc = sc.pr()
        print(f"{k:<13}{sc.tp + sc.fn:>6}{sc.tp:>5}{sc.fp:>5}{sc.fn:>5}{p:>8.3f}{rc:>8.3f}")
        summary[f"{k}_precision"], summary[f"{k}_recall"] = p, rc
    return summary


def failures(cases: list[Case], limit: int) -> None:
    """Print the runs whose train-loss spikes were missed, false or of the wrong recovery
    class (at most `limit`; 0: all): the run (stratum, index, noise, log interval, points),
    the true spikes (start, end, class) and losslens's (start, end, class, z, threshold)."""
    shown = 0
    print("\nfailing runs: stratum #index noise interval points | fp fn wrong | truth | found")
    for c in cases:
        ev = [e for e in c.events if e.kind == "spike" and e.tag == TRAIN]
        sc = Score()
        score_spikes(sc, c, [(e.start_step, int(c.steps[-1]) if e.end_step is None
                              else e.end_step, e.recovery) for e in ev])
        if not (sc.fp or sc.fn or sc.right < sc.graded):
            continue
        truth = [(lb.start, lb.end, lb.recovery) for lb in c.labels if lb.kind == "spike"]
        found = [(e.start_step, e.end_step, e.recovery, round(float(e.details.get("z", 0)), 1),
                  round(float(e.details.get("threshold", 0)), 1)) for e in ev]
        print(f"{c.stratum} #{c.seed % 100003} {c.noise} {c.interval} {c.steps.shape[0]} | "
              f"{sc.fp} {sc.fn} {sc.graded - sc.right} | {truth} | {found}")
        shown += 1
        if limit and shown >= limit:
            break


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-stratum", type=int, default=60)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--strata", default=",".join(STRATA))
    ap.add_argument("--fails", type=int, default=None,
                    help="print this many failing runs (0: all)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cases = [run_losslens(make_case(s, args.seed * 100003 + i))
             for s in args.strata.split(",") for i in range(args.per_stratum)]
    print(f"{len(cases)} runs of the independent family, seed {args.seed}, "
          f"{args.per_stratum} per stratum ({time.perf_counter() - t0:.0f} s)\n")
    summary = report(evaluate(cases))
    if args.fails is not None:
        failures(cases, args.fails)
    return summary


if __name__ == "__main__":
    main()
