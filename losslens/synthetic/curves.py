"""Labelled synthetic loss curves: the ground truth for detector tests and the quality benchmark.

A curve is a smooth descent (a steep warm-up phase, then a slow drift) over `decades` decades,
with multiplicative (log-normal) noise, logged every `log_every` steps, optionally rounded to a
number of decimals. On top of it: spikes of a given height (peak / pre-spike level) and
recovery class, a divergence (the loss grows 10x every `diverge_over` steps from `diverge_at`,
up to 20x), non-finite values from `nan_at`. `negative=True` gives a sign-changing series
(additive noise and spikes, like an RL policy loss).

Injected events are snapped to the first logged step at or after their step, so the truth is
what the logged series can show. Spike shapes are linear in log space: the excess ramps up over
`rise_steps`, then falls from log(height) to 0 over `recovery_steps` (or to log(settle) for a
spike injected as never recovering; drawn settles stay between 1.15x and 3x, or +0.15 and +0.5
for sign-changing series, since a loss stuck 4x above its best is a divergence). The truth's end and recovery class follow the detector's
definition on the noiseless curve: the first logged point after the peak back at the level the
curve would have had at the spike's start without it (a curve that keeps descending can bring
a "settled higher" spike back: its truth is then `slow`, `details.injected` says `none`).

`make_run` assembles a losslens Frame (Megatron-style tags: `lm loss`, `grad norm`, optional
`loss scale`, `number of skipped iterations`, `lm loss validation`) with grad-norm spikes that
lead the loss spikes by `grad_lag` steps, and fp16 overflow bursts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..frame import Frame

RECOVERY_CLASSES = ("fast", "slow", "none")


@dataclass(frozen=True)
class Spike:
    """A spike to inject. `recovery_steps` and `settle` are drawn from the seed when None."""

    step: int
    height: float = 3.0
    recovery: str = "fast"
    recovery_steps: int | None = None  # back after this many steps; for "none": settle time
    settle: float | None = None  # "none": the new level as a ratio of the old one
    rise_steps: int = 0  # the excess ramps up over this many steps before the peak


@dataclass(frozen=True)
class Truth:
    """One labelled event, in the same terms as losslens.events.Event."""

    kind: str
    start_step: int
    tag: str = "lm loss"
    peak_step: int | None = None
    end_step: int | None = None
    recovery: str | None = None
    magnitude: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def log_steps(n_steps: int, log_every: int) -> np.ndarray:
    return np.arange(log_every, n_steps + 1, log_every, dtype=np.int64)


def _snap(steps: np.ndarray, step: int) -> int | None:
    i = int(np.searchsorted(steps, step))
    return int(steps[i]) if i < steps.shape[0] else None


def _shape(n_steps: int, steps: np.ndarray, warmup: int) -> np.ndarray:
    """Descent from 1 to 0: 70 % in a steep warm-up phase, the rest as a slow drift."""
    t = steps.astype(float)
    drift = (1 - t / (n_steps + 1)) ** 1.5
    if warmup <= 0:
        return drift
    return 0.7 * np.exp(-t / warmup) + 0.3 * drift


def _draw_recovery(spike: Spike, rng: np.random.Generator, log_every: int) -> int:
    if spike.recovery_steps is not None:
        return int(spike.recovery_steps)
    if spike.recovery == "fast":
        return int(rng.integers(max(1, log_every), max(log_every, 150) + 1))
    if spike.recovery == "slow":
        lo = max(600, 3 * log_every)
        return int(rng.integers(lo, max(lo + 1, 3000)))
    return int(rng.integers(max(1, log_every), max(log_every, 300) + 1))


def _settle(spike: Spike, rng: np.random.Generator, noise: float, negative: bool) -> float:
    """The excess a non-recovering spike settles at, in log units (or additive units)."""
    full = spike.height - 1 if negative else np.log(spike.height)
    if spike.settle is not None:
        return spike.settle - 1 if negative else float(np.log(spike.settle))
    lo = max(0.15 if negative else np.log(1.15), 8 * noise)
    cap = 0.5 if negative else np.log(3)  # higher and flat is a dead run: a divergence
    return float(min(max(rng.uniform(0.2, 0.5) * full, lo), 0.8 * full, cap))


def _spike_excess(steps: np.ndarray, s0: int, spike: Spike, recov: int,
                  settle: float, negative: bool) -> np.ndarray:
    """The spike's excess (log units, or additive): a ramp over `rise_steps`, then a linear
    decay to 0 over `recov` steps (to `settle` for spikes that never recover)."""
    full = spike.height - 1 if negative else np.log(spike.height)
    peak = s0 + spike.rise_steps
    dt = (steps - peak).astype(float)
    floor = settle if spike.recovery == "none" else 0.0
    decay = floor + (full - floor) * np.clip(1 - dt / max(recov, 1), 0, 1)
    ramp = full * (steps - s0 + 1) / (spike.rise_steps + 1)
    return np.where(steps < s0, 0.0, np.where(steps < peak, ramp, decay))


def _spike_truth(steps: np.ndarray, s0: int, spike: Spike, recov: int, clean: np.ndarray,
                 own: np.ndarray, stop: int, fast_within: int = 250) -> Truth:
    """End = first logged point after the peak where the noiseless curve is back at the
    noiseless level it would have had at the start without this spike (as the detector
    defines it); recovery class from that, with the detector's `fast_within` rule."""
    i0 = int(np.searchsorted(steps, s0))
    ip = min(max(i0, int(np.searchsorted(steps, s0 + spike.rise_steps))), steps.shape[0] - 1)
    pre = clean[i0] - own[i0]
    back = np.flatnonzero(clean[ip + 1:stop] <= pre + 1e-12)
    if back.shape[0] == 0:
        end, recovery = None, "none"
    else:
        end = int(steps[ip + 1 + back[0]])
        interval = int(steps[i0] - steps[i0 - 1]) if i0 > 0 else 0
        recovery = "fast" if end - s0 <= max(fast_within, interval) else "slow"
    return Truth("spike", s0, peak_step=int(steps[ip]), end_step=end, recovery=recovery,
                 magnitude=float(spike.height),
                 details={"recovery_steps": recov, "injected": spike.recovery})


