"""The analysis as Markdown (`losslens analyze --format markdown`): for PRs, wikis, run notes.

Per run: a summary, the series read, the events table, the findings with advice and the
playbook entries they cite, and the skip plan with the flags for each trainer. Built from the
typed records of `pipeline.Analysis` only.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from ..events import Event, Finding, SkipPlan
from ..textsafe import line, markdown, markdown_code
from ..frame import RunInfo

SEVERITY_LABEL = {"info": "INFO", "warning": "WARNING", "critical": "CRITICAL"}


def text(value: object) -> str:
    """Prose from a log (tags, run names inside findings): HTML characters as entities, so
    a Markdown renderer that passes HTML through shows them instead of interpreting them;
    control characters visible and newlines folded (`textsafe.line`)."""
    return line(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cell(value: object) -> str:
    """A table cell: HTML characters as entities, pipes escaped, newlines folded."""
    raw = "" if value is None else str(value).replace("\r", " ").replace("\n", " ")
    return text(raw).replace("\\", "\\\\").replace("|", "\\|")


def code(value: object) -> str:
    return markdown_code(value)


def table(header: Sequence[str], rows: Iterable[Sequence[object]],
          right: Sequence[int] = ()) -> list[str]:
    """A pipe table; columns in `right` are right-aligned (numbers)."""
    rule = "|".join("---:" if i in right else "---" for i in range(len(header)))
    out = ["| " + " | ".join(header) + " |", "|" + rule + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out


def steps_text(e: Event) -> str:
    if e.end_step is not None and e.end_step != e.start_step:
        return f"{e.start_step}–{e.end_step}"
    return f"{e.start_step}" + ("–(not back)" if e.kind == "spike" and e.recovery == "none"
                                else "")


def event_rows(events: Sequence[Event]) -> list[list[object]]:
    """The table rows; a storm of non-critical events of one kind on one series is one row,
    as in the terminal and HTML reports."""
    from .units import Storm, group_storms, steps_text as span

    rows: list[list[object]] = []
    for e in group_storms(events):
        if isinstance(e, Storm):
            rows.append([e.ids, e.kind, e.tag, span(e.first_step, e.last_step), "",
                         e.summary(), "", e.severity])
        else:
            rows.append(event_row(e))
    return rows


def event_row(e: Event) -> list[object]:
    from .units import event_magnitude

    mag = event_magnitude(e)
    rec = e.recovery or ""
    if rec and e.recovery_steps is not None:
        rec = f"{rec} ({e.recovery_steps} steps)"
    return [e.id, e.kind, e.tag, steps_text(e), e.peak_step if e.peak_step is not None else "",
            mag, rec, e.severity]


def summary(info: RunInfo, worst: str | None, n_events: int) -> list[str]:
    steps = [(s.first_step, s.last_step) for s in info.series if s.first_step is not None]
    span = f"{min(a for a, _ in steps)}–{max(b for _, b in steps)}" if steps else "-"
    segs = ", ".join(f"#{g.index} {g.first_step}–{g.last_step} ({g.reason})"
                     for g in info.segments)
    meta = info.metadata.to_dict()
    meta.pop("extra", None)
    rows = [("status", f"**{SEVERITY_LABEL.get(worst or '', 'CLEAN')}**"),
            ("source", code(info.source)), ("format", info.format), ("steps", span),
            ("segments", segs or "-"), ("events", n_events)]
    if meta:
        rows.append(("metadata", ", ".join(f"{k}={v}" for k, v in meta.items())))
    if info.skipped_count:
        rows.append(("skipped lines", info.skipped_count))
    return table(("", ""), rows)


def finding_lines(f: Finding) -> list[str]:
    out = [f"#### {SEVERITY_LABEL[f.severity]}: {text(f.title)}", "", text(f.explanation), "",
           f"**Advice:** {text(f.advice)}", ""]
    if f.cites:
        out.append("*Cites:* " + "; ".join(f.cites) + "  ")
    if f.event_ids:
        out.append("*Events:* " + ", ".join(code(i) for i in f.event_ids))
    out.append("")
    return out


def plan_lines(plan: SkipPlan, gbs: int | None, fmt: str | None = None) -> list[str]:
    from ..exporters import COUNTING, trainer_rows

    ranges = " ".join(f"{a}-{b}" for a, b in plan.skip)
    n = sum(b - a + 1 for a, b in plan.skip)
    note = markdown(plan.restart_note[:1].upper() + plan.restart_note[1:])
    out = [f"{note}; skip iterations **{ranges}** (inclusive, {n} batches). "
           f"{plan.reason}.", "",
           f"Step counting: {COUNTING}.", "", "| trainer | flags |", "|---|---|"]
    out += [f"| {name} | {code(flag)} |" for name, flag in trainer_rows(plan, fmt)]
    if plan.samples:
        sam = " ".join(f"{a}-{b}" for a, b in plan.samples)
        out.append(f"| samples (0-based, GBS {plan.global_batch_size or gbs or '?'}) | "
                   f"{code(sam)} |")
    return out + [""]


def run_section(ra) -> list[str]:
    info = ra.info
    if ra.error:
        return [f"## {markdown(info.run)}", "", "**Status: FAILED** — could not be read or "
                f"analysed: {markdown(ra.error)}", ""]
    out = [f"## {markdown(info.run)}", ""] + summary(info, ra.worst, len(ra.events)) + [""]
    out += ["### Series", ""] + table(
        ("tag", "role", "points", "steps", "non-finite"),
        ([s.tag, s.role, f"{s.points:,}", f"{s.first_step}–{s.last_step}", s.nonfinite or ""]
         for s in info.series), right=(2, 4)) + [""]
    out += ["### Events", ""]
    if ra.events:
        out += table(("id", "kind", "tag", "steps", "peak", "magnitude", "recovery",
                      "severity"), event_rows(ra.events), right=(4, 5)) + [""]
    else:
        out += ["No events.", ""]
    out += ["### Findings", ""]
    out += [line for f in ra.findings for line in finding_lines(f)] or ["No findings.", ""]
    out += ["### Skip plan", ""]
    if ra.skip_plan:
        out += plan_lines(ra.skip_plan, info.metadata.global_batch_size, info.format)
    else:
        out += ["Nothing to skip: no event needs a restart.", ""]
    warns = list(info.warnings) + list(ra.plan_warnings)
    if warns:
        out += ["### Warnings", ""] + [f"- {markdown(w)}" for w in warns] + [""]
    return out


def render(analysis) -> str:
    """The whole Markdown document for a `pipeline.Analysis`."""
    from .. import __version__

    runs = analysis.runs
    worst = ["failed" if ra.error else ra.worst or "clean" for ra in runs]
    head = [f"# losslens report", "",
            f"losslens {__version__}: {len(runs)} run(s); "
            + ", ".join(f"{markdown(ra.info.run)}: {w}" for ra, w in zip(runs, worst)), ""]
    body = [line for ra in runs for line in run_section(ra)]
    return "\n".join(head + body).rstrip("\n") + "\n"
