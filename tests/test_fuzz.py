"""Fuzzing with hypothesis: mutated logs of every format never crash losslens.

The seeds and mutators are those of benchmarks/fuzz.py (fixtures, sample logs and files
generated for every format; truncation, flipped bytes, spliced garbage and binary, duplicated,
deleted and reordered lines, odd numbers, mixed encodings, wrong names, TFRecord CRC damage and
lengths past the end, `.wandb` cuts, JSON NaN/Infinity, ragged CSV rows). Here hypothesis picks
and shrinks them; `python benchmarks/fuzz.py --n 5000` is the long campaign.

Properties: the library and every command end in ok / salvaged / a one-line error naming the
file (never another exception, never exit codes other than 0, 1, 2); damage never invents a
point (what a cut or corrupted file gives is a subset of what the intact one gives).
"""
from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import fuzz  # noqa: E402

from losslens.readers import read_records  # noqa: E402

SEEDS = fuzz.seeds(max_bytes=8 << 10, corpus=None)
#: enormous_line writes megabytes: it has its own test below, not a place in every example
MUTATORS = [m for m in set(fuzz.GENERIC) | {m for ms in fuzz.BY_KIND.values() for m in ms}
            if m is not fuzz.enormous_line]
MUTATORS.sort(key=lambda m: m.__name__)
SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_counter = iter(range(10 ** 9))


def _write(scratch: Path, name: str, data: bytes) -> Path:
    folder = scratch / str(next(_counter))
    folder.mkdir()
    path = folder / name
    path.write_bytes(data)
    return path


def _mutated(seed: fuzz.Seed, mutators, rnd: random.Random, rename: str | None):
    data = seed.data
    for m in mutators:
        data = m(data, rnd)
    return (rename or seed.name), data


inputs = st.tuples(st.sampled_from(SEEDS),
                   st.lists(st.sampled_from(MUTATORS), min_size=1, max_size=3),
                   st.randoms(use_true_random=False),
                   st.one_of(st.none(), st.none(), st.none(), st.sampled_from(fuzz.WRONG_NAMES)))


@settings(max_examples=300, **SETTINGS)
@given(case=inputs)
def test_library_reads_and_analyses_any_mutation(scratch, case):
    seed, mutators, rnd, rename = case
    name, data = _mutated(seed, mutators, rnd, rename)
    path = _write(scratch, name, data)
    result = fuzz.run_library(path, analyze=True)  # any other exception fails the test
    assert result.outcome in ("ok", "salvaged", "error"), result.detail


@settings(max_examples=100, **SETTINGS)
@given(case=inputs, command=st.sampled_from(fuzz.COMMANDS))
def test_every_command_exits_0_1_or_2_with_one_line_errors(scratch, runner, case, command):
    seed, mutators, rnd, rename = case
    name, data = _mutated(seed, mutators, rnd, rename)
    path = _write(scratch, name, data)
    result = fuzz.run_cli(runner, command, path)
    assert result.outcome in ("ok", "salvaged", "error"), result.detail


def test_subprocess_exit_codes(scratch):
    """Real processes (not CliRunner): exit codes and stderr as a user sees them."""
    good = next(s for s in SEEDS if s.name == "nanogpt_resume.log")
    cut = _write(scratch, "run-x.wandb", fuzz.wandb_bytes()[:40000])
    junk = _write(scratch, "junk.log", bytes(range(256)) * 8)
    ok = fuzz.run_subprocess("analyze", _write(scratch, good.name, good.data))
    assert ok.outcome in ("ok", "salvaged"), ok.detail
    salvaged = fuzz.run_subprocess("series", cut)
    assert salvaged.outcome == "salvaged", salvaged.detail
    refused = fuzz.run_subprocess("check", junk)
    assert refused.outcome == "error", refused.detail


# ---------------------------------------------------------------------------- no invented point


def _points(records) -> set[tuple]:
    out = set()
    for rec in records:
        vals = ["nan" if math.isnan(v) else v for v in rec.value.tolist()]
        out |= {(rec.run, rec.tags[c], s, v, o) for c, s, v, o in
                zip(rec.tag_code.tolist(), rec.step.tolist(), vals, rec.order.tolist())}
    return out


#: formats whose points depend only on their own line or record (a prefix reads the same)
LOCAL = {"megatron", "nanogpt", "llmc-mainlog", "torchtitan", "jsonl", "wandb-history",
         "tensorboard", "wandb", "fairseq"}


