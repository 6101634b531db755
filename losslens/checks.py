"""`losslens check`: the CI gate over `pipeline.analyze` — per-rule checks, baseline, CI outputs.

`gate(analysis)` judges an Analysis made with the command's Options: the findings are the
analysis' own (so `check` and `analyze` agree on the same log and settings; events the
settings ignore were set apart by `analyze`). A run passes when no diagnosis rule made a
finding at or above `fail_on` and, with a baseline,
when its train loss stays within tolerance of the reference the way Megatron-LM's golden-value
functional tests compare: per-step relative tolerance at the common steps (default rtol 0.05,
theirs for `lm loss`), with 1% of the steps (at least 1, at most 50) allowed outside it for
nondeterministic kernels; the final loss within the same tolerance; and no new events.

Settings: `losslens.options` (the same file every command reads). Outputs: text and JSON
(`losslens.check/1`) here; GitHub annotations and JUnit XML in `cioutput`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import InvalidParameterError
from .events import severity_rank
from .options import Options
from .textsafe import line


def at_or_above(severity: str | None, level: str) -> bool:
    return severity is not None and severity_rank(severity) >= severity_rank(level)


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class CheckItem:
    """One check of one run: a diagnosis rule or a baseline comparison."""

    name: str
    passed: bool
    severity: str | None  # of the finding (None: nothing found)
    title: str
    message: str = ""
    step: int | None = None  # where to point an annotation
    tag: str | None = None
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "skipped": self.skipped,
                "severity": self.severity, "title": self.title, "message": self.message,
                "step": self.step, "tag": self.tag}


@dataclass(frozen=True)
class Deviation:
    step: int
    value: float
    reference: float
    rel: float  # |value - reference| / |reference|; inf when only one is finite

    def to_dict(self) -> dict[str, Any]:
        def num(x: float) -> Any:
            return x if math.isfinite(x) else (None if math.isnan(x) else str(x))
        return {"step": self.step, "value": num(self.value), "reference": num(self.reference),
                "rel": num(self.rel)}


@dataclass(frozen=True)
class BaselineResult:
    """A run's train loss against a reference run's (golden values)."""

    reference: str
    reference_run: str
    tag: str
    reference_tag: str
    rtol: float
    common_steps: int
    only_run: int
    only_reference: int
    out_of_tolerance: int
    allowed: int
    first_out: tuple[Deviation, ...]
    max_dev: Deviation | None
    final: Deviation | None
    new_events: tuple[Any, ...]

    @property
    def per_step_passed(self) -> bool:
        return self.common_steps > 0 and self.out_of_tolerance <= self.allowed

    @property
    def final_passed(self) -> bool:
        return self.final is not None and self.final.rel <= self.rtol

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "reference_run": self.reference_run,
                "tag": self.tag, "reference_tag": self.reference_tag, "rtol": self.rtol,
                "common_steps": self.common_steps, "only_run": self.only_run,
                "only_reference": self.only_reference,
                "out_of_tolerance": self.out_of_tolerance, "allowed": self.allowed,
                "per_step_passed": self.per_step_passed, "final_passed": self.final_passed,
                "first_out": [d.to_dict() for d in self.first_out],
                "max_deviation": self.max_dev.to_dict() if self.max_dev else None,
                "final": self.final.to_dict() if self.final else None,
                "new_events": [e.to_dict() for e in self.new_events]}


@dataclass(frozen=True)
class RunCheck:
    run: str
    source: str
    format: str
    items: tuple[CheckItem, ...]
    findings: tuple[Any, ...]
    events: tuple[Any, ...]
    ignored_events: int = 0
    baseline: BaselineResult | None = None
    error: str | None = None  # the run could not be read or analysed (a folder's bad unit)

    @property
    def passed(self) -> bool:
        return all(i.passed for i in self.items)


@dataclass(frozen=True)
class CheckReport:
    runs: tuple[RunCheck, ...]
    options: Options

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.runs)

    @property
    def exit_code(self) -> int:
        """2 when a run could not be read or analysed (an input error, not a finding), else
        1 on a failing check, else 0."""
        if any(r.error for r in self.runs):
            return 2
        return 0 if self.passed else 1


# --------------------------------------------------------------------------- per-rule checks

def _anchor(finding, events) -> tuple[int | None, str | None]:
    by_id = {e.id: e for e in events}
    first = [by_id[i] for i in finding.event_ids if i in by_id]
    if not first:
        return None, None
    e = min(first, key=lambda e: e.start_step)
    return e.start_step, e.tag


def rule_items(findings, events, fail_on: str) -> list[CheckItem]:
    """One CheckItem per diagnosis rule (a stable set of test cases) from a run's findings."""
    from .diagnosis import RULES, rule_name

    by_rule = {f.rule: f for f in findings}
    items = []
    for rule in RULES:
        name = rule_name(rule)
        f = by_rule.get(name)
        if f is None:
            items.append(CheckItem(name, True, None, f"{name.replace('_', ' ')}: nothing found"))
            continue
        step, tag = _anchor(f, events)
        items.append(CheckItem(name, not at_or_above(f.severity, fail_on), f.severity, f.title,
                               f"{f.explanation} Advice: {f.advice}", step, tag))
    names = {rule_name(rule) for rule in RULES}
    for f in findings:  # run-level findings outside RULES (`diagnosis.no_loss`): one item each
        if f.rule not in names:
            step, tag = _anchor(f, events)
            items.append(CheckItem(f.rule, not at_or_above(f.severity, fail_on), f.severity,
                                   f.title, f"{f.explanation} Advice: {f.advice}", step, tag))
    return items


