"""The streams' work per update is bounded by the new points, not the series' length.

- `DivergenceStream` on a long series runs the detector again only where a new point can
  change its events (`_track`): a hump shorter than the sustain span, a lone NaN, a NaN
  burst that training goes on after cost nothing; a rise that lasts a span, an open event,
  a NaN run at the end run it. The events equal the batch detector's at every prefix.
- `Regrow`: arrays that double without one write copying all of them.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from losslens.analysis import detect_run
from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.stream import LiveRun
from losslens.detectors.stream_base import Regrow
from losslens.detectors.stream_misc import DivergenceStream
from losslens.frame import build
from losslens.records import RecordsBuilder


def comparable(e) -> dict:
    d = e.to_dict()
    d.pop("id")
    return d


def batch(steps: np.ndarray, loss: np.ndarray, n: int) -> list[dict]:
    b = RecordsBuilder()
    for i in range(n):
        b.add("lm loss", int(steps[i]), float(loss[i]), order=i)
    frame = build([b.build("run", "mem", "test")])
    return [comparable(e) for e in detect_run(frame, frame.runs[0], ["divergence"])]


def long_run(seed: int, steps: np.ndarray) -> np.ndarray:
    n = steps.shape[0]
    rng = np.random.default_rng(seed)
    loss = (2 + 3 * np.exp(-np.arange(n) / (n / 10))) * np.exp(rng.normal(0, 0.02, n))
    loss[9000:9300] *= 1.6  # a hump shorter than the sustain span (500 points)
    loss[10000:10700] *= 1.7  # one longer: it came back, never grew
    loss[11000] = math.nan  # a lone NaN
    loss[11500:11502] = math.nan
    loss[12000:12003] = math.nan  # a burst of nan_points that training went on after
    loss[13000:] *= np.exp(np.linspace(0, 2.0, n - 13000))  # a divergence
    loss[n - 300:n - 200] = math.nan  # NaN inside it, and finite again
    return loss


@pytest.mark.parametrize("interval", ["every step", "mixed"])
def test_long_series_divergence_reruns_only_where_events_can_change(interval, monkeypatch):
    n = 14500
    if interval == "every step":
        steps = np.arange(1, n + 1)
    else:  # intervals of 1 and 3 steps, the typical one changing as the series grows
        gaps = np.where(np.random.default_rng(9).random(n) < 0.45, 3, 1)
        gaps[:4000] = 1
        steps = np.cumsum(gaps)
    loss = long_run(1, steps)
    runs: list[int] = []
    real = DivergenceDetector.detect

    def counted(self, series):
        runs.append(int(series.step[-1]))
        return real(self, series)

    live = LiveRun("run", detectors=["divergence"], source="mem", format="test")
    stream = live.streams.streams[0]
    for lo in range(0, n, 50):
        live.add("lm loss", steps[lo:lo + 50], loss[lo:lo + 50])
        monkeypatch.setattr(DivergenceDetector, "detect", counted)
        got = [comparable(e) for e in live.detect()]
        monkeypatch.setattr(DivergenceDetector, "detect", real)
        if lo % 500 == 0 or lo + 50 >= n or (8900 <= lo and lo % 100 == 0):
            assert got == batch(steps, loss, min(n, lo + 50)), f"after {lo}"
    memo = live.memo[("divergence", "lm loss")]
    span = stream.det.sustain_span(steps[np.isfinite(loss)])
    assert stream._span_of(memo, int(np.isfinite(loss).sum())) == span
    assert [e["kind"] for e in got] == ["divergence"]
    assert 13000 <= got[0]["start_step"] - steps[0] + 1 or got[0]["start_step"] >= steps[13000]
    # none while the first hump (shorter than a span) is up, nor at the NaNs that training
    # went on after; each update once the longer hump lasted a span, and the divergence
    at = set(runs)
    hump, nans = steps[9000:9400], steps[10900:12100]
    assert not at & set(range(int(hump[0]), int(hump[-1]) + 1))
    assert not at & set(range(int(steps[10760]), int(nans[-1]) + 1))
    assert len(runs) < 40


def test_deferred_and_every_rise_give_the_same_events(monkeypatch):
    n = 14500
    steps = np.arange(1, n + 1)
    loss = long_run(2, steps)
    out = {}
    for deferred in (True, False):
        monkeypatch.setattr(DivergenceStream, "deferred", deferred)
        live = LiveRun("run", detectors=["divergence"], source="mem", format="test")
        seen = []
        for lo in range(0, n, 37):
            live.add("lm loss", steps[lo:lo + 37], loss[lo:lo + 37])
            seen.append([comparable(e) for e in live.detect()])
        out[deferred] = seen
    assert out[True] == out[False]


def test_sustain_span_kept_from_counts_equals_the_detector():
    det = DivergenceDetector()
    stream = DivergenceStream(det)
    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(2, 3000))
        gaps = rng.choice([1, 2, 5, 10, 100], size=n, p=[0.4, 0.2, 0.2, 0.15, 0.05])
        steps = np.cumsum(gaps)
        memo = {"diffs": {}, "last_step": None}
        size = int(rng.integers(1, 400))
        for lo in range(0, n, size):
            stream._span(memo, steps[lo:lo + size], 0)
            taken = steps[:lo + size]
            assert stream._span_of(memo, taken.shape[0]) == det.sustain_span(taken), trial
        if trial == 0:  # more than 256 distinct intervals: the lower bound
            stream._span(memo, np.cumsum(np.arange(1, 300)) + int(steps[-1]), 0)
            assert memo["diffs"] is None and stream._span_of(memo, 10 ** 6) == 20


def test_regrow_writes_equal_a_list_and_no_write_copies_the_whole_array():
    rng = np.random.default_rng(6)
    grow, a, ref = Regrow(), np.empty(16), []
    copies = []
    for _ in range(4000):
        at = len(ref) if rng.random() < 0.9 else int(rng.integers(0, len(ref) + 1))
        x = rng.normal(size=int(rng.integers(1, 40)))
        before = a
        a = grow.put(a, at, x)
        if a is not before:
            copies.append(len(ref))
        del ref[at:]
        ref.extend(x.tolist())
        assert np.array_equal(a[:len(ref)], np.asarray(ref))
    assert len(copies) >= 5
    # once past the first sizes, the larger array was filled along the way
    grow, a = Regrow(), np.empty(1024)
    for i in range(0, 100_000, 50):
        assert grow.new is None or grow.done <= i
        a = grow.put(a, i, np.arange(i, i + 50, dtype=float))
        assert grow.new is None or grow.done >= min(i + 50, 2 * (i + 50) - a.shape[0])
    assert np.array_equal(a[:100_000], np.arange(100_000, dtype=float))
