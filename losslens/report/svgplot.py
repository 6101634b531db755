"""Inline SVG line charts for the HTML report: no JavaScript, no fonts, no network.

A chart holds lines (series), shaded spans with a marker at the peak (events), vertical rules
(resumes, restarts) and a legend. The y axis turns logarithmic when the curve spans a decade or
more. Series longer than `MAX_POINTS` are downsampled by keeping the minimum and the maximum of
each bucket, so a one-step spike survives; non-finite values are drawn as markers on the top
(inf) or bottom (NaN) edge and break the line.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..textsafe import html as escape  # entities, and controls from logs made visible

MAX_POINTS = 2000
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


#: Largest |value| drawn as itself: past it an axis's span (max - min) overflows float64
#: (a loss of ±1.8e308 is drawn at the edge of the plot instead).
PLOT_LIMIT = 1e300


def plottable(values: np.ndarray) -> np.ndarray:
    """`values` with finite ones past ±PLOT_LIMIT drawn at ±PLOT_LIMIT (NaN/inf as they are)."""
    v = np.asarray(values, float)
    big = np.isfinite(v) & (np.abs(v) > PLOT_LIMIT)
    return np.where(big, np.sign(v) * PLOT_LIMIT, v) if big.any() else v


@dataclass(frozen=True)
class Line:
    """One series as drawn: steps and values (any length; downsampled here)."""

    label: str
    steps: np.ndarray
    values: np.ndarray
    color: str
    dash: str | None = None
    width: float = 1.6
    opacity: float = 1.0
    legend: bool = True


@dataclass(frozen=True)
class Mark:
    """An event: a shaded span [start, end] and a marker at `peak` on the line `on`."""

    kind: str
    start: int
    end: int
    color: str
    tooltip: str
    peak: int | None = None
    on: str | None = None
    hatch: bool = False


@dataclass(frozen=True)
class Rule:
    """A vertical rule at `step` (resume, restart) with a short label."""

    step: int
    label: str
    color: str = "#6b6b6b"
    dash: str = "4 3"


def downsample(steps: np.ndarray, values: np.ndarray,
               max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices to keep: every point if there are few, else the min and max of each of
    max_points/2 buckets (plus the ends) — a spike of one step is never averaged away."""
    n = int(values.shape[0])
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts = edges[:-1]
    ids = np.repeat(np.arange(buckets), np.diff(edges))
    keep = [np.array([0, n - 1])]
    for extreme in (np.minimum, np.maximum):
        best = extreme.reduceat(values, starts)
        hit = np.flatnonzero(values == best[ids])
        _, first = np.unique(ids[hit], return_index=True)
        keep.append(hit[first])
    return np.unique(np.concatenate(keep))


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k) covering [lo, hi]."""
    span = hi - lo
    if not span > 0:
        span = abs(lo) or 1.0
        lo, hi = lo - span / 2, hi + span / 2
        span = hi - lo
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if span / (m * mag) <= count)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


def log_ticks(lo: float, hi: float) -> list[float]:
    """Decades in [lo, hi]; with 2 and 5 in between when fewer than three decades."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    mults = (1, 2, 5) if math.log10(hi / lo) < 3 else (1,)
    ticks = [m * 10.0 ** e for e in range(a, b + 1) for m in mults]
    return [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]


def fmt_num(v: float) -> str:
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e4:
        return f"{v / 1e3:g}k"
    if a != 0 and a < 1e-3:
        return f"{v:.0e}"
    return f"{v:.4g}"


def wants_log(values: Sequence[np.ndarray]) -> bool:
    """A decade or more between the smallest and largest positive finite value."""
    finite = [v[np.isfinite(v)] for v in values]
    allv = np.concatenate(finite) if finite else np.empty(0)
    if allv.size == 0 or allv.min() <= 0:
        return False
    return bool(allv.max() / allv.min() >= 10.0)


class _Frame:
    """Data → pixel mapping of one chart."""

    def __init__(self, x0: float, x1: float, y0: float, y1: float, log: bool,
                 box: tuple[float, float, float, float]) -> None:
        self.x0, self.x1, self.log = x0, x1 if x1 > x0 else x0 + 1, log
        self.y0, self.y1 = (math.log10(y0), math.log10(y1)) if log else (y0, y1)
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1
        self.left, self.top, self.width, self.height = box

    def x(self, step):
        return self.left + (np.asarray(step, float) - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value):
        v = np.asarray(value, float)
        if self.log:
            with np.errstate(all="ignore"):
                v = np.log10(v)
        return self.top + self.height - (v - self.y0) / (self.y1 - self.y0) * self.height


