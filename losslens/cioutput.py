"""The CI outputs of a `checks.CheckReport`: GitHub workflow annotations (+ the job summary)
and JUnit XML.

- GitHub: `file=` relative to the workspace ($GITHUB_WORKSPACE, GitLab's $CI_PROJECT_DIR, else
  the git repository around the current folder), only for a text log inside it (GitHub shows
  annotations only on repository files); the message says which log and which line
  (`logs/train.log, log line 314: ...`); `step_summary` is the Markdown table for
  $GITHUB_STEP_SUMMARY.
- JUnit: valid against the Jenkins xunit plugin's JUnit schema (junit-10.xsd: no `file` on
  testcase) and read by GitLab's parser; `time` everywhere; `render_junit_error` is the
  document for a check that could not run (exit 2): one errored testcase.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .checks import CheckReport


#: Formats whose files are not text: no line numbers in annotations.
BINARY_FORMATS = ("tensorboard", "wandb")


def locate_lines(source: str, fmt: str, wants: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
    """Best-effort 1-based line numbers of (step, tag) in a text log, for annotations.

    The Frame does not keep line numbers, so this scans the file once for the step numbers
    as whole words and prefers the last line that also names the tag (the stitched view keeps
    the last write); a line with the step alone is the fallback.
    """
    import numpy as np

    path = Path(source)
    if fmt in BINARY_FORMATS or not wants or not path.is_file():
        return {}
    data = path.read_bytes()
    nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    steps = sorted({s for s, _ in wants})
    pattern = re.compile(rb"(?<![\w.])(" + b"|".join(str(s).encode() for s in steps)
                         + rb")(?![\w.])")
    by_step: dict[int, list[str]] = {}
    for s, t in wants:
        by_step.setdefault(s, []).append(t)
    best: dict[tuple[int, str], int] = {}
    fallback: dict[tuple[int, str], int] = {}
    for m in pattern.finditer(data):
        k = int(np.searchsorted(nl, m.start()))  # newlines before the match
        start = int(nl[k - 1]) + 1 if k else 0
        end = int(nl[k]) if k < nl.shape[0] else len(data)
        line = data[start:end]
        for tag in by_step[int(m.group(1))]:
            fallback.setdefault((int(m.group(1)), tag), k + 1)
            if tag.encode() in line:
                best[(int(m.group(1)), tag)] = k + 1
    return {**fallback, **best}


def workspace() -> Path:
    """Where annotation paths are relative to: $GITHUB_WORKSPACE, GitLab's $CI_PROJECT_DIR,
    else the git repository around the current folder, else the current folder."""
    import os

    for var in ("GITHUB_WORKSPACE", "CI_PROJECT_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def _relpath(source: str, root: Path | None = None) -> str | None:
    """`source` relative to the workspace, or None when it lies outside it."""
    try:
        return Path(source).resolve().relative_to((root or workspace()).resolve()).as_posix()
    except (ValueError, OSError):
        return None


def _where(rc, line: int | None, root: Path | None = None) -> tuple[str | None, str]:
    """The annotation's `file=` (a text log inside the workspace; None for folders, binary
    logs and files outside it, which GitHub cannot show) and the words for the message:
    `logs/train.log, log line 314`."""
    from .textsafe import line as safe

    rel = _relpath(rc.source, root)
    is_file = Path(rc.source).is_file() and rc.format not in BINARY_FORMATS
    name = rel if rel is not None else str(Path(rc.source).absolute())
    words = safe(name) + (f", log line {line}" if line else "")
    return (rel if is_file and rel is not None else None), words


def render_github(report: CheckReport, root: Path | None = None) -> str:
    """GitHub workflow commands: ::error for failing checks, ::warning / ::notice for the rest.

    `file=` is relative to the workspace (GitHub shows annotations only on files in the
    repository) and given only for a text log inside it; the message always says which log
    and which line (`logs/train.log, log line 314: ...`)."""
    from .textsafe import github_message, github_property

    out = []
    for rc in report.runs:
        items = [i for i in rc.items if not i.passed or i.severity]
        wants = {(i.step, i.tag) for i in items if i.step is not None and i.tag}
        lines = locate_lines(rc.source, rc.format, wants)
        for item in items:
            level = ("error" if not item.passed else
                     "warning" if item.severity == "warning" else "notice")
            line = lines.get((item.step, item.tag)) if item.step is not None else None
            path, words = _where(rc, line, root)
            props = []
            if path:
                props.append(f"file={github_property(path)}")
                if line:
                    props.append(f"line={line}")
            props.append(f"title={github_property(f'losslens {rc.run}: {item.title}')}")
            body = f"{words}: {item.message or item.title}"
            out.append(f"::{level} {','.join(props)}::{github_message(body)}")
    verdict = "passed" if report.passed else "failed"
    summary = f"check {verdict}: {len(report.runs)} run(s), fail-on {report.options.fail_on}"
    out.append(f"::notice title=losslens::{github_message(summary)}")
    return "\n".join(out) + "\n"


def step_summary(report: CheckReport) -> str:
    """Markdown for `$GITHUB_STEP_SUMMARY`: the verdict and one table row per run."""
    from .textsafe import markdown_cell

    head = "passed" if report.passed else "FAILED"
    out = [f"### losslens check: {head}", "",
           f"fail-on `{report.options.fail_on}`, {len(report.runs)} run(s)", "",
           "| run | result | failing checks | notes |", "|---|---|---|---|"]
    for rc in report.runs:
        fails = [i.title for i in rc.items if not i.passed]
        notes = [i.title for i in rc.items if i.passed and i.severity]
        out.append(f"| {markdown_cell(rc.run)} | {'pass' if rc.passed else '**FAIL**'} | "
                   f"{markdown_cell('; '.join(fails)) or '-'} | "
                   f"{markdown_cell('; '.join(notes)) or '-'} |")
    return "\n".join(out) + "\n\n"


def append_step_summary(text: str) -> bool:
    """Append to the file `$GITHUB_STEP_SUMMARY` names, when it does; True if written."""
    import os

    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        from .errors import OutputError

        raise OutputError(f"$GITHUB_STEP_SUMMARY {path}: cannot write "
                          f"({exc.strerror or exc})") from None
    return True


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _x(text: Any) -> str:
    """Text for XML: controls from logs made visible (`textsafe.terminal`: an ESC or a C1
    CSI in a tag reaches no terminal that shows the CI log), then what XML cannot hold
    dropped."""
    from .textsafe import terminal

    return _XML_BAD.sub("", terminal(text))


def _seconds(t: float) -> str:
    return f"{max(t, 0.0):.3f}"


def render_junit(report: CheckReport, elapsed: float | None = None) -> str:
    """JUnit XML: one testsuite per run, one testcase per check, <failure> when it fails.

    Valid against the Jenkins xunit plugin's JUnit schema (junit-10.xsd) and read by GitLab's
    and GitHub test reporters: `time` on every element (`elapsed`, the command's wall time,
    shared equally between the runs and between a run's checks), the log in
    the testsuite's `file` (testcase takes no `file` in that schema)."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="losslens")
    total = fails = errors = 0
    for rc in report.runs:
        n_fail = 0 if rc.error else sum(not i.passed for i in rc.items)
        n_err = len(rc.items) if rc.error else 0  # a unit that could not be read: an error
        t_suite = (elapsed or 0.0) / len(report.runs)
        suite = ET.SubElement(root, "testsuite", name=_x(rc.run), tests=str(len(rc.items)),
                              failures=str(n_fail), errors=str(n_err), skipped="0",
                              time=_seconds(t_suite), file=_x(_relpath(rc.source) or rc.source))
        props = ET.SubElement(suite, "properties")
        for k, v in (("source", rc.source), ("format", rc.format),
                     ("fail_on", report.options.fail_on)):
            ET.SubElement(props, "property", name=k, value=_x(v))
        t_case = t_suite / max(len(rc.items), 1)
        for item in rc.items:
            case = ET.SubElement(suite, "testcase", classname=_x(f"losslens.{rc.run}"),
                                 name=_x(item.name), time=_seconds(t_case))
            if rc.error:  # not a finding: the input could not be read or analysed
                ET.SubElement(case, "error", message=_x(item.title),
                              type="input").text = _x(rc.error)
            elif not item.passed:
                fail = ET.SubElement(case, "failure", message=_x(item.title),
                                     type=_x(item.severity or "failure"))
                fail.text = _x(item.message or item.title)
            elif item.severity:
                ET.SubElement(case, "system-out").text = _x(
                    f"{item.severity}: {item.title} (below fail-on {report.options.fail_on})")
        total += len(rc.items)
        fails += n_fail
        errors += n_err
    return _junit_doc(root, total, fails, errors, elapsed)


def render_junit_error(message: str, paths: Sequence[str], elapsed: float | None = None,
                       kind: str = "LossLensError") -> str:
    """The JUnit document when the check could not run (exit 2): one testsuite, one errored
    testcase carrying the error, so the CI's test view says what broke instead of being
    empty."""
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="losslens")
    where = ", ".join(_relpath(p) or p for p in paths)
    suite = ET.SubElement(root, "testsuite", name="losslens", tests="1", failures="0",
                          errors="1", skipped="0", time=_seconds(elapsed or 0.0))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="paths", value=_x(where))
    case = ET.SubElement(suite, "testcase", classname="losslens", name="read and analyse",
                         time=_seconds(elapsed or 0.0))
    err = ET.SubElement(case, "error", message=_x(message), type=_x(kind))
    err.text = _x(f"losslens check could not run: {message}")
    return _junit_doc(root, 1, 0, 1, elapsed)


def _junit_doc(root, tests: int, failures: int, errors: int, elapsed: float | None) -> str:
    import xml.etree.ElementTree as ET

    root.set("tests", str(tests))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    root.set("time", _seconds(elapsed or 0.0))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"
