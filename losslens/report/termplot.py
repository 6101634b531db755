"""A loss curve in the terminal: braille line plot with the events marked under it.

Hand-written rather than a plotting library: the terminal plotting packages on PyPI changed
their API between major versions (plotext 5 → 6) and a braille canvas is ~100 lines of numpy.
Each character cell holds a 2×4 braille dot grid; series are min/max-downsampled first (the
same rule as the HTML charts: a one-step spike is never averaged away). The y axis is
logarithmic when the curve spans a decade or more.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import math

import numpy as np
from rich.text import Text

from .svgplot import downsample, fmt_num, log_ticks, nice_ticks, plottable, wants_log
from .units import MARK_NAMES

COLORS = ("bright_blue", "bright_magenta", "green", "yellow", "cyan")
_BRAILLE = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]])  # [row][col]
_SEV = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
_MARK = {"spike": "▲", "divergence": "◆", "nonfinite": "✖", "rollback": "↺",
         "resume_spike": "▲", "repeat_data": "≡", "grokking": "▼", "sudden_drop": "▼",
         "overflow": "!", "changepoint": "┊", "grad_spike": "△", "overfitting": "◇"}


@dataclass(frozen=True)
class Curve:
    label: str
    steps: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class Marker:
    step: int
    kind: str
    severity: str


def _plottable(c: Curve) -> Curve:
    return Curve(c.label, c.steps, plottable(c.values))


def _pixels(curve: Curve, x0: float, x1: float, y0: float, y1: float, log: bool,
            w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of the curve's line, segments filled in."""
    ok = np.isfinite(curve.values) & ((curve.values > 0) if log else True)
    st, v = curve.steps[ok].astype(float), curve.values[ok].astype(float)
    if st.shape[0] == 0:
        return np.empty(0, int), np.empty(0, int)
    keep = downsample(st, v, max_points=4 * w)
    st, v = st[keep], v[keep]
    yv = np.log10(v) if log else v
    px = (st - x0) / max(x1 - x0, 1e-12) * (w - 1)
    py = (yv - y0) / max(y1 - y0, 1e-12) * (h - 1)
    if px.shape[0] > 1:  # fill each segment with enough sub-points to be continuous
        n = np.maximum(np.ceil(np.maximum(np.abs(np.diff(px)), np.abs(np.diff(py)))), 1)
        n = n.astype(int)
        t = np.concatenate([np.arange(k) / k for k in n])
        i = np.repeat(np.arange(n.shape[0]), n)
        px = np.r_[px[i] + t * (px[i + 1] - px[i]), px[-1]]
        py = np.r_[py[i] + t * (py[i + 1] - py[i]), py[-1]]
    return np.clip(np.rint(px), 0, w - 1).astype(int), np.clip(np.rint(py), 0, h - 1).astype(int)


def _range(curves: Sequence[Curve], log: bool) -> tuple[float, float, float, float]:
    st = np.concatenate([c.steps for c in curves]).astype(float)
    vals = np.concatenate([c.values for c in curves]).astype(float)
    vals = vals[np.isfinite(vals) & ((vals > 0) if log else True)]
    if vals.shape[0] == 0:
        vals = np.array([0.0, 1.0])
    y = np.log10(vals) if log else vals
    lo, hi = float(np.min(y)), float(np.max(y))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    return float(st.min()), float(st.max()), lo, hi


