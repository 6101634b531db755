"""What Jupyter shows for a Frame or an Analysis (`_repr_html_`): a compact table and the loss
chart inline (the same SVG charts as the HTML report; no script, so it renders in any notebook
viewer, GitHub's included). Runs past `MAX_RUNS` are listed, not plotted.
"""
from __future__ import annotations

from html import escape

from .svgplot import Line, chart

MAX_RUNS = 8
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2")
_STYLE = ('<style>.losslens td,.losslens th{padding:2px 8px;text-align:left}'
          '.losslens .num{text-align:right}</style>')


def _loss_chart(frame, info, uid: str, marks=()) -> str:
    lines = []
    for k, s in enumerate(x for x in info.series if x.role in ("train_loss", "val_loss")):
        ser = frame.series(info.run, s.tag)
        lines.append(Line(s.tag, ser.step, ser.value, _COLORS[k % len(_COLORS)],
                          "6 3" if s.role == "val_loss" else None))
    if not lines:
        return ""
    return chart(f"{info.run}: loss", lines, marks, width=900, height=220, uid=uid)


def frame_html(frame) -> str:
    """Runs, their series (tag, role, points, steps) and each run's loss chart."""
    rows = []
    for info in frame.runs:
        for s in info.series:
            steps = f"{s.first_step}–{s.last_step}" if s.first_step is not None else "-"
            rows.append(f"<tr><td>{escape(info.run)}</td><td>{escape(s.tag)}</td>"
                        f"<td>{escape(s.role)}</td><td class=num>{s.points:,}</td>"
                        f"<td class=num>{steps}</td></tr>")
    charts = "".join(_loss_chart(frame, info, f"nbf{id(frame)}-{k}")
                     for k, info in enumerate(frame.runs[:MAX_RUNS]))
    more = (f"<p>{len(frame.runs) - MAX_RUNS} more run(s) not plotted.</p>"
            if len(frame.runs) > MAX_RUNS else "")
    return (f'<div class="losslens">{_STYLE}<b>losslens Frame</b>: {len(frame.runs)} run(s), '
            f"{len(frame):,} points<table><tr><th>run</th><th>tag</th><th>role</th>"
            f"<th>points</th><th>steps</th></tr>{''.join(rows)}</table>{charts}{more}</div>")


def analysis_html(analysis) -> str:
    """Per run: the worst finding, the findings with their advice, the events drawn on the
    loss chart, and the skip plan."""
    from .html import EVENT_COLORS, event_end, event_tooltip
    from .svgplot import Mark
    from .units import event_magnitude

    parts = [f'<div class="losslens">{_STYLE}<b>losslens Analysis</b>: '
             f"{len(analysis.runs)} run(s)"]
    for k, ra in enumerate(analysis.runs):
        info = ra.info
        parts.append(f"<h4>{escape(info.run)} — {escape(ra.worst or 'clean')}</h4>")
        if ra.findings:
            items = "".join(f"<li><b>{escape(f.severity)}</b> {escape(f.title)}: "
                            f"{escape(f.advice)}</li>" for f in ra.findings)
            parts.append(f"<ul>{items}</ul>")
        if k < MAX_RUNS and analysis.frame is not None:
            last = max((s.last_step for s in info.series if s.last_step is not None), default=0)
            tags = {s.tag for s in info.series if s.role in ("train_loss", "val_loss")}
            marks = [Mark(e.kind, e.start_step, event_end(e, last),
                          EVENT_COLORS.get(e.kind, "#555"), event_tooltip(e), e.peak_step, e.tag)
                     for e in ra.events if e.tag in tags]
            parts.append(_loss_chart(analysis.frame, info, f"nba{id(analysis)}-{k}", marks))
        if ra.events:
            rows = "".join(f"<tr><td><code>{escape(e.id)}</code></td><td class=num>"
                           f"{e.start_step}</td><td>{escape(e.tag)}</td>"
                           f"<td>{escape(event_magnitude(e))}</td><td>{escape(e.severity)}"
                           "</td></tr>" for e in ra.events)
            parts.append("<table><tr><th>event</th><th>step</th><th>series</th>"
                         f"<th>magnitude</th><th>severity</th></tr>{rows}</table>")
        if ra.skip_plan:
            p = ra.skip_plan
            ranges = " ".join(f"{a}-{b}" for a, b in p.skip)
            parts.append(f"<p><b>skip plan</b>: {escape(p.restart_note)}; skip "
                         f"iterations {ranges} (inclusive)</p>")
    parts.append("</div>")
    return "".join(parts)
