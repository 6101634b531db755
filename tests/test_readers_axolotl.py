"""axolotl: the HF Trainer console with axolotl's extra keys (AxolotlTrainer.log in
src/axolotl/core/trainers/base.py: ppl, eval_ppl, memory/... (GiB), tokens/...)."""
from __future__ import annotations

import math

import losslens
from losslens.readers import read_records

LOG = """[2025-01-15 10:00:00,000] [INFO] [axolotl.train.train:173] [PID:123] [RANK:0] Starting trainer...
{'loss': 1.6231, 'grad_norm': 2.153, 'learning_rate': 2e-05, 'ppl': 5.06922, 'memory/max_active (GiB)': 14.2, 'memory/max_allocated (GiB)': 14.0, 'memory/device_reserved (GiB)': 16.5, 'tokens/train_per_sec_per_gpu': 1234.5, 'tokens/trainable': 20480, 'tokens/total': 32768, 'epoch': 0.01}
  1%|          | 1/100 [00:05<08:15,  5.00s/it]
{'loss': 812.5, 'grad_norm': 2.0, 'learning_rate': 2e-05, 'ppl': inf, 'memory/max_active (GiB)': 14.2, 'memory/max_allocated (GiB)': 14.0, 'memory/device_reserved (GiB)': 16.5, 'epoch': 0.02}
  2%|▏         | 2/100 [00:10<08:10,  5.00s/it]
{'eval_loss': 1.45, 'eval_runtime': 10.1, 'eval_samples_per_second': 9.9, 'eval_steps_per_second': 1.2, 'eval_ppl': 4.26311, 'memory/max_active (GiB)': 14.5, 'epoch': 0.02}
"""


def test_axolotl_console_keys(tmp_path):
    path = tmp_path / "axolotl.log"
    path.write_text(LOG)
    (rec,) = read_records(path)
    assert rec.format == "hf-trainer" and rec.skipped_count == 0

    def series(tag):
        sel = rec.tag_code == rec.tags.index(tag)
        return rec.step[sel].tolist(), rec.value[sel].tolist()

    assert series("loss") == ([1, 2], [1.6231, 812.5])
    steps, ppl = series("ppl")
    assert steps == [1, 2] and ppl[0] == 5.06922 and math.isinf(ppl[1])
    assert series("eval_loss") == ([2], [1.45]) and series("eval_ppl") == ([2], [4.26311])
    assert series("tokens/trainable") == ([1], [20480.0])
    # the eval dict at step 2 repeats the key of the train dict at that step: the HF reader
    # keeps one value per (tag, step)
    assert series("memory/max_active (GiB)")[1] == [14.2, 14.2]
    roles = losslens.read(path).runs[0].roles
    assert (roles["loss"], roles["eval_loss"], roles["ppl"], roles["eval_ppl"],
            roles["memory/max_active (GiB)"], roles["tokens/train_per_sec_per_gpu"],
            roles["grad_norm"]) == (
        "train_loss", "val_loss", "other", "other", "other", "other", "grad_norm")
