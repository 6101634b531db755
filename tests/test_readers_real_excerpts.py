"""Real output of MaxText, Composer / llm-foundry and NeMo runs, as published in documentation
(tests/data/real_excerpts/README.md names each source): exact series, roles, counts and steps."""
from __future__ import annotations

from pathlib import Path

import pytest

import losslens
from losslens.readers import read_records, sniff

DATA = Path(__file__).resolve().parent / "data" / "real_excerpts"

#: file -> (format, framework, {tag: (role, points, first step, last step, first, last)})
EXPECTED = {
    "maxtext_deepseek2-16b.log": ("maxtext", "maxtext", {
        "loss": ("train_loss", 10, 0, 9, 12.038, 10.374),
        "seconds": ("other", 10, 0, 9, 44.923, 5.667),
        "TFLOP/s/device": ("other", 10, 0, 9, 17.022, 134.924),
        "Tokens/s/device": ("other", 10, 0, 9, 1094.129, 8672.758),
        "total_weights": ("other", 10, 0, 9, 196608.0, 196608.0),
    }),
    "llm-foundry_mpt-125m.log": ("composer", "composer", {
        "loss/train/total": ("train_loss", 4, 1, 4, 10.9736, 10.6459),
        "LanguageCrossEntropy": ("other", 4, 1, 4, 10.9736, 10.6459),
        "Perplexity": ("other", 4, 1, 4, 58312.0586, 42018.5508),
    }),
    "nemo_bionemo_esm2.log": ("megatron", "nemo", {
        "reduced_train_loss": ("train_loss", 7, 28, 34, 2.778, 2.788),
        "val_loss": ("val_loss", 1, 28, 28, 2.861, 2.861),  # repeated on every line: one point
        "val_ppl": ("other", 1, 28, 28, 17.57, 17.57),
        "lr": ("lr", 7, 28, 34, 5.6e-06, 6.8e-06),
        "global_batch_size": ("other", 7, 28, 34, 32.0, 32.0),
        "global_step": ("other", 7, 28, 34, 28.0, 34.0),
        "train_step_timing in s": ("other", 7, 28, 34, 0.189, 0.1902),
        "consumed_samples": ("other", 7, 28, 34, 928.0, 1120.0),
    }),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_excerpt_reads_exactly(name):
    fmt, framework, series = EXPECTED[name]
    path = DATA / name
    assert sniff(path).name == fmt
    (rec,) = read_records(path)
    assert rec.format == fmt and rec.metadata.framework == framework
    assert rec.skipped_count == 0 and set(rec.tags) == set(series)
    roles = losslens.read(path).runs[0].roles
    for tag, (role, n, first_step, last_step, first, last) in series.items():
        sel = rec.tag_code == rec.tags.index(tag)
        steps, values = rec.step[sel].tolist(), rec.value[sel].tolist()
        assert (roles[tag], len(steps), steps[0], steps[-1], values[0], values[-1]) == (
            role, n, first_step, last_step, first, last), tag
        assert steps == sorted(steps)


def test_nemo_excerpt_save_line_names_the_checkpoint():
    (rec,) = read_records(DATA / "nemo_bionemo_esm2.log")
    assert rec.metadata.checkpoints == (99,)
    assert rec.metadata.checkpoint_source == (
        "the log's save lines (Megatron: successfully saved checkpoint)")


def test_every_excerpt_has_its_licence_beside_it():
    readme = (DATA / "README.md").read_text()
    for name in EXPECTED:
        assert f"`{name}`" in readme
    for line in readme.splitlines():
        if line.startswith("| `") and ".log`" in line:
            repo = line.split("|")[2].split("@")[0].strip()
            assert (DATA / (repo.replace("/", "__") + ".LICENSE")).is_file(), repo
