"""The spike streams' incremental path (`SpikeStream.quiet`): an update whose new points the
trailing statistic flags nowhere, and that no earlier spike reaches, keeps the events without
judging the window again. Fed in small chunks (a guard's window updates), long series with
spikes that recover, settle higher (back by the share rule of log space long before they are
back within their band), never come back, and heavy-tailed noise whose large excursions sit
on a spike's shoulders: after every chunk the events equal the batch detectors' on that
prefix, and most updates took the incremental path."""
from __future__ import annotations

import random

import numpy as np
import pytest

from losslens.analysis import detect_run
from losslens.frame import build
from losslens.detectors.stream import LiveRun
from losslens.records import RecordsBuilder

KINDS = ["spike", "grad_spike"]


def comparable(e) -> dict:
    d = e.to_dict()
    d.pop("id")
    return d


def run_series(seed: int, n: int):
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    steps = np.arange(1, n + 1)
    loss = 2.0 + 6.0 * np.exp(-steps / (n / 8))
    if seed % 3 == 0:  # heavy-tailed per-batch noise (Student t, 3 degrees of freedom)
        loss *= np.exp(0.02 * rng.standard_t(3, n))
    else:
        loss *= np.exp(rng.normal(0, 0.02, n))
    for _ in range(r.randint(2, 5)):
        at, width = r.randrange(200, n - 50), r.choice([1, 2, 3, 30, 200])
        loss[at:at + width] *= r.choice([1.5, 2.0, 4.0])
    if seed % 2:  # a x60 spike that settles 8 % higher: back by the share rule
        at = r.randrange(n // 3, 2 * n // 3)
        loss[at:at + 4] *= 60.0
        loss[at + 4:] *= 1.08
    grad = np.exp(rng.normal(0, 0.1, n))
    for _ in range(r.randint(1, 3)):
        grad[r.randrange(200, n):][:2] *= r.choice([3.0, 10.0])
    return steps, loss, grad


def batch(steps, loss, grad, hi):
    b = RecordsBuilder()
    for i in range(hi):
        b.add("lm loss", int(steps[i]), float(loss[i]), order=i)
        b.add("grad norm", int(steps[i]), float(grad[i]), order=i)
    frame = build([b.build("run", "mem", "test")])
    return [comparable(e) for e in detect_run(frame, frame.runs[0], KINDS)]


@pytest.mark.parametrize("seed", range(6))
def test_quiet_updates_equal_batch_on_every_prefix(seed):
    n = 3200
    steps, loss, grad = run_series(seed, n)
    live = LiveRun("run", detectors=KINDS, source="mem", format="test")
    rnd = random.Random(seed)
    lo = 0
    while lo < n:
        hi = min(n, lo + rnd.choice([1, 7, 48, 48, 50, 120]))
        live.add("lm loss", steps[lo:hi], loss[lo:hi])
        live.add("grad norm", steps[lo:hi], grad[lo:hi])
        got = [comparable(e) for e in live.detect()]
        lo = hi
        if lo > 1000 and rnd.random() < 0.25 or lo == n:
            assert got == batch(steps, loss, grad, lo), f"seed {seed}, after {lo}"
    spike, grad = live.streams.streams[0], live.streams.streams[1]
    assert (spike.kind, grad.kind) == ("spike", "grad_spike")
    # the incremental path ran (after each spike the window is judged again for a few updates)
    assert spike.quiet_updates >= 10 and grad.grad.quiet_updates >= 10


@pytest.mark.parametrize("shape", ["signed", "floor"])
def test_quiet_updates_in_additive_space_equal_batch(shape):
    """A loss that changes sign (judged additively from its first value <= 0, with the hump
    predictor) and one that falls to a floor near 0 (additive from there, each spike
    confirmed in log space: LogCheck): the incremental path runs there too, and the events
    stay the batch detector's."""
    n = 3000
    rng = np.random.default_rng(7)
    steps = np.arange(1, n + 1)
    if shape == "signed":
        loss = 0.5 * np.exp(-steps / 400) - 0.1 + rng.normal(0, 0.02, n)
        loss[[900, 1800, 2500]] += [0.4, 0.3, 0.5]
    else:
        loss = 3.0 * np.exp(-steps / 150) + 1e-3 * np.exp(rng.normal(0, 0.3, n))
        loss[[1200, 2200]] *= 50.0
    grad = np.exp(rng.normal(0, 0.1, n))
    live = LiveRun("run", detectors=KINDS, source="mem", format="test")
    for lo in range(0, n, 48):
        live.add("lm loss", steps[lo:lo + 48], loss[lo:lo + 48])
        live.add("grad norm", steps[lo:lo + 48], grad[lo:lo + 48])
        got = [comparable(e) for e in live.detect()]
        if lo % 480 == 0 or lo + 48 >= n:
            assert got == batch(steps, loss, grad, min(n, lo + 48)), f"{shape}, after {lo}"
    spike = live.streams.streams[0]
    assert spike.quiet_updates >= 20
    assert {e["start_step"] for e in got if e["kind"] == "spike"} >= (
        {901, 1801, 2501} if shape == "signed" else {1201, 2201})


def test_short_series_divergence_runs_only_once_a_level_rose():
    """A series logged every step is "short" for divergence for its first 8,000 points (the
    sustain span grows with it): the stream skips the detector while no level has risen
    x rise_ratio over the best (it finds nothing then) and runs it on every update after;
    the events are the batch detector's at every prefix, the divergence found as there."""
    n = 3000
    rng = np.random.default_rng(3)
    steps = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-steps / 300)) * np.exp(rng.normal(0, 0.02, n))
    loss[2000:] *= np.exp(np.linspace(0, 2.5, n - 2000))
    live = LiveRun("run", detectors=["divergence"], source="mem", format="test")
    rose_at = None
    for lo in range(0, n, 48):
        live.add("lm loss", steps[lo:lo + 48], loss[lo:lo + 48])
        got = [comparable(e) for e in live.detect()]
        memo = live.memo[("divergence", "lm loss")]
        if rose_at is None and memo.get("rose"):
            rose_at = lo
        if lo % 240 == 0 or lo + 48 >= n:
            b = RecordsBuilder()
            for i in range(min(n, lo + 48)):
                b.add("lm loss", int(steps[i]), float(loss[i]), order=i)
            frame = build([b.build("run", "mem", "test")])
            want = [comparable(e) for e in detect_run(frame, frame.runs[0], ["divergence"])]
            assert got == want, f"after {lo}"
    assert rose_at is not None and 2000 <= rose_at < 2400  # skipped for ~1,800 points before
    assert [e["kind"] for e in got] == ["divergence"] and 2000 <= got[0]["start_step"] <= 2300


