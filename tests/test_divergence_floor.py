"""Divergence near a floor (divergence_floor): a loss that fell decades and rose off its floor
is a divergence while it keeps rising, and not once it settled there still near 0, nor once it
came back down decaying (a collapse recovered from)."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.detectors.divergence import DivergenceDetector
from losslens.detectors.divergence_floor import recovered_on_floor, settled_on_floor
from losslens.frame import Series
from stream_check import streamed_equals_batch


def floor_run(after: str, seed: int = 0, n: int = 400, every: int = 100):
    """A train loss falling from ~4.6 to a 3e-4 floor by point 150 (log-linear, quiet), then
    rising x15 over 40 points, then (`after`) a plateau in a log-normal band (sigma 0.4), a
    rise that goes on linearly (log) to x20 more by the end, or a plateau at 0.2 (back within
    two decades of the start)."""
    rng = np.random.default_rng(seed)
    steps = (np.arange(n) + 1) * every
    y = np.empty(n)
    y[:150] = np.linspace(np.log(4.6), np.log(3e-4), 150)
    y[150:190] = np.log(3e-4) + np.linspace(0, np.log(15), 40)
    top = {"plateau": np.log(4.5e-3), "rising": np.log(4.5e-3), "high": np.log(0.2)}[after]
    y[150:190] = np.linspace(np.log(3e-4), top, 40)
    y[190:] = top
    if after == "rising":
        y[190:] += np.linspace(0, np.log(20), n - 190)
    y[150:] += rng.normal(0, 0.4, n - 150)
    y[:150] += rng.normal(0, 0.01, 150)
    return steps, np.exp(y)


def detect(steps, values):
    n = steps.shape[0]
    return DivergenceDetector().detect(Series("run", "loss", "train_loss", steps, values,
                                              np.full(n, np.nan), np.zeros(n, np.int32)))


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_off_a_floor_that_settles_near_0_is_no_divergence(seed):
    steps, values = floor_run("plateau", seed)
    assert detect(steps, values) == []
    # while the level was still climbing (a prefix ending 40 points after the rise) it was one
    early = detect(steps[:230], values[:230])
    assert [e.kind for e in early] == ["divergence"]


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_off_a_floor_that_keeps_rising_diverges(seed):
    steps, values = floor_run("rising", seed)
    (event,) = detect(steps, values)
    assert (event.kind, event.severity, event.end_step) == ("divergence", "critical", 40000)
    assert 15000 <= event.start_step <= 19000  # the rise: 15100-19000
    assert event.details["recovered"] is False


@pytest.mark.parametrize("seed", range(3))
def test_a_rise_back_within_two_decades_of_the_start_diverges_though_it_settled(seed):
    steps, values = floor_run("high", seed)
    (event,) = detect(steps, values)
    assert (event.kind, event.end_step) == ("divergence", 40000)
    assert 15000 <= event.start_step <= 19000  # the rise: 15100-19000


def test_a_loss_that_never_fell_two_decades_keeps_the_ratio_rule():
    # 4.6 -> 1.0, a x6 step up over 40 points that settles: a divergence as before (dead run)
    rng = np.random.default_rng(1)
    n, steps = 400, (np.arange(400) + 1) * 100
    y = np.r_[np.linspace(np.log(4.6), 0.0, 150), np.linspace(0, np.log(6), 40),
              np.full(n - 190, np.log(6))] + rng.normal(0, 0.02, n)
    (event,) = detect(steps, np.exp(y))
    assert (event.kind, event.end_step) == ("divergence", 40000)


def test_settled_on_floor_arithmetic():
    start = float(np.log(4.6))
    best = float(np.log(3e-4))
    flat = np.r_[np.full(10, best), np.full(90, np.log(4e-3))]
    assert settled_on_floor(flat, best, 10, 100, 20, start)
    assert not settled_on_floor(flat, best, 10, 100, 25, start)  # shorter than 4 spans
    climbing = flat.copy()
    climbing[55:] += 0.3 * (np.log(4e-3) - best)  # its second half 1.3 x as high over the best
    assert not settled_on_floor(climbing, best, 10, 100, 20, start)
    creeping = flat.copy()
    creeping[55:] += 0.2 * (np.log(4e-3) - best)  # 1.2 x: settled
    assert settled_on_floor(creeping, best, 10, 100, 20, start)
    high = np.r_[np.full(10, best), np.full(90, np.log(0.05))]  # 1/92 of the start
    assert not settled_on_floor(high, best, 10, 100, 20, start)


@pytest.mark.parametrize("after", ["plateau", "rising"])
def test_streaming_agrees_with_batch_near_a_floor(after):
    steps, values = floor_run(after, 0, n=300)
    streamed_equals_batch(steps, values, seed=5, sizes=(1, 7, 30), share=0.15)


def collapse_run(after: str, seed: int = 0, n: int = 400, every: int = 100):
    """A grokking run's train loss (as Nanda et al.'s replication logs it): 5.15, then 0.0105
    falling log-linearly to a 1e-6 floor by point 150 (noise sigma 0.1, log), a collapse to 0.54
    falling to 1e-2 and slowly to 4e-3 over 17 points, a second collapse to 0.68 and 0.11,
    then (`after`) a log-linear fall back to the floor by point 330 and the floor to the
    end ("decays"), or a band at 0.3 to the end ("stays"), or a fall to 1e-3 by point 250
    and a climb back to 0.3 ("back up")."""
    rng = np.random.default_rng(seed)
    steps = (np.arange(n) + 1) * every
    lo = np.log(1e-6)
    y = np.empty(n)
    y[:150] = np.r_[np.log(5.15), np.linspace(np.log(0.0105), lo, 149)]
    y[150:152] = np.log([0.54, 0.0157])
    y[152:168] = np.linspace(np.log(0.0103), np.log(0.0043), 16)
    y[168:170] = np.log([0.68, 0.11])
    if after == "decays":
        y[170:330] = np.linspace(np.log(0.07), lo, 160)
        y[330:] = lo
    elif after == "stays":
        y[170:] = np.log(0.3)
    else:
        y[170:250] = np.linspace(np.log(0.07), np.log(1e-3), 80)
        y[250:] = np.linspace(np.log(1e-3), np.log(0.3), n - 250)
    return steps, np.exp(y + rng.normal(0, 0.1, n))


@pytest.mark.parametrize("seed", range(3))
def test_a_collapse_off_a_floor_that_decays_back_is_no_divergence(seed):
    steps, values = collapse_run("decays", seed)
    assert [e.kind for e in detect(steps, values)] == []
    # while it was still up (the prefix ends 60 points into the fall back) it was one
    (early,) = detect(steps[:230], values[:230])
    assert (early.kind, early.details["recovered"]) == ("divergence", False)


@pytest.mark.parametrize("after", ["stays", "back up"])
def test_a_collapse_off_a_floor_that_stays_up_or_climbs_back_diverges(after):
    steps, values = collapse_run(after, 0)
    (event,) = detect(steps, values)
    assert (event.kind, event.end_step) == ("divergence", 40000)
    if after == "stays":
        assert 15000 <= event.start_step <= 17100
    else:  # it came back down 2.5 decades (1e-3: ~0 against its 5.15 start) and climbed
        # again from point 250: the divergence is that climb (floor_episode; the real
        # grokking logs' labels put it there, after the slingshots that came back)
        assert 25000 <= event.start_step <= 27000


def test_recovered_on_floor_arithmetic():
    start, best = float(np.log(5.15)), float(np.log(1e-6))
    decay = np.r_[np.full(10, best), np.linspace(np.log(0.7), best + 1.0, 90), np.full(20, best)]
    assert recovered_on_floor(decay, best, 10, 100, 20, start)
    assert not recovered_on_floor(decay, best, 10, 100, 25, start)  # shorter than 4 spans
    assert not recovered_on_floor(decay[:100], best, 10, 100, 20, start)  # not back yet
    flat = np.r_[np.full(10, best), np.full(90, np.log(0.7)), np.full(20, best)]
    assert not recovered_on_floor(flat, best, 10, 100, 20, start)  # a hump: not decaying
    assert not recovered_on_floor(decay, best, 10, 100, 20, best + 4.0)  # not on a floor


def test_streaming_agrees_with_batch_after_a_collapse_off_a_floor():
    steps, values = collapse_run("decays", 0, n=360)
    streamed_equals_batch(steps, values, seed=5, sizes=(1, 7, 30), share=0.15)
