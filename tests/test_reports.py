"""Markdown and HTML reports, the SVG plots, atomic output, and the Chromium screenshot."""
from __future__ import annotations

import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from losslens.diagnosis import diagnose
from losslens.events import Event
from losslens.frame import build
from losslens.pipeline import Analysis, RunAnalysis
from losslens.records import RecordsBuilder, RunMeta
from losslens.report import html as html_report
from losslens.report import markdown as md_report
from losslens.report.svgplot import Line, Mark, chart, downsample, log_ticks, nice_ticks
from losslens.skipplan import plan

ROOT = Path(__file__).resolve().parents[1]


def _frame(n=300, resume=True, name="gpt|run"):
    """A Megatron-like run: lm loss with a spike at 820 and a jump at 2410 that stays, a
    validation loss, grad norm and loss scale; iterations 1510-1650 written twice (resume)."""
    b = RecordsBuilder()
    its = np.arange(10, 10 * n + 1, 10)
    loss = 2.2 + 8.8 * (1 + its / 60.0) ** -0.55
    loss[its == 820] *= 1.9
    loss[its >= 2410] += 2.0
    order = 0
    for it, v in zip(its, loss):
        order += 1
        b.add("lm loss", int(it), float(v), order=order)
        b.add("grad norm", int(it), 6.0 if it == 820 else 1.0, order=order)
        b.add("loss scale", int(it), 65536.0 if it < 1100 else 32768.0, order=order)
        if it % 250 == 0:
            b.add("lm loss validation", int(it), float(v) + 0.05, order=order)
        if resume and it == 1650:
            order += 1
            b.header(order)
            for again in range(1510, 1651, 10):
                order += 1
                b.add("lm loss", again, float(loss[its == again][0]) * 1.01, order=order)
    meta = RunMeta(precision="fp16", global_batch_size=512, hidden_size=4096)
    return build([b.build(name, "logs/gpt.log", "megatron", meta)])


def _events(run):
    return (Event("spike", run, "lm loss", 820, 820, 840, "info", "fast", 20, 1.9, id="spike-1"),
            Event("overflow", run, "loss scale", 1100, 1100, 1110, "warning", id="overflow-1"),
            Event("grad_spike", run, "grad norm", 820, 820, 830, "info", "fast", 10, 6.0,
                  id="grad_spike-1"),
            Event("spike", run, "lm loss", 2410, 2420, None, "critical", "none", None, 1.6,
                  id="spike-2"))


def _analysis(frame=None):
    frame = frame or _frame()
    runs = []
    for info in frame.runs:
        ev = _events(info.run)
        p, w = plan(ev, [0, 500, 1000, 1500, 2000, 2500, 3000], global_batch_size=512)
        runs.append(RunAnalysis(info, ev, tuple(diagnose(ev, info.metadata)), p, tuple(w)))
    return Analysis(frame, tuple(runs))


# --------------------------------------------------------------------------- markdown

def test_markdown_report():
    text = md_report.render(_analysis())
    lines = text.splitlines()
    assert lines[0] == "# losslens report"
    assert "## gpt\\|run" in lines  # Markdown specials in a run name escaped
    assert "| status | **CRITICAL** |" in lines
    assert "| source | `logs/gpt.log` |" in lines
    assert "| segments | #0 10–1650 (start), #1 1510–3000 (header) |" in lines
    assert "| spike-2 | spike | lm loss | 2410–(not back) | 2420 | ×1.6 peak/level | none | critical |" \
        in lines
    assert "| spike-1 | spike | lm loss | 820–840 | 820 | ×1.9 peak/level | fast (20 steps) | info |" in lines
    assert "#### CRITICAL: 1 spike(s) that never recovered" in lines
    assert any(ln.startswith("**Advice:** Restart from a checkpoint ~100 steps") for ln in lines)
    assert any(ln.startswith("*Cites:* PaLM, arXiv 2204.02311") for ln in lines)
    assert "| Megatron-DeepSpeed | `--skip-train-iteration-range 2001-2420` |" in lines
    assert not any(ln.startswith(("| metaseq |", "| HF Trainer")) for ln in lines)  # Megatron
    assert "| samples (0-based, GBS 512) | `1024000-1239039` |" in lines
    assert any("`--iterations-to-skip 2001 ... 2420 (420 entries" in ln for ln in lines)
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_markdown_cells_escape_pipes_and_newlines():
    assert md_report.cell("a|b\nc") == "a\\|b c"
    assert md_report.table(("x",), [["1|2"]]) == ["| x |", "|---|", "| 1\\|2 |"]