@pytest.mark.parametrize("keep_upto", [262_144, 1_000])
def test_divergence_reruns_keep_their_medians_and_equal_batch(keep_upto, monkeypatch):
    """Divergence run again on every update once a level rose: its level and noise medians
    are kept between the reruns (`filters.KeptMedians`, answering from the kept prefix) up
    to `KEEP_UPTO` points, not beyond; the events are the batch detector's either way."""
    from losslens.detectors.stream_misc import DivergenceStream

    monkeypatch.setattr(DivergenceStream, "KEEP_UPTO", keep_upto)
    n = 2600
    rng = np.random.default_rng(4)
    steps = np.arange(1, n + 1)
    loss = (2 + 3 * np.exp(-steps / 300)) * np.exp(rng.normal(0, 0.02, n))
    loss[1800:] *= np.exp(np.linspace(0, 2.5, n - 1800))
    live = LiveRun("run", detectors=["divergence"], source="mem", format="test")
    for lo in range(0, n, 48):
        live.add("lm loss", steps[lo:lo + 48], loss[lo:lo + 48])
        got = [comparable(e) for e in live.detect()]
    b = RecordsBuilder()
    for i in range(n):
        b.add("lm loss", int(steps[i]), float(loss[i]), order=i)
    frame = build([b.build("run", "mem", "test")])
    assert got == [comparable(e) for e in detect_run(frame, frame.runs[0], ["divergence"])]
    assert [e["kind"] for e in got] == ["divergence"]
    kept = live.memo[("divergence", "lm loss")].get("medians")
    if keep_upto > n:
        assert kept is not None and kept.hits > 10 and len(kept.entries) <= 4
    else:
        assert kept is None