def make_curve(n_steps: int, *, seed: int = 0, noise: float = 0.01, log_every: int = 1,
               warmup: int | None = None, spikes: Sequence[Spike] = (),
               diverge_at: int | None = None, diverge_over: int | None = None,
               nan_at: int | None = None, decades: float = 0.6, start: float = 10.0,
               rounding: int | None = None, negative: bool = False,
               heavy_tail: float | None = None) -> tuple[np.ndarray, np.ndarray, list[Truth]]:
    """One labelled loss curve: (steps, values, truth records sorted by start step)."""
    rng = np.random.default_rng(seed)
    steps = log_steps(n_steps, log_every)
    warm = n_steps // 50 if warmup is None else warmup
    shape = _shape(n_steps, steps, warm)
    eps = (rng.standard_t(heavy_tail, steps.shape[0]) * np.sqrt((heavy_tail - 2) / heavy_tail)
           if heavy_tail else rng.standard_normal(steps.shape[0]))
    clean = (1.5 * shape - 0.5) if negative else \
        np.log(start) - decades * np.log(10) * (1 - shape)
    placed = []
    for spike in spikes:
        s0 = _snap(steps, spike.step)
        if s0 is None:
            continue
        recov = _draw_recovery(spike, rng, log_every)
        own = _spike_excess(steps, s0, spike, recov, _settle(spike, rng, noise, negative),
                            negative)
        clean = clean + own
        placed.append((s0, spike, recov, own))
    truth: list[Truth] = []
    if diverge_at is not None and (d0 := _snap(steps, diverge_at)) is not None:
        over = diverge_over or int(rng.integers(300, 3000))
        rate = (5.0 if negative else np.log(10)) / over
        clean = clean + np.clip((steps - d0) * rate, 0, 10.0 if negative else np.log(20))
        truth.append(Truth("divergence", d0, end_step=int(steps[-1]), details={"over": over}))
    stop = steps.shape[0] if nan_at is None else int(np.searchsorted(steps, nan_at))
    truth += [_spike_truth(steps, s0, spike, recov, clean, own, stop)
              for s0, spike, recov, own in placed]
    values = clean + noise * eps if negative else np.exp(clean + noise * eps)
    if rounding is not None:
        values = np.round(values, rounding)
    truth.extend(_nan_truth(steps, values, nan_at, diverge_at))
    return steps, values, sorted(truth, key=lambda t: (t.start_step, t.kind))


def _nan_truth(steps: np.ndarray, values: np.ndarray, nan_at: int | None,
               diverge_at: int | None) -> list[Truth]:
    if nan_at is None or (n0 := _snap(steps, nan_at)) is None:
        return []
    first = int(np.searchsorted(steps, n0))
    values[first:] = np.nan
    values[first::7] = np.inf  # some trainers print inf, most nan
    # NaN out of a steady descent is a non-finite loss, not a divergence: nothing rose
    return [Truth("nonfinite", n0, end_step=int(steps[-1]))]


# -- a whole run: loss, grad norm, fp16 loss scale, validation ------------------------------

TAGS = {"loss": "lm loss", "grad": "grad norm", "scale": "loss scale",
        "skipped": "number of skipped iterations", "val": "lm loss validation"}


@dataclass(frozen=True)
class SyntheticRun:
    """A Frame with one run and the truth of what was injected into it."""

    frame: "Frame"
    truth: list[Truth]