# --------------------------------------------------------------------------- baseline

def _is_golden(doc: Any) -> bool:
    return (isinstance(doc, dict) and bool(doc) and all(
        isinstance(v, dict) and "values" in v for v in doc.values()))


def _golden_points(metric: Mapping[str, Any]) -> tuple[list[int], list[float]]:
    values = metric["values"]
    if isinstance(values, dict):
        pairs = sorted((int(k), v) for k, v in values.items())
    else:  # older files: a list from start_step every step_interval
        start, every = int(metric.get("start_step", 1)), int(metric.get("step_interval", 1))
        pairs = [(start + i * every, v) for i, v in enumerate(values)]
    steps = [s for s, _ in pairs]
    return steps, [float(v) if not isinstance(v, str) else float(v.lower()) for _, v in pairs]


def golden_frame(doc: Mapping[str, Any], path: Path):
    """A Frame from a Megatron-LM golden-values JSON ({metric: {start_step, end_step,
    step_interval, values}}), so the reference goes through the same detectors."""
    from .frame import build
    from .records import RecordsBuilder

    b = RecordsBuilder()
    try:
        for metric, body in doc.items():
            steps, values = _golden_points(body)
            b.add_array(str(metric), steps, values)
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidParameterError(f"{path}: not a golden-values file ({exc})") from None
    return build([b.build(path.stem, str(path), "megatron-golden")])


def read_reference(ref: str, roles: Mapping[str, str] | None = None):
    """The baseline as a Frame: a golden-values JSON, or any log losslens reads."""
    import json

    p = Path(ref)
    if p.is_file() and p.suffix.lower() == ".json":
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            doc = None
        if _is_golden(doc):
            return golden_frame(doc, p)
    from . import read

    return read(ref, roles=roles)


def pair_train_tags(info, ref_info, reference: str) -> tuple[str, str]:
    tags, rtags = info.tags_with_role("train_loss"), ref_info.tags_with_role("train_loss")
    for t in tags:
        if t in rtags:
            return t, t
    if len(tags) == 1 and len(rtags) == 1:
        return tags[0], rtags[0]
    raise InvalidParameterError(
        f"--baseline {reference}: no train-loss series to compare: run {info.run} has "
        f"{tags or 'none'}, reference run {ref_info.run} has {rtags or 'none'} "
        "(use --role train_loss=TAG)")


def relative_deviation(a, b):
    """|a - b| / |b| per step; 0 where both are the same non-finite value, inf where only one is
    finite or the reference is 0 and the value is not."""
    import numpy as np

    with np.errstate(all="ignore"):
        rel = np.abs(a - b) / np.abs(b)
    same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b)) | ((a == 0) & (b == 0))
    rel = np.where(np.isnan(rel), np.inf, rel)
    return np.where(same, 0.0, rel)


