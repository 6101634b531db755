"""The analysis as one self-contained HTML file (`losslens analyze --format html`).

Works offline: inline CSS and inline SVG plots (report.svgplot), no scripts, fonts or CDN.
Per run: a summary, a chart of every loss and validation series and one of the grad norm (and
of the loss scale when logged) with the events drawn on them, the findings with advice and
cites, the events table, the skip plan (shaded on the loss chart) and warnings.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np

from ..events import Event
from ..textsafe import html as escape  # entities, and controls from logs made visible
from .svgplot import Line, Mark, Rule, chart

SERIES_COLORS = ("#1f5fa8", "#2a9d8f", "#7b4fa0", "#3d7d3a", "#8c5a2b", "#4a6f8a", "#b5568e",
                 "#5c6b73")
VAL_COLORS = ("#e07a1f", "#c0392b", "#d4a017", "#a0522d", "#e76f51", "#9c6644")
EVENT_COLORS = {
    "spike": "#d62728", "divergence": "#8e24aa", "nonfinite": "#6d0000", "grokking": "#2e7d32",
    "sudden_drop": "#43a047", "changepoint": "#795548", "rollback": "#607d8b",
    "resume_spike": "#ef6c00", "repeat_data": "#c49000", "grad_spike": "#e91e63",
    "overflow": "#00838f", "overfitting": "#f9a825"}
SEVERITY_COLORS = {"info": "#1e6fb8", "warning": "#b26a00", "critical": "#c62828",
                   "clean": "#2e7d32"}

CSS = """
:root{--fg:#1d2329;--bg:#fafbfc;--panel:#fff;--line:#dde3ea;--muted:#5b6670;--grid:#e6eaef;
--head:#f1f4f7}
@media (prefers-color-scheme: dark){:root{--fg:#d8dee4;--bg:#14181c;--panel:#1c2228;
--line:#333c45;--muted:#98a3ad;--grid:#2a323a;--head:#232a31}}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px 48px;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:var(--bg)}
@media (max-width:700px){body{padding:12px 10px 32px}}
main{max-width:1180px;margin:0 auto}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:20px;margin:36px 0 8px;padding-top:16px;border-top:2px solid var(--line)}
h3{font-size:16px;margin:22px 0 8px}
.sub{color:var(--muted);margin:0 0 16px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;
font-weight:600;vertical-align:middle;text-transform:uppercase;letter-spacing:.03em}
table{border-collapse:collapse;margin:6px 0 10px;background:var(--panel);font-size:13px;
display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid var(--line);padding:4px 9px;text-align:left;vertical-align:top}
th{background:var(--head);font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:130px}
table.flags th{width:200px}
.chart{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:6px 8px;
margin:10px 0;min-height:120px}
.chart svg{max-width:100%}
.js .chart svg{display:none}
.finding{background:var(--panel);border:1px solid var(--line);border-left:5px solid #999;
border-radius:4px;
padding:8px 14px;margin:10px 0}
.finding h4{margin:2px 0 6px;font-size:15px}
.finding p{margin:4px 0}
.cites{color:var(--muted);font-size:12.5px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:var(--head);border:1px solid var(--line);border-radius:4px;padding:8px 10px;
white-space:pre-wrap;word-break:break-all;margin:4px 0 10px}
.warn{color:#8a5a00}
footer{margin-top:40px;color:var(--muted);font-size:12px}
a{color:#3b82c4}
"""


def badge(severity: str | None) -> str:
    name = severity or "clean"
    return (f'<span class="badge" style="background:{SEVERITY_COLORS.get(name, "#555")}">'
            f"{escape(name)}</span>")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]],
           numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{escape(str(v))}</td>' if i in numeric else f"<td>{v}</td>"
            for i, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# --------------------------------------------------------------------------- charts

def event_end(e: Event, last: int) -> int:
    if e.end_step is not None:
        return e.end_step
    if e.kind == "spike" and e.recovery == "none":
        return last  # never came back: shade to the end of the run
    return e.peak_step if e.peak_step is not None else e.start_step


def event_tooltip(e: Event) -> str:
    parts = [f"{e.id or e.kind}: {e.kind} on {e.tag}", f"steps {e.start_step}–"
             f"{e.end_step if e.end_step is not None else '…'}", f"severity {e.severity}"]
    if e.peak_step is not None:
        parts.append(f"peak {e.peak_step}")
    if e.magnitude is not None:
        from .units import event_magnitude

        parts.append(event_magnitude(e))
    if e.recovery:
        parts.append(f"recovery {e.recovery}")
    return ", ".join(parts)


def _lines(frame, info, roles: Sequence[str]) -> list[Line]:
    """The stitched series of these roles, plus points a resume overwrote (faint)."""
    out, n_train, n_val = [], 0, 0
    for s in info.series:
        if s.role not in roles:
            continue
        ser = frame.series(info.run, s.tag)
        if s.role == "val_loss":
            color, dash = VAL_COLORS[n_val % len(VAL_COLORS)], "6 3"
            n_val += 1
        else:
            color, dash = SERIES_COLORS[n_train % len(SERIES_COLORS)], None
            n_train += 1
        out.append(Line(s.tag, ser.step, ser.value, color, dash))
        if s.raw_points > s.points:
            out += _replaced(frame, info.run, s.tag, color)
    return out


def _replaced(frame, run: str, tag: str, color: str) -> list[Line]:
    """Raw points the stitched view dropped (written before a resume rewrote their steps)."""
    raw = frame.series(run, tag, raw=True)
    rev = raw.step[::-1]
    _, last_rev = np.unique(rev, return_index=True)
    kept = np.zeros(raw.step.shape[0], bool)
    kept[raw.step.shape[0] - 1 - last_rev] = True
    out = []
    for seg in np.unique(raw.segment[~kept]):
        m = (~kept) & (raw.segment == seg)
        out.append(Line(f"{tag} (overwritten by a resume)", raw.step[m], raw.value[m], color,
                        "2 3", 1.2, 0.45, legend=len(out) == 0))
    return out


def _marks(events: Sequence[Event], tags: set[str], last: int) -> list[Mark]:
    return [Mark(e.kind, e.start_step, event_end(e, last),
                 EVENT_COLORS.get(e.kind, "#555"), event_tooltip(e), e.peak_step, e.tag)
            for e in events if e.tag in tags]


def _rules(info) -> list[Rule]:
    return [Rule(g.first_step, f"resume @{g.first_step}" if g.reason != "start" else "")
            for g in info.segments[1:]]


def run_charts(frame, ra, uid: str, index: int | None = None) -> str:
    """The run's charts: static SVG (shown without scripts), replaced by the interactive
    panel `index:k` of the page's data when scripts run."""
    info = ra.info
    last = info.last_step or 0
    parts = []
    specs = (("loss", ("train_loss", "val_loss"), "loss"),
             ("gradient norm", ("grad_norm",), "grad norm"),
             ("loss scale", ("loss_scale",), "loss scale"))
    for k, (title, roles, ylabel) in enumerate(specs):
        lines = _lines(frame, info, roles)
        if not lines:
            continue
        marks = _marks(ra.events, {ln.label for ln in lines}, last)
        rules = _rules(info)
        if roles[0] == "train_loss" and ra.skip_plan:
            p = ra.skip_plan
            marks += [Mark("skip plan (batches to skip)", a, b, "#52606d",
                           f"skip iterations {a}-{b} (restart from {p.restart_from_step})",
                           hatch=True) for a, b in p.skip]
            rules.append(Rule(p.restart_from_step, f"restart @{p.restart_from_step}",
                              "#37474f", "2 2"))
        svg = chart(f"{info.run}: {title}", lines, marks, rules, ylabel=ylabel,
                    uid=f"{uid}-{k}")
        ref = f' data-panel="{index}:{len(parts)}"' if index is not None else ""
        parts.append(f'<div class="chart"{ref}>{svg}</div>')
    return "\n".join(parts)


# --------------------------------------------------------------------------- sections

def summary(info, ra) -> str:
    steps = [(s.first_step, s.last_step) for s in info.series if s.first_step is not None]
    span = f"{min(a for a, _ in steps)}–{max(b for _, b in steps)}" if steps else "-"
    segs = "; ".join(f"#{g.index} {g.first_step}–{g.last_step} ({g.reason})"
                     for g in info.segments)
    meta = info.metadata.to_dict()
    meta.pop("extra", None)
    series = ", ".join(f"{s.tag} ({s.role}, {s.points:,})" for s in info.series)
    rows = [("status", badge(ra.worst)), ("source", f"<code>{escape(info.source)}</code>"),
            ("format", escape(info.format)), ("steps", span), ("segments", escape(segs)),
            ("series", escape(series)), ("events", str(len(ra.events)))]
    if meta:
        rows.append(("metadata", escape(", ".join(f"{k}={v}" for k, v in meta.items()))))
    if info.skipped_count:
        rows.append(("skipped lines", str(info.skipped_count)))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


_CODE = re.compile(r"`([^`\n]+)`")


def _text(text: str) -> str:
    """Escaped text with `backticks` rendered as code."""
    return _CODE.sub(r"<code>\1</code>", escape(text))


def findings_html(findings) -> str:
    if not findings:
        return "<p>No findings.</p>"
    out = []
    for f in findings:
        color = SEVERITY_COLORS[f.severity]
        cites = "; ".join(escape(c) for c in f.cites)
        ids = ", ".join(f"<code>{escape(i)}</code>" for i in f.event_ids)
        out.append(
            f'<div class="finding" style="border-left-color:{color}"><h4>{badge(f.severity)} '
            f"{_text(f.title)}</h4><p>{_text(f.explanation)}</p>"
            f"<p><strong>Advice:</strong> {_text(f.advice)}</p>"
            f'<p class="cites">Cites: {cites}' + (f" · events: {ids}" if ids else "")
            + "</p></div>")
    return "\n".join(out)


def events_html(events: Sequence[Event]) -> str:
    """The events table; a storm of non-critical events of one kind on one series is one row
    (as in the terminal report), critical events always their own."""
    if not events:
        return "<p>No events.</p>"
    from .markdown import event_row
    from .units import Storm, group_storms, steps_text

    def kind_cell(kind: str) -> str:
        color = EVENT_COLORS.get(kind, "#555")
        return (f'<span style="display:inline-block;width:10px;height:10px;background:{color};'
                f'margin-right:5px;border-radius:2px"></span>{escape(kind)}')

    rows = []
    for e in group_storms(events):
        if isinstance(e, Storm):
            rows.append([f"<code>{escape(e.ids)}</code>", kind_cell(e.kind), escape(e.tag),
                         escape(steps_text(e.first_step, e.last_step)), "",
                         escape(e.summary()), "", badge(e.severity)])
            continue
        r = event_row(e)
        rows.append([f"<code>{escape(str(r[0]))}</code>", kind_cell(e.kind), escape(e.tag),
                     escape(r[3]), escape(str(r[4])), escape(str(r[5])), escape(str(r[6])),
                     badge(e.severity)])
    return _table(("id", "kind", "tag", "steps", "peak", "magnitude", "recovery", "severity"),
                  rows)


def plan_html(ra) -> str:
    from ..exporters import COUNTING, trainer_rows

    p = ra.skip_plan
    if p is None:
        return "<p>Nothing to skip: no event needs a restart.</p>"
    ranges = " ".join(f"{a}-{b}" for a, b in p.skip)
    n = sum(b - a + 1 for a, b in p.skip)
    flags = trainer_rows(p, ra.info.format)
    if p.samples:
        gbs = p.global_batch_size or ra.info.metadata.global_batch_size
        flags.append((f"samples (0-based, GBS {gbs or '?'})",
                      " ".join(f"{a}-{b}" for a, b in p.samples)))
    rows = "".join(f"<tr><th>{escape(k)}</th><td><pre>{escape(v)}</pre></td></tr>"
                   for k, v in flags)
    note = p.restart_note[:1].upper() + p.restart_note[1:]
    return (f"<p>{escape(note)}; skip iterations <strong>{escape(ranges)}</strong> "
            f"(inclusive, {n} batches). {escape(p.reason)}.</p><p class=\"cites\">Step counting: "
            f"{escape(COUNTING)}.</p><table class=\"kv flags\"><tbody>{rows}</tbody></table>")


def run_section(frame, ra, uid: str, index: int | None = None) -> str:
    """One run: findings first, then its charts, events, skip plan, and what was read."""
    info = ra.info
    warns = list(info.warnings) + list(ra.plan_warnings)
    parts = [f'<section id="{escape(uid)}"><h2>{escape(info.run)} {badge(ra.worst)}</h2>',
             "<h3>Findings</h3>", findings_html(ra.findings),
             run_charts(frame, ra, uid, index),
             "<h3>Events</h3>", events_html(ra.events),
             "<h3>Skip plan</h3>", plan_html(ra)]
    if warns:
        items = "".join(f'<li class="warn">{escape(w)}</li>' for w in warns)
        parts += ["<h3>Warnings</h3>", f"<ul>{items}</ul>"]
    parts += ["<h3>What was read</h3>", summary(info, ra), "</section>"]
    return "\n".join(parts)


CONTROLS = (
    '<div class="controls" role="toolbar" aria-label="chart controls">'
    '<label><input type="checkbox" id="ll-log"> log scale</label>'
    '<label>smoothing <input type="range" id="ll-smooth" min="0" max="0.99" step="0.01" '
    'value="0"> <span id="ll-smooth-value">0.00</span></label>'
    '<label><input type="checkbox" id="ll-outliers"> ignore outliers</label>'
    '<span class="hint">drag: zoom · wheel: zoom · shift+drag: pan · double-click: reset'
    "</span></div>")


def fleet_html(analysis) -> str:
    """Several runs: the fleet table (worst first) and every train loss in one chart."""
    from ..pipeline import fleet

    from ..events import severity_rank

    rows = []
    ranked = sorted(enumerate(fleet(analysis)),  # worst first, then the analysis' order
                    key=lambda ir: (-(severity_rank(ir[1].worst) if ir[1].worst else -1), ir[0]))
    for i, row in ranked:
        rows.append([f'<a href="#run-{i}">{escape(row.run)}</a>', badge(row.worst),
                     _text(row.finding or ""), str(row.events),
                     "-" if row.last_step is None else f"{row.last_step:,}"])
    table = _table(("run", "worst", "finding", "events", "last step"), rows)
    chart = '<div class="chart" data-panel="fleet"></div>' if analysis.frame is not None else ""
    return f"<h2>{len(analysis.runs)} runs</h2>{table}{chart}"


def render(analysis) -> str:
    """The whole report: one HTML string, no external resources (uPlot is inline)."""
    from .. import __version__
    from .interactive import payload, scripts, styles

    runs = analysis.runs
    index = ", ".join(f'<a href="#run-{i}">{escape(ra.info.run)}</a> {badge(ra.worst)}'
                      for i, ra in enumerate(runs))
    sections = "\n".join(run_section(analysis.frame, ra, f"run-{i}", i)
                         for i, ra in enumerate(runs))
    fleet_part = fleet_html(analysis) if len(runs) > 1 else ""
    title = "losslens report: " + ", ".join(ra.info.run for ra in runs[:3]) + (
        "…" if len(runs) > 3 else "")
    data = payload(analysis, EVENT_COLORS, SERIES_COLORS, VAL_COLORS)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<meta name=\"color-scheme\" content=\"light dark\">"
            f"<title>{escape(title)}</title><style>{CSS}{styles()}</style></head><body><main>"
            f"<h1>losslens report</h1><p class=\"sub\">{len(runs)} run(s): {index}</p>"
            f"{CONTROLS}{fleet_part}{sections}<footer>Generated by losslens "
            f"{escape(__version__)}. This file is self-contained and works offline: the "
            "charts are drawn by uPlot (MIT), included in the file; nothing is fetched."
            f"</footer></main>{scripts(data)}</body></html>\n")
