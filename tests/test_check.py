"""`losslens check`: settings, per-rule checks, baseline comparison, CI outputs, exit codes."""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from losslens.checks import (allowed_failures, compare_baseline, gate, locate_lines,
                             read_reference, relative_deviation, render_github, render_json,
                             render_junit, render_text, rule_items)
from losslens.errors import InvalidParameterError, LogNotFoundError
from losslens.events import Event
from losslens.frame import build
from losslens.options import Options, build_detectors, find_config
from losslens.options import from_mapping as config_from_mapping
from losslens.options import load as load_config
from losslens.pipeline import Analysis, conclude
from losslens.records import RecordsBuilder, RunMeta

from test_exporters import nanogpt_log


def _event(kind, start, tag="lm loss", severity="critical", recovery=None, end=None, n=1):
    return Event(kind, "r", tag, start, start, end, severity, recovery, None, 2.0,
                 id=f"{kind}-{n}")


# --------------------------------------------------------------------------- settings

def test_find_config_walks_up_and_skips_pyproject_without_section(tmp_path):
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    assert find_config(deep) is None
    (tmp_path / "pyproject.toml").write_text("[tool.losslens]\nfail-on = 'warning'\n")
    assert find_config(deep) == tmp_path / "pyproject.toml"
    (deep / "losslens.toml").write_text("fail-on = 'info'\n")
    assert find_config(deep) == deep / "losslens.toml"
    assert load_config(start=deep).fail_on == "info"
    assert load_config(start=tmp_path / "a").fail_on == "warning"


def test_load_config_every_setting(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        "[tool.losslens]\n"
        "fail-on = 'warning'\n"
        "ignore-tags = ['validation-*']\n"
        "ignore_kinds = ['overflow']\n"
        "allow-steps = ['1500-1650', 2000, [10, 20]]\n"
        "rtol = 0.02\n"
        "baseline = 'golden/values.json'\n"
        "[tool.losslens.detectors.spike]\n"
        "threshold = 8\n")
    cfg = load_config(start=tmp_path)
    assert cfg == Options(
        fail_on="warning", detectors={"spike": {"threshold": 8}}, ignore_tags=("validation-*",),
        ignore_kinds=("overflow",), allow_steps=((1500, 1650), (2000, 2000), (10, 20)),
        rtol=0.02, baseline=str(tmp_path / "golden" / "values.json"),
        source=f"{tmp_path / 'pyproject.toml'} [tool.losslens]")