@pytest.mark.parametrize("seed", range(3))
def test_switch_to_additive_space_is_the_batch_detectors_on_every_prefix(seed, monkeypatch):
    """A loss falling to a floor near 0, fed in chunks of 48: where the stream judges it
    additively from (`SpikeStream._switch`, which rules the new points out cheaply where
    their kept levels stand far above any noise they can have: `_far`) is where
    `SpikeDetector.near_zero` puts it on every prefix; the cheap rule decided most updates
    before the switch and none after it."""
    from losslens.detectors.spike import SpikeDetector
    from losslens.detectors.spike_stats import baseline
    from losslens.detectors.stream_spike import SpikeStream

    calls = []
    far = SpikeStream._far

    def counted(self, *a):
        calls.append(far(self, *a))
        return calls[-1]
    monkeypatch.setattr(SpikeStream, "_far", counted)
    n = 2400
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    floor = [1e-3, 3e-3, 1e-2][seed]
    loss = 3.0 * np.exp(-steps / (120 + 60 * seed)) + floor * np.exp(rng.normal(0, 0.3, n))
    det = SpikeDetector()
    w, lw = det.window | 1, det.level_window | 1
    live = LiveRun("run", detectors=["spike"], source="mem", format="test")
    key = (f"switch-{w}-{lw}-{det.min_points}", "lm loss")
    switched = []
    for lo in range(0, n, 48):
        live.add("lm loss", steps[lo:lo + 48], loss[lo:lo + 48])
        live.detect()
        v = loss[:lo + 48]
        want = det.near_zero(v, baseline(v, w, True, level_window=lw), w)
        k = live.memo[key]["k"]
        assert (len(v) if k is None else k) == want, f"seed {seed}, after {lo + 48}"
        switched.append(k is not None)
    assert switched[-1] and not switched[5]  # it does switch, late enough to be ruled out
    first = switched.index(True)
    assert sum(calls[:first]) >= first // 2 and not any(calls[first + 1:])


@pytest.mark.parametrize("seed", range(4))
def test_flagged_equals_the_mask_with_the_tail_threshold(seed):
    """`SpikeDetector.flagged` tries the plain threshold first and counts the tail only
    where a point clears it: its mask is the one with the tail-raised threshold, on
    heavy-tailed noise (raised thresholds), spikes, humps over a few points, log and
    additive space."""
    from losslens.detectors.spike import SpikeDetector
    from losslens.detectors.spike_stats import baseline

    rng = np.random.default_rng(seed)
    det = SpikeDetector()
    n = 2500
    v = 2.0 + np.exp(-np.arange(n) / 300.0)
    v = v * np.exp(0.03 * rng.standard_t(3 if seed % 2 else 30, n))
    for at in rng.integers(50, n - 10, 12):
        v[at:at + int(rng.integers(1, 5))] *= float(rng.choice([1.1, 1.3, 2.0, 5.0]))
    log = seed < 2
    base = baseline(v if log else v - 2.2, det.window | 1, log, level_window=15)
    seen = 0
    for a in list(range(10, 400, 13)) + list(range(1100, n - 50, 47)):
        b = a + 50
        a1 = max(0, a - 131)
        want = det._elevated(base.y[a:b], base.level[a:b], base.scale[a:b], base.count[a:b],
                             det._tail_threshold(base, det._tail_big(base), a, b), log, a,
                             tuple(x[a - a1:] for x in det._back(
                                 base.y, base.level, base.scale, a1, b, a1 < 258)),
                             (base.y[:b], a))
        got = det.flagged(base, a, b, 0)
        np.testing.assert_array_equal(got, want, err_msg=f"seed {seed}, {a}..{b}")
        seen += int(want.any())
    assert seen >= 3  # (some windows flag a point: both paths are compared)


