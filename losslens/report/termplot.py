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

import numpy as np
from rich.text import Text

from .svgplot import downsample, fmt_num, wants_log

COLORS = ("bright_blue", "bright_magenta", "green", "yellow", "cyan")
_BRAILLE = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]])  # [row][col]
_SEV = {"info": "cyan", "warning": "yellow", "critical": "bold red"}
_MARK = {"spike": "▲", "divergence": "◆", "nonfinite": "✖", "rollback": "↺",
         "resume_spike": "▲", "repeat_data": "≡", "grokking": "▼", "sudden_drop": "▼",
         "overflow": "!", "changepoint": "┊", "grad_spike": "△"}


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


def render(curves: Sequence[Curve], markers: Sequence[Marker] = (), width: int = 80,
           height: int = 12, title: str = "") -> Text:
    """The plot as rich Text: title, canvas with a y axis, event marks, x axis, legend."""
    curves = [c for c in curves if c.steps.shape[0]]
    if not curves:
        return Text("")
    log = wants_log([c.values for c in curves])
    x0, x1, y0, y1 = _range(curves, log)
    label_w = 9
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
    unlog = (lambda v: 10 ** v) if log else (lambda v: v)
    for r in range(height):
        label = ""
        if r in (0, height // 2, height - 1):
            label = fmt_num(unlog(y1 - (y1 - y0) * r / max(height - 1, 1)))
        out.append(f"{label:>{label_w}}┤")
        for col in range(cw):
            ch = chr(0x2800 + int(dots[r, col])) if dots[r, col] else " "
            k = owner[r, col]
            out.append(ch, style=COLORS[k % len(COLORS)] if k >= 0 else None)
        out.append("\n")
    out.append(" " * label_w + "└" + "─" * cw + "\n")
    if markers:
        line = [" "] * cw
        styles: list[str | None] = [None] * cw
        for m in sorted(markers, key=lambda m: ("info", "warning", "critical").index(m.severity)):
            col = int(round((m.step - x0) / max(x1 - x0, 1e-12) * (cw - 1)))
            if 0 <= col < cw:
                line[col], styles[col] = _MARK.get(m.kind, "•"), _SEV.get(m.severity)
        out.append(" " * (label_w + 1))
        for ch, st in zip(line, styles):
            out.append(ch, style=st)
        out.append("\n")
    left, right = fmt_num(x0), fmt_num(x1)
    gap = max(1, cw - len(left) - len(right) - len(" step"))
    out.append(" " * (label_w + 1) + left + " " * gap + right + " step\n")
    for k, c in enumerate(curves):
        out.append(" " * (label_w + 1) + "━━ ", style=COLORS[k % len(COLORS)])
        out.append(c.label + "  ")
    out.append("\n")
    return out
