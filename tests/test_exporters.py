"""Skip-list exporters (exact strings per trainer) and the `losslens skiplist` command."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from losslens.errors import InvalidParameterError, LogNotFoundError
from losslens.events import Event, SkipPlan
from losslens.checkpoints import checkpoints_from_dir, parse_checkpoint_list, resolve
from losslens.exporters import COUNTING, PlanContext, export, metaseq_ranges
from losslens.skipplan import SkipPolicy, plan


def _spike(start, peak):
    return Event("spike", "r", "lm loss", start, peak, None, "critical", "none", None, 3.0)


def _ctx(skip, samples=None, gbs=None, checkpoints=(0, 1000, 2000), restart=None, **kw):
    restart = skip[0][0] - 1 if restart is None else restart
    p = SkipPlan(restart, tuple(skip), "1 event(s) need a restart (unrecovered spike)", samples)
    return PlanContext("r", "run.log", p, checkpoints, "--checkpoints", SkipPolicy(),
                       global_batch_size=gbs, **kw)


# --------------------------------------------------------------------------- exact strings

SINGLE = [(2001, 2420)]
MULTI = [(1001, 1310), (2001, 2500)]


def test_megatron_deepspeed_single_and_multi_range():
    assert export("megatron-deepspeed", [_ctx(SINGLE)]).stdout == \
        "--skip-train-iteration-range 2001-2420\n"
    assert export("megatron-deepspeed", [_ctx(MULTI)]).stdout == \
        "--skip-train-iteration-range 1001-1310 2001-2500\n"


def test_megatron_lm_one_entry_per_iteration_one_indexed():
    out = export("megatron-lm", [_ctx([(11, 14), (20, 21)], checkpoints=(0, 10))])
    assert out.stdout == "--iterations-to-skip 11 12 13 14 20 21\n"
    assert any("one integer per iteration (6 here)" in n for n in out.notes)
    assert any("(iteration + 1)" in n for n in out.notes)
    big = export("megatron-lm", [_ctx(SINGLE)]).stdout.split()
    assert big[0] == "--iterations-to-skip" and big[1:] == [str(i) for i in range(2001, 2421)]


def test_metaseq_later_ranges_shift_by_the_batches_skipped_before():
    assert export("metaseq", [_ctx(SINGLE)]).stdout == "--skip-batches 2001-2420\n"
    out = export("metaseq", [_ctx(MULTI)])
    # 310 batches skipped at update 1001 do not advance num_updates: 2001-2500 -> 1691-2190
    assert out.stdout == "--skip-batches 1001-1310,1691-2190\n"
    assert any("1001-1310 -> 1001-1310, 2001-2500 -> 1691-2190" in n for n in out.notes)
    assert metaseq_ranges(SkipPlan(0, ((5, 6), (10, 12), (20, 20)), "")) == [
        (5, 6), (8, 10), (15, 15)]


def test_samples_from_the_plan_and_from_the_batch_size():
    ctx = _ctx(MULTI, samples=((512000, 670719), (1024000, 1279999)), gbs=512)
    out = export("samples", [ctx])
    assert out.stdout == "512000-670719 1024000-1279999\n"
    assert any("(i-1)*GBS .. i*GBS-1 with GBS = 512" in n for n in out.notes)
    # no samples in the plan: computed from the context's batch size, same convention
    assert export("samples", [_ctx(MULTI, gbs=512)]).stdout == "512000-670719 1024000-1279999\n"


def test_samples_need_a_batch_size():
    with pytest.raises(InvalidParameterError, match="--global-batch-size"):
        export("samples", [_ctx(SINGLE)])


def test_samples_warn_on_batch_size_rampup():
    out = export("samples", [_ctx(SINGLE, gbs=512, rampup_batch_size="32 32 2000000")])
    assert out.stdout == "1024000-1239039\n"
    assert len(out.warnings) == 1 and "ramps the batch size up" in out.warnings[0]
    assert "consumed samples" in out.warnings[0]
    # other targets do not warn about it
    assert export("megatron-deepspeed",
                  [_ctx(SINGLE, gbs=512, rampup_batch_size="32 32 2000000")]).warnings == ()


def test_overlapping_ranges_merge_100_250_and_200_300():
    policy = SkipPolicy(before=0, min_skip=0, max_skip=0)
    p, warns = plan([_spike(100, 250), _spike(200, 300)], checkpoints=[99, 199], policy=policy,
                    global_batch_size=8)
    assert p.skip == ((100, 300),) and warns == []
    ctx = PlanContext("r", "run.log", p, (99, 199), "--checkpoints", policy, 8)
    assert export("megatron-deepspeed", [ctx]).stdout == "--skip-train-iteration-range 100-300\n"
    assert export("metaseq", [ctx]).stdout == "--skip-batches 100-300\n"
    assert export("megatron-lm", [ctx]).stdout == (
        "--iterations-to-skip " + " ".join(str(i) for i in range(100, 301)) + "\n")
    assert export("samples", [ctx]).stdout == "792-2399\n"


def test_every_flag_export_states_how_steps_are_counted():
    for target in ("megatron-deepspeed", "megatron-lm", "metaseq", "samples"):
        out = export(target, [_ctx(SINGLE, gbs=4)])
        assert COUNTING in out.notes
        assert out.notes[0] == "losslens skip plan for run r (run.log)"
        assert out.notes[1] == ("restart from the checkpoint saved at iteration 2000 "
                                "(checkpoints from --checkpoints); training then resumes at "
                                "iteration 2001")
        assert "\n" not in out.stdout.rstrip("\n")  # one paste-able line


def test_restart_notes_without_checkpoints_and_from_the_start():
    with pytest.raises(InvalidParameterError, match="no checkpoint is known"):
        export("megatron-deepspeed", [_ctx(SINGLE, checkpoints=None)])
    none = export("megatron-deepspeed", [_ctx(SINGLE, checkpoints=None)],
                  allow_no_checkpoint=True)
    assert "no checkpoints known" in none.notes[1]
    start = export("megatron-deepspeed", [_ctx([(1, 200)], checkpoints=(1000,), restart=0)])
    assert start.notes[1].startswith("restart from the start of training")
    late = export("megatron-deepspeed", [_ctx([(47701, 47900)], checkpoints=(57000,),
                                              restart=47700, first_step=47700)],
                  allow_no_checkpoint=True)
    assert late.notes[1] == ("restart from iteration 47700, where this log starts (the "
                             "checkpoint the run resumed from, if it resumed there): no "
                             "checkpoint known is early enough")
    zero = export("megatron-deepspeed", [_ctx(SINGLE, first_step=0)], allow_no_checkpoint=True)
    assert any("counts steps from 0" in n for n in zero.notes)


def test_json_document():
    ctx = _ctx(MULTI, samples=((512000, 670719), (1024000, 1279999)), gbs=512,
               warnings=("no checkpoint at least 100 steps before step 150",))
    doc = json.loads(export("json", [ctx]).stdout)
    assert doc["schema"] == "losslens.skiplist/1"
    run = doc["runs"][0]
    assert run["skip"] == [[1001, 1310], [2001, 2500]] and run["restart_from_step"] == 1000
    assert run["samples"] == [[512000, 670719], [1024000, 1279999]]
    assert run["step_counting"] == COUNTING
    assert run["flags"]["megatron-deepspeed"] == "--skip-train-iteration-range 1001-1310 2001-2500"
    assert run["flags"]["metaseq"] == "--skip-batches 1001-1310,1691-2190"
    assert run["flags"]["samples"] == "512000-670719 1024000-1279999"
    assert run["checkpoints"] == {"source": "--checkpoints", "steps": [0, 1000, 2000]}
    assert run["policy"] == {"before": 100, "min_skip": 200, "max_skip": 500}
    assert run["warnings"] == ["no checkpoint at least 100 steps before step 150"]


def test_text_document():
    text = export("text", [_ctx(MULTI, gbs=512)]).stdout
    lines = text.splitlines()
    assert lines[0] == "run: r (run.log)"
    assert "skip iterations: 1001-1310 2001-2500 (inclusive)" in lines
    assert "skip samples: 512000-670719 1024000-1279999 (0-based, inclusive, GBS 512)" in lines
    assert f"step counting: {COUNTING}" in lines
    assert "metaseq: --skip-batches 1001-1310,1691-2190" in lines
    assert "megatron-lm: --iterations-to-skip 1001 ... 2500 (810 entries; --target " \
           "megatron-lm prints them all)" in lines


def test_flag_targets_take_one_run():
    with pytest.raises(InvalidParameterError, match="--run"):
        export("metaseq", [_ctx(SINGLE), _ctx(MULTI)])
    with pytest.raises(InvalidParameterError, match="unknown target"):
        export("fairseq", [_ctx(SINGLE)])


# --------------------------------------------------------------------------- checkpoints

def test_checkpoints_from_dir_names_and_marker_files(tmp_path):
    for name in ("iter_0001000", "iter_0002000", "global_step2500", "checkpoint-3000",
                 "checkpoint_1_3500.pt", "step4000-unsharded", "runs", "iter_x"):
        (tmp_path / name).mkdir()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("4500\n")
    assert checkpoints_from_dir(tmp_path) == [1000, 2000, 2500, 3000, 3500, 4000, 4500]
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "latest").write_text("global_step700")
    assert checkpoints_from_dir(ds) == [700]


def test_checkpoint_dir_errors(tmp_path):
    with pytest.raises(LogNotFoundError):
        checkpoints_from_dir(tmp_path / "absent")
    with pytest.raises(InvalidParameterError, match="no checkpoint found"):
        checkpoints_from_dir(tmp_path)


def test_explicit_checkpoint_sources():
    assert parse_checkpoint_list("1000,2000, 3000 500") == [500, 1000, 2000, 3000]
    with pytest.raises(InvalidParameterError, match="--checkpoints"):
        parse_checkpoint_list("1000,abc")
    assert resolve(None, None, 500, 1700) == ([0, 500, 1000, 1500, 2000],
                                              "--checkpoint-every 500")
    assert resolve("10,20", None, None, 100) == ([10, 20], "--checkpoints")
    assert resolve((20, 10), None, 500, 100) == ([10, 20], "--checkpoints")
    assert resolve(None, None, None, 100) == (None, "")
    with pytest.raises(InvalidParameterError, match="> 0"):
        resolve(None, None, 0, 100)


# --------------------------------------------------------------------------- the command

def nanogpt_log(spike_at=2410, n=3000, every=10, jump=2.0, seed=1):
    """nanoGPT stdout (`iter N: loss X, time Yms, mfu Z%`) with a jump that never recovers."""
    rng = np.random.default_rng(seed)
    out = []
    for it in range(0, n + 1, every):
        loss = (2.2 + 8.8 * (1 + it / 60.0) ** -0.55) * math.exp(rng.normal(0, 0.01))
        if spike_at is not None and it >= spike_at:
            loss += jump
        out.append(f"iter {it}: loss {loss:.4f}, time 412.00ms, mfu 38.50%")
    return "\n".join(out) + "\n"


@pytest.fixture
def spiky(tmp_path):
    path = tmp_path / "spiky.log"
    path.write_text(nanogpt_log())
    return path


def _expected(path, checkpoints, **kw):
    import losslens
    from losslens.pipeline import analyze_frame

    return analyze_frame(losslens.read(path), checkpoints=checkpoints, **kw).runs[0].skip_plan


def test_cli_megatron_deepspeed_flag_on_stdout_notes_on_stderr(runner, spiky):
    from losslens.cli import app

    res = runner.invoke(app, ["skiplist", str(spiky), "--target", "megatron-deepspeed",
                              "--checkpoint-every", "500"])
    assert res.exit_code == 0, res.stderr
    p = _expected(spiky, list(range(0, 3500, 500)))
    assert p.restart_from_step == 2000 and p.skip[0][0] == 2001
    assert res.stdout == "--skip-train-iteration-range " + " ".join(
        f"{a}-{b}" for a, b in p.skip) + "\n"
    notes = res.stderr.splitlines()
    assert notes[0] == f"# losslens skip plan for run spiky.log ({spiky})"
    assert "# restart from the checkpoint saved at iteration 2000 (checkpoints from " \
           "--checkpoint-every 500); training then resumes at iteration 2001" in notes
    assert f"# {COUNTING}" in notes


def test_cli_checkpoint_dir_and_list(runner, spiky, tmp_path):
    from losslens.cli import app

    ck = tmp_path / "ckpt"
    for it in (1000, 2200):
        (ck / f"iter_{it:07d}").mkdir(parents=True)
    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "metaseq", "--checkpoint-dir",
                              str(ck)])
    assert res.exit_code == 0, res.stderr
    p = _expected(spiky, [1000, 2200])
    assert p.restart_from_step == 2200
    assert res.stdout == f"--skip-batches {p.skip[0][0]}-{p.skip[0][1]}\n"
    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "json", "--checkpoints", "1500"])
    doc = json.loads(res.stdout)
    assert doc["runs"][0]["restart_from_step"] == 1500
    assert doc["runs"][0]["checkpoints"] == {"source": "--checkpoints", "steps": [1500]}


def test_cli_warns_when_no_checkpoint_is_early_enough(runner, spiky):
    from losslens.cli import app

    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "megatron-deepspeed",
                              "--checkpoints", "2400,2900"])
    assert res.exit_code == 0
    assert "Warning: no checkpoint at least 100 steps before step 2410" in res.stderr
    assert res.stdout.startswith("--skip-train-iteration-range 1-")


def test_cli_nothing_to_skip_is_exit_0_with_empty_stdout(runner, tmp_path):
    from losslens.cli import app

    clean = tmp_path / "clean.log"
    clean.write_text(nanogpt_log(spike_at=None))
    res = runner.invoke(app, ["skiplist", str(clean), "-t", "megatron-lm"])
    assert res.exit_code == 0 and res.stdout == ""
    assert res.stderr.startswith("Nothing to skip: no event in clean.log needs a restart")


def test_cli_samples_and_usage_errors(runner, spiky, tmp_path):
    from losslens.cli import app

    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "samples", "--allow-no-checkpoint"])
    assert res.exit_code == 2 and res.stdout == ""
    assert res.stderr.startswith("Error: the samples target needs the global batch size")
    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "samples", "--global-batch-size",
                              "8", "--checkpoint-every", "500"])
    p = _expected(spiky, list(range(0, 3500, 500)), global_batch_size=8)
    assert res.stdout == " ".join(f"{a}-{b}" for a, b in p.samples) + "\n"
    assert res.stdout.startswith("16000-")  # iteration 2001 starts at sample 2000 * 8
    res = runner.invoke(app, ["skiplist", str(spiky), "--min-skip", "600"])
    assert res.exit_code == 2 and "--min-skip (600) must not exceed --max-skip (500)" in res.stderr
    res = runner.invoke(app, ["skiplist", str(spiky), "-t", "nope"])
    assert res.exit_code == 2


def test_cli_several_runs_need_run_for_flag_targets(runner, tmp_path):
    from losslens.cli import app

    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").write_text(nanogpt_log(seed=1))
    (folder / "b.log").write_text(nanogpt_log(spike_at=1210, seed=2))
    res = runner.invoke(app, ["skiplist", str(folder), "-t", "metaseq"])
    assert res.exit_code == 2 and "choose one with --run" in res.stderr
    res = runner.invoke(app, ["skiplist", str(folder), "-t", "json", "--checkpoint-every", "100"])
    runs = {r["run"]: r for r in json.loads(res.stdout)["runs"]}
    assert len(runs) == 2
    b = next(name for name in runs if "b" in name)
    res = runner.invoke(app, ["skiplist", str(folder), "-t", "megatron-deepspeed", "--run", b,
                              "--checkpoint-every", "100"])
    assert res.exit_code == 0
    first, last = runs[b]["skip"][0]
    assert res.stdout == f"--skip-train-iteration-range {first}-{last}\n"
    res = runner.invoke(app, ["skiplist", str(folder), "--run", "nope"])
    assert res.exit_code == 2 and "--run nope: no such run" in res.stderr


def test_cli_sample_megatron_log_uses_the_saved_checkpoint_lines(runner):
    pytest.importorskip("losslens.readers.megatron")
    from pathlib import Path

    from losslens.cli import app

    log = Path(__file__).resolve().parents[1] / "sample_logs" / "megatron_gpt_spikes.log"
    res = runner.invoke(app, ["skiplist", str(log), "-t", "megatron-deepspeed"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith("--skip-train-iteration-range 2001-")
    assert "checkpoints from the log's save lines (Megatron: successfully saved checkpoint)" in res.stderr