def test_markdown_clean_run():
    frame = _frame(resume=False)
    info = frame.runs[0]
    text = md_report.render(Analysis(frame, (RunAnalysis(info, (), (), None),)))
    assert "| status | **CLEAN** |" in text
    assert "No events." in text and "No findings." in text
    assert "Nothing to skip: no event needs a restart." in text


# --------------------------------------------------------------------------- svg plots

def test_downsample_keeps_every_spike():
    rng = np.random.default_rng(0)
    n = 100_000
    steps = np.arange(n)
    values = 3 + 0.01 * rng.standard_normal(n)
    values[[12_345, 77_777]] = [9.0, -4.0]
    keep = downsample(steps, values)
    assert keep.shape[0] <= 2002 and keep[0] == 0 and keep[-1] == n - 1
    assert {12_345, 77_777} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    assert downsample(steps[:50], values[:50]).tolist() == list(range(50))


def test_ticks():
    assert nice_ticks(0, 3000, 6) == [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert nice_ticks(2.9, 3.4, 5) == [2.9, 3.0, 3.1, 3.2, 3.3, 3.4]
    assert log_ticks(0.5, 20) == [0.5, 1, 2, 5, 10, 20]
    assert log_ticks(1e-3, 1e3) == [1e-3, 1e-2, 1e-1, 1, 10, 100, 1000]


def _polylines(svg):
    return [[tuple(map(float, p.split(","))) for p in m.split()]
            for m in re.findall(r'<polyline points="([^"]+)"', svg)]


def test_chart_log_scale_when_the_curve_spans_decades():
    steps = np.arange(1, 1001)
    decades = chart("t", [Line("loss", steps, 10.0 / np.sqrt(steps), "#000")], uid="a",
                    ylabel="loss")
    assert "loss (log scale)" in decades
    flat = chart("t", [Line("loss", steps, 3 + 1 / steps, "#000")], uid="b", ylabel="loss")
    assert "log scale" not in flat


def test_chart_breaks_lines_at_nan_and_marks_nonfinite():
    steps = np.arange(10)
    values = np.array([1, 2, 3, np.nan, 3, 2, np.inf, 1, 2, 3], float)
    svg = chart("t", [Line("loss", steps, values, "#000")], uid="c")
    assert [len(p) for p in _polylines(svg)] == [3, 2, 3]
    assert "loss: NaN at step 3" in svg and "loss: +inf at step 6" in svg
    assert "every value is non-finite" not in svg
    allnan = chart("t", [Line("loss", steps, np.full(10, np.nan), "#000")], uid="e")
    assert "every value is non-finite" in allnan and _polylines(allnan) == []


def test_chart_downsamples_large_series_and_keeps_the_spike():
    n = 50_000
    steps = np.arange(n)
    values = np.full(n, 3.0)
    values[31_337] = 30.0
    svg = chart("t", [Line("loss", steps, values, "#000")], height=200, uid="d")
    pts = [p for line in _polylines(svg) for p in line]
    assert len(pts) <= 2002
    top = min(y for _, y in pts)  # the spike is the highest point drawn (smallest y)
    assert any(y == top for _, y in pts) and top < 100


def test_chart_marks_and_ids_are_unique_per_chart():
    steps = np.arange(100)
    ln = Line("loss", steps, np.ones(100), "#000")
    a = chart("a", [ln], [Mark("spike", 10, 20, "#f00", "spike-1", 15, "loss")], uid="x1")
    b = chart("b", [ln], [Mark("skip", 30, 40, "#555", "skip", hatch=True)], uid="x2")
    assert 'id="plot-x1"' in a and 'id="plot-x2"' in b and 'id="plot-x1"' not in b
    assert "<title>spike-1</title>" in a and 'fill="url(#hatch-x2)"' in b


# --------------------------------------------------------------------------- html

class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def test_html_report_is_self_contained_with_plots():
    text = html_report.render(_analysis())
    p = _Collect()
    p.feed(text)
    # scripts only inline (the data, uPlot, the page's code): nothing is loaded from anywhere
    assert "link" not in p.tags and "img" not in p.tags
    assert p.tags.count("script") == 3
    external = [(t, k, v) for t, k, v in p.attrs if k in ("src", "href")
                and not v.startswith("#")]
    assert external == []
    body = text.split('<script type="application/json"')[0]
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", body)
    assert "@import" not in text and "url(http" not in text
    assert "fetch(" not in text and "XMLHttpRequest" not in text
    assert p.tags.count("svg") == 3  # loss, grad norm, loss scale (shown without scripts)
    # findings come before the charts
    assert text.index("<h3>Findings</h3>") < text.index('class="chart"')
    assert "gpt|run: loss" in text and "gpt|run: gradient norm" in text
    assert "<title>spike-2: spike on lm loss, steps 2410–…, severity critical, peak 2420, " \
           "×1.6 peak/level, recovery none</title>" in text
    assert "resume @1510" in text and "restart @2000" in text
    assert "lm loss (overwritten by a resume)" in text and "lm loss validation" in text
    assert "skip plan (batches to skip)" in text
    assert "--skip-train-iteration-range 2001-2420" in text
    assert "Advice:" in text and "Cites:" in text


def test_html_escapes_run_names_and_text():
    text = html_report.render(_analysis(_frame(name="<b>x</b>")))
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text


# --------------------------------------------------------------------------- output

def test_write_atomic_replaces_and_cleans_up(tmp_path, monkeypatch):
    from losslens.textsafe import write_file as write_atomic

    target = tmp_path / "report.html"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["report.html"]

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, "half")
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["report.html"]


