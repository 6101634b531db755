"""The new text readers followed a batch of appended lines at a time (what `watch` does) give
the points of one whole read."""
from __future__ import annotations

import numpy as np
import pytest

from losslens.readers import read_file
from losslens.readers.follow import LineDecoder

import test_readers_composer as composer
import test_readers_modded_nanogpt as modded


def _maxtext():
    return "".join(f"completed step: {s}, seconds: 1.1, loss: {9 - s / 10:.3f}\n" +
                   (f"eval metrics after step: {s}, loss={8 - s / 10:.3f}\n" if s % 5 == 4 else "")
                   for s in range(30))


def _torchtune():
    return "".join(f"Step {s} | loss:{2 - s / 100} lr:2e-05 \n" for s in range(1, 40))


def _modded():
    return modded.SOURCE + "=" * 100 + "\n" + "=" * 100 + "\n" + modded.LOG.rsplit("\n", 1)[0] + "\n"


def _fairseq2():
    return "".join(f"x - Train Metrics (step {s}) - Loss: {3 - s / 100:.3f} | Batch Size: 1,024\n"
                   for s in range(1, 30))


def _build_nanogpt():
    # the evaluation lines carry no step: the one after the step line before them (context)
    out = []
    for s in range(30):
        if s % 10 == 0:
            out += [f"validation loss: {3.1 - s / 100:.4f}", "HellaSwag accuracy: 1/4=0.2500",
                    "rank 1 sample 0: Hello, I'm a language model,", "and more"]
        out.append(f"step {s:5d} | loss: {3 - s / 100:.6f} | lr 6.0000e-04 | norm: 0.5000 | "
                   "dt: 400.00ms | tok/sec: 1300000.00")
    return "\n".join(out) + "\n"


def _composer():
    text = composer.CONSOLE.rsplit("\n", 1)[0] + "\n"
    return text * 3


@pytest.mark.parametrize("fmt, text", [("maxtext", _maxtext()), ("torchtune", _torchtune()),
                                       ("modded-nanogpt", _modded()), ("composer", _composer()),
                                       ("fairseq2", _fairseq2()),
                                       ("build-nanogpt", _build_nanogpt())])
@pytest.mark.parametrize("cut", [1, 3, 7])
def test_followed_in_batches_equals_one_read(tmp_path, fmt, text, cut):
    whole = tmp_path / "whole.log"
    whole.write_text(text)
    (expected,) = read_file(whole, "r", fmt)
    dec = LineDecoder(fmt, "r", str(whole), tmp_path / "batch.log")
    lines = text.splitlines(keepends=True)
    if fmt == "modded-nanogpt":  # the script writes its source at once, then the log lines
        first = text.index("=" * 100)
        lines = [text[:first]] + text[first:].splitlines(keepends=True)
    parts = []
    for a in range(0, len(lines), cut):
        rec = dec.parse("".join(lines[a:a + cut]).encode())
        if rec is not None and len(rec):
            parts.append(rec)
    def points(recs):  # (order, tag, step, value) with NaN spelled out (NaN != NaN)
        return sorted((int(o), r.tags[c], int(s), "nan" if np.isnan(v) else float(v))
                      for r in recs
                      for c, s, v, o in zip(r.tag_code, r.step, r.value, r.order))

    assert points(parts) == points([expected])
    assert len(expected) > 0
