"""Lightning with the guard's callback: stopped at the non-recovering spike with the plan,
and the resumed run skips the planned batches and does not spike again."""
from __future__ import annotations

import json

import pytest

pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("transformers")

import torch  # noqa: E402
from guard_runs import BATCH, MAX_LAG, POISON, TokenData, one_thread, policy, tiny_gpt2  # noqa: E402

from losslens.guard import PLAN_FILE, Guard  # noqa: E402
from losslens.guard.lightning import GuardCallback  # noqa: E402


class Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = tiny_gpt2()
        self.losses: dict[int, float] = {}
        self.first_rows: dict[int, torch.Tensor] = {}

    def training_step(self, batch, batch_idx):
        loss = self.model(input_ids=batch["input_ids"], labels=batch["labels"]).loss
        self.losses[self.global_step + 1] = float(loss.detach())
        self.first_rows[self.global_step + 1] = batch["input_ids"][0].clone()
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=3e-3)


def fit(root, callback, ckpt_path=None, max_steps=60):
    from lightning.pytorch.callbacks import ModelCheckpoint

    module = Module()
    ckpt = ModelCheckpoint(dirpath=root / "ckpt", every_n_train_steps=10, save_top_k=-1,
                           filename="{step}")
    trainer = pl.Trainer(default_root_dir=root, max_steps=max_steps, accelerator="cpu",
                         callbacks=[callback, ckpt], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    loader = torch.utils.data.DataLoader(TokenData(), batch_size=BATCH, shuffle=False)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer, module


def test_lightning_stops_at_the_spike_and_the_resumed_run_skips_the_batches(
        tmp_path, guards):
    with one_thread():
        cb = GuardCallback(guards(policy()))
        trainer, module = fit(tmp_path, cb)
        stop = cb.guard.stopped
        assert stop is not None and stop.events[0].kind == "spike"
        assert stop.events[0].start_step == POISON[0]
        assert stop.step == POISON[0] + 10  # decided stop_after steps into it
        assert stop.step <= trainer.global_step <= stop.step + MAX_LAG  # delivered then
        doc = json.loads((tmp_path / PLAN_FILE).read_text())
        assert doc["plan"]["restart_from_step"] == 20 and doc["plan"]["skip"] == [[21, 60]]

        cb2 = GuardCallback(guards(policy()))
        trainer2, module2 = fit(tmp_path, cb2, ckpt_path=str(tmp_path / "ckpt" / "step=20.ckpt"))
        assert cb2.skipping and trainer2.global_step == 60
        assert sorted(module2.losses) == list(range(21, 61))
        data = TokenData().x
        # step 21 trains on the batch after the skipped ones (steps 21..60 of the old order)
        assert torch.equal(module2.first_rows[21], data[60 * BATCH])
        assert torch.equal(module2.first_rows[60], data[99 * BATCH])
        level = min(module.losses[s] for s in range(16, 21))
        assert max(module2.losses.values()) < 1.2 * level  # the poisoned batches gave ~4.1
        assert [e for e in cb2.guard.flush() if e.kind != "grad_spike"] == []
        assert cb2.guard.decisions == []
