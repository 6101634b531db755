"""'One dataset alone' needs per-dataset peers: a train spike validation did not see is not it."""
from __future__ import annotations

from losslens.analysis import detect_run
from losslens.detectors.spike import SpikeDetector
from losslens.frame import build
from losslens.records import RecordsBuilder
from losslens.synthetic import Spike, make_curve


def test_train_spike_without_a_validation_spike_is_not_isolated():
    b = RecordsBuilder()
    s, train, _ = make_curve(20000, seed=4, noise=0.01, log_every=10,
                             spikes=[Spike(8000, 3.0, "fast", 100)])
    b.add_array("lm loss", s, train)
    vs, val, _ = make_curve(20000, seed=5, noise=0.005, log_every=100)
    b.add_array("lm loss validation", vs, val)
    frame = build([b.build("run", "x", "x")])
    (event,) = detect_run(frame, frame.runs[0], [SpikeDetector()])
    assert (event.tag, event.start_step) == ("lm loss", 8000)
    assert event.details["shared_with"] == [] and event.details["isolated"] is False
