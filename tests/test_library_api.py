"""The library surface a notebook uses: Frame.to_pandas (long and wide), repr, _repr_html_."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import losslens

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_logs" / "megatron_gpt_spikes.log"


def test_to_pandas_long_and_wide():
    frame = losslens.read(SAMPLE)
    long = frame.to_pandas()
    assert list(long.columns) == ["run", "tag", "step", "value", "wall_time", "segment"]
    assert len(long) == len(frame.stitched) and long["run"].iloc[0] == SAMPLE.name
    raw = frame.to_pandas(raw=True)
    assert len(raw) == len(frame) > len(long)  # the resume wrote some steps twice
    wide = frame.to_pandas(wide=True)
    tags = {s.tag for s in frame.runs[0].series}
    assert set(wide.columns) == {"run", "step"} | tags
    loss = frame.series(SAMPLE.name, "lm loss")
    row = wide[wide["step"] == int(loss.step[40])]
    assert math.isclose(float(row["lm loss"].iloc[0]), float(loss.value[40]))
    # validation is logged every 250 steps: NaN between
    assert wide["lm loss validation"].isna().sum() == len(wide) - 12
    assert np.all(np.diff(wide["step"].to_numpy()) > 0)


def test_repr_is_short_and_html_has_a_chart():
    frame = losslens.read(SAMPLE)
    text = repr(frame)
    assert text.startswith("<losslens.Frame: 1 run(s), ") and "\n" not in text
    html = frame._repr_html_()
    assert "<svg" in html and "lm loss validation" in html and "<script" not in html


def test_analyze_with_option_keywords_to_json_and_repr_html():
    import json

    analysis = losslens.analyze(SAMPLE, checkpoint_every=500)
    assert analysis.options.checkpoint_every == 500
    (ra,) = analysis.runs
    assert ra.skip_plan is not None and ra.skip_plan.restart_from_step == 2000
    doc = json.loads(analysis.to_json())
    assert doc["schema"] == "losslens.analysis/1"
    assert [e["id"] for e in doc["runs"][0]["events"]] == [e.id for e in ra.events]
    assert repr(analysis).startswith("<losslens.Analysis: 1 run(s), ")
    html = analysis._repr_html_()
    assert "<svg" in html and ra.findings[0].title.split("(")[0] in html
    assert "skip plan" in html and "<script" not in html
    import pytest

    with pytest.raises(losslens.LossLensError, match="unknown option"):
        losslens.analyze(SAMPLE, chekpoint_every=500)


def test_public_names():
    assert set(dir(losslens)) == set(losslens.__all__)
    for name in losslens.__all__:
        assert getattr(losslens, name) is not None
    assert "os" not in dir(losslens) and "Callable" not in dir(losslens)


def test_the_library_example_runs():
    import subprocess
    import sys

    script = ROOT / "docs" / "examples" / "library.py"
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("<losslens.Frame: 1 run(s)")
    assert "critical 1 spike(s) that never recovered" in out
    assert "restart from 2000 skip ((2001, 2420),)" in out
    assert "losslens.analysis/1" in out
