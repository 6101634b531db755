"""losslens.skipdata: the plan's steps skipped in a PyTorch loop and in an HF Trainer, and the
new skip-list targets (gpt-neox, hf, Megatron-LM indexing and compact form)."""
from __future__ import annotations

import json

import pytest

from losslens.errors import InvalidParameterError
from losslens.skipdata import SkipBatches, skip_ranges, skipping_trainer


def test_skip_batches_with_accumulation_and_restart():
    batches = list(range(20))  # micro-batch k
    kept = list(SkipBatches(batches, [[3, 4]], accumulation_steps=2))
    # steps 3 and 4 are micro-batches 4..7
    assert kept == [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    assert len(SkipBatches(batches, [[3, 4]], accumulation_steps=2)) == 16
    # restarted from the checkpoint of step 2: the first batch is step 3's
    assert list(SkipBatches(range(6), {"skip_steps": [[3, 4]]}, first_step=3)) == [2, 3, 4, 5]
    with pytest.raises(InvalidParameterError):
        skip_ranges([[5, 2]])


def test_torch_dataloader(tmp_path):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"skip_steps": [[2, 3]]}))
    loader = SkipBatches(DataLoader(torch.arange(12), batch_size=2), str(plan))
    assert [b.tolist() for b in loader] == [[0, 1], [6, 7], [8, 9], [10, 11]]
    assert loader.batch_size == 2  # the DataLoader's attributes pass through


def test_hf_trainer_skips_the_planned_steps(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch import nn

    seen = []

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Linear(1, 1)

        def forward(self, x, labels=None):
            seen.append(x[:, 0].tolist())
            return {"loss": ((self.w(x) - labels) ** 2).mean()}

    data = [{"x": torch.tensor([float(i)]), "labels": torch.tensor([0.0])} for i in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, num_train_epochs=1,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True,
        dataloader_drop_last=False, seed=0, data_seed=0)
    cls = skipping_trainer(transformers.Trainer, {"skip_steps": [[2, 3]]})
    trainer = cls(model=Tiny(), args=args, train_dataset=data,
                  data_collator=lambda b: {k: torch.stack([d[k] for d in b]) for k in b[0]})
    trainer.train()
    assert len(seen) == 6 and trainer.state.global_step == 6  # 8 batches, steps 2-3 skipped
    shuffled = [v for batch in seen for v in batch]
    assert len(set(shuffled)) == 12


def test_new_skiplist_targets(runner):
    from pathlib import Path

    from losslens.cli import app

    log = str(Path(__file__).resolve().parents[1] / "sample_logs" / "megatron_gpt_spikes.log")
    res = runner.invoke(app, ["skiplist", log, "-t", "megatron-lm", "--compact"])
    assert res.exit_code == 0 and res.stdout == "--iterations-to-skip $(seq 2001 2420)\n"
    res = runner.invoke(app, ["skiplist", log, "-t", "megatron-lm", "--indexing", "0"])
    assert res.stdout.split()[1:3] == ["2000", "2001"] and res.stdout.split()[-1] == "2419"
    assert "0-indexed (--indexing 0)" in res.stderr
    assert runner.invoke(app, ["skiplist", log, "--indexing", "2"]).exit_code == 2
    res = runner.invoke(app, ["skiplist", log, "-t", "gpt-neox"])
    assert res.stdout == '"skip_train_iteration_ranges": [[2001, 2420]]\n'
    res = runner.invoke(app, ["skiplist", log, "-t", "hf"])
    doc = json.loads(res.stdout)
    assert doc["skip_steps"] == [[2001, 2420]] and doc["restart_from_step"] == 2000
    assert skip_ranges(doc) == ((2001, 2420),)


def test_restart_without_a_known_checkpoint_is_refused(runner, tmp_path):
    from losslens.cli import app
    from test_exporters import nanogpt_log

    log = tmp_path / "run.log"
    log.write_text(nanogpt_log())  # no checkpoint lines
    res = runner.invoke(app, ["skiplist", str(log), "-t", "megatron-deepspeed"])
    assert res.exit_code == 2 and res.stdout == ""
    assert "no checkpoint is known" in res.stderr and "--allow-no-checkpoint" in res.stderr
    res = runner.invoke(app, ["skiplist", str(log), "-t", "megatron-deepspeed",
                              "--allow-no-checkpoint"])
    assert res.exit_code == 0 and res.stdout.startswith("--skip-train-iteration-range ")
    res = runner.invoke(app, ["skiplist", str(log), "--checkpoint-every", "500"])
    assert res.exit_code == 0