def allowed_failures(n: int) -> int:
    """Megatron-LM's functional tests: 1% of the steps, at least 1 and at most 50 (0 for 1)."""
    return 0 if n <= 1 else min(max(n // 100, 1), 50)


def _dev(steps, a, b, rel, i) -> Deviation:
    return Deviation(int(steps[i]), float(a[i]), float(b[i]), float(rel[i]))


def _match(event, ref_events, window: int, tag_map: Mapping[str, str]) -> bool:
    lo, hi = event.start_step - window, (event.end_step or event.start_step) + window
    want = tag_map.get(event.tag, event.tag)
    return any(r.kind == event.kind and r.tag == want and
               r.start_step <= hi and (r.end_step or r.start_step) >= lo for r in ref_events)


def compare_baseline(frame, run_events, ref_frame, ref_run, ref_events, info, rtol: float,
                     reference: str) -> BaselineResult:
    """The run's train loss against the reference run's, and the events new in the run."""
    import numpy as np

    tag, rtag = pair_train_tags(info, ref_run, reference)
    s, r = frame.series(info.run, tag), ref_frame.series(ref_run.run, rtag)
    common, i, j = np.intersect1d(s.step, r.step, return_indices=True)
    a, b = s.value[i], r.value[j]
    rel = relative_deviation(a, b)
    out = np.flatnonzero(rel > rtol)
    spacing = int(np.median(np.diff(s.step))) if len(s) > 1 else 1
    window = max(1, 2 * spacing)
    lo, hi = (int(r.step.min()), int(r.step.max())) if len(r) else (0, -1)
    new = tuple(e for e in run_events if lo <= e.start_step <= hi
                and not _match(e, ref_events, window, {tag: rtag}))
    n = int(common.shape[0])
    return BaselineResult(
        reference=reference, reference_run=ref_run.run, tag=tag, reference_tag=rtag,
        rtol=rtol, common_steps=n, only_run=int(len(s) - n), only_reference=int(len(r) - n),
        out_of_tolerance=int(out.shape[0]), allowed=allowed_failures(n),
        first_out=tuple(_dev(common, a, b, rel, k) for k in out[:5]),
        max_dev=_dev(common, a, b, rel, int(np.argmax(rel))) if n else None,
        final=_dev(common, a, b, rel, n - 1) if n else None, new_events=new)


def _pct(d: Deviation) -> str:
    if not math.isfinite(d.rel):
        return "non-finite"
    sign = "+" if d.value >= d.reference else "-"
    return f"{sign}{100 * d.rel:.1f}%"


def describe_deviation(d: Deviation) -> str:
    return f"step {d.step}: {d.value:.4g} vs {d.reference:.4g} ({_pct(d)})"


def baseline_items(bl: BaselineResult, fail_on: str) -> list[CheckItem]:
    tol = f"±{100 * bl.rtol:g}%"
    if bl.common_steps == 0:
        per = CheckItem("baseline.per_step", False, "critical",
                        f"No common steps with the baseline ({bl.reference_tag})",
                        f"{bl.tag} shares no step with {bl.reference}.", None, bl.tag)
    else:
        first = "; ".join(describe_deviation(d) for d in bl.first_out)
        msg = (f"{bl.out_of_tolerance} of {bl.common_steps} common steps outside {tol} "
               f"(allowed {bl.allowed})" + (f"; first: {first}" if first else "")
               + (f"; max deviation at {describe_deviation(bl.max_dev)}" if bl.max_dev else ""))
        step = bl.first_out[0].step if bl.first_out else None
        per = CheckItem("baseline.per_step", bl.per_step_passed,
                        None if bl.per_step_passed else "critical",
                        f"{bl.tag} per-step vs baseline: {bl.out_of_tolerance} of "
                        f"{bl.common_steps} steps outside {tol}", msg, step, bl.tag)
    if bl.final is None:
        fin = CheckItem("baseline.final_loss", False, "critical", "No final loss to compare",
                        "", None, bl.tag)
    else:
        fin = CheckItem("baseline.final_loss", bl.final_passed,
                        None if bl.final_passed else "critical",
                        f"final {bl.tag} vs baseline: {describe_deviation(bl.final)}",
                        f"within {tol}" if bl.final_passed else f"outside {tol}",
                        bl.final.step, bl.tag)
    bad = [e for e in bl.new_events if at_or_above(e.severity, fail_on)]
    worst = max((e.severity for e in bl.new_events), key=severity_rank, default=None)
    listing = "; ".join(f"{e.kind} at {e.start_step} ({e.severity}, {e.tag})"
                        for e in bl.new_events[:8])
    new = CheckItem("baseline.new_events", not bad, worst,
                    f"{len(bl.new_events)} event(s) not in the baseline" if bl.new_events
                    else "no new events", listing,
                    bl.new_events[0].start_step if bl.new_events else None,
                    bl.new_events[0].tag if bl.new_events else None)
    return [per, fin, new]


# --------------------------------------------------------------------------- the gate

def _reference_run(ref_analysis, run: str, reference: str):
    runs = ref_analysis.runs
    for ra in runs:
        if ra.info.run == run:
            return ra
    if len(runs) == 1:
        return runs[0]
    raise InvalidParameterError(
        f"--baseline {reference} holds {len(runs)} runs ({', '.join(r.info.run for r in runs)}) "
        f"and none is named {run}")


def gate(analysis, reference=None) -> CheckReport:
    """Gate every run of `analysis` (made by `pipeline.analyze` with the command's Options:
    its `fail_on`, `rtol`, `baseline`); `reference` is the baseline's Analysis, made with the
    same Options."""
    options = analysis.options
    out = []
    for ra in analysis.runs:
        if ra.info.error:  # a unit that could not be read or analysed: an error, not a pass
            item = CheckItem("read", False, None, "could not be read or analysed", ra.info.error)
            out.append(RunCheck(ra.info.run, ra.info.source, ra.info.format, (item,), (), (),
                                error=ra.info.error))
            continue
        items = rule_items(ra.findings, ra.events, options.fail_on)
        bl = None
        if reference is not None:
            name = options.baseline or ""
            ref = _reference_run(reference, ra.info.run, name)
            bl = compare_baseline(analysis.frame, ra.events, reference.frame, ref.info,
                                  ref.events, ra.info, options.rtol, name)
            items += baseline_items(bl, options.fail_on)
        out.append(RunCheck(ra.info.run, ra.info.source, ra.info.format, tuple(items),
                            ra.findings, ra.events, len(ra.ignored), bl))
    return CheckReport(tuple(out), options)


# --------------------------------------------------------------------------- outputs

CHECK_SCHEMA = "losslens.check/1"


def _status(item: CheckItem) -> str:
    return "FAIL" if not item.passed else ("note" if item.severity else "pass")


def render_text(report: CheckReport) -> str:
    """The people-facing report: failing checks first, then notes, then a count of the rest."""
    failing = sum(not r.passed for r in report.runs)
    head = (f"losslens check: {'PASSED' if report.passed else 'FAILED'} - {failing} of "
            f"{len(report.runs)} run(s) failing (fail-on: {report.options.fail_on}"
            + (f"; settings: {report.options.source}" if report.options.source else "") + ")")
    lines = [head]
    for rc in report.runs:
        lines += ["", f"{rc.run} ({rc.format}: {rc.source}): "
                  f"{'passed' if rc.passed else 'FAILED'}"]
        lines[-1] = line(lines[-1])  # names from logs: no escape sequence, one line
        shown = [i for i in rc.items if not i.passed] + [
            i for i in rc.items if i.passed and (i.severity or i.name.startswith("baseline"))]
        for item in shown:
            where = f" [step {item.step}, {item.tag}]" if item.step is not None else ""
            below = "" if not item.passed else f" (below fail-on {report.options.fail_on})"
            lines.append(line(f"  {_status(item):4}  {item.name:24} {item.severity or '':8} "
                              f"{item.title}{where}{below}"))
            if item.message and (not item.passed or item.name.startswith("baseline")):
                lines += [f"        {line(part)}" for part in item.message.split("\n")]
        quiet = len(rc.items) - len(shown)
        if quiet:
            lines.append(f"  pass  {quiet} other check(s): nothing found")
        if rc.ignored_events:
            lines.append(f"  ({rc.ignored_events} event(s) ignored by the settings)")
    return "\n".join(lines) + "\n"


def render_json(report: CheckReport) -> str:
    import json

    from . import __version__

    runs = [{"run": rc.run, "source": rc.source, "format": rc.format, "passed": rc.passed,
             "checks": [i.to_dict() for i in rc.items],
             "findings": [f.to_dict() for f in rc.findings],
             "events": [e.to_dict() for e in rc.events],
             "ignored_events": rc.ignored_events, "error": rc.error,
             "baseline": rc.baseline.to_dict() if rc.baseline else None} for rc in report.runs]
    doc = {"schema": CHECK_SCHEMA, "version": __version__, "passed": report.passed,
           "exit_code": report.exit_code, "fail_on": report.options.fail_on,
           "settings": report.options.source, "runs": runs}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# the CI outputs live in cioutput; re-exported for callers of the check library
from .cioutput import (BINARY_FORMATS, locate_lines, render_github,  # noqa: E402,F401
                       render_junit)

RENDERERS = {"text": render_text, "json": render_json, "github": render_github,
             "junit": render_junit}
