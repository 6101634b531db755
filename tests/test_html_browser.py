"""The interactive HTML report in a real headless Chromium: hover shows the value, zoom
changes the range, the log toggle and smoothing work, no request leaves the file, readable on
a narrow window, several runs overlaid. Skips (saying why) only where no browser can run."""
from __future__ import annotations

import shutil

import pytest

from losslens.report import html as html_report
from test_reports import _analysis, _frame

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is not installed (pip install playwright)")
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _open(browser, tmp_path, analysis, width=1300, height=1600, scheme="light"):
    path = tmp_path / "report.html"
    path.write_text(html_report.render(analysis))
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_function("window.losslens && window.losslens.ready", timeout=30_000)
    return page, path


def _box(page, k=0):
    return page.locator(".u-over").nth(k).bounding_box()


def test_hover_shows_the_value_and_nothing_is_fetched(browser, tmp_path):
    page, path = _open(browser, tmp_path, _analysis())
    assert page.errors == [] and page.requests == [path.as_uri()]
    assert page.evaluate("window.losslens.plots.length") == 3  # loss, grad norm, loss scale
    b = _box(page)
    page.mouse.move(b["x"] + b["width"] * 0.25, b["y"] + b["height"] / 2)
    idx = page.evaluate("window.losslens.plots[0].cursor.idx")
    step, value = page.evaluate(f"[window.losslens.plots[0].data[0][{idx}], "
                                f"window.losslens.plots[0].data[1][{idx}]]")
    legend = page.locator(".u-legend").first
    shown = legend.locator(".u-series").nth(1).locator(".u-value").inner_text()
    assert legend.locator(".u-series").nth(0).locator(".u-value").inner_text() == str(step)
    assert shown != "–" and abs(float(shown) - value) <= 1e-4 * abs(value)
    assert 600 <= step <= 900  # a quarter of the way along 10..3000


def test_drag_zooms_double_click_resets_log_toggle(browser, tmp_path):
    page, _ = _open(browser, tmp_path, _analysis())
    full = page.evaluate("[window.losslens.plots[0].scales.x.min, "
                         "window.losslens.plots[0].scales.x.max]")
    b = _box(page)
    y = b["y"] + b["height"] / 2
    page.mouse.move(b["x"] + b["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] * 0.6, y, steps=5)
    page.mouse.up()
    lo, hi = page.evaluate("[window.losslens.plots[0].scales.x.min, "
                           "window.losslens.plots[0].scales.x.max]")
    assert full[0] < lo < hi < full[1] and (hi - lo) < 0.4 * (full[1] - full[0])
    page.mouse.dblclick(b["x"] + b["width"] / 2, y)
    assert page.evaluate("window.losslens.plots[0].scales.x.max") == pytest.approx(full[1])
    assert page.evaluate("window.losslens.plots[0].scales.y.distr") == 1
    page.click("#ll-log")
    assert page.evaluate("window.losslens.plots[0].scales.y.distr") == 3
    page.click("#ll-log")
    assert page.evaluate("window.losslens.plots[0].scales.y.distr") == 1


def test_smoothing_and_ignore_outliers(browser, tmp_path):
    page, _ = _open(browser, tmp_path, _analysis())
    n = page.evaluate("window.losslens.plots[0].series.length")
    top = page.evaluate("window.losslens.plots[0].scales.y.max")
    page.evaluate("""() => {const s = document.getElementById('ll-smooth'); s.value = 0.9;
                     s.dispatchEvent(new Event('change'));}""")
    u = "window.losslens.plots[0]"
    assert page.evaluate(f"{u}.series.length") == 2 * n - 1  # a faint raw curve per line
    raw, smooth = page.evaluate(f"[{u}.data[1].slice(0, 40), {u}.data[2].slice(0, 40)]")
    # debiased EMA: starts at the first value, then lags the raw curve
    assert smooth[0] == pytest.approx(raw[0]) and smooth[30] != pytest.approx(raw[30])
    page.evaluate("""() => {const s = document.getElementById('ll-smooth'); s.value = 0;
                     s.dispatchEvent(new Event('change'));}""")
    page.click("#ll-outliers")
    # the spike to ~7.9 at step 820 and the step-10 loss no longer set the y range
    assert page.evaluate(f"{u}.scales.y.max") < top - 1


def test_narrow_window_stays_readable(browser, tmp_path):
    page, _ = _open(browser, tmp_path, _analysis(), width=390, height=900)
    width = page.evaluate("window.losslens.plots[0].width")
    assert width <= 390
    size = page.evaluate("getComputedStyle(document.querySelector('.finding p')).fontSize")
    assert float(size.rstrip("px")) >= 13
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= 392


def test_fleet_of_runs_overlaid(browser, tmp_path):
    from losslens.frame import build

    frames = [_frame(name=f"run-{k}", resume=False) for k in range(8)]
    records = [r for f in frames for r in _records(f)]
    page, _ = _open(browser, tmp_path, _analysis(build(records)))
    assert page.locator("h2").first.inner_text() == "8 runs"
    fleet = "window.losslens.plots[0]"
    assert page.evaluate(f"{fleet}.series.length") == 9  # step + one train loss per run
    assert page.evaluate(f"{fleet}.series.map(s => s.label).slice(1)") == [
        f"run-{k}" for k in range(8)]
    assert page.locator("table").first.locator("tbody tr").count() == 8


def _records(frame):
    """The frame's runs back as records (to build a frame of several runs)."""
    import numpy as np

    from losslens.records import RecordsBuilder

    out = []
    for info in frame.runs:
        b = RecordsBuilder()
        k = 0
        for s in info.series:
            ser = frame.series(info.run, s.tag)
            for st, v in zip(ser.step.tolist(), ser.value.tolist()):
                k += 1
                b.add(s.tag, int(st), float(v), order=k)
        out.append(b.build(info.run, info.source, info.format, info.metadata))
    return out