def _intact_reads(seed: fuzz.Seed) -> bool:
    """Whether the seed itself reads: a seed is a fixture's first 8 KiB, and a real log can
    spend those on an argument dump (GPT-NeoX), or a real file hold no scalar at all (an HF
    launch that stopped before its first log): nothing to compare a damaged copy with."""
    import tempfile

    from losslens.errors import LossLensError

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / seed.name
        path.write_bytes(seed.data)
        try:
            return len(read_records(path)) > 0
        except LossLensError:
            return False


LOCAL_SEEDS = [s for s in SEEDS if s.kind in LOCAL and _intact_reads(s)]


@settings(max_examples=100, **SETTINGS)
@given(seed=st.sampled_from(LOCAL_SEEDS), where=st.floats(0, 1))
def test_a_cut_file_gives_a_subset_of_the_points(scratch, seed, where):
    full = read_records(_write(scratch, seed.name, seed.data))
    cut = _write(scratch, seed.name, seed.data[: int(len(seed.data) * where)])
    try:
        part = read_records(cut)
    except Exception as exc:  # noqa: BLE001
        from losslens.errors import LossLensError

        assert isinstance(exc, LossLensError), repr(exc)
        return
    assert _points(part) <= {(cut.name,) + p[1:] for p in _points(full)}


BINARY = [s for s in SEEDS if s.kind in ("tensorboard", "wandb") and _intact_reads(s)]
DAMAGE = [fuzz.tfrecord_bad_crc, fuzz.tfrecord_long_length, fuzz.wandb_cut, fuzz.flip_bytes]


@settings(max_examples=100, **SETTINGS)
@given(seed=st.sampled_from(BINARY), damage=st.sampled_from(DAMAGE),
       rnd=st.randoms(use_true_random=False))
def test_damaged_binary_files_salvage_only_real_points(scratch, seed, damage, rnd):
    """CRC damage, a length past the end, a cut block: what is kept was in the intact file
    (compared without record numbers: a lost record may renumber those after it), and the
    loss is reported."""
    full = read_records(_write(scratch, seed.name, seed.data))
    data = damage(seed.data, rnd)
    path = _write(scratch, seed.name, data)
    try:
        part = read_records(path)
    except Exception as exc:  # noqa: BLE001
        from losslens.errors import LossLensError

        assert isinstance(exc, LossLensError), repr(exc)
        return
    strip = lambda pts: {p[1:4] for p in pts}  # noqa: E731  (tag, step, value)
    assert strip(_points(part)) <= strip(_points(full))
    if data != seed.data and len(_points(part)) < len(_points(full)) \
            and not _cut_at_a_record_end(seed, data):  # (a cut there looks like a whole file)
        assert any(r.warnings or r.skipped_count for r in part)


def _cut_at_a_record_end(seed, data: bytes) -> bool:
    """Whether `data` is the seed cut exactly where one of its records ends: no framing can
    tell such a file from a complete one (a run that stopped there)."""
    if not seed.data.startswith(data):
        return False
    if seed.kind == "wandb":
        from losslens.readers.wandb_log import HEADER, _Framing

        ends = {pos + HEADER + len(chunk) for pos, _, chunk in _Framing(seed.data)}
        tail = seed.data[len(data):len(data) + HEADER]  # a block trailer: zero padding
        return len(data) in ends or (len(tail) < HEADER and not tail.strip(b"\0"))
    pos, ends = 0, set()
    while pos + 8 <= len(seed.data):
        pos += 16 + int.from_bytes(seed.data[pos:pos + 8], "little")
        ends.add(pos)
    return len(data) in ends


# ---------------------------------------------------------------------------- enormous lines


@pytest.mark.parametrize("name", ["megatron_2022_resume.log", "nanogpt_resume.log",
                                  "metrics.jsonl", "table.csv", "train.log", "fairseq_json.log",
                                  "console.log", "olmo_core.log", "wandb_export.csv"])
def test_enormous_line_in_the_middle(scratch, name):
    """A 4 MiB line (a process that printed a tensor, a binary blob) is read past."""
    seed = next(s for s in SEEDS if s.name == name)
    lines = seed.data.split(b"\n")
    at = len(lines) // 2
    for blob in (b"9" * (4 << 20), (lines[at] or b"x") * ((4 << 20) // max(len(lines[at]), 1))):
        path = _write(scratch, name, b"\n".join(lines[:at] + [blob] + lines[at:]))
        result = fuzz.run_library(path, analyze=False)
        assert result.outcome in ("ok", "salvaged", "error"), result.detail
