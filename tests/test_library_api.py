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
