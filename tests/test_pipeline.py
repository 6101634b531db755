"""One orchestration, one configuration: every command reads the same Options and consumes the
same `pipeline.analyze`, so they agree on the same log and settings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from losslens import read
from losslens.cli import app
from losslens.errors import InvalidParameterError, UnknownRunError
from losslens.options import Options, load
from losslens.pipeline import analyze

ROOT = Path(__file__).resolve().parents[1]
SPIKES = ROOT / "sample_logs" / "megatron_gpt_spikes.log"

LINE = (" iteration {it:8d}/    3000 | consumed samples: {s:12d} | elapsed time per iteration "
        "(ms): 1522.0 | learning rate: 1.500E-04 | global batch size:   512 | lm loss: {loss} | "
        "loss scale: 65536.0 | grad norm: 0.990 | number of skipped iterations:   0 | number "
        "of nan iterations:   0 |\n")


def _nan_log(tmp_path: Path) -> Path:
    path = tmp_path / "nan.log"
    path.write_text("".join(LINE.format(it=it, s=512 * it, loss="nan") for it in range(1, 60)))
    return path


def test_nan_from_the_first_iteration_analyze_and_check_agree(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = _nan_log(tmp_path)
    doc = json.loads(runner.invoke(app, ["analyze", str(log), "-f", "json"]).stdout)
    (run,) = doc["runs"]
    assert [f["rule"] for f in run["findings"]] == ["broken_from_start"]
    assert run["skip_plan"] is None
    res = runner.invoke(app, ["check", str(log), "-f", "json"])
    assert res.exit_code == 1
    (crun,) = json.loads(res.stdout)["runs"]
    assert crun["findings"] == run["findings"]
    failed = [c["name"] for c in crun["checks"] if not c["passed"]]
    assert failed == ["broken_from_start"]
    assert not any("Restart from the last checkpoint" in f["advice"] for f in crun["findings"])
    res = runner.invoke(app, ["skiplist", str(log)])
    assert res.exit_code == 0 and res.stdout == "" and "Nothing to skip" in res.stderr


def _events(runner, *args):
    res = runner.invoke(app, ["analyze", *args, "-f", "json"])
    assert res.exit_code == 0, res.stderr
    return [(e["kind"], e["start_step"]) for e in json.loads(res.stdout)["runs"][0]["events"]]


def test_the_settings_file_applies_to_every_command(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _events(runner, str(SPIKES))
    assert ("spike", 2410) in before
    assert runner.invoke(app, ["check", str(SPIKES)]).exit_code == 1
    assert runner.invoke(app, ["skiplist", str(SPIKES)]).stdout != ""
    (tmp_path / "losslens.toml").write_text(
        'ignore-kinds = ["spike"]\n[detectors.spike]\nthreshold = 50\n')
    after = _events(runner, str(SPIKES))
    assert after == [e for e in before if e[0] != "spike"]
    res = runner.invoke(app, ["check", str(SPIKES)])
    assert res.exit_code == 0, res.stdout
    assert res.stderr.startswith(f"losslens: settings from {tmp_path / 'losslens.toml'}")
    res = runner.invoke(app, ["skiplist", str(SPIKES)])
    assert (res.exit_code, res.stdout) == (0, "") and "Nothing to skip" in res.stderr
    res = runner.invoke(app, ["watch", str(SPIKES), "--once", "-f", "json"])
    assert res.exit_code == 0
    assert not [ln for ln in res.stdout.splitlines() if json.loads(ln)["kind"] == "spike"]
    # --config names another file; flags override the file
    other = tmp_path / "other.toml"
    other.write_text("checkpoint-every = 1000\n")
    res = runner.invoke(app, ["skiplist", str(SPIKES), "--config", str(other), "-f", "json"])
    assert json.loads(res.stdout)["runs"][0]["checkpoints"]["source"] == "--checkpoint-every 1000"
    res = runner.invoke(app, ["skiplist", str(SPIKES), "--config", str(other), "-f", "json",
                              "--checkpoint-every", "500"])
    assert json.loads(res.stdout)["runs"][0]["checkpoints"]["source"] == "--checkpoint-every 500"


def test_options_merge_and_validate(tmp_path):
    (tmp_path / "losslens.toml").write_text(
        'fail-on = "warning"\nbefore = 50\n[roles]\n"my/loss" = "train_loss"\n')
    opts = load(start=tmp_path)
    assert (opts.fail_on, opts.before, dict(opts.roles)) == ("warning", 50,
                                                              {"my/loss": "train_loss"})
    merged = opts.merged(before=None, fail_on="critical", roles={"x": "val_loss"})
    assert (merged.fail_on, merged.before) == ("critical", 50)
    assert dict(merged.roles) == {"my/loss": "train_loss", "x": "val_loss"}
    with pytest.raises(InvalidParameterError, match="unknown kind"):
        Options(ignore_kinds=("spikes",)).validate()
    with pytest.raises(InvalidParameterError, match="`checkpoint_every` must be > 0"):
        analyze(read(SPIKES), Options(checkpoint_every=0))


def test_library_errors_name_parameters_the_cli_names_flags(runner):
    res = runner.invoke(app, ["analyze", str(SPIKES), "--checkpoint-every", "0"])
    assert (res.exit_code, res.stderr) == (2, "Error: --checkpoint-every must be > 0, got 0\n")


def test_frame_run_raises_the_projects_error():
    frame = read(SPIKES)
    with pytest.raises(UnknownRunError, match="no run named 'nope' \\(runs: megatron_gpt_"):
        frame.run("nope")
    with pytest.raises(UnknownRunError, match="has no series 'nope'"):
        frame.series(frame.runs[0].run, "nope")
