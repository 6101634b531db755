"""benchmarks/indep2_family.py: the generator's labels are sane (pinned seeds), whatever
losslens makes of the runs. Labelled spikes stand out of the run's known logging noise, clean
runs carry no labels, NaN / overfitting / rollback / overflow labels are where the written
log shows them, and the written files read back with the points that were generated."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import losslens

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("indep2_family", ROOT / "benchmarks" / "indep2_family.py")
fam = importlib.util.module_from_spec(spec)
sys.modules["indep2_family"] = fam
spec.loader.exec_module(fam)

SEED, PER = 3, 6
CASES = {name: [fam.make_case(name, i, SEED) for i in range(PER)] for name in fam.STRATA}
ALL = [c for cs in CASES.values() for c in cs]


def test_every_stratum_has_clean_runs_and_clean_hard_only_clean():
    for name, cases in CASES.items():
        assert sum(c.clean for c in cases) >= PER // 3, name
    assert all(c.clean for c in CASES["clean-hard"])
    kinds = {lab.kind for c in ALL for lab in c.labels}
    assert {"spike", "overfitting", "overflow", "nonfinite"} <= kinds


def test_clean_runs_carry_no_labels_and_no_nan():
    for c in ALL:
        if c.clean:
            assert c.labels == []
            assert np.isfinite(c.values).all(), c.name


def test_labelled_spikes_stand_out_of_the_logged_noise():
    seen = 0
    for c in ALL:
        for lab in c.labels:
            if lab.kind != "spike":
                continue
            seen += 1
            assert lab.recovery in ("fast", "slow", "none")
            j0 = int(np.searchsorted(c.steps, lab.start))
            before = c.values[max(0, j0 - 20):j0]
            body = c.values[j0:int(np.searchsorted(c.steps, lab.hi)) + 1]
            excess = np.nanmax(body) - np.nanmedian(before)
            # 6 sd by construction before noise; at least 4 of the known logged sd after it
            assert excess >= 4 * c.noise_sd[j0], (c.name, lab.what)
            assert lab.lo <= lab.start <= lab.hi
            if lab.recovery == "none":
                assert lab.end is None
            else:
                assert lab.end is not None and lab.end >= lab.start
    assert seen >= 3


def test_nan_overfitting_rollback_overflow_labels_match_the_written_log():
    for c in ALL:
        for lab in c.labels:
            if lab.kind == "nonfinite":
                assert np.isnan(c.values[c.steps == lab.start]).all(), c.name
                assert np.isfinite(c.values[c.steps < lab.start]).all() or any(
                    x.kind == "nonfinite" and x.start < lab.start for x in c.labels)
            elif lab.kind == "overfitting":
                v = c.val_values
                j = int(np.searchsorted(c.val_steps, lab.start))
                assert c.val_steps.shape[0] - 1 - j >= 3
                assert v[-1] > 1.03 * np.min(v[j:j + 1]), c.name
            elif lab.kind == "rollback":
                steps = [p for p, _ in c.raw]
                backs = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
                assert len(backs) == 1 and steps[backs[0]] > lab.start
            elif lab.kind == "overflow":
                j = (c.steps >= lab.start) & (c.steps <= lab.end)
                assert c.skipped[j].sum() >= 3, c.name


def test_grokking_and_divergence_labels_follow_the_curve():
    cases = [fam.make_case("multi-epoch", i, s) for s in (1, 2) for i in range(12)]
    grok = [c for c in cases if any(lab.kind == "grokking" for lab in c.labels)]
    assert grok
    for c in grok:
        lab = next(lab for lab in c.labels if lab.kind == "grokking")
        early = c.val_values[c.val_steps < lab.start]
        late = c.val_values[c.val_steps > lab.end]
        assert late.max() < 0.5 * early.min()
    div = [c for name in ("pretraining-dense", "interval-averaged") for i in range(15)
           for c in [fam.make_case(name, i, 4)] if any(lab.kind == "divergence" for lab in c.labels)]
    assert len(div) >= 3
    for c in div:
        lab = next(lab for lab in c.labels if lab.kind == "divergence")
        after = c.values[c.steps > lab.start]
        before = c.values[(c.steps < lab.start) & np.isfinite(c.values)]
        assert np.isnan(after).any() or np.nanmax(after) > 1.5 * np.median(before[-50:])
        # the rise shows in the log before any NaN: >= 3 logged points clearly up
        assert (after[np.isfinite(after)] > 1.05 * np.median(before[-50:])).sum() >= 3, c.name


@pytest.mark.parametrize("name", fam.STRATA)
def test_written_logs_read_back_as_generated(tmp_path, name):
    for c in CASES[name][:3]:
        frame = losslens.read(fam.write_case(c, tmp_path))
        info = frame.runs[0]
        main = max((s for s in info.series if s.role == "train_loss"), key=lambda s: s.points)
        s = frame.series(info.run, main.tag)
        assert np.array_equal(s.step, c.steps), c.name
        fin = np.isfinite(c.values)
        assert np.array_equal(np.isfinite(s.value), fin), c.name
        assert np.allclose(s.value[fin], c.values[fin], rtol=1e-5, atol=1e-4), c.name


def test_each_burst_a_nonfinite_event_lists_is_scored_as_found():
    # three NaN bursts 250 steps apart: losslens reports one event listing the three; each
    # labelled burst is found, and a listed burst with no label is a false one
    from losslens.events import Event

    case = fam.Case("t", "pretraining-dense", "csv", 1, 8000, steps=np.arange(1, 8001),
                    main_tag="loss", labels=[fam.Label("nonfinite", s, None, s - 1, s + 1)
                                             for s in (6500, 6750)])
    ev = Event(kind="nonfinite", run="r", tag=case.main_tag, start_step=6500, end_step=7000,
               severity="critical", details={"bursts": [[6500, 6500], [6750, 6750], [7000, 7000]]})
    case.events = [ev]
    assert [d[:2] for d in fam.detections(case, "nonfinite")] == [
        (6500, 6500), (6750, 6750), (7000, 7000)]
    tally = fam.Tally()
    fam.match(case, "nonfinite", fam.detections(case, "nonfinite"), tally)
    assert (tally.tp, tally.fn, tally.fp) == (2, 0, 1)