def test_settings_errors_name_the_file_and_key(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown setting\(s\) fail-at"):
        config_from_mapping({"fail-at": "x"}, "pyproject.toml")
    with pytest.raises(InvalidParameterError, match="fail-on must be one of"):
        config_from_mapping({"fail-on": "error"})
    with pytest.raises(InvalidParameterError, match="allow-steps"):
        config_from_mapping({"allow-steps": ["10..20"]})
    with pytest.raises(InvalidParameterError, match="ends before it starts"):
        config_from_mapping({"allow-steps": ["20-10"]})
    with pytest.raises(InvalidParameterError, match="detectors must be tables"):
        config_from_mapping({"detectors": {"spike": 3}})
    bad = tmp_path / "losslens.toml"
    bad.write_text("fail-on = \n")
    with pytest.raises(InvalidParameterError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(LogNotFoundError, match="`config`"):
        load_config(tmp_path / "absent.toml")


def test_detector_overrides_are_checked_and_applied():
    dets = build_detectors({"spike": {"threshold": 8.0}})
    assert dets["spike"].threshold == 8.0 and dets["divergence"].window == 21
    assert build_detectors({}) is None
    with pytest.raises(InvalidParameterError, match="unknown detector 'spikes'"):
        build_detectors({"spikes": {"threshold": 8}}, "pyproject.toml")
    with pytest.raises(InvalidParameterError, match=r"detector 'spike' has no field\(s\) thresh"):
        build_detectors({"spike": {"thresh": 8}}, "pyproject.toml")


def test_keep_event_tags_kinds_and_allowed_steps():
    cfg = Options(ignore_tags=("val*",), ignore_kinds=("overflow",), allow_steps=((1500, 1650),))
    assert cfg.keep(_event("spike", 100))
    assert not cfg.keep(_event("spike", 100, tag="val loss"))
    assert not cfg.keep(_event("overflow", 100))
    assert not cfg.keep(_event("spike", 1500)) and not cfg.keep(_event("spike", 1650))
    assert cfg.keep(_event("spike", 1651))


# --------------------------------------------------------------------------- per-rule checks

def test_rule_items_gate_on_fail_on():
    events = [_event("spike", 2410, recovery="none"),
              _event("overflow", 1100, tag="loss scale", severity="warning")]
    from losslens.diagnosis import diagnose

    findings = diagnose(events, RunMeta(precision="fp16"))
    items = rule_items(findings, events, "critical")
    by = {i.name: i for i in items}
    assert not by["unrecovered_spikes"].passed and by["unrecovered_spikes"].step == 2410
    assert by["unrecovered_spikes"].tag == "lm loss"
    assert by["fp16_overflow"].passed and by["fp16_overflow"].severity == "warning"
    assert by["divergence"].passed and by["divergence"].severity is None
    assert [f.severity for f in findings] == ["critical", "warning"]
    items = rule_items(diagnose(events, RunMeta()), events, "warning")
    assert not {i.name: i for i in items}["fp16_overflow"].passed


# --------------------------------------------------------------------------- baseline

def _frame(runs):
    recs = []
    for name, steps, values in runs:
        b = RecordsBuilder()
        b.add_array("lm loss", steps, values)
        recs.append(b.build(name, f"{name}.log", "megatron"))
    return build(recs)


def test_relative_deviation_and_allowed_failures():
    a = np.array([1.0, 2.2, np.nan, np.inf, 0.0, 5.0, np.nan])
    b = np.array([1.0, 2.0, np.nan, np.inf, 0.0, 0.0, 1.0])
    rel = relative_deviation(a, b)
    assert rel[0] == 0 and math.isclose(rel[1], 0.1) and rel[2] == 0 and rel[3] == 0
    assert rel[4] == 0 and rel[5] == math.inf and rel[6] == math.inf
    assert [allowed_failures(n) for n in (1, 2, 99, 250, 10000)] == [0, 1, 1, 2, 50]


def test_compare_baseline_per_step_final_and_new_events():
    steps = np.arange(10, 1010, 10)
    ref = 3.0 + 0.0 * steps
    run = ref.copy()
    run[50:53] *= 1.2  # steps 510-530 out of tolerance
    run[-1] = 3.3  # final 10 % higher
    fr, rf = _frame([("run", steps, run)]), _frame([("ref", steps[:90], ref[:90])])
    new = _event("spike", 510, recovery="fast", severity="info")
    old = _event("spike", 200, severity="info", n=2)
    out = _event("spike", 980, severity="info", n=3)  # past the reference's last step
    bl = compare_baseline(fr, [new, old, out], rf, rf.runs[0], [_event("spike", 205)],
                          fr.runs[0], 0.05, "ref.log")
    assert (bl.common_steps, bl.only_run, bl.only_reference) == (90, 10, 0)
    assert bl.out_of_tolerance == 3 and bl.allowed == 1 and not bl.per_step_passed
    assert [d.step for d in bl.first_out] == [510, 520, 530]
    assert math.isclose(bl.first_out[0].rel, 0.2)
    assert bl.final.step == 900 and bl.final_passed
    assert bl.new_events == (new,)


def test_golden_values_reference(tmp_path):
    golden = {"lm loss": {"start_step": 1, "end_step": 11, "step_interval": 5,
                          "values": {"1": 10.5, "6": 9.75, "11": "nan"}},
              "num-zeros": {"start_step": 1, "end_step": 11, "step_interval": 5,
                            "values": [0, 0, 1]}}
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(golden))
    fr = read_reference(str(path))
    info = fr.runs[0]
    assert info.run == "golden" and info.format == "megatron-golden"
    s = fr.series("golden", "lm loss")
    assert s.step.tolist() == [1, 6, 11] and s.value[:2].tolist() == [10.5, 9.75]
    assert math.isnan(s.value[2])
    assert fr.series("golden", "num-zeros").step.tolist() == [1, 6, 11]
    assert info.roles["lm loss"] == "train_loss"


def _analysis(frame, events, options=None):
    options = options or Options()
    runs = tuple(conclude(info, [e for e in events if e.run == info.run], options)
                 for info in frame.runs)
    return Analysis(frame, runs, options)


def test_run_checks_with_baseline_and_settings():
    steps = np.arange(10, 510, 10)
    fr = _frame([("r", steps, 3.0 + 0.0 * steps)])
    ref = _frame([("r", steps, 2.0 + 0.0 * steps)])
    events = [_event("spike", 300, recovery="none"), _event("spike", 100, severity="info",
                                                            recovery="fast", n=2)]
    options = Options(allow_steps=((250, 350),), baseline="ref.log")
    report = gate(_analysis(fr, events, options), _analysis(ref, [], options))
    rc = report.runs[0]
    assert rc.ignored_events == 1 and [e.start_step for e in rc.events] == [100]
    names = {i.name: i for i in rc.items}
    assert names["unrecovered_spikes"].passed  # ignored by allow-steps
    assert not names["baseline.per_step"].passed and not names["baseline.final_loss"].passed
    assert names["baseline.new_events"].passed  # the new fast spike is info < critical
    assert report.exit_code == 1
    with pytest.raises(InvalidParameterError, match="no train-loss series"):
        gate(_analysis(fr, [], Options(baseline="val.log")), _analysis(
            build([_only_val()]), []))


def _only_val():
    b = RecordsBuilder()
    b.add_array("lm loss validation", [10, 20], [3.0, 3.0])
    return b.build("r", "v.log", "megatron")


# --------------------------------------------------------------------------- outputs

@pytest.fixture
def report():
    steps = np.arange(10, 510, 10)
    fr = _frame([("run,1", steps, 3.0 + 0.0 * steps)])
    events = [Event("spike", "run,1", "lm loss", 300, 310, None, "critical", "none", None, 2.0,
                    id="spike-1"),
              Event("overflow", "run,1", "lm loss", 100, 100, 110, "warning", id="overflow-1")]
    return gate(_analysis(fr, events))


def test_text_output(report):
    text = render_text(report)
    assert text.startswith("losslens check: FAILED - 1 of 1 run(s) failing (fail-on: critical)")
    assert "  FAIL  unrecovered_spikes       critical 1 spike(s) that never recovered " \
           "[step 300, lm loss]" in text
    assert "(below fail-on critical)" in text


def test_json_output(report):
    doc = json.loads(render_json(report))
    assert doc["schema"] == "losslens.check/1" and doc["exit_code"] == 1
    assert doc["passed"] is False and doc["fail_on"] == "critical"
    checks = {c["name"]: c for c in doc["runs"][0]["checks"]}
    assert checks["unrecovered_spikes"]["passed"] is False
    assert checks["unrecovered_spikes"]["step"] == 300
    assert [f["severity"] for f in doc["runs"][0]["findings"]] == ["critical", "warning"]


def test_github_annotations_escape_and_levels(report):
    lines = render_github(report).splitlines()
    err = [ln for ln in lines if ln.startswith("::error ")]
    assert len(err) == 1
    # ',' and ':' are escaped in properties; the message keeps ':' but escapes newlines;
    # a log that is not a file in the workspace gets no file= (GitHub could not show it)
    assert err[0].startswith("::error title=losslens run%2C1%3A 1 spike(s) "
                             "that never recovered::run,1.log: The loss spiked at step(s) 300")
    assert any(ln.startswith("::warning title=") for ln in lines)
    assert lines[-1] == "::notice title=losslens::check failed: 1 run(s), fail-on critical"


def test_junit_is_valid_xml_one_suite_per_run_one_case_per_check(report):
    from losslens.diagnosis import RULES

    root = ET.fromstring(render_junit(report))
    assert root.tag == "testsuites" and root.get("failures") == "1"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["run,1"]
    cases = suites[0].findall("testcase")
    assert len(cases) == len(RULES) == int(suites[0].get("tests"))
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["unrecovered_spikes"]
    f = failed[0].find("failure")
    assert f.get("type") == "critical" and f.get("message") == "1 spike(s) that never recovered"
    assert "Advice:" in f.text
    notes = [c for c in cases if c.find("system-out") is not None]
    assert [c.get("name") for c in notes] == ["fp16_overflow"]


def test_locate_lines_prefers_the_last_line_naming_the_tag(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("saving checkpoint at iteration 30\n"
                   "iteration 30 | lm loss: 3.0\n"
                   "iteration 130 | lm loss: 3.0\n"
                   "resumed\niteration 30 | lm loss: 3.1\n")
    assert locate_lines(str(log), "megatron", {(30, "lm loss"), (130, "grad norm")}) == {
        (30, "lm loss"): 5, (130, "grad norm"): 3}
    assert locate_lines(str(log), "tensorboard", {(30, "lm loss")}) == {}


# --------------------------------------------------------------------------- the command

@pytest.fixture
def logs(tmp_path):
    spiky, clean = tmp_path / "spiky.log", tmp_path / "clean.log"
    spiky.write_text(nanogpt_log())
    clean.write_text(nanogpt_log(spike_at=None))
    return spiky, clean


def test_cli_exit_codes(runner, logs, tmp_path, monkeypatch):
    from losslens.cli import app

    monkeypatch.chdir(tmp_path)
    spiky, clean = logs
    res = runner.invoke(app, ["check", str(clean)])
    assert res.exit_code == 0, res.stdout + res.stderr
    assert res.stdout.startswith("losslens check: PASSED")
    res = runner.invoke(app, ["check", str(spiky), str(clean)])
    assert res.exit_code == 1
    assert "1 of 2 run(s) failing" in res.stdout
    res = runner.invoke(app, ["check", str(tmp_path / "absent.log")])
    assert res.exit_code == 2 and res.stderr.startswith("Error:")
    res = runner.invoke(app, ["check", str(clean), "--fail-on", "fatal"])
    assert res.exit_code == 2


def test_cli_settings_from_pyproject(runner, logs, tmp_path, monkeypatch):
    from losslens.cli import app

    spiky, _ = logs
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.losslens]\n[tool.losslens.detectors.spike]\nmin_ratio = 100.0\n")
    res = runner.invoke(app, ["check", str(spiky)])
    assert res.exit_code == 0, res.stdout
    assert "settings from" in res.stderr and "pyproject.toml [tool.losslens]" in res.stderr
    (tmp_path / "pyproject.toml").write_text("[tool.losslens]\nallow-steps = ['2400-2450']\n")
    assert runner.invoke(app, ["check", str(spiky)]).exit_code == 0
    (tmp_path / "pyproject.toml").write_text("[tool.losslens]\nfail_on = 'fatal'\n")
    res = runner.invoke(app, ["check", str(spiky)])
    assert res.exit_code == 2 and "fail-on must be one of" in res.stderr
    other = tmp_path / "other.toml"
    other.write_text("ignore-tags = ['loss']\n")
    assert runner.invoke(app, ["check", str(spiky), "--config", str(other)]).exit_code == 0


def test_cli_baseline(runner, logs, tmp_path, monkeypatch):
    from losslens.cli import app

    monkeypatch.chdir(tmp_path)
    spiky, clean = logs
    res = runner.invoke(app, ["check", str(clean), "--baseline", str(clean)])
    assert res.exit_code == 0, res.stdout
    assert "0 of 301 common steps outside ±5% (allowed 3)" in res.stdout
    res = runner.invoke(app, ["check", str(spiky), "--baseline", str(clean), "--fail-on",
                              "critical", "--format", "json"])
    assert res.exit_code == 1
    bl = json.loads(res.stdout)["runs"][0]["baseline"]
    assert bl["tag"] == "loss" and bl["common_steps"] == 301
    assert bl["first_out"][0]["step"] == 2410 and bl["out_of_tolerance"] == 60
    assert bl["final_passed"] is False and bl["final"]["step"] == 3000
    assert [e["kind"] for e in bl["new_events"]] == ["changepoint", "spike"]
    res = runner.invoke(app, ["check", str(spiky), "--baseline", str(clean), "--rtol", "1.0"])
    text = res.stdout
    assert "60" not in text.split("per-step vs baseline:")[1].split("\n")[0]


def test_cli_github_and_junit_outputs(runner, logs, tmp_path, monkeypatch):
    from losslens.cli import app

    monkeypatch.chdir(tmp_path)
    spiky, _ = logs
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    res = runner.invoke(app, ["check", "spiky.log", "--format", "github", "--junit-file",
                              str(junit)])
    assert res.exit_code == 1
    err = [ln for ln in res.stdout.splitlines() if ln.startswith("::error ")]
    # nanoGPT logs every 10 iterations from 0: iteration 2410 is on line 242
    assert err[0].startswith("::error file=spiky.log,line=242,title=losslens spiky.log%3A ")
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.find("testsuite").get("name") == "spiky.log"
    res = runner.invoke(app, ["check", "spiky.log", "-f", "junit", "-o", "report.xml"])
    assert res.exit_code == 1 and res.stdout == ""
    assert ET.parse(tmp_path / "report.xml").getroot().tag == "testsuites"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