def test_cli_analyze_markdown_and_html_to_files(runner, tmp_path):
    from losslens.cli import app
    from test_exporters import nanogpt_log

    log = tmp_path / "run.log"
    log.write_text(nanogpt_log())
    res = runner.invoke(app, ["analyze", str(log), "--format", "html", "-o",
                              str(tmp_path / "r.html"), "--checkpoint-every", "500"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout == "" and "wrote" in res.stderr
    html = (tmp_path / "r.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "--target hf" in html  # nanoGPT: no flag
    assert "--skip-train-iteration-range" not in html  # Megatron's flag is not nanoGPT's
    res = runner.invoke(app, ["analyze", str(log), "--format", "markdown"])
    assert res.exit_code == 0 and res.stdout.startswith("# losslens report\n")
    res = runner.invoke(app, ["analyze", str(log), "-o", str(tmp_path / "nope" / "r.md")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


# --------------------------------------------------------------------------- screenshot

sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_screenshot_of_the_html_report(tmp_path):
    import screenshot_report as shot

    if shot.find_chromium() is None:
        pytest.skip("chromium is not installed")
    html = tmp_path / "report.html"
    html.write_text(html_report.render(_analysis()))
    png = shot.screenshot(html, tmp_path / "report.png")
    assert shot.png_size(png) == (1400, 2400)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        assert png.stat().st_size > 50_000
        return
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    # the charts are drawn: the loss line's blue and the critical spike's red shading appear
    blue = ((abs(img[..., 0] - 0x1F) < 30) & (abs(img[..., 1] - 0x5F) < 30)
            & (abs(img[..., 2] - 0xA8) < 30)).sum()
    assert blue > 2000
    assert img.std() > 10


@pytest.mark.slow
def test_screenshot_script_on_the_sample_log(tmp_path):
    import screenshot_report as shot

    if shot.find_chromium() is None:
        pytest.skip("chromium is not installed")
    pytest.importorskip("losslens.readers.megatron")
    out = tmp_path / "sample.png"
    assert shot.main([str(shot.SAMPLE), "--out", str(out), "--html",
                      str(tmp_path / "s.html")]) == 0
    assert shot.png_size(out) == (1400, 2400)
    assert "megatron_gpt_spikes" in (tmp_path / "s.html").read_text()


def test_an_overfitting_magnitude_reads_last_over_best_in_every_report():
    # the magnitude of an overfitting event is the last evaluation over the best one
    frame = _frame(resume=False)
    info = frame.runs[0]
    ev = (Event("overfitting", info.run, "lm loss validation", 1500, None, 3000, "warning",
                None, None, 1.1865, {"metric": "loss", "best_step": 1500}, id="overfitting-1"),)
    analysis = Analysis(frame, (RunAnalysis(info, ev, tuple(diagnose(ev, info.metadata)), None,
                                            ()),))
    md = md_report.render(analysis)
    assert ("| overfitting-1 | overfitting | lm loss validation | 1500–3000 |  | "
            "×1.19 last/best |  | warning |") in md.splitlines()
    assert "peak/level" not in md
    page = html_report.render(analysis)
    assert "×1.19 last/best" in page and "peak/level" not in page
