"""The terminal report at 80 and 160 columns: nothing cut, units, legends, storms, no
highlighting accidents."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.console import Console

from losslens.diagnosis import diagnose
from losslens.events import Event
from losslens.frame import build
from losslens.pipeline import Analysis, RunAnalysis
from losslens.records import RecordsBuilder, RunMeta
from losslens.report.terminal import print_analysis
from losslens.report.units import group_storms, magnitude_text
from losslens.skipplan import plan


def _run(name: str, n: int = 1200, spike_at=(10600,)):
    b = RecordsBuilder()
    its = np.arange(10, 10 * n + 1, 10)
    loss = 2.2 + 8.8 * (1 + its / 60.0) ** -0.55
    for s in spike_at:
        loss[its >= s] += 1.5
    for k, (it, v) in enumerate(zip(its, loss)):
        b.add("lm loss", int(it), float(v), order=k)
        b.add("grad norm", int(it), 1.0 + (5.0 if it % 290 == 0 else 0.0), order=k)
    return b.build(name, f"logs/{name}.log", "megatron", RunMeta(precision="bf16"))


def _events(run: str) -> tuple[Event, ...]:
    grads = [Event("grad_spike", run, "grad norm", s, s, s + 10, "info", "fast", 10, 6.0)
             for s in range(290, 12000, 290)]  # 41 spikes: a storm
    loss = [Event("spike", run, "lm loss", 10600, 10610, None, "critical", "none", None, 1.81),
            Event("rollback", run, "lm loss", 5010, magnitude=141.0),
            Event("overflow", run, "loss scale", 1100, 1100, 1110, "info", magnitude=2.0),
            Event("changepoint", run, "lm loss", 10600, severity="info", magnitude=0.737)]
    evs = sorted(grads + loss, key=lambda e: (e.start_step, e.kind))
    counters: dict[str, int] = {}
    out = []
    for e in evs:
        counters[e.kind] = counters.get(e.kind, 0) + 1
        out.append(Event(**{**e.__dict__, "id": f"{e.kind}-{counters[e.kind]}"}))
    return tuple(out)


NAMES = [f"gpt2_char_to_token1729_lr3e-4_warmup2000_seed{k}" for k in range(4)]


def _analysis(names=NAMES[:1]):
    frame = build([_run(n) for n in names])
    runs = []
    for info in frame.runs:
        ev = _events(info.run)
        p, w = plan(ev, list(range(0, 12001, 500)))
        runs.append(RunAnalysis(info, ev, tuple(diagnose(ev, info.metadata)), p, tuple(w)))
    return Analysis(frame, tuple(runs))


def _render(analysis, width: int, color: bool = False) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system="truecolor" if color else None,
                      force_terminal=color, soft_wrap=False)
    print_analysis(analysis, console)
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 160])
def test_fits_the_width_and_cuts_nothing(width):
    text = _render(_analysis(NAMES), width)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text.replace("grad_spike-1…41", "")
    # every critical id and its whole step range, on one line
    assert re.search(r"^spike-1 +10600 +critical +lm loss: ×1\.81 peak/level; "
                     r"not recovered", text, re.M)
    # units on every magnitude
    assert "141 steps replayed" in text and "2 overflows" in text and "+73.7% level" in text
    # the storm of 41 grad-norm spikes is one row with its id range
    storm = [line for line in lines if line.startswith("grad_spike-1…41")]
    assert len(storm) == len(NAMES) and "290–11900" in storm[0]
    assert not any(re.match(r"grad_spike-\d+ ", line) for line in lines)
    # the fleet table: every run name whole (wrapped inside its column at 80 columns)
    fleet = text.split("\n\n")[0]
    if width == 160:
        for name in NAMES:
            assert name in fleet
    else:
        col = [line[:line.index(" ")] if " " in line else line
               for line in fleet.splitlines()[3:]]
        joined = "".join(c for c in col if c)
        for name in NAMES:
            assert name in joined
    # legends for the plot marks, and a grad-norm panel
    assert "▲ spike" in text and "↺ rollback/resume" in text and "△ grad-norm spike" in text
    assert "━━ grad norm" in text


def test_wrapped_lines_keep_their_indent():
    text = _render(_analysis(), 80)
    block = text[text.index("CRITICAL"):].splitlines()
    assert len(block) > 3 and all(line.startswith("  ") for line in block[1:4])


def test_no_highlighting_of_call_like_words():
    text = _render(_analysis(), 120, color=True)
    # rich's highlighter would colour `spike(` like a function call
    assert "spike(s) that never recovered" in text
    assert re.search(r"spike\x1b\[[0-9;]*m\(", text) is None


def test_storms_keep_critical_events_apart():
    ev = _events("r")
    rows = group_storms(ev)
    assert sum(1 for r in rows if hasattr(r, "ids")) == 1
    assert any(getattr(r, "id", "") == "spike-1" for r in rows)


@pytest.mark.parametrize("kind,mag,details,want", [
    ("spike", 1.87, {}, "×1.87 peak/level"),
    ("spike", 0.4, {"magnitude_units": "difference"}, "Δloss +0.4"),
    ("overflow", 1.0, {}, "1 overflow"),
    ("rollback", 1410.0, {}, "1,410 steps replayed"),
    ("sudden_drop", 0.25, {}, "+25% drop"),
    ("divergence", 0.5, {"space": "linear"}, "Δloss +0.5"),
    ("divergence", 3.0, {"space": "log"}, "×3 above best"),
    # overfitting's magnitude is the last evaluation over the best one, not a peak
    ("overfitting", 1.1865, {"metric": "loss"}, "×1.19 last/best"),
    ("overfitting", 1.5, {"metric": "accuracy"}, "×1.5 last/best error"),
])
def test_magnitude_units(kind, mag, details, want):
    assert magnitude_text(kind, mag, details) == want


def test_progress_line_fits_shows_percent_and_is_cleared(tmp_path):
    from losslens.report.progress import Progress

    log = tmp_path / ("x" * 120 + ".log")
    log.write_bytes(b"0" * 2_000_000)
    buf = io.StringIO()
    with Progress(buf, width=80, interval=60) as p:
        p.reading(str(log), 1, 4)
        line = p.line()
        assert len(line) <= 79 and "reading 1/4  25%" in line and "(2 MB)" in line
        assert line.endswith(" s") and "…" in line
        p.analysing(3, 4, "run-a")
        assert "analysing 3/4  75% run-a" in p.line()
    out = buf.getvalue()
    assert out.endswith("\r\x1b[K")  # erased at the end
    assert all(len(chunk) <= 79 for chunk in out.replace("\x1b[K", "").split("\r"))


def test_names_from_logs_are_data():
    frame = build([_run("evil\x1b]52;c;aGk=\x07[red]x[/red]")])
    info = frame.runs[0]
    text = _render(Analysis(frame, (RunAnalysis(info, _events(info.run), (), None),)), 100,
                   color=True)
    assert "\x1b]52" not in text and "\\e]52;c;aGk=\\x07[red]x[/red]" in text


def test_html_events_table_summarises_storms_too():
    from losslens.report.html import events_html

    text = events_html(_events("r"))
    assert "<code>grad_spike-1…41</code>" in text and "41 events" in text
    assert text.count("<code>grad_spike-") == 1 and "<code>spike-1</code>" in text


def test_markdown_storms_and_fleet_worst_first():
    from losslens.report.markdown import event_rows

    rows = event_rows(_events("r"))
    assert [r[0] for r in rows if str(r[0]).startswith("grad_spike")] == ["grad_spike-1…41"]
    frame = build([_run("calm"), _run("bad")])
    runs = []
    for info in frame.runs:
        ev = _events(info.run) if info.run == "bad" else ()
        runs.append(RunAnalysis(info, ev, tuple(diagnose(ev, info.metadata)), None))
    text = _render(Analysis(frame, tuple(runs)), 80)
    table = text.split("\n\n")[0].splitlines()
    assert table[3].startswith("bad ") and table[4].startswith("calm ")


def test_series_table_wraps_long_tags_at_80():
    from losslens.report.terminal import print_series

    b = RecordsBuilder()
    tag = "train/per_dataset/" + "very_long_dataset_name_" * 3 + "loss"
    for k in range(50):
        b.add(tag, k, 2.0 - k / 100, order=k)
    frame = build([b.build("r", "logs/r.log", "jsonl", RunMeta())])
    buf = io.StringIO()
    print_series(frame, Console(file=buf, width=80, color_system=None))
    lines = buf.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in buf.getvalue()
    assert tag in "".join(line.split("  ")[0] for line in lines[3:])
    assert lines[0] == "r  (jsonl, logs/r.log)"