def _y_range(lines: Sequence[Line], log: bool) -> tuple[float, float]:
    finite = np.concatenate([ln.values[np.isfinite(ln.values)] for ln in lines] or [np.empty(0)])
    if log:
        finite = finite[finite > 0]
    if finite.size == 0:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(finite.min()), float(finite.max())
    if log:
        return lo / 1.15, hi * 1.15
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def _polyline(ln: Line, fr: _Frame) -> list[str]:
    """The line's finite points, downsampled, split where non-finite values interrupt it."""
    ok = np.isfinite(ln.values) & ((ln.values > 0) if fr.log else True)
    group = np.cumsum(~ok)[ok]  # a new group after every non-finite value
    steps, values = ln.steps[ok], ln.values[ok]
    keep = downsample(steps, values)
    steps, values, group = steps[keep], values[keep], group[keep]
    xs, ys = fr.x(steps), fr.y(values)
    cuts = np.flatnonzero(np.diff(group)) + 1
    out = []
    dash = f' stroke-dasharray="{ln.dash}"' if ln.dash else ""
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(xs)]):
        if b - a == 1:
            out.append(f'<circle cx="{xs[a]:.1f}" cy="{ys[a]:.1f}" r="1.8" fill="{ln.color}"/>')
        elif b > a:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[a:b], ys[a:b]))
            out.append(f'<polyline points="{pts}" fill="none" stroke="{ln.color}" '
                       f'stroke-width="{ln.width}" stroke-opacity="{ln.opacity}"'
                       f' stroke-linejoin="round"{dash}/>')
    return out


def _nonfinite(ln: Line, fr: _Frame) -> list[str]:
    bad = ~np.isfinite(ln.values)
    if not bad.any():
        return []
    steps, vals = ln.steps[bad], ln.values[bad]
    xs = np.round(fr.x(steps)).astype(int)
    _, first = np.unique(xs, return_index=True)  # one marker per pixel column
    out = []
    for i in first:
        x = xs[i]
        kind = "NaN" if math.isnan(vals[i]) else ("+inf" if vals[i] > 0 else "-inf")
        y = fr.top + 6 if kind == "+inf" else fr.top + fr.height - 6
        out.append(f'<path d="M{x - 4},{y - 4}L{x + 4},{y + 4}M{x - 4},{y + 4}L{x + 4},{y - 4}" '
                   f'stroke="#b00020" stroke-width="1.6"><title>{escape(ln.label)}: {kind} at '
                   f'step {int(steps[i])}</title></path>')
    return out


def _value_at(lines: Sequence[Line], label: str | None, step: int | None) -> float | None:
    if step is None:
        return None
    for ln in lines:
        if ln.label == label and ln.steps.size:
            i = int(np.searchsorted(ln.steps, step))
            i = min(max(i, 0), ln.steps.size - 1)
            v = float(ln.values[i])
            return v if math.isfinite(v) else None
    return None


def _marks(marks: Sequence[Mark], lines: Sequence[Line], fr: _Frame, uid: str) -> list[str]:
    out = []
    for m in marks:
        x0, x1 = float(fr.x(m.start)), float(fr.x(m.end))
        w = max(x1 - x0, 2.0)
        fill = f"url(#hatch-{uid})" if m.hatch else m.color
        opacity = "1" if m.hatch else "0.16"
        out.append(f'<rect x="{x0:.1f}" y="{fr.top}" width="{w:.1f}" height="{fr.height}" '
                   f'fill="{fill}" fill-opacity="{opacity}"><title>{escape(m.tooltip)}</title>'
                   "</rect>")
        v = _value_at(lines, m.on, m.peak)
        if v is not None and (v > 0 or not fr.log):
            cx, cy = float(fr.x(m.peak)), float(fr.y(v))
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="none" '
                       f'stroke="{m.color}" stroke-width="2"><title>{escape(m.tooltip)}</title>'
                       "</circle>")
    return out


def _axes(fr: _Frame, ylabel: str) -> list[str]:
    out = []
    y_lo, y_hi = (10 ** fr.y0, 10 ** fr.y1) if fr.log else (fr.y0, fr.y1)
    yt = log_ticks(y_lo, y_hi) if fr.log else nice_ticks(y_lo, y_hi, 5)
    if fr.log and len(yt) < 2:
        yt = [t for t in nice_ticks(y_lo, y_hi, 5) if t > 0]
    right = fr.left + fr.width
    for t in yt:
        y = float(fr.y(t))
        out.append(f'<line x1="{fr.left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" '
                   'stroke="#e6e6e6"/>')
        out.append(f'<text x="{fr.left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                   f"{fmt_num(t)}</text>")
    for t in nice_ticks(fr.x0, fr.x1, 8):
        if fr.x0 <= t <= fr.x1:
            x = float(fr.x(t))
            out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{fr.top}" '
                       f'y2="{fr.top + fr.height}" stroke="#f0f0f0"/>')
            out.append(f'<text x="{x:.1f}" y="{fr.top + fr.height + 16}" '
                       f'text-anchor="middle">{fmt_num(t)}</text>')
    out.append(f'<rect x="{fr.left}" y="{fr.top}" width="{fr.width}" height="{fr.height}" '
               'fill="none" stroke="#9a9a9a"/>')
    scale = " (log scale)" if fr.log else ""
    out.append(f'<text x="{fr.left + fr.width}" y="{fr.top + fr.height + 30}" '
               f'text-anchor="end" fill="#555">step</text>')
    out.append(f'<text x="14" y="{fr.top + fr.height / 2:.0f}" text-anchor="middle" '
               f'fill="#555" transform="rotate(-90 14 {fr.top + fr.height / 2:.0f})">'
               f"{escape(ylabel + scale)}</text>")
    return out