def make_run(n_steps: int, *, seed: int = 0, log_every: int = 1, grad_lag: int = 0,
             grad_only: Sequence[int] = (), overflows: Sequence[int] = (),
             loss_scale: bool = False, val_every: int | None = None, run: str = "synthetic",
             burst_gap: int = 200, **curve: Any) -> SyntheticRun:
    """Train loss (`make_curve(**curve)`), grad norm with spikes leading the loss spikes by
    `grad_lag` steps (and `grad_only` spikes the loss does not follow), optional fp16 loss
    scale and skipped-iteration counter with overflows at `overflows`, optional validation."""
    from ..frame import build
    from ..records import RecordsBuilder

    steps, loss, truth = make_curve(n_steps, seed=seed, log_every=log_every, **curve)
    rng = np.random.default_rng(seed + 7919)
    b = RecordsBuilder()
    b.add_array(TAGS["loss"], steps, loss)
    grad, grad_truth = _grad_norm(steps, loss, truth, rng, grad_lag, grad_only, curve, n_steps)
    b.add_array(TAGS["grad"], steps, grad)
    truth = truth + grad_truth
    if loss_scale or overflows:
        scale, skipped = _loss_scale(steps, np.sort(np.asarray(overflows, dtype=np.int64)))
        b.add_array(TAGS["scale"], steps, scale)
        b.add_array(TAGS["skipped"], steps, skipped)
        truth += _overflow_truth(steps, overflows, burst_gap)
    if val_every:
        vsteps, vals, _ = make_curve(n_steps, seed=seed, log_every=val_every,
                                     **{**curve, "noise": curve.get("noise", 0.01) / 4})
        b.add_array(TAGS["val"], vsteps, vals * 1.05)
    frame = build([b.build(run, "synthetic", "synthetic")])
    return SyntheticRun(frame, sorted(truth, key=lambda t: (t.start_step, t.kind)))


def make_frame(n_steps: int, **kwargs: Any) -> "Frame":
    """`make_run(...).frame`."""
    return make_run(n_steps, **kwargs).frame


def _grad_norm(steps: np.ndarray, loss: np.ndarray, truth: list[Truth],
               rng: np.random.Generator, lag: int, grad_only: Sequence[int],
               curve: dict[str, Any], n_steps: int) -> tuple[np.ndarray, list[Truth]]:
    warm = curve.get("warmup")
    warm = n_steps // 50 if warm is None else warm
    t = steps.astype(float)
    g = np.log(0.25) + np.log1p(8 * np.exp(-t / max(warm / 2, 1)))
    g = g + max(2 * curve.get("noise", 0.01), 0.03) * rng.standard_normal(steps.shape[0])
    out: list[Truth] = []
    sources = [(s.start_step - lag, s.start_step) for s in truth if s.kind == "spike"]
    sources += [(int(x), None) for x in grad_only]
    for at, loss_step in sources:
        g0 = _snap(steps, at)
        if g0 is None:
            continue
        height = float(rng.uniform(3, 10))
        dt = (steps - g0).astype(float)
        width = max(int(steps[1] - steps[0]) if steps.shape[0] > 1 else 1, 10)
        g += np.where(dt >= 0, np.log(height) * np.clip(1 - dt / width, 0, 1), 0.0)
        details = {"loss_followed": loss_step is not None}
        if loss_step is not None:
            details["lag_steps"] = int(loss_step - g0)
        out.append(Truth("grad_spike", g0, tag=TAGS["grad"], peak_step=g0,
                         magnitude=height, details=details))
    finite = np.isfinite(loss)
    if finite.any() and (loss[finite] > 0).all():  # the grad norm grows with a divergence
        rise = np.clip(np.log(np.where(finite, loss, 1.0) / loss[finite].min()), 0, None)
        for d in truth:
            if d.kind == "divergence":
                g += np.where(steps >= d.start_step, rise, 0.0)
    g = np.exp(g)
    g[~np.isfinite(loss)] = np.nan
    return g, out


def _loss_scale(steps: np.ndarray, overflows: np.ndarray,
                initial: float = 2.0 ** 16, growth: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """A dynamic loss scaler: halves at each overflow, doubles after `growth` clean steps."""
    after, last, scale = [], 0, initial
    for o in overflows.tolist():
        scale = min(scale * 2.0 ** ((o - last) // growth), 2.0 ** 24) / 2
        after.append(scale)
        last = o
    k = np.searchsorted(overflows, steps, side="right")  # overflows at or before each step
    base = np.where(k > 0, np.asarray([initial] + after)[k], initial)
    since = np.where(k > 0, overflows[np.maximum(k - 1, 0)], 0)
    scale = np.minimum(base * 2.0 ** ((steps - since) // growth), 2.0 ** 24)
    edges = np.concatenate(([0], steps))
    skipped = np.diff(np.searchsorted(overflows, edges, side="right"))
    return scale, skipped.astype(float)


def _overflow_truth(steps: np.ndarray, overflows: Sequence[int], gap: int) -> list[Truth]:
    """Bursts as the log shows them: overflows snapped to the logged step that reports them,
    logged steps at most `gap` apart in one burst."""
    o = np.sort(np.asarray(overflows, dtype=np.int64))
    i = np.searchsorted(steps, o)
    seen = steps[i[i < steps.shape[0]]]
    if seen.shape[0] == 0:
        return []
    out = []
    for part in np.split(seen, np.flatnonzero(np.diff(seen) > gap) + 1):
        out.append(Truth("overflow", int(part[0]), tag=TAGS["scale"], end_step=int(part[-1]),
                         magnitude=float(part.shape[0])))
    return out
