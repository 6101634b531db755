"""The detectors' streaming form: random series fed in random chunkings give, after every
chunk, the events the batch detectors find on that prefix (losslens.detectors.stream)."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np
import pytest

from losslens.analysis import detect_run
from losslens.detectors import DETECTORS, detector_class
from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.spike import SpikeDetector
from losslens.detectors.stream import STREAMS, LiveRun, stream_for
from losslens.detectors.stream_misc import RunStream, WholeSeriesStream
from losslens.frame import build
from losslens.records import RecordsBuilder, RunRecords

CAUSAL = sorted(n for n in DETECTORS if getattr(detector_class(n), "causal", False))
SHARED = ("shared_with", "isolated", "all_losses")  # compare losses over time: not streamed


def comparable(e) -> dict:
    d = e.to_dict()
    d.pop("id")
    d["details"] = {k: v for k, v in d["details"].items() if k not in SHARED}
    return d


def random_run(seed: int, n: int) -> RunRecords:
    """A loss (decaying, log-normal noise) with fast / slow / never-recovering spikes, a NaN
    burst, a grad norm with spikes of its own, an fp16 loss scale with overflow drops, a
    cumulative skipped counter, and (some seeds) a resume that goes back in steps."""
    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    steps = np.arange(1, n + 1)
    loss = 2.0 + 6.0 * np.exp(-steps / (n / 6))
    loss *= np.exp(rng.normal(0, 0.02, n))
    for _ in range(r.randint(1, 4)):
        at, width = r.randrange(50, n - 20), r.choice([1, 3, 40, 400, n])
        loss[at:at + width] *= r.choice([1.6, 2.5, 4.0])
    if r.random() < 0.5:
        at = r.randrange(100, n - 10)
        loss[at:at + r.randint(1, 5)] = np.nan
    if r.random() < 0.3:  # a divergence: the loss climbs and stays up
        at = r.randrange(n // 2, n - 50)
        loss[at:] *= np.exp(np.linspace(0, 2.0, n - at))
    grad = np.exp(rng.normal(0, 0.1, n))
    for _ in range(r.randint(0, 3)):
        grad[r.randrange(20, n)] *= r.choice([3.0, 10.0])
    scale = np.full(n, 65536.0)
    skipped = np.zeros(n)
    for _ in range(r.randint(0, 3)):
        at = r.randrange(10, n)
        scale[at:] /= 2
        skipped[at:] += 1
    b = RecordsBuilder()
    order = 0
    writes = list(range(n))
    if r.random() < 0.4:  # a resume from an earlier step: steps written again
        back = r.randrange(n // 3, 2 * n // 3)
        writes = writes[:back + r.randint(50, 300)] + writes[back:]
    for pos, i in enumerate(writes):
        if pos and i < writes[pos - 1] and r.random() < 0.5:
            b.header(order)
        for tag, v in (("lm loss", loss[i]), ("grad norm", grad[i]),
                       ("loss scale", scale[i]), ("skipped iterations", skipped[i])):
            b.add(tag, int(steps[i]), float(v), order=order)
        order += 1
    return b.build("run", "mem", "test")


def prefix(rec: RunRecords, lo: int, hi: int) -> RunRecords:
    """The points with lo <= order < hi, and the headers in that range."""
    keep = (rec.order >= lo) & (rec.order < hi)
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep], headers=tuple(h for h in rec.headers if lo <= h < hi))


def batch(rec: RunRecords, hi: int) -> list[dict]:
    part = prefix(rec, 0, hi)
    frame = build([part])
    return [comparable(e) for e in detect_run(frame, frame.runs[0], CAUSAL)]


@pytest.mark.parametrize("seed", range(6))
def test_random_chunkings_equal_batch_on_every_prefix(seed):
    n = 2600 if seed % 2 else 900  # longer than the spike horizon: the windowed path runs
    rec = random_run(seed, n)
    end = int(rec.order.max()) + 1
    rnd = random.Random(100 + seed)
    live = LiveRun("run", detectors=CAUSAL, source="mem", format="test")
    lo, checked = 0, 0
    while lo < end:
        hi = min(end, lo + min(end // 3, rnd.choice([1, 2, 13, 90, 400, 1100])))
        live.feed(prefix(rec, lo, hi))
        got = [comparable(e) for e in live.detect()]
        lo = hi
        assert got == batch(rec, lo), f"seed {seed}, after order {lo}"
        checked += 1
    assert checked >= 3


def test_add_point_by_point_equals_batch():
    """`add` (tag by tag, as a training loop has them) gives the batch events too."""
    rec = random_run(3, 700)
    live = LiveRun("run", detectors=CAUSAL)
    end = int(rec.order.max()) + 1
    for o in range(end):
        keep = rec.order == o
        for code, step, value in zip(rec.tag_code[keep], rec.step[keep], rec.value[keep]):
            live.add(rec.tags[int(code)], [step], [value])
        if o % 97 == 0:
            live.detect()
    got = [comparable(e) for e in live.detect()]
    frame = build([rec])
    want = [comparable(e) for e in detect_run(frame, frame.runs[0], CAUSAL)]
    assert [(e["kind"], e["start_step"]) for e in got] == [(e["kind"], e["start_step"])
                                                          for e in want]
    assert got == want


def test_spike_is_revised_when_its_recovery_becomes_known():
    """A spike is first seen open (critical, not back), then revised to fast when it is back."""
    steps = np.arange(1, 601)
    values = 3.0 * np.exp(np.random.default_rng(0).normal(0, 0.01, 600))
    values[400:406] *= 2.5
    live = LiveRun("run", detectors=[SpikeDetector()], roles={"loss": "train_loss"})
    live.add("loss", steps[:402], values[:402])
    first = live.update()
    assert [(e.kind, e.start_step, e.recovery, e.end_step) for e in first.new] == [
        ("spike", 401, "none", None)]
    assert first.new[0].severity == "critical"
    live.add("loss", steps[402:], values[402:])
    second = live.update()
    assert second.new == [] and second.withdrawn == []
    assert [(e.start_step, e.recovery, e.end_step, e.severity) for e in second.revised] == [
        (401, "fast", 407, "info")]
    assert live.update().revised == []  # nothing new: nothing revised


def test_rewritten_points_withdraw_an_event():
    steps = np.arange(1, 301)
    values = np.linspace(3.0, 2.0, 300)
    values[200:203] = math.nan
    live = LiveRun("run", detectors=["nonfinite"], roles={"loss": "train_loss"})
    live.add("loss", steps, values)
    assert [e.kind for e in live.update().new] == ["nonfinite"]
    live.add("loss", steps[190:], np.linspace(2.3, 2.0, 110))  # a resume rewrites them
    rev = live.update()
    assert [e.kind for e in rev.withdrawn] == ["nonfinite"] and rev.events == []


def test_every_causal_detector_has_its_own_stream():
    assert sorted(STREAMS) == CAUSAL
    for name in CAUSAL:
        stream = stream_for(detector_class(name)())
        assert not isinstance(stream, WholeSeriesStream), name
        assert stream.kind == name


def test_detector_without_a_stream_is_rerun_whole_and_custom_stream_is_used():
    @dataclass(frozen=True)
    class Sub(DivergenceDetector):  # another class: the registered stream may not fit it
        pass

    # (the divergence detector is run scope: its run stage reads train and validation)
    assert isinstance(stream_for(Sub()), RunStream)

    class Own:
        scope, roles, causal, kind = "series", ("train_loss",), True, "mine"

        def validate(self):
            pass

        def stream(self):
            return "its own"

    assert stream_for(Own()) == "its own"


@pytest.mark.parametrize("seed", range(4))
def test_baseline_cache_equals_the_whole_prefix_bit_for_bit(seed):
    """The spike statistic's baselines kept point by point (`BaselineCache`) are those of
    `spike.baseline` on the whole prefix, in log space and additively, after every chunk
    (appends, a rewrite going back in steps, NaN, a value <= 0 in some seeds)."""
    from losslens.detectors.spike import baseline
    from losslens.detectors.stream_base import SeriesBuffer
    from losslens.detectors.stream_stats import BaselineCache

    rng = np.random.default_rng(seed)
    r = random.Random(seed)
    n = 1500
    steps = np.arange(1, n + 1)
    values = (1 + 3 * np.exp(-steps / 300)) * np.exp(rng.normal(0, 0.05, n))
    values[r.randrange(10, n):][:3] = np.nan
    if seed % 2:
        values[r.randrange(700, n)] = -0.5
    writes = list(range(n))
    back = r.randrange(300, 900)
    writes = writes[:back + 200] + writes[back:]
    s, cache = SeriesBuffer(), BaselineCache(129, 15)
    pos, tick = 0, 0
    while pos < len(writes):
        k = r.choice([1, 3, 40, 250])
        idx = writes[pos:pos + k]
        pos += k
        s.add(steps[idx], values[idx])
        tick += 1
        cache.update(s, tick)
        s.dirty = None
        v = s.value[:s.n][np.isfinite(s.value[:s.n])]
        nonpos = np.flatnonzero(v <= 0)
        k0 = int(nonpos[0]) if nonpos.shape[0] else v.shape[0]
        if k0 >= 4:
            want = baseline(v[:k0], 129, True, level_window=15)
            got = cache.log_baseline(0, k0)
            for name in ("y", "level", "scale", "count"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        known = cache.known(0, k0)
        if k0 < v.shape[0] and v.shape[0] >= 4:
            want = baseline(v, 129, False, level_window=15)
            for name in ("y", "level", "scale", "count"):
                np.testing.assert_array_equal(getattr(known.additive, name), getattr(want, name))


@pytest.mark.parametrize("seed", range(4))
def test_add_many_is_the_adds_one_after_another(seed):
    """`LiveRun.add_many` (the guard's feed: every tag of an update in one pass of the segment
    tracker) leaves the state `add` per tag leaves: series, segments (steps going back in
    some tags: restarts), events."""
    rng = np.random.default_rng(seed)
    roles = {"loss": "train_loss", "grad_norm": "grad_norm", "lr": "lr", "x": "other"}
    one, many = LiveRun("r", roles=roles), LiveRun("r", roles=roles)
    step = 0
    for _ in range(40):
        n = int(rng.integers(1, 60))
        if rng.random() < 0.1:
            step = max(0, step - int(rng.integers(1, 200)))  # a restart from earlier
        steps = np.arange(step + 1, step + n + 1)
        step += n
        batches = []
        for t in roles:
            if rng.random() < 0.9:  # (a tag may skip an update, or log half of its steps)
                s = steps if rng.random() < 0.8 else steps[: max(1, n // 2)]
                batches.append((t, s, np.exp(rng.normal(size=s.shape[0]))))
        for t, s, v in batches:
            one.add(t, s, v)
        many.add_many(batches)
        if rng.random() < 0.3:
            assert one.update().events == many.update().events
    assert one.segments.segments() == many.segments.segments()
    assert one.segments.agg == many.segments.agg and one.segments.cuts == many.segments.cuts
    assert one.segments.last == many.segments.last and one.segments.bounds == many.segments.bounds
    assert sorted(one.series) == sorted(many.series)
    for t in one.series:
        a, b = one.series[t], many.series[t]
        assert np.array_equal(a.step[:a.n], b.step[:b.n])
        assert np.array_equal(a.value[:a.n], b.value[:b.n])
    assert one.update().events == many.update().events


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_nonfinite_stream_joins_consecutive_far_apart_points_as_batch_does(chunk):
    """A validation loss evaluated every 2983 steps (over `merge_within`): consecutive NaN
    evaluations are one event in the stream too, on every prefix, and a finite one splits."""
    # (1100 finite points first: the stream then looks at a window, not the whole series)
    steps = np.r_[np.arange(1, 1101), 1100 + np.arange(1, 13) * 2983]
    values = np.r_[np.full(1100, 2.5),
                   [np.nan] * 4 + [2.0, 2.1] + [np.nan] * 3 + [1.9] + [np.nan] * 2]
    counts = np.r_[np.zeros(1100), [0, 1, 2, 0, 0, 3, 4, 5, 0, 0, 1, 0]]
    roles = {"valid loss": "val_loss", "number of nan iterations": "skipped"}
    live = LiveRun("run", detectors=["nonfinite"], roles=roles)
    n = steps.shape[0]
    for lo in [0] + list(range(1100, n, chunk)):
        hi = 1100 if lo == 0 else min(n, lo + chunk)
        live.add("valid loss", steps[lo:hi], values[lo:hi])
        live.add("number of nan iterations", steps[lo:hi], counts[lo:hi])
        got = [comparable(e) for e in live.detect()]
        b = RecordsBuilder()
        for i in range(hi):
            b.add("valid loss", int(steps[i]), float(values[i]), order=i)
            b.add("number of nan iterations", int(steps[i]), float(counts[i]), order=i)
        frame = build([b.build("run", "mem", "test")], roles=roles)
        want = [comparable(e) for e in detect_run(frame, frame.runs[0], ["nonfinite"])]
        assert got == want, f"after {hi} points"
    spans = [(e["tag"], e["start_step"], e["end_step"]) for e in got]
    assert sorted(spans) == sorted([(t, 1100 + a, 1100 + b) for t, a, b in [
        ("valid loss", 2983, 11932), ("valid loss", 20881, 26847), ("valid loss", 32813, 35796),
        ("number of nan iterations", 5966, 8949), ("number of nan iterations", 17898, 23864),
        ("number of nan iterations", 32813, 32813)]])
