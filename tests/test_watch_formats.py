"""Text formats followed a line batch at a time (`readers.follow.CONTEXT_LINES`) give the
series of reading the whole file, wherever the appended bytes were cut."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import losslens
from losslens.readers.follow import CONTEXT_LINES
from losslens.watch import Follower

from follow_check import follow_in_pieces

DATA = Path(__file__).resolve().parent / "data"


def _loss(s: int) -> float:
    return 2 + math.exp(-s / 300) * (3 if s == 700 else 1)


def maxtext(n: int) -> str:
    out = ["I1129 19:48:00.000000 140000 train.py:100] Number of model params=1.104 billion"]
    for s in range(n):
        out.append(f"I1129 19:48:42.123456 140000 max_logging.py:27] completed step: {s}, "
                   f"seconds: 1.150, TFLOP/s/device: 470.000, Tokens/s/device: 57000.000, "
                   f"total_weights: 8192, loss: {_loss(s):.3f}")
        if s % 100 == 4:
            out.append("I1129 19:48:50.000000 140000 max_logging.py:27] eval metrics after "
                       f"step: {s}, loss=9.876, total_weights=5000.0, step_time_seconds=0.321")
    return "\n".join(out) + "\n"


def torchtune(n: int) -> str:
    return "".join(f"Step {s} | loss:{_loss(s):.4f} lr:2e-05 grad_norm:{0.5 + s % 7 / 100} \n"
                   for s in range(1, n))


def composer(n: int) -> str:
    out = ["[2025-08-06 10:02:48,297][composer.trainer.trainer][INFO] - Run name: r1",
           "******************************", "Config:", "composer_version: 0.31.0",
           "******************************"]
    for s in range(1, n):
        out.append(f"[batch={s}/{n}]:\n\t Train time/batch: {s}\n\t Train loss/train/total: "
                   f"{_loss(s):.4f}\n\t Train lr-DecoupledAdamW/group0: 0.0001")
        if s % 200 == 0:
            out.append("[Eval batch=1/4] Eval on eval data\n[Eval batch=4/4] Eval on eval "
                       "data:\n\t Eval metrics/eval/LanguageCrossEntropy: 3.9")
    return "\n".join(out) + "\n"


def t5x(n: int) -> str:
    out = ["I0612 10:00:00.000000 140245 train.py:360] Process ID: 0"]
    for s in range(1, n):
        out.append(f"I0612 10:01:02.123456 140245 logging_writer.py:48] [{s}] collection=train "
                   f"accuracy=0.4, learning_rate=0.01, loss={_loss(s):.6g}")
        if s % 100 == 0:
            out.append(f"I0612 10:01:02.123456 140245 logging_writer.py:48] [{s}] "
                       f"collection=training_eval/c4 loss={_loss(s) + 0.1:.6g}")
    return "\n".join(out) + "\n"


def levanter(n: int) -> str:
    pre = "2025-06-01T10:00:00 - 0 - levanter.json_logger - json_logger.py:79 - INFO :: "
    out = []
    for s in range(n):
        out.append(pre + '{"tracker": "json_logger", "event": "log", "step": %d, "metrics": '
                   '{"train/loss": %r, "global_step": %d}}' % (s, _loss(s), s))
        if s % 100 == 99:
            out.append(pre + '{"tracker": "json_logger", "event": "log", "step": %d, '
                       '"metrics": {"eval/loss": 2.5}}' % s)
    return "\n".join(out) + "\n"


def build_nanogpt(n: int) -> str:
    # train_gpt2.py: evaluation lines (no step) at the top of every 250th step, then the
    # samples of two ranks (several lines each), then the step's own line
    out = ["total desired batch size: 524288"]
    for s in range(n):
        if s % 250 == 0 or s == n - 1:
            out += [f"validation loss: {_loss(s) + 0.1:.4f}",
                    f"HellaSwag accuracy: {2490 + s}/10042={(2490 + s) / 10042:.4f}"]
            if s:
                out += [f"rank {r} sample {i}: Hello, I'm a language model,\nand more"
                        for r in range(2) for i in range(4)]
        out.append(f"step {s:5d} | loss: {_loss(s):.6f} | lr {6e-4:.4e} | "
                   f"norm: {0.5 + s % 7 / 100:.4f} | dt: {400 + s % 3:.2f}ms | tok/sec: {1.3e6:.2f}")
    return "\n".join(out) + "\n"


def build_nanogpt_log(n: int) -> str:
    out = []
    for s in range(n):
        if s % 250 == 0 or s == n - 1:
            out += [f"{s} val {_loss(s) + 0.1:.4f}", f"{s} hella {(2490 + s) / 10042:.4f}"]
        out.append(f"{s} train {_loss(s):.6f}")
    return "\n".join(out) + "\n"


def modded() -> str:
    return (DATA / "modded_nanogpt" / "2024-12-04_ValueEmbed_1b4db08c.txt").read_text()


def jsonl_null_tail(n: int) -> str:
    # JSON lines whose last losses are null (pandas / orjson's NaN): read as NaN points when
    # the reader sees the lines before them too (its context)
    import json

    rows = [{"step": s, "loss": None if s > n - 5 else round(_loss(s), 4), "lr": 1e-4}
            for s in range(1, n)]
    return "".join(json.dumps(r) + "\n" for r in rows)


CASES = {"maxtext": lambda: maxtext(1200), "torchtune": lambda: torchtune(1200),
         "composer": lambda: composer(1200), "modded-nanogpt": modded,
         "t5x": lambda: t5x(1200), "levanter": lambda: levanter(1200),
         "jsonl": lambda: jsonl_null_tail(1200), "build-nanogpt": lambda: build_nanogpt(1200),
         "build-nanogpt-log": lambda: build_nanogpt_log(1200),
         # a nanoGPT fork that prints `loss 4.5735 BPC` (real output, jackokeefe11/nanoGPT)
         "nanogpt": lambda: (DATA / "real_excerpts" / "nanogpt-bpc_kt2awly2_output.log"
                             ).read_text()}


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_line_batches_of_newer_formats_read_like_the_whole_file(tmp_path, fmt):
    assert fmt in CONTEXT_LINES
    data = CASES[fmt]().encode()
    dst = tmp_path / "run.log"
    st = follow_in_pieces(dst, data, fmt, seed=1, sizes=(40, 300, 2000, 9000))
    frame = losslens.read(dst)
    assert frame.runs[0].format == fmt
    assert st.series
    if fmt == "jsonl":  # the null tail: four NaN points at the end, in both readings
        ref = frame.series(frame.runs[0].run, "loss")
        assert ref.step[-4:].tolist() == [1196, 1197, 1198, 1199]
        assert np.isnan(ref.value[-4:]).all() and np.isfinite(ref.value[:-4]).all()
    for tag, s in st.series.items():
        ref = frame.series(frame.runs[0].run, tag)
        assert list(s.step[:s.n]) == list(ref.step), tag
        assert list(s.value[:s.n]) == pytest.approx(list(ref.value), nan_ok=True), tag


def test_jsonl_null_losses_appended_alone_are_nan_points_in_watch_too(tmp_path):
    # the null lines arrive in a batch of their own: the lines before them (the reader's
    # context) tell that the loss was logged on each line beside lr, so null is a NaN
    data = jsonl_null_tail(400).encode()
    tail = data.index(b'{"step": 396,')
    dst = tmp_path / "run.log"
    dst.write_bytes(b"")
    with Follower(dst, input_format="jsonl") as f:
        for part in (data[:tail], data[tail:]):
            with open(dst, "ab") as fh:
                fh.write(part)
            f.poll()
        s = f.states["run.log"].series["loss"]
    assert s.step[:s.n][-4:].tolist() == [396, 397, 398, 399]
    assert np.isnan(s.value[:s.n][-4:]).all() and s.n == 399
