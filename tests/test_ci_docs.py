"""docs/ci.md: the GitHub Actions workflow, the GitLab job and the pre-commit hook are valid
YAML of the right shape, and the commands in them run as written on a small repository."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from test_exporters import nanogpt_log

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ci.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def _yaml_docs() -> dict[str, dict]:
    docs = [yaml.safe_load(b) for b in _blocks("yaml")]
    return {"github": next(d for d in docs if "jobs" in d),
            "gitlab": next(d for d in docs if "loss-check" in d and "script" in d["loss-check"]),
            "precommit": next(d for d in docs if "repos" in d)}


def _losslens(cmd: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a documented `losslens ...` command line with this checkout's losslens."""
    args = shlex.split(cmd)
    assert args[0] == "losslens"
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "losslens", *args[1:]], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "spiky.log").write_text(nanogpt_log())
    (tmp_path / "logs" / "clean.log").write_text(nanogpt_log(spike_at=None))
    (tmp_path / "README.md").write_text("not a log\n")
    return tmp_path


def test_github_workflow(repo):
    wf = _yaml_docs()["github"]
    assert wf["on"] if "on" in wf else wf[True]  # YAML 1.1 reads `on` as True
    steps = wf["jobs"]["loss-check"]["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    check = next(s for s in steps if "losslens check" in s.get("run", ""))
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "losslens-junit.xml"
    summary = repo / "summary.md"
    res = _losslens(check["run"], repo, {"GITHUB_WORKSPACE": str(repo),
                                         "GITHUB_STEP_SUMMARY": str(summary)})
    assert res.returncode == 1, res.stderr
    assert re.search(r"^::error file=logs/spiky\.log,line=\d+,title=", res.stdout, re.M)
    assert "### losslens check: FAILED" in summary.read_text()
    assert ET.parse(repo / "losslens-junit.xml").getroot().get("failures") == "1"


def test_gitlab_job(repo):
    job = _yaml_docs()["gitlab"]["loss-check"]
    assert job["artifacts"]["when"] == "always"
    report = job["artifacts"]["reports"]["junit"]
    cmd = next(c for c in job["script"] if c.startswith("losslens check"))
    res = _losslens(cmd, repo, {"CI_PROJECT_DIR": str(repo)})
    assert res.returncode == 1, res.stderr
    root = ET.parse(repo / report).getroot()
    assert [s.get("file") for s in root.findall("testsuite")] == ["logs/clean.log",
                                                                  "logs/spiky.log"]


def test_precommit_hook_runs_on_the_matching_files(repo):
    (hook,) = _yaml_docs()["precommit"]["repos"][0]["hooks"]
    assert hook["language"] == "system"
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*")
                   if p.is_file() and re.search(hook["files"], str(p.relative_to(repo))))
    assert files == ["logs/clean.log", "logs/spiky.log"]
    cmd = " ".join([hook["entry"], *hook["args"]])
    # pre-commit passes the staged files as arguments
    assert _losslens(f"{cmd} logs/clean.log", repo).returncode == 0
    res = _losslens(f"{cmd} {' '.join(files)}", repo)
    assert res.returncode == 1 and "1 of 2 run(s) failing" in res.stdout