def _flagged_with_the_tail(det, base, a, b):
    """`SpikeDetector.flagged` as it was before its plain-threshold screen."""
    a1 = max(0, a - (det.window | 1) - 2)
    back = tuple(x[a - a1:] for x in det._back(base.y, base.level, base.scale, a1, b,
                                                a1 < 2 * (det.window | 1)))
    return det._elevated(base.y[a:b], base.level[a:b], base.scale[a:b], base.count[a:b],
                         det._tail_threshold(base, det._tail_big(base), a, b), base.log, a,
                         back, (base.y[:b], a))


@pytest.mark.parametrize("kind", ["lone", "pair"])
def test_flagged_screen_keeps_the_lone_and_pair_rules(kind):
    """The screen's own versions of the two-sided lone-point rule (a sparse short run:
    spike_lone) and of two points up in a row (PAIR): windows of 1-12 points over curves
    where those rules flag spikes the others do not; the mask is the full one's."""
    from losslens.detectors.spike import SpikeDetector
    from losslens.detectors.spike_stats import baseline

    det = SpikeDetector()
    flagged = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        if kind == "lone":  # every 500 steps, a power-law fall, x1.3 at point 50
            t = np.arange(1, 91) * 500
            y = np.log(0.8 + 6 * (1 + t / 4000) ** -0.8) + 0.03 * rng.normal(0, 1, 90)
            y[50] += np.log(1.3)
        else:  # 6 % noise, x1.5 then x1.4 then x1.2 from point 200
            t = np.arange(400, dtype=float)
            y = np.log(4.0 + 2.0 * np.exp(-t / 80)) + rng.normal(0, 0.06, 400)
            y[200:203] += (0.40, 0.33, 0.2)
        base = baseline(np.exp(y), det.window | 1, True, level_window=det.level_window | 1)
        for a in range(10, y.shape[0] - 1, 3):
            for b in (a + 1, a + 4, a + 12):
                b = min(b, y.shape[0])
                want = _flagged_with_the_tail(det, base, a, b)
                np.testing.assert_array_equal(det.flagged(base, a, b, 0), want,
                                              err_msg=f"{kind}, seed {seed}, {a}..{b}")
                flagged += int(want.any())
    assert flagged >= 20


def _find_back_reference(y, start, band, points, pre=None, share=0.0):
    """`find_back` by its definition, point by point."""
    n = y.shape[0]
    top = float(y[start - 1]) if start >= 1 else -np.inf
    for t in range(start, n):
        top = max(top, float(y[t]))
        b = band if not (share > 0 and pre is not None) else max(band, pre + share * (top - pre))
        if not y[t] <= b:
            continue
        m = min(points, n - t)
        cnt = int((y[t:t + points] <= b).sum())
        nxt = (t + 1 < n and bool(y[t + 1] <= b)) if points > 1 else True
        if cnt >= (m + 1) // 2 or nxt:
            return t
    return None


@pytest.mark.parametrize("seed", range(4))
def test_find_back_equals_its_definition(seed):
    """`spike_stats.find_back` (chunks of 256, 1,024, ...; a chunk with no point under its
    band is passed over whole) finds the return the definition does: with and without the
    share rule, returns in the first chunk, in a later one, right at a chunk's end, never."""
    from losslens.detectors.spike_stats import find_back

    rng = np.random.default_rng(seed)
    for _ in range(60):
        n = int(rng.integers(2, 3000))
        y = np.cumsum(rng.normal(0, 0.05, n)) + 3.0
        at = int(rng.integers(0, n))
        y[at:at + int(rng.integers(1, 400))] += float(rng.choice([0.5, 2.0]))
        start = int(rng.integers(0, n))
        band = float(np.quantile(y, rng.choice([0.01, 0.2, 0.5])))
        for points in (1, 3, 5):
            for pre, share in ((None, 0.0), (band - 0.3, 0.05)):
                got = find_back(y, start, band, points, pre, share)
                assert got == _find_back_reference(y, start, band, points, pre, share), (
                    seed, n, start, band, points, share)