def _legend(lines: Sequence[Line], marks: Sequence[Mark], width: float,
            top: float, uid: str) -> tuple[list[str], float]:
    """Swatches for series and event kinds, wrapped to the chart width; returns its height."""
    entries: list[tuple[str, str, str]] = [("line", ln.color, ln.label)
                                           for ln in lines if ln.legend]
    seen: set[str] = set()
    for m in marks:
        if m.kind not in seen:
            seen.add(m.kind)
            entries.append(("hatch" if m.hatch else "span", m.color, m.kind))
    out, x, y = [], 64.0, top
    for shape, color, label in entries:
        w = 30 + 7.0 * len(label)
        if x + w > width - 8 and x > 64:
            x, y = 64.0, y + 18
        if shape == "line":
            dash = next((f' stroke-dasharray="{ln.dash}"' for ln in lines
                         if ln.label == label and ln.dash), "")
            out.append(f'<line x1="{x}" x2="{x + 18}" y1="{y - 4}" y2="{y - 4}" '
                       f'stroke="{color}" stroke-width="2.5"{dash}/>')
        else:
            fill = f"url(#hatch-{uid})" if shape == "hatch" else color
            op = "1" if shape == "hatch" else "0.35"
            out.append(f'<rect x="{x}" y="{y - 10}" width="18" height="11" fill="{fill}" '
                       f'fill-opacity="{op}" stroke="{color}"/>')
        out.append(f'<text x="{x + 23}" y="{y}">{escape(label)}</text>')
        x += w
    return out, (y - top + 18) if entries else 0.0


def chart(title: str, lines: Sequence[Line], marks: Sequence[Mark] = (),
          rules: Sequence[Rule] = (), ylabel: str = "value", width: int = 1100,
          height: int = 280, log: bool | None = None, uid: str = "c0") -> str:
    """One SVG chart (a string), sized by its viewBox so it scales with the page.

    `uid` keeps the chart's element ids (clip path, hatch pattern) unique in the page.
    """
    lines = [replace(ln, values=plottable(ln.values)) for ln in lines if ln.steps.size]
    if not lines:
        return ""
    log = wants_log([ln.values for ln in lines]) if log is None else log
    legend, legend_h = _legend(lines, marks, width, 44, uid)
    top = 44 + legend_h
    total_h = top + height + 44
    x0 = min(float(ln.steps.min()) for ln in lines)
    x1 = max(float(ln.steps.max()) for ln in lines)
    fr = _Frame(x0, x1, *_y_range(lines, log), log=log, box=(64, top, width - 84, height))
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {total_h:.0f}" '
            f'width="100%" role="img" aria-label="{escape(title)}" font-family="{FONT}" '
            'font-size="12" fill="#222">',
            f'<defs><pattern id="hatch-{uid}" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><rect width="6" height="6" fill="#9aa5b1" '
            'fill-opacity="0.10"/><line x1="0" y1="0" x2="0" y2="6" stroke="#7b8794" '
            'stroke-width="1.6" stroke-opacity="0.55"/></pattern>'
            f'<clipPath id="plot-{uid}"><rect x="{fr.left}" y="{fr.top}" width="{fr.width}" '
            f'height="{fr.height}"/></clipPath></defs>',
            f'<text x="64" y="22" font-size="15" font-weight="600">{escape(title)}</text>']
    body += legend + _axes(fr, ylabel)
    body.append(f'<g clip-path="url(#plot-{uid})">')
    body += _marks(marks, lines, fr, uid)
    for r in rules:
        x = float(fr.x(r.step))
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{fr.top}" y2="{fr.top + fr.height}" '
                    f'stroke="{r.color}" stroke-width="1.2" stroke-dasharray="{r.dash}">'
                    f"<title>{escape(r.label)}</title></line>")
        body.append(f'<text x="{x + 4:.1f}" y="{fr.top + 13}" fill="{r.color}" '
                    f'font-size="11">{escape(r.label)}</text>')
    for ln in lines:
        body += _polyline(ln, fr)
    body.append("</g>")
    for ln in lines:
        body += _nonfinite(ln, fr)
    if not any(np.isfinite(ln.values).any() for ln in lines):
        body.append(f'<text x="{fr.left + fr.width / 2:.0f}" y="{fr.top + fr.height / 2:.0f}" '
                    'text-anchor="middle" font-size="14" fill="#b00020">every value is '
                    "non-finite: × on the bottom edge (NaN) or the top edge (inf)</text>")
    body.append("</svg>")
    return "\n".join(body)
