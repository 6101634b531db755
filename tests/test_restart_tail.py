"""A restart that ends before the run it replaced: the replaced run's tail is not joined
after the restart's end (stitched view), it stays in the raw view, the run is warned, and
the streaming form sees the same series as the batch one on every prefix."""
from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from losslens.analysis import detect_run
from losslens.detectors import DETECTORS, detector_class
from losslens.detectors.stream import LiveRun
from losslens.detectors.stream_base import SeriesBuffer
from losslens.frame import build, stitched_positions
from losslens.pipeline import analyze_frame
from losslens.records import RecordsBuilder, RunRecords

CAUSAL = sorted(n for n in DETECTORS if getattr(detector_class(n), "causal", False))


def two_runs(first_to: int = 16300, second_to: int = 12800, every: int = 100,
             header: bool = False) -> RunRecords:
    """openpi's shape: run 1 (0..first_to, ~0.03 with one-step spikes at 12,800 and
    14,300), then a restart from 0 that trains lower (0.011 at its end) and stops at
    second_to."""
    rng = np.random.default_rng(0)
    b, order = RecordsBuilder(), 0
    for step in range(0, first_to + 1, every):
        v = 0.03 + 0.2 * np.exp(-step / 1500) + rng.normal(0, 0.002)
        if step in (12800, 14300):
            v = 0.2
        b.add("loss", step, float(v), order=order)
        b.add("grad_norm", step, 0.2, order=order)
        order += 1
    if header:
        b.header(order)
        order += 1
    for step in range(0, second_to + 1, every):
        v = 0.011 + 0.2 * np.exp(-step / 1500) + rng.normal(0, 0.0005)
        b.add("loss", step, float(v), order=order)
        b.add("grad_norm", step, 0.2, order=order)
        order += 1
    return b.build("r", "train.out", "test")


def test_stitched_positions_drop_the_tail_beyond_the_last_write():
    steps = np.array([0, 1, 2, 3, 4, 5, 0, 1, 2])
    assert stitched_positions(steps).tolist() == [6, 7, 8]
    # a resume that goes past the end of the run it replaced: last write wins, nothing lost
    assert stitched_positions(np.array([0, 1, 2, 3, 2, 3, 4])).tolist() == [0, 1, 4, 5, 6]
    # a step written twice in a row (a double log) is no restart
    assert stitched_positions(np.array([0, 1, 1, 2])).tolist() == [0, 2, 3]
    # writes that go back as often as a shuffled file's keep every step
    shuffled = np.random.default_rng(1).permutation(400)
    assert np.sort(shuffled[stitched_positions(shuffled)]).tolist() == list(range(400))


def test_the_replaced_runs_tail_stays_raw_with_a_warning():
    frame = build([two_runs()])
    s, raw = frame.series("r", "loss"), frame.series("r", "loss", raw=True)
    assert s.step.tolist() == list(range(0, 12801, 100))
    assert bool(np.all(s.segment == 1))
    assert raw.step.shape[0] == 164 + 129
    info = {i.tag: i for i in frame.run("r").series}["loss"]
    assert (info.points, info.first_step, info.last_step, info.raw_points) == (129, 0, 12800, 293)
    assert frame.run("r").warnings == (
        "train.out: 'loss' (and 1 more tag(s)) was restarted and the restart ends at step "
        "12,800, before the run it replaced (up to step 16,300): that run's 35 later point(s) "
        "are kept in the raw view but not joined after the restart, so they are not judged",)


def test_no_spike_is_made_of_the_seam():
    """Joined, the replaced run's tail (~3x higher) after the restart's end read as a level
    jump: a critical "spike that never recovered" at 12,900."""
    for header in (False, True):
        a = analyze_frame(build([two_runs(header=header)]))
        loss = [(e.kind, e.start_step, e.severity) for e in a.runs[0].events
                if e.tag == "loss" and e.kind in ("spike", "divergence")]
        assert loss == []


def test_a_resume_that_goes_on_past_the_replaced_run_is_stitched_as_before():
    frame = build([two_runs(first_to=5000, second_to=9000)])
    assert frame.series("r", "loss").step.tolist() == list(range(0, 9001, 100))
    assert frame.run("r").warnings == ()


def _prefix(rec: RunRecords, hi: int) -> RunRecords:
    keep = rec.order < hi
    return replace(rec, tag_code=rec.tag_code[keep], step=rec.step[keep],
                   value=rec.value[keep], wall_time=rec.wall_time[keep],
                   order=rec.order[keep], headers=tuple(h for h in rec.headers if h < hi))


def _restarts(seed: int) -> RunRecords:
    """Runs restarted from earlier steps, some ending before the run they replaced, some
    going past it, logging every 1, 2 or 3 steps (the replaced run's points between a
    later run's steps come back as it passes them)."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    b, order, top = RecordsBuilder(), 0, 0
    for k in range(r.randint(2, 4)):
        lo = 0 if k == 0 else r.randrange(0, top)
        hi = lo + r.randint(100, 900)
        every = r.choice([1, 2, 3])
        level = r.choice([1.0, 2.0, 3.0])
        for step in range(lo, hi, every):
            v = level * (1 + 3 * np.exp(-step / 200)) * np.exp(rng.normal(0, 0.02))
            if r.random() < 0.01:
                v *= 3
            b.add("loss", step, float(v), order=order)
            b.add("grad norm", step, float(np.exp(rng.normal(0, 0.1))), order=order)
            order += 1
        top = max(top, hi)
    return b.build("run", "mem", "test")


@pytest.mark.parametrize("seed", range(5))
def test_stream_equals_batch_on_every_prefix_with_early_ending_restarts(seed):
    rec = _restarts(seed)
    end = int(rec.order.max()) + 1
    rnd = random.Random(seed)
    live = LiveRun("run", detectors=CAUSAL, source="mem", format="test")
    lo = 0
    while lo < end:
        hi = min(end, lo + rnd.choice([1, 7, 60, 250]))
        part = _prefix(rec, hi)
        keep = part.order >= lo
        live.feed(replace(part, tag_code=part.tag_code[keep], step=part.step[keep],
                          value=part.value[keep], wall_time=part.wall_time[keep],
                          order=part.order[keep], headers=()))
        got = [e.to_dict() for e in live.detect()]
        frame = build([part])
        want = [e.to_dict() for e in detect_run(frame, frame.runs[0], CAUSAL)]
        for d in got + want:
            d.pop("id")
            d["details"] = {k: v for k, v in d["details"].items()
                            if k not in ("shared_with", "isolated", "all_losses")}
        assert got == want, f"seed {seed}, after order {hi}"
        buf = live.series["loss"]
        s = frame.series("run", "loss")
        assert buf.step[:buf.n].tolist() == s.step.tolist()
        assert buf.value[:buf.n].tolist() == s.value.tolist()
        lo = hi


def test_series_buffer_hides_and_gives_back_the_tail():
    b = SeriesBuffer()
    b.add(np.arange(0, 10), np.arange(0, 10) * 1.0)
    b.dirty = None
    b.add(np.array([0, 2, 4]), np.array([5.0, 5.0, 5.0]))  # a restart every 2 steps
    assert b.step[:b.n].tolist() == [0, 1, 2, 3, 4] and b.total == 10
    assert b.rewrites == [0] and b.dirty == 0
    b.dirty = None
    b.add(np.array([6]), np.array([5.0]))  # it passes the replaced run's 5: given back
    assert b.step[:b.n].tolist() == [0, 1, 2, 3, 4, 5, 6] and b.value[5] == 5.0
    assert b.rewrites == [0] and b.dirty == 5
