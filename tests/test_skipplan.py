"""The PaLM skip plan: checkpoint choice, widening, capping, merging, samples."""
from __future__ import annotations

import pytest

from losslens.errors import InvalidParameterError
from losslens.events import Event
from losslens.skipplan import SkipPolicy, merge_ranges, plan


def _spike(start, peak, recovery="none", end=None):
    return Event("spike", "r", "lm loss", start, peak, end, "critical", recovery, None, 3.0)


def test_merge_ranges_overlapping_and_touching():
    assert merge_ranges([(200, 300), (100, 250), (301, 310), (400, 401)]) == [
        (100, 310), (400, 401)]


def test_restart_from_latest_checkpoint_before_and_widen_to_min_skip():
    skip, warns = plan([_spike(1250, 1260)], checkpoints=[0, 500, 1000, 1500])
    # latest checkpoint <= 1250-100 is 1000; skip 1001 .. max(peak 1260, 1001+199)
    assert skip.restart_from_step == 1000 and skip.skip == ((1001, 1260),)
    assert warns == []


def test_cap_at_max_skip_and_fast_spikes_ignored():
    events = [_spike(5000, 5900), _spike(100, 110, recovery="fast")]
    skip, _ = plan(events, checkpoints=range(0, 10000, 1000))
    assert skip.restart_from_step == 4000 and skip.skip == ((4001, 4500),)


def test_overlapping_events_merge_and_samples():
    events = [_spike(1250, 1260), _spike(1300, 1310),
              Event("divergence", "r", "lm loss", 3000, None, 3400, "critical")]
    skip, _ = plan(events, checkpoints=range(0, 5000, 1000), global_batch_size=512)
    assert skip.skip == ((1001, 1310), (2001, 2500))
    assert skip.samples == ((512000, 670719), (1024000, 1279999))


def test_no_checkpoint_early_enough_warns():
    skip, warns = plan([_spike(150, 160)], checkpoints=[1000])
    assert skip.restart_from_step == 0 and skip.skip == ((1, 200),)
    assert warns and "no checkpoint at least 100 steps before step 150" in warns[0]


def test_a_log_that_starts_late_restarts_where_it_starts_not_at_the_start_of_training():
    # a resumed run's log (Qwen3-from-scratch: steps 47700-57350, the first save line at 57000)
    skip, warns = plan([_spike(47710, 47710)], checkpoints=[57000], first_step=47700)
    assert skip.restart_from_step == 47700 and skip.skip == ((47701, 47900),)
    assert warns == ["no checkpoint at least 100 steps before step 47710 (spike); earliest known "
                     "is 57000: restart from step 47700, where this log starts (the checkpoint "
                     "the run resumed from, if it resumed there; else your latest checkpoint "
                     "before it)"]
    _, early = plan([_spike(150, 160)], checkpoints=[1000], first_step=10)
    assert early[0].endswith("restart from the start of training (step 0)")


def test_without_checkpoints_assumes_before_steps():
    skip, _ = plan([_spike(1250, 1700)])
    assert skip.restart_from_step == 1150 and skip.skip == ((1151, 1650),)


def test_nothing_to_do():
    assert plan([_spike(10, 12, recovery="fast")]) == (None, [])


def test_bad_policy():
    with pytest.raises(InvalidParameterError, match="min_skip"):
        plan([_spike(1, 2)], policy=SkipPolicy(min_skip=600, max_skip=500))


def test_widened_to_min_skip_when_the_spike_is_short():
    skip, _ = plan([_spike(1150, 1151)], checkpoints=[1000])
    assert skip.skip == ((1001, 1200),)


def test_nan_from_the_first_step_gets_no_plan():
    nan = Event("nonfinite", "r", "loss", 1, None, 900, "critical")
    assert plan([nan], first_step=1) == (None, [
        "the loss is non-finite from the first logged step (1): no skip plan for that; "
        "fix the setup"])
