"""Replay through the adapters of `losslens.replay.adapters`, each on a run trained here with one
corrupted batch, with no plug-in code beyond naming the run → `bad_batch` and the right rows.

- nanoGPT: `tests/nanogpt_toy/` is nanoGPT's model.py and train.py loop reduced to one CPU
  process (global-generator batches, estimate_loss draws, ckpt.pt copies, logged loss = last
  micro-batch × gradient accumulation);
- HF Trainer: a tiny local GPT-2 (2 layers, no hub download) trained by `transformers.Trainer`;
- plain PyTorch state-dict checkpoints.
The corrupted rows are found by a first training run (the offsets/indices it used) and
overwritten with random bytes in the data; the run is then trained again from scratch.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ImportError:
    torch = None

pytestmark = pytest.mark.skipif(torch is None, reason="replay runs need torch "
                                "(pip install 'losslens[replay]')")
TOY = Path(__file__).resolve().parent / "nanogpt_toy"
NANO_CFG = {"block_size": 32, "batch_size": 8, "gradient_accumulation_steps": 2, "n_layer": 2,
            "n_head": 2, "n_embd": 32, "learning_rate": 3e-3, "warmup_iters": 5,
            "lr_decay_iters": 200, "min_lr": 3e-4, "max_iters": 60, "eval_interval": 10,
            "eval_iters": 2, "grad_clip": 1.0, "weight_decay": 0.0, "beta1": 0.9, "beta2": 0.95,
            "decay_lr": True, "dtype": "float32", "device": "cpu", "dropout": 0.0}
BAD_ITER, BAD_ROWS = 45, [1, 3, 5, 7, 9, 11, 13, 15]


def _text_tokens() -> np.ndarray:
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics)).encode("utf-8")
    return np.frombuffer(text * 2, dtype=np.uint8).astype(np.uint16)


@pytest.fixture
def threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_nanogpt_run_through_the_adapter(tmp_path, threads, monkeypatch):
    from losslens.replay import replay

    monkeypatch.syspath_prepend(str(TOY))
    sys.modules.pop("model", None)
    import train as nanogpt_train

    data = tmp_path / "data"
    data.mkdir()
    tokens = _text_tokens()
    tokens.tofile(data / "train.bin")
    tokens[:50_000].tofile(data / "val.bin")
    seen: list[list[int]] = []
    nanogpt_train.train(str(tmp_path / "dry"), str(data), NANO_CFG, record=seen)
    rng = np.random.default_rng(0)
    corrupt = np.memmap(data / "train.bin", dtype=np.uint16, mode="r+")
    for row in BAD_ROWS:  # a corrupted shard: random bytes where iteration 45 reads
        off = seen[BAD_ITER][row]
        corrupt[off:off + 33] = rng.integers(0, 256, 33)
    corrupt.flush()
    del corrupt
    log = nanogpt_train.train(str(tmp_path / "out"), str(data), NANO_CFG)
    plug = tmp_path / "nanogpt_plugin.py"
    plug.write_text("from losslens.replay.adapters import nanogpt\n"
                    f"plugin = nanogpt({str(tmp_path / 'out')!r}, data_dir={str(data)!r}, "
                    f"model_py={str(TOY / 'model.py')!r})\n")
    rep = replay(str(plug), log, device="cpu")
    [r] = [x for x in rep.results if x.flagged[0] <= BAD_ITER <= x.flagged[1]]
    assert r.verdict == "bad_batch", "\n".join(r.evidence)
    # the adapter's re-walk of the random stream is the run's: the log matches bit for bit
    m = r.measurements
    assert m["log"]["pre_match"] is True and m["log"]["event_match"] is True
    assert r.checkpoint == 39  # ckpt_40.pt: saved before iter 40
    top = r.samples[:len(BAD_ROWS)]
    assert {(s["step"], s["index"]) for s in top} == {(BAD_ITER, i) for i in BAD_ROWS}
    assert {s["sample_id"] for s in top} == {seen[BAD_ITER][i] for i in BAD_ROWS}
