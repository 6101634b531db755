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
    from guard_runs import one_thread

    with one_thread():
        yield


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


class _Windows:
    """Byte-level windows of English text (a torch Dataset, one window per index); indices in
    `bad` are random bytes (a corrupted shard). Items carry their index for the collator."""

    def __init__(self, n: int, bad: set[int] = frozenset()) -> None:
        self.tokens = torch.from_numpy(_text_tokens()[:400_000].astype(np.int64))
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        x = self.tokens[i * 997 % (len(self.tokens) - 33):][:32].clone()
        if i in self.bad:
            x = torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": x, "labels": x.clone(), "idx": i}


class _Collator:
    """Stacks the tensors and records each batch's dataset indices (what a first run saw)."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def __call__(self, items: list[dict]) -> dict:
        self.seen.append([it["idx"] for it in items])
        return {k: torch.stack([it[k] for it in items]) for k in ("input_ids", "labels")}


def make_trainer(out: Path, bad: set[int] = frozenset()):
    """The user's code that builds the Trainer (a tiny GPT-2 from a local config)."""
    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=256, n_positions=32, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=0, eos_token_id=0)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=8, max_steps=40,
                             save_steps=10, logging_steps=1, learning_rate=3e-3, seed=0,
                             use_cpu=True, report_to=[], disable_tqdm=True,
                             remove_unused_columns=False, dataloader_num_workers=0)
    return Trainer(model=GPT2LMHeadModel(cfg), args=args, train_dataset=_Windows(400, bad),
                   data_collator=_Collator())


BAD_STEP = 27


def test_hf_trainer_run_through_the_adapter(tmp_path, threads, monkeypatch):
    pytest.importorskip("transformers")  # in the test extra; skipped only where absent
    import logging

    from losslens.replay import replay

    logging.getLogger("transformers").setLevel(logging.ERROR)
    dry = make_trainer(tmp_path / "dry")
    dry.train()
    seen = dry.data_collator.seen  # batch k is trained on at global step k + 1
    bad = set(seen[BAD_STEP - 1][:4])
    make_trainer(tmp_path / "out", bad).train()
    monkeypatch.setitem(sys.modules, "replay_hf_test", sys.modules[__name__])
    plug = tmp_path / "hf_plugin.py"
    plug.write_text("from pathlib import Path\n"
                    "from losslens.replay.adapters import hf_trainer\n"
                    "from replay_hf_test import make_trainer\n"
                    f"OUT = Path({str(tmp_path / 'out')!r})\n"
                    f"plugin = hf_trainer(OUT, make_trainer(OUT, {sorted(bad)!r}))\n")
    log = tmp_path / "out" / "checkpoint-40" / "trainer_state.json"
    rep = replay(str(plug), log, device="cpu")
    [r] = [x for x in rep.results if x.flagged[0] <= BAD_STEP <= x.flagged[1]]
    assert r.verdict == "bad_batch", "\n".join(r.evidence)
    m = r.measurements
    assert m["log"]["pre_match"] is True and m["log"]["event_match"] is True
    assert m["lr"]["mismatched_steps"] == []
    assert r.checkpoint == 20
    top = r.samples[:4]
    assert {(s["step"], s["sample_id"]) for s in top} == {(BAD_STEP, i) for i in bad}


def test_plain_torch_checkpoints_through_the_adapter(tmp_path, threads, monkeypatch):
    from losslens.replay import replay
    from losslens.replay.adapters.plain import TorchCheckpoints

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    import replay_toy

    log = replay_toy.train(tmp_path, bad_step=226, steps=300)
    monkeypatch.setenv("LOSSLENS_TOY_RUN", str(tmp_path))
    plug = tmp_path / "plain_plugin.py"
    plug.write_text(
        "import replay_toy as toy\n"
        "from losslens.replay.adapters import torch_checkpoints\n"
        f"plugin = torch_checkpoints({str(tmp_path / 'checkpoints')!r}, "
        "build_model=toy.build_model, build_optimizer=toy.build_optimizer,\n"
        "                          get_batch=toy.get_batch, loss_fn=toy.loss_fn)\n")
    [r] = [x for x in replay(str(plug), log, device="cpu").results if x.flagged[0] == 226]
    assert (r.verdict, r.checkpoint) == ("bad_batch", 200)
    assert {s["index"] for s in r.samples[:3]} == {2, 7, 11}
    # a checkpoint that does not fit the model: one line naming the keys, not a silent
    # strict=False load
    torch.save({"model": {"0.weight": torch.zeros(32, 8)}}, tmp_path / "bad_7.pt")
    adapter = TorchCheckpoints(tmp_path / "bad_7.pt", build_model=replay_toy.build_model,
                               get_batch=replay_toy.get_batch, loss_fn=replay_toy.loss_fn)
    model = adapter.build_model("cpu")
    with pytest.raises(Exception, match=r"does not fit the model — missing 0\.bias, 2\.weight, "
                                        r"2\.bias; unexpected nothing"):
        adapter.load_checkpoint(adapter.checkpoints()[0], model)
