"""The interactive layer of the HTML report: uPlot charts over the same data, still one file.

Why uPlot (vendored in `vendor/`, MIT): measured for this report, the minified library is
51 kB (Plotly 4.8 MB, Vega + Vega-Lite + vega-embed 0.8 MB), and it draws a 10,000-point
series per panel in a few milliseconds; the points are min/max decimated here first (the same
rule as every losslens chart: a one-step spike is never averaged away), so a 1M-step run
stays a small file. The static SVG charts stay in the page as the fallback where scripts do
not run (mail, artifact previews); the script replaces them.

What the page does: hover shows every series' value at the cursor (the legend), drag to zoom
the steps, the wheel zooms around the cursor, shift+drag pans, double-click resets; a
log/linear toggle, TensorBoard's debiased EMA smoothing slider (the raw curve stays, faint),
"ignore outliers" (y range from the 1st to the 99th percentile, as TensorBoard does), events
drawn as bands, the skip plan hatched with the restart line, and several runs overlaid in one
fleet chart. `window.losslens.plots` holds the charts (the browser tests read it).
"""
from __future__ import annotations

import json
import math
from importlib import resources
from typing import Any

import numpy as np

from .svgplot import downsample

#: Points per series sent to the page (min/max decimated beyond this).
MAX_POINTS = 10_000
FLEET_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
                "#e377c2", "#7f7f7f", "#bcbd22")


def _vendor(name: str) -> str:
    return resources.files("losslens.report").joinpath("vendor", name).read_text("utf-8")


def _series(steps: np.ndarray, values: np.ndarray) -> tuple[list[int], list[float | None]]:
    keep = downsample(steps, values, MAX_POINTS) if values.shape[0] else np.arange(0)
    st = steps[keep].astype(np.int64).tolist()
    vals = [float(v) if math.isfinite(v) else None for v in values[keep].tolist()]
    return st, vals


def _panel(title: str, lines: list[dict], events: list[dict] = (), skip=(), restart=None,
           ylabel: str = "value") -> dict | None:
    lines = [ln for ln in lines if ln["steps"]]
    if not lines:
        return None
    positive = all(v is None or v > 0 for ln in lines for v in ln["values"])
    return {"title": title, "ylabel": ylabel, "lines": lines, "events": list(events),
            "skip": [list(r) for r in skip], "restart": restart, "log_ok": positive}


def _events(ra, tags: set[str], colors: dict[str, str]) -> list[dict]:
    from .units import event_magnitude

    out = []
    for e in ra.events:
        if e.tag not in tags:
            continue
        end = e.end_step if e.end_step is not None else (
            e.peak_step if e.peak_step is not None else e.start_step)
        out.append({"id": e.id, "kind": e.kind, "tag": e.tag, "start": int(e.start_step),
                    "end": int(max(end, e.start_step)), "severity": e.severity,
                    "color": colors.get(e.kind, "#555"),
                    "label": f"{e.id}: {e.kind} on {e.tag}, steps {e.start_step}–{end}, "
                             f"{e.severity}" + (f", {event_magnitude(e)}" if e.magnitude
                                                is not None else "")})
    return out


def run_panels(frame, ra, colors: dict[str, str], series_colors, val_colors) -> list[dict]:
    """The panels of one run: losses (with the skip plan), grad norm, loss scale."""
    info = ra.info
    panels = []
    for title, roles, ylabel in (("loss", ("train_loss", "val_loss"), "loss"),
                                 ("gradient norm", ("grad_norm",), "grad norm"),
                                 ("loss scale", ("loss_scale",), "loss scale")):
        lines, n_t, n_v = [], 0, 0
        for s in info.series:
            if s.role not in roles:
                continue
            ser = frame.series(info.run, s.tag)
            st, vals = _series(ser.step, ser.value)
            if s.role == "val_loss":
                color, dash = val_colors[n_v % len(val_colors)], True
                n_v += 1
            else:
                color, dash = series_colors[n_t % len(series_colors)], False
                n_t += 1
            lines.append({"label": s.tag, "color": color, "dash": dash, "steps": st,
                          "values": vals})
        tags = {ln["label"] for ln in lines}
        plan = ra.skip_plan if roles[0] == "train_loss" else None
        panel = _panel(f"{info.run}: {title}", lines, _events(ra, tags, colors),
                       plan.skip if plan else (), plan.restart_from_step if plan else None,
                       ylabel)
        if panel:
            panels.append(panel)
    return panels