def _y_labels(y0: float, y1: float, height: int, log: bool) -> dict[int, str]:
    """Round tick values placed on the canvas rows nearest to them (top row = y1)."""
    if log:
        ticks = [math.log10(t) for t in log_ticks(10 ** y0, 10 ** y1)]
        if len(ticks) < 2:
            ticks = [math.log10(t) for t in
                     nice_ticks(10 ** y0, 10 ** y1, max(2, height // 3)) if t > 0]
    else:
        ticks = nice_ticks(y0, y1, max(2, height // 3))
    out: dict[int, str] = {}
    for t in ticks:
        row = int(round((y1 - t) / max(y1 - y0, 1e-12) * (height - 1)))
        if 0 <= row < height and row not in out and row - 1 not in out:
            out[row] = fmt_num(10 ** t if log else t)
    return out


def _x_axis(x0: float, x1: float, cw: int) -> tuple[str, str]:
    """The axis line with ┬ at round steps, and their labels (never overlapping)."""
    axis = ["─"] * cw
    labels = [" "] * cw
    ticks = nice_ticks(x0, x1, max(2, cw // 10))
    for t in ticks:
        col = int(round((t - x0) / max(x1 - x0, 1e-12) * (cw - 1)))
        text = fmt_num(t)
        at = min(max(0, col - len(text) // 2), cw - len(text))
        if col < 0 or col >= cw or at < 0:
            continue
        if any(c != " " for c in labels[max(0, at - 1): at + len(text) + 1]):
            continue
        axis[col] = "┬"
        labels[at: at + len(text)] = list(text)
    return "".join(axis), "".join(labels).rstrip()


def render(curves: Sequence[Curve], markers: Sequence[Marker] = (), width: int = 80,
           height: int = 12, title: str = "", unit: str = "step") -> Text:
    """The plot as rich Text: title, canvas with a y axis, event marks, x axis, legends.

    Every line is at most `width` characters wide."""
    curves = [_plottable(c) for c in curves if c.steps.shape[0]]
    if not curves:
        return Text("")
    log = wants_log([c.values for c in curves])
    x0, x1, y0, y1 = _range(curves, log)
    label_w = 7
    cw = max(10, width - label_w - 1)  # canvas width in characters
    w, h = 2 * cw, 4 * height
    dots = np.zeros((height, cw), int)
    owner = np.full((height, cw), -1)
    for k, c in enumerate(curves):
        px, py = _pixels(c, x0, x1, y0, y1, log, w, h)
        row, col = (h - 1 - py) // 4, px // 2
        bits = _BRAILLE[(h - 1 - py) % 4, px % 2]
        np.bitwise_or.at(dots, (row, col), bits)
        owner[row, col] = k
    out = Text()
    if title:
        out.append(title + (" (log scale)" if log else "") + "\n", style="bold")
    ylabels = _y_labels(y0, y1, height, log)
    for r in range(height):
        label = ylabels.get(r, "")
        out.append(f"{label:>{label_w}}" + ("┤" if label else "│"))
        for col in range(cw):
            ch = chr(0x2800 + int(dots[r, col])) if dots[r, col] else " "
            k = owner[r, col]
            out.append(ch, style=COLORS[k % len(COLORS)] if k >= 0 else None)
        out.append("\n")
    axis, xlabels = _x_axis(x0, x1, cw)
    out.append(" " * label_w + "└" + axis + "\n")
    used: list[str] = []
    if markers:
        line = [" "] * cw
        styles: list[str | None] = [None] * cw
        for m in sorted(markers, key=lambda m: ("info", "warning", "critical").index(m.severity)):
            col = int(round((m.step - x0) / max(x1 - x0, 1e-12) * (cw - 1)))
            if 0 <= col < cw:
                sym = _MARK.get(m.kind, "•")
                line[col], styles[col] = sym, _SEV.get(m.severity)
                if sym not in used:
                    used.append(sym)
        out.append(" " * (label_w + 1))
        for ch, st in zip(line, styles):
            out.append(ch, style=st)
        out.append("\n")
    out.append(f"{unit[:label_w]:>{label_w}} " + xlabels + "\n")
    legend = [(f"━━ {c.label}", COLORS[k % len(COLORS)]) for k, c in enumerate(curves)]
    legend += [(f"{sym} {MARK_NAMES.get(sym, '')}".rstrip(), None) for sym in used]
    out.append_text(_wrap_legend(legend, width, label_w + 1))
    return out


def _wrap_legend(items: list[tuple[str, str | None]], width: int, indent: int) -> Text:
    """Legend entries two spaces apart, wrapped at `width` (entries are never split)."""
    out = Text()
    col = 0
    for text, style in items:
        text = text if len(text) <= width - indent else text[: width - indent - 1] + "…"
        if col and col + 2 + len(text) > width:
            out.append("\n")
            col = 0
        if col == 0:
            out.append(" " * indent)
            col = indent
        else:
            out.append("  ")
            col += 2
        if text.startswith("━━ "):
            out.append("━━", style=style)
            out.append(text[2:])
        else:
            out.append(text[:1], style=style)
            out.append(text[1:])
        col += len(text)
    out.append("\n")
    return out
