"""The terminal loss plot: braille canvas, log scale, event marks, legend."""
from __future__ import annotations

import numpy as np
from rich.console import Console

from losslens.report.termplot import Curve, Marker, render


def _text(t):
    console = Console(width=120, record=True, color_system=None)
    console.print(t)
    return console.export_text().rstrip("\n")


def test_plot_has_axes_marks_and_legend():
    steps = np.arange(0, 1000, 10)
    values = 3.0 + 5.0 * np.exp(-steps / 200.0)
    values[50] = 7.5  # a spike at step 500
    text = _text(render([Curve("lm loss", steps, values)],
                        [Marker(500, "spike", "critical")], width=60, height=8))
    lines = text.splitlines()
    assert len(lines) == 8 + 4  # canvas rows, axis, marks, x labels, legend
    # round y ticks on the rows nearest to them, the other rows unlabelled
    labels = [line[:7].strip() for line in lines[:8]]
    assert [x for x in labels if x] == ["7.5", "5"]
    assert lines[-2].split() == ["step", "0", "200", "400", "600", "800"]
    assert lines[-4].count("┬") == 5  # a tick on the axis under every label
    assert "▲" in lines[-3] and lines[-1].strip() == "━━ lm loss  ▲ spike"
    assert max(len(line) for line in lines) <= 60
    # the mark sits under step 500: halfway along the canvas
    canvas_start = lines[0].index("│") + 1
    col = lines[-3].index("▲") - canvas_start
    assert abs(col - round(500 / 990 * (60 - 8 - 1))) <= 1
    assert any(ch != " " for ch in lines[3][canvas_start:])  # dots were drawn


def test_log_scale_when_spanning_decades_and_nan_ignored():
    steps = np.arange(1, 2001)
    values = 100.0 * steps ** -0.9
    values[5] = np.nan
    text = _text(render([Curve("loss", steps, values)], title="loss", width=50, height=6))
    assert text.splitlines()[0] == "loss (log scale)"


def test_empty_input_renders_nothing():
    assert _text(render([Curve("x", np.empty(0), np.empty(0))])).strip() == ""