def fleet_panel(frame, analysis) -> dict | None:
    """Every run's first train loss in one chart (several runs only)."""
    if frame is None or len(analysis.runs) < 2:
        return None
    lines = []
    for k, ra in enumerate(analysis.runs):
        tag = next((s.tag for s in ra.info.series if s.role == "train_loss"), None)
        if tag is None:
            continue
        ser = frame.series(ra.info.run, tag)
        st, vals = _series(ser.step, ser.value)
        lines.append({"label": ra.info.run, "color": FLEET_COLORS[k % len(FLEET_COLORS)],
                      "dash": False, "steps": st, "values": vals})
    return _panel("all runs: train loss", lines, ylabel="loss")


def payload(analysis, colors, series_colors, val_colors) -> dict[str, Any]:
    frame = analysis.frame
    runs = [run_panels(frame, ra, colors, series_colors, val_colors) if frame is not None
            else [] for ra in analysis.runs]
    return {"runs": runs, "fleet": fleet_panel(frame, analysis)}


def _json_for_script(doc: Any) -> str:
    """JSON safe inside <script>: no `</` can close the element, no `<!--` opens a comment."""
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def scripts(doc: dict[str, Any]) -> str:
    return (f'<script type="application/json" id="losslens-data">{_json_for_script(doc)}'
            f"</script>\n<script>{_vendor('uPlot.iife.min.js')}</script>\n"
            f"<script>{APP_JS}</script>")


def styles() -> str:
    return _vendor("uPlot.min.css") + CSS


CSS = """
.controls{position:sticky;top:0;z-index:5;display:flex;flex-wrap:wrap;gap:6px 18px;
align-items:center;padding:8px 12px;margin:8px 0 4px;background:var(--panel);
border:1px solid var(--line);border-radius:6px;font-size:13px}
.controls label{display:inline-flex;gap:6px;align-items:center;white-space:nowrap}
.controls input[type=range]{width:140px}
.controls .hint{color:var(--muted);font-size:12px}
.chart .u-legend{font-size:12.5px;text-align:left}
.chart .u-title{font-size:14px;font-weight:600;text-align:left;padding-left:8px}
.chart .uplot{font-family:inherit;color:var(--fg)}
.u-legend .u-marker{border-radius:2px}
"""

