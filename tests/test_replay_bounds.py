"""Replay's cost and its bounds (session 13): the pre-event snapshot is a real copy, a
--budget ends in `inconclusive` (budget) instead of hours of CPU, deterministic algorithms are
CUDA's default only, and the CPU thread count is chosen by timing.

The run is test_replay_outside_cases' MLP with one shuffled-label batch at iteration 45."""
from __future__ import annotations

import pytest

try:
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")


@pytest.fixture
def threads():
    from guard_runs import one_thread

    with one_thread():
        yield


@pytest.fixture
def run(tmp_path, monkeypatch):
    import test_replay_outside_cases as cases

    log = cases.train(tmp_path / "run")
    plug = cases._plugin_file(tmp_path, monkeypatch, tmp_path / "run", 1)
    return log, plug


def test_restored_snapshot_is_not_updated_in_place(run, threads):
    """Optimizer.load_state_dict keeps a CPU tensor of the parameter's dtype as it is: restoring
    the snapshot that way let the next steps update the snapshot's Adam moments in place, and
    the second re-run (and the fp32 run) started from a state the first had already trained."""
    from losslens.replay.engine import Session
    from losslens.replay.plugin import load_plugin

    _, plug = run
    s = Session(load_plugin(str(plug)), torch.device("cpu"))
    s.load(39)
    s.train_step(40)
    snap = s.snapshot()
    moments = {k: v["exp_avg_sq"].clone() for k, v in snap["optimizer"]["state"].items()}
    runs = []
    for _ in range(3):
        s.restore(snap)
        runs.append([s.train_step(x).loss for x in range(41, 47)])
    assert runs[0] == runs[1] == runs[2]
    assert all(torch.equal(moments[k], v["exp_avg_sq"])
               for k, v in snap["optimizer"]["state"].items())


def test_budget_ends_in_inconclusive_budget(run, threads):
    from losslens.replay import replay
    from losslens.replay.options import Options

    log, plug = run
    full = replay(str(plug), log, device="cpu").results[0]
    assert full.verdict == "bad_batch"
    est = full.measurements["estimate"]
    # the flagged step: re-run twice, other batches; each earlier checkpoint: steps 40-45
    earlier = full.measurements["counterfactuals"]["earlier"]
    assert est["counterfactual_steps"] == 1 * 3 + 6 * len(earlier) and len(earlier) >= 1
    assert est["counterfactual_s"] > 0
    [r] = replay(str(plug), log, device="cpu", options=Options(budget_s=1e-6)).results
    assert (r.verdict, r.cause) == ("inconclusive", None)
    assert r.evidence[-1] == ("budget: not started: the budget was spent before it (--budget "
                              "1e-06 s); raise --budget, or replay fewer events (--events) or "
                              "fewer steps (--max-steps)")


def test_budget_stop_in_the_middle_keeps_what_it_measured(run, threads, monkeypatch):
    """The deadline passes during the counterfactuals: the event is inconclusive, the
    evidence says where it stopped and what the measurements so far point at."""
    from losslens.replay import budget, replay
    from losslens.replay.options import Options

    log, plug = run
    real = budget.check

    def check(deadline, stage):  # the deadline passes when the first re-run starts
        real(0.0 if stage.startswith("re-run") else deadline, stage)

    monkeypatch.setattr(budget, "check", check)
    [r] = replay(str(plug), log, device="cpu", options=Options(budget_s=3600)).results
    assert r.verdict == "inconclusive"
    last = r.evidence[-1]
    assert last.startswith("budget: stopped after ") and ", in re-run, step 1 of 1" in last
    assert r.facts.replay.shows is True and r.samples  # the replay and the scan were kept


def test_cpu_defaults_deterministic_off_and_threads_timed(run, restore_threads_cli):
    """CPU: torch's deterministic variants are off unless asked (CPU kernels repeat at a fixed
    thread count; the variants cost time); the thread count is the faster of torch's default
    and 1, and set back afterwards."""
    from losslens.replay import replay
    from losslens.replay.options import Options

    log, plug = run
    torch.set_num_threads(2)
    rep = replay(str(plug), log, device="cpu", options=Options(counterfactuals=False))
    assert rep.determinism["deterministic_algorithms"] is False
    assert rep.determinism["cpu_threads"]["threads"] in (1, 2)
    assert set(rep.determinism["cpu_threads"]["forward_backward_s"]) == {"1", "2"}
    assert torch.get_num_threads() == 2
    rep = replay(str(plug), log, device="cpu",
                 options=Options(counterfactuals=False, deterministic=True, threads=1))
    assert rep.determinism["deterministic_algorithms"] is True
    assert rep.determinism["cpu_threads"] == {"threads": 1, "chosen": "--threads"}
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.fixture
def restore_threads_cli():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)
