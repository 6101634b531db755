"""The detector contract (deterministic, pure, shape-checked), run on every entry of the registry.

Series detectors get each stitched series of a role they accept; run detectors get whole
frames. Inputs: two rich synthetic runs (spikes, divergence into NaN, grad spikes, fp16
overflows, validation; a rolled-back and resumed log) and degenerate ones (empty, one point,
constant, all NaN) for which every detector must return [] without raising.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from losslens.detectors import DETECTORS, detector_class
from losslens.errors import InvalidParameterError
from losslens.events import RECOVERIES, SEVERITIES
from losslens.frame import Frame, RunInfo, Series, build
from losslens.records import RecordsBuilder
from losslens.roles import ROLES, infer_role
from losslens.synthetic import Spike, make_curve, make_run

#: A tag per role, named as the frameworks name them (checked against infer_role below).
ROLE_TAGS = {"train_loss": "lm loss", "val_loss": "lm loss validation", "grad_norm": "grad norm",
             "loss_scale": "loss scale", "skipped": "number of skipped iterations",
             "lr": "learning rate", "train_acc": "train/accuracy", "val_acc": "val/accuracy",
             "other": "throughput"}


def load(name: str) -> type:
    module = DETECTORS[name].partition(":")[0]
    try:
        return detector_class(name)
    except ModuleNotFoundError as exc:  # a detector module not written yet
        if exc.name == module:
            pytest.skip(f"{module} does not exist yet")
        raise


def numeric_fields(cls: type) -> list[str]:
    out = []
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            out.append(f.name)
    return out


def series(values, role: str = "train_loss", steps=None) -> Series:
    values = np.asarray(values, dtype=float)
    n = values.shape[0]
    steps = np.arange(1, n + 1, dtype=np.int64) * 10 if steps is None else np.asarray(steps)
    return Series("r", ROLE_TAGS[role], role, steps.astype(np.int64), values,
                  np.full(n, np.nan), np.zeros(n, dtype=np.int32))


def frame_of(tags: dict[str, np.ndarray], headers=(), steps=None) -> Frame:
    b = RecordsBuilder()
    for tag, values in tags.items():
        values = np.asarray(values, dtype=float)
        st = np.arange(1, values.shape[0] + 1) * 10 if steps is None else steps
        b.add_array(tag, st, values, orders=np.arange(values.shape[0]))
    for h in headers:
        b.header(h)
    return build([b.build("r", "test", "test")])


def rich_frames() -> list[Frame]:
    """Runs where every registered kind has something to find."""
    spiky = make_run(30000, seed=3, log_every=10, noise=0.02, val_every=500,
                     spikes=[Spike(6000, 3.0, "fast"), Spike(11000, 2.0, "slow"),
                             Spike(21000, 4.0, "none")],
                     diverge_at=25000, diverge_over=800, nan_at=27000, grad_lag=10,
                     grad_only=[16000], overflows=[100, 101, 102, 8000, 8001])
    # a log rolled back to step 4000 after step 6000 and resumed, with a spike at the resume
    steps1, v1, _ = make_curve(6000, seed=5, log_every=10, noise=0.02)
    steps2, v2, _ = make_curve(12000, seed=6, log_every=10, noise=0.02,
                               spikes=[Spike(4010, 2.5, "fast")])
    keep = steps2 >= 4000
    steps = np.concatenate([steps1, steps2[keep]])
    values = np.concatenate([v1, v2[keep]])
    orders = np.arange(steps.shape[0])
    orders[steps1.shape[0]:] += 1  # the resume banner has its own line between the two
    b = RecordsBuilder()
    b.add_array("lm loss", steps, values, orders=orders)
    b.header(steps1.shape[0])
    resumed = build([b.build("resumed", "test", "test")])
    return [spiky.frame, resumed]


def degenerate_inputs() -> dict[str, np.ndarray]:
    return {"empty": np.empty(0), "one point": np.array([2.5]),
            "constant": np.full(300, 2.5), "all NaN": np.full(300, np.nan)}


def calls(det, frame: Frame):
    """(input description, callable, steps of the input) for every input the detector takes."""
    for info in frame.runs:
        if det.scope == "run":
            steps = set(frame.data.loc[frame.data["run"] == info.run, "step"].tolist())
            yield info.run, (lambda f=frame, i=info: det.detect_run(f, i)), steps, info
        else:
            for s in info.series:
                if s.role in det.roles:
                    ser = frame.series(info.run, s.tag)
                    yield (f"{info.run}/{s.tag}", (lambda x=ser: det.detect(x)),
                           set(ser.step.tolist()), info)


NAMES = list(DETECTORS)


def test_role_tags_have_their_roles():
    assert {tag: infer_role(tag) for tag in ROLE_TAGS.values()} == {
        tag: role for role, tag in ROLE_TAGS.items()}


@pytest.mark.parametrize("name", NAMES)
def test_class_shape(name):
    cls = load(name)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert not hasattr(cls, "__post_init__"), "no logic at construction"
    assert cls.scope in ("series", "run")
    assert isinstance(cls.causal, bool)
    assert set(cls.roles) <= set(ROLES)
    assert cls.scope == "run" or cls.roles, "a series detector names the roles it reads"
    method = "detect_run" if cls.scope == "run" else "detect"
    assert callable(getattr(cls, method))
    assert callable(getattr(cls, "validate"))


@pytest.mark.parametrize("name", NAMES)
def test_default_construction_repr_and_frozen(name):
    cls = load(name)
    det = cls()
    det.validate()
    text = repr(det)
    for f in dataclasses.fields(cls):
        assert f"{f.name}=" in text
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(det, first, getattr(det, first))


@pytest.mark.parametrize("name", NAMES)
def test_invalid_parameter_names_the_field(name):
    cls = load(name)
    fields = numeric_fields(cls)
    assert fields, "a detector has tunable numeric parameters"
    frame = rich_frames()[0]
    for field in fields:
        det = cls(**{field: math.nan})  # no logic at construction: this must not raise
        with pytest.raises(InvalidParameterError, match=field):
            det.validate()
        with pytest.raises(InvalidParameterError, match=field):
            if det.scope == "run":
                det.detect_run(frame, frame.runs[0])
            else:
                det.detect(frame.series(frame.runs[0].run, "lm loss"))


@pytest.mark.parametrize("name", NAMES)
def test_events_are_well_formed_and_input_untouched(name):
    det = load(name)()
    seen = 0
    for frame in rich_frames():
        before = frame.data.copy(deep=True)
        for label, call, steps, info in calls(det, frame):
            events = call()
            assert isinstance(events, list), label
            starts = [e.start_step for e in events]
            assert starts == sorted(starts), label
            for e in events:
                assert e.kind == name and e.run == info.run, (label, e)
                assert e.tag in {s.tag for s in info.series}, (label, e)
                assert e.severity in SEVERITIES and e.recovery in (None, *RECOVERIES), e
                marks = [x for x in (e.start_step, e.peak_step, e.end_step) if x is not None]
                assert marks == sorted(marks), (label, e)
                assert set(marks) <= steps, (label, e)
                assert e.id == "", "ids are assigned by analysis"
            seen += len(events)
        pd.testing.assert_frame_equal(frame.data, before)
    if name in ("spike", "divergence", "nonfinite", "grad_spike", "overflow", "rollback"):
        assert seen, f"{name} finds nothing in runs made for it"


@pytest.mark.parametrize("name", NAMES)
def test_series_input_not_mutated(name):
    det = load(name)()
    frame = rich_frames()[0]
    info = frame.runs[0]
    for s in info.series:
        if det.scope == "series" and s.role not in det.roles:
            continue
        ser = frame.series(info.run, s.tag)
        copies = [a.copy() for a in (ser.step, ser.value, ser.wall_time, ser.segment)]
        if det.scope == "series":
            det.detect(ser)
        else:
            det.detect_run(frame, info)
        for a, b in zip((ser.step, ser.value, ser.wall_time, ser.segment), copies):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    det = load(name)()
    for frame in rich_frames():
        for label, call, _, _ in calls(det, frame):
            assert [e.to_dict() for e in call()] == [e.to_dict() for e in call()], label


def degenerate_for(role: str, values: np.ndarray) -> np.ndarray:
    """Counters (skipped iterations) count events: their "nothing happening" is 0."""
    return np.where(np.isfinite(values), 0.0, values) if role == "skipped" else values


@pytest.mark.parametrize("case", list(degenerate_inputs()))
@pytest.mark.parametrize("name", NAMES)
def test_degenerate_inputs_give_nothing(name, case):
    cls = load(name)
    det = cls()
    values = degenerate_inputs()[case]
    if name == "nonfinite" and case == "all NaN":
        pytest.skip("reporting NaN values is the nonfinite detector's purpose: "
                    "test_nonfinite_reports_an_all_nan_series checks it instead")
    if det.scope == "series":
        for role in det.roles:
            assert det.detect(series(degenerate_for(role, values), role)) == [], role
        return
    roles = set(det.roles) | {"train_loss"}
    tags = {} if case == "empty" else {ROLE_TAGS[r]: degenerate_for(r, values) for r in roles}
    frame = frame_of(tags)
    assert det.detect_run(frame, frame.runs[0]) == []


def test_nonfinite_reports_an_all_nan_series():
    det = load("nonfinite")()
    for role in ("train_loss", "val_loss", "grad_norm"):
        (event,) = det.detect(series(np.full(300, np.nan), role))
        assert (event.start_step, event.end_step, event.severity) == (10, 3000, "critical")
        assert event.details["count"] == 300