APP_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("losslens-data").textContent);
  var state = {log: false, smooth: 0, outliers: false};
  var api = {plots: [], state: state, ready: false};
  window.losslens = api;
  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || "#888";
  }
  function fmt(v) {
    if (v == null || !isFinite(v)) return "–";
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(3);
    return Number(v.toPrecision(5)).toString();
  }
  // TensorBoard's smoothing: an exponential moving average, debiased at the start
  function ema(vals, w) {
    if (!w) return vals;
    var out = new Array(vals.length), last = 0, n = 0;
    for (var i = 0; i < vals.length; i++) {
      var v = vals[i];
      if (v == null || !isFinite(v)) { out[i] = v; continue; }
      n++; last = last * w + (1 - w) * v;
      out[i] = last / (1 - Math.pow(w, n));
    }
    return out;
  }
  // one x axis for every line of a panel: the union of their steps, null where absent
  function align(lines) {
    var seen = new Set(), xs = [];
    lines.forEach(function (ln) { ln.steps.forEach(function (s) { if (!seen.has(s)) { seen.add(s); xs.push(s); } }); });
    xs.sort(function (a, b) { return a - b; });
    var at = new Map(xs.map(function (s, i) { return [s, i]; }));
    var cols = lines.map(function (ln) {
      var col = new Array(xs.length).fill(null);
      ln.steps.forEach(function (s, i) { col[at.get(s)] = ln.values[i]; });
      return col;
    });
    return [xs, cols];
  }
  function quantile(sorted, q) {
    if (!sorted.length) return null;
    var p = (sorted.length - 1) * q, lo = Math.floor(p), hi = Math.ceil(p);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (p - lo);
  }
  function yRange(panel, cols, logScale) {
    return function (u, dmin, dmax) {
      if (!state.outliers) {
        if (logScale) return uPlot.rangeLog(Math.max(dmin, 1e-300), dmax, 10, true);
        return uPlot.rangeNum(dmin, dmax, 0.05, true);
      }
      var xs = u.data[0], vals = [];
      var x0 = u.scales.x.min == null ? -Infinity : u.scales.x.min;
      var x1 = u.scales.x.max == null ? Infinity : u.scales.x.max;
      cols.forEach(function (col) {
        for (var i = 0; i < col.length; i++) {
          var v = col[i];
          if (v != null && isFinite(v) && xs[i] >= x0 && xs[i] <= x1 && (!logScale || v > 0)) vals.push(v);
        }
      });
      vals.sort(function (a, b) { return a - b; });
      var lo = quantile(vals, 0.01), hi = quantile(vals, 0.99);
      if (lo == null) return [dmin, dmax];
      if (logScale) return [lo / 1.1, hi * 1.1];
      var pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
      return [lo - pad, hi + pad];
    };
  }
  function drawAnnotations(panel) {
    return function (u) {
      var ctx = u.ctx, b = u.bbox;
      ctx.save();
      ctx.beginPath(); ctx.rect(b.left, b.top, b.width, b.height); ctx.clip();
      function xpos(s) { return u.valToPos(s, "x", true); }
      (panel.skip || []).forEach(function (r) {
        var a = xpos(r[0]), z = xpos(r[1]);
        ctx.fillStyle = "rgba(82,96,109,0.16)";
        ctx.fillRect(a, b.top, Math.max(z - a, 2), b.height);
        ctx.strokeStyle = "rgba(82,96,109,0.45)"; ctx.lineWidth = 1;
        for (var x = a - b.height; x < z; x += 8) {
          ctx.beginPath(); ctx.moveTo(Math.max(x, a), b.top + Math.max(0, a - x));
          ctx.lineTo(Math.min(x + b.height, z), b.top + b.height - Math.max(0, x + b.height - z));
          ctx.stroke();
        }
      });
      if (panel.restart != null) {
        var rx = xpos(panel.restart);
        ctx.setLineDash([4, 4]); ctx.strokeStyle = css("--fg"); ctx.lineWidth = 1.2;
        ctx.beginPath(); ctx.moveTo(rx, b.top); ctx.lineTo(rx, b.top + b.height); ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = css("--fg"); ctx.font = (12 * devicePixelRatio) + "px system-ui";
        ctx.fillText("restart @" + panel.restart, rx + 4, b.top + 14 * devicePixelRatio);
      }
      (panel.events || []).forEach(function (e) {
        var a = xpos(e.start), z = xpos(e.end);
        ctx.globalAlpha = 0.18; ctx.fillStyle = e.color;
        ctx.fillRect(a - 1, b.top, Math.max(z - a, 3), b.height);
        ctx.globalAlpha = 1; ctx.beginPath();
        ctx.moveTo(a, b.top + 2); ctx.lineTo(a - 6, b.top + 12); ctx.lineTo(a + 6, b.top + 12);
        ctx.closePath(); ctx.fill();
      });
      ctx.restore();
    };
  }
  function wheelZoom() {
    return {hooks: {ready: function (u) {
      var over = u.over, dragging = null;
      over.addEventListener("wheel", function (e) {
        e.preventDefault();
        var f = e.deltaY < 0 ? 0.8 : 1.25, x = u.posToVal(e.offsetX, "x");
        var lo = u.scales.x.min, hi = u.scales.x.max;
        u.setScale("x", {min: x - (x - lo) * f, max: x + (hi - x) * f});
      }, {passive: false});
      over.addEventListener("mousedown", function (e) {
        if (!e.shiftKey) return;
        e.stopPropagation(); e.preventDefault();
        dragging = {x: e.clientX, lo: u.scales.x.min, hi: u.scales.x.max};
      }, true);
      window.addEventListener("mousemove", function (e) {
        if (!dragging) return;
        var dx = (e.clientX - dragging.x) / u.bbox.width * devicePixelRatio * (dragging.hi - dragging.lo);
        u.setScale("x", {min: dragging.lo - dx, max: dragging.hi - dx});
      });
      window.addEventListener("mouseup", function () { dragging = null; });
    }}};
  }
  function build(el, panel) {
    var al = align(panel.lines), xs = al[0], cols = al[1];
    var logScale = state.log && panel.log_ok;
    var data = [xs], series = [{label: "step", value: function (u, v) { return v == null ? "–" : v; }}];
    panel.lines.forEach(function (ln, k) {
      if (state.smooth > 0) {  // the raw curve stays, faint, under the smoothed one
        data.push(cols[k]);
        series.push({label: ln.label + " (raw)", stroke: ln.color, alpha: 0.25, width: 1,
                     spanGaps: true, points: {show: false}, value: function (u, v) { return fmt(v); }});
      }
      data.push(ema(cols[k], state.smooth));
      series.push({label: ln.label, stroke: ln.color, width: 1.6, dash: ln.dash ? [6, 3] : undefined,
                   spanGaps: true, points: {show: ln.steps.length < 60, size: 4},
                   value: function (u, v) { return fmt(v); }});
    });
    var fg = css("--fg"), grid = css("--grid");
    var width = Math.max(280, el.clientWidth - 16);
    var opts = {
      title: panel.title, width: width, height: width < 600 ? 240 : 300,
      series: series,
      scales: {x: {time: false}, y: {distr: logScale ? 3 : 1, log: 10, range: yRange(panel, cols, logScale)}},
      axes: [{stroke: fg, grid: {stroke: grid}, ticks: {stroke: grid}, font: "12px system-ui", label: "step", labelFont: "12px system-ui"},
             {stroke: fg, grid: {stroke: grid}, ticks: {stroke: grid}, font: "12px system-ui", size: 60,
              values: function (u, vals) { return vals.map(fmt); }}],
      cursor: {drag: {x: true, y: false}},
      legend: {live: true},
      hooks: {draw: [drawAnnotations(panel)]},
      plugins: [wheelZoom()]
    };
    el.innerHTML = "";
    var u = new uPlot(opts, data, el);
    u.losslensPanel = panel;
    u.root.setAttribute("data-title", panel.title);
    return u;
  }
  function renderAll() {
    api.plots.forEach(function (u) { u.destroy(); });
    api.plots = [];
    document.querySelectorAll(".chart[data-panel]").forEach(function (el) {
      var ref = el.getAttribute("data-panel").split(":"), panel;
      panel = ref[0] === "fleet" ? D.fleet : D.runs[+ref[0]][+ref[1]];
      if (panel) api.plots.push(build(el, panel));
    });
  }
  function controls() {
    var log = document.getElementById("ll-log"), sm = document.getElementById("ll-smooth"),
        out = document.getElementById("ll-outliers"), smv = document.getElementById("ll-smooth-value");
    state.log = log.checked; state.smooth = +sm.value; state.outliers = out.checked;
    log.addEventListener("change", function () { state.log = log.checked; renderAll(); });
    out.addEventListener("change", function () { state.outliers = out.checked; renderAll(); });
    sm.addEventListener("input", function () { state.smooth = +sm.value; smv.textContent = (+sm.value).toFixed(2); });
    sm.addEventListener("change", function () { state.smooth = +sm.value; renderAll(); });
  }
  var timer = null;
  window.addEventListener("resize", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      api.plots.forEach(function (u) {
        var w = Math.max(280, u.root.parentNode.clientWidth - 16);
        u.setSize({width: w, height: w < 600 ? 240 : 300});
      });
    }, 100);
  });
  api.renderAll = renderAll;
  document.documentElement.classList.add("js");
  controls();
  renderAll();
  api.ready = true;
})();
"""
