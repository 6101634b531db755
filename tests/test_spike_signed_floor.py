"""A loss that changes sign (a policy / RL loss around 0) sits on no floor: the grokking rules
for a loss on a floor (spike_floor: back once the excess is 10 % of the height in the loss's
own units; spike_collapse: a collapse back to near the start) apply to a positive loss only.

The curves: `losslens.synthetic.make_curve` with `negative=True` (a loss that falls through 0
to about -0.2), one spike x15 that settles for good (`none`) or two that come back. Before, a
pre-spike level at or under 0 read as "a floor 100x under the start": the settling spike was
called back once it fell to 10 % of its height, and a fast spike's tail started a spike of its
own (quality.py seed 0's sign-changing stratum, runs 370 and 167)."""
from __future__ import annotations

from losslens.detectors.spike import SpikeDetector
from losslens.synthetic.curves import Spike, make_curve


def found(steps, values):
    return [(s["start"], s["end"], s["recovery"]) for s in SpikeDetector().find(steps, values)]


def test_a_spike_of_a_signed_loss_that_settles_high_never_recovers():
    steps, values, _ = make_curve(
        144600, seed=165177914, log_every=50, noise=0.02, warmup=7230, decades=1.0,
        negative=True, spikes=[Spike(24100, 8.52, "fast", 77), Spike(43427, 15.4, "none", 133)])
    assert values.min() < 0
    assert found(steps, values) == [(24100, 24200, "fast"), (43450, None, "none")]


def test_the_tail_of_a_slow_spike_of_a_signed_loss_is_no_spike_of_its_own():
    steps, values, truth = make_curve(
        22760, seed=986280703, log_every=10, noise=0.03, warmup=1138, decades=0.3,
        negative=True, spikes=[Spike(3793, 19.97, "slow", 766), Spike(8849, 1.72, "fast", 91),
                               Spike(10660, 2.0, "slow", 1259)])
    assert values.min() < 0
    got = found(steps, values)
    assert [g[0] for g in got] == [3800, 8850, 10660]
    assert [g[2] for g in got] == ["slow", "fast", "slow"]
