"""CI outputs of `losslens check`: JUnit valid against the Jenkins xunit schema and read the
way GitLab reads it (also on exit 2), GitHub annotations relative to the workspace with the log
line, the step summary, and an empty log named as such."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from test_exporters import nanogpt_log

XSD = Path(__file__).resolve().parent / "data" / "ci" / "junit-10.xsd"


def _validate(xml_text: str) -> None:
    import xmlschema

    xmlschema.XMLSchema(str(XSD)).validate(xml_text)


def gitlab_read(xml_text: str) -> list[dict]:
    """GitLab's JUnit parser rules (lib/gitlab/ci/parsers/test/junit.rb): testsuites >
    testsuite > testcase (or a bare testsuite); per case classname, name, time as a float,
    file; the status from a failure / error / skipped child, success otherwise."""
    root = ET.fromstring(xml_text)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    cases = []
    for suite in suites:
        for case in suite.iter("testcase"):
            status = "success"
            for child, name in (("failure", "failed"), ("error", "error"),
                                ("skipped", "skipped")):
                if case.find(child) is not None:
                    status = name
            cases.append({"suite": suite.get("name"), "classname": case.get("classname"),
                          "name": case.attrib["name"], "time": float(case.attrib["time"]),
                          "status": status})
    return cases


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A workspace with a spiky and a clean log under logs/, the current folder inside it."""
    (tmp_path / ".git").mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "spiky.log").write_text(nanogpt_log())
    (logs / "clean.log").write_text(nanogpt_log(spike_at=None))
    (logs / "empty.log").write_text("")
    monkeypatch.chdir(logs)
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    monkeypatch.delenv("CI_PROJECT_DIR", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


def test_junit_valid_for_jenkins_and_gitlab(runner, repo):
    from losslens.cli import app

    res = runner.invoke(app, ["check", "spiky.log", "clean.log", "--format", "junit"])
    assert res.exit_code == 1, res.stderr
    _validate(res.stdout)
    root = ET.fromstring(res.stdout)
    assert all(c.get("file") is None for c in root.iter("testcase"))
    assert float(root.get("time")) > 0
    assert [s.get("file") for s in root.findall("testsuite")] == ["logs/spiky.log",
                                                                  "logs/clean.log"]
    cases = gitlab_read(res.stdout)
    failed = [(c["suite"], c["name"]) for c in cases if c["status"] == "failed"]
    assert failed == [("spiky.log", "unrecovered_spikes")]
    assert all(c["time"] > 0 for c in cases)


def test_junit_written_on_exit_2_with_one_errored_case(runner, repo):
    from losslens.cli import app

    res = runner.invoke(app, ["check", "empty.log", "--junit-file", "report.xml"])
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("Error: empty.log: file is empty (0 bytes)")
    doc = (repo / "logs" / "report.xml").read_text()
    _validate(doc)
    cases = gitlab_read(doc)
    assert [(c["name"], c["status"]) for c in cases] == [("read and analyse", "error")]
    err = ET.fromstring(doc).find(".//error")
    assert err.get("type") == "NoSeriesError" and "file is empty" in err.get("message")
    res = runner.invoke(app, ["check", "absent.log", "--format", "junit"])
    assert res.exit_code == 2 and gitlab_read(res.stdout)[0]["status"] == "error"


def test_empty_log_is_named_empty_not_unknown_format(runner, repo):
    from losslens.cli import app

    (repo / "logs" / "blank.log").write_text("\n  \n")
    for name, size in (("empty.log", "0 bytes"), ("blank.log", "4 bytes, only whitespace")):
        res = runner.invoke(app, ["analyze", name])
        assert res.exit_code == 2
        assert res.stderr == (f"Error: {name}: file is empty ({size}): nothing was logged; "
                              "did the job crash before its first log line?\n")


def test_github_annotations_relative_with_log_line_and_summary(runner, repo, monkeypatch):
    from losslens.cli import app

    summary = repo / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    res = runner.invoke(app, ["check", "spiky.log", "--format", "github"])
    assert res.exit_code == 1
    err = [ln for ln in res.stdout.splitlines() if ln.startswith("::error ")]
    assert len(err) == 1
    head, _, message = err[0].partition("::")[2].partition("::")
    props = dict(p.split("=", 1) for p in head.split(" ", 1)[1].split(","))
    line = int(props["line"])
    assert props["file"] == "logs/spiky.log"
    assert message.startswith(f"logs/spiky.log, log line {line}: ")
    assert (repo / "logs" / "spiky.log").read_text().splitlines()[line - 1].startswith("iter 24")
    text = summary.read_text()
    assert text.startswith("earlier step\n### losslens check: FAILED")
    assert "| spiky.log | **FAIL** | 1 spike\\(s\\) that never recovered |" in text
    # $GITHUB_WORKSPACE wins over the git root; a log outside it gets no file=
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo / "logs"))
    res = runner.invoke(app, ["check", "spiky.log", "--format", "github"])
    assert "::error file=spiky.log,line=" in res.stdout
    monkeypatch.setenv("GITHUB_WORKSPACE", str(repo / "elsewhere"))
    res = runner.invoke(app, ["check", "spiky.log", "--format", "github"])
    err = [ln for ln in res.stdout.splitlines() if ln.startswith("::error ")][0]
    assert "file=" not in err and f"{repo / 'logs' / 'spiky.log'}, log line" in err
