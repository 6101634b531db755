"""W&B readers: `.wandb` run files (corpus samples, files written by the real wandb package,
damaged copies, hand-framed files), `wandb-history.jsonl`, CSV exports and `wandb://` addresses.

The `.wandb` decoder is checked against wandb's own `wandb_internal_pb2` where wandb is
installed; the reader itself never needs it.
"""
from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from losslens.errors import (InvalidParameterError, LossLensError, MissingDependencyError,
                             ParseError)
from losslens.frame import build
from losslens.readers import FORMATS, read_records, sniff
from losslens.readers import wandb as wb
from losslens.readers import wandb_log as wlog
from losslens.readers import wandb_proto as wproto
from losslens.readers import wandb_csv
from losslens.roles import infer_role

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz  # noqa: E402  (benchmarks/fuzz.py: the .wandb framing writer)

SAMPLES = "writer-samples/wandb"
CORE_031 = "run-58qb0cr2.wandb-core-0.31.0.wandb"
CORE_020 = "run-xadr7ida.wandb-core-0.20.1.wandb"
LEGACY = "run-ks3lkz9i.legacy-python-0.20.1.wandb"
NAN = math.nan


def series(rec, tag):
    """(steps, values, orders) of one tag, in write order."""
    m = rec.tag_code == rec.tags.index(tag)
    return rec.step[m].tolist(), rec.value[m].tolist(), rec.order[m].tolist()


def same(a, b):
    """Lists of floats equal, NaN equal to NaN."""
    return len(a) == len(b) and all((x != x and y != y) or x == y for x, y in zip(a, b))


def read_one(path: Path):
    (rec,) = wb.read_wandb(path, path.name)
    return rec


# ------------------------------------------------------------------------------------------
# An independent minimal writer / reader of the framing and protobuf, for composed files


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(num: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _vi(num: int, n: int) -> bytes:
    return _varint(num << 3) + _varint(n)


def item(key="", nested=(), value_json=None, number=None, integer=None, boolean=None):
    out = _ld(1, key) if key else b""
    out += b"".join(_ld(2, k) for k in nested)
    if boolean is not None:
        out += _vi(4, int(boolean))
    if integer is not None:
        out += _vi(5, (integer << 1) ^ (integer >> 63))
    if number is not None:
        out += _varint(6 << 3 | 1) + struct.pack("<d", number)
    if value_json is not None:
        out += _ld(16, value_json)
    return out


def history_record(items, step=None, pad=0) -> bytes:
    body = b"".join(_ld(1, i) for i in items)
    if step is not None:
        body += _ld(2, _vi(1, step))
    rec = _ld(2, body)
    return rec + (_ld(19, "x" * pad) if pad else b"")  # 19 = uuid, ignored by the reader


#: LevelDB-log framing as wandb writes it (wandb's datastore.py): the fuzz tool's writer.
frame = fuzz.wandb_frame


def physical(data: bytes):
    """(offset, type, length) of every physical record of an intact file (reference parser)."""
    pos, out = 7, []
    while pos + 7 <= len(data):
        left = wlog.BLOCK - pos % wlog.BLOCK
        if left < 7:
            pos += left
            continue
        crc, length, kind = struct.unpack_from("<IHB", data, pos)
        if kind == 0:
            break
        out.append((pos, kind, length))
        pos += 7 + length
    return out


def logical(data: bytes):
    """(start offset, end offset, payload) of every record of an intact file."""
    out, start, parts = [], 0, []
    for pos, kind, length in physical(data):
        if kind in (1, 2):
            start, parts = pos, []
        parts.append(data[pos + 7:pos + 7 + length])
        if kind in (1, 4):
            out.append((start, pos + 7 + length, b"".join(parts)))
    return out


def history_step(payload: bytes) -> int | None:
    """`_step` of a history payload, via the wandb protos (independent of the reader)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rec = pb.Record()
    rec.ParseFromString(payload)
    if rec.WhichOneof("record_type") != "history":
        return None
    for it in rec.history.item:
        if (it.key or "/".join(it.nested_key)) == "_step":
            return int(float(it.value_json))
    return None


# ------------------------------------------------------------------------------------------
# Corpus: three real offline files (writer-samples/README.md)


@pytest.mark.corpus
def test_corpus_core_031(corpus):
    path = corpus / SAMPLES / CORE_031
    assert sniff(path) is FORMATS["wandb"]
    rec = read_one(path)
    assert rec.format == "wandb" and rec.warnings == () and rec.skipped_count == 0
    assert rec.tags == ("train/loss", "train/lr", "train/grad_norm", "eval/loss")
    assert [infer_role(t) for t in rec.tags] == ["train_loss", "lr", "grad_norm", "val_loss"]
    steps, values, orders = series(rec, "train/loss")
    assert steps == [0, 1, 2, 3, 4]
    assert same(values, [3.0, 2.9, 2.8, NAN, 2.6])  # NaN at step 3
    assert series(rec, "train/lr")[1] == [0.0, 0.0001, 0.0002, 0.00030000000000000003, 0.0004]
    assert series(rec, "train/grad_norm")[:2] == ([4], [math.inf])
    assert series(rec, "eval/loss")[:2] == ([4], [2.5])
    # two log() calls with step 4 were merged into one history row: one record, one order
    assert series(rec, "eval/loss")[2] == [orders[-1]] == series(rec, "train/grad_norm")[2]
    assert len(set(orders)) == 5 and orders == sorted(orders)
    assert rec.wall_time[0] == pytest.approx(1795924484.1130528, abs=1e-6)
    meta = rec.metadata
    assert meta.lr == 0.0003 and meta.hidden_size is None
    assert meta.extra["wandb.run_id"] == "58qb0cr2"
    assert meta.extra["wandb.project"] == "losslens-test"
    assert meta.extra["wandb.summary.best"] == "1.23"
    assert meta.extra["wandb.exit_code"] == "0"
    frame = build([rec])
    info = frame.run(CORE_031)
    assert [(s.tag, s.role, s.points, s.nonfinite) for s in info.series] == [
        ("train/loss", "train_loss", 5, 1), ("train/lr", "lr", 5, 0),
        ("train/grad_norm", "grad_norm", 1, 1), ("eval/loss", "val_loss", 1, 0)]
    assert [(s.first_step, s.last_step, s.reason) for s in info.segments] == [(0, 4, "start")]


@pytest.mark.corpus
@pytest.mark.parametrize("name", [CORE_020, LEGACY])
def test_corpus_020_core_and_legacy(corpus, name):
    """wandb-core `nested_key` items and legacy `key` items (nested dict as a JSON string,
    step.num = 0, so the step comes from `_step`) read the same."""
    rec = read_one(corpus / SAMPLES / name)
    assert rec.warnings == () and rec.skipped_count == 0
    assert rec.tags == ("train/loss", "nested/a")
    assert series(rec, "train/loss")[:2] == ([0, 1, 2], [3.0, 2.9, 2.8])
    assert series(rec, "nested/a")[:2] == ([0, 1, 2], [0.0, 1.0, 2.0])
    assert infer_role("nested/a") == "other"
    extra = rec.metadata.extra
    assert extra["wandb.run_id"] == name[4:12]
    assert rec.metadata.lr == 0.0003
    assert extra["wandb.console_lines"] == "3"
    assert extra["wandb.console_head"] == "step 0 loss 3.0\nstep 1 loss 2.9\nstep 2 loss 2.8"
    assert "wandb.summary.nested" not in extra  # history keys are not repeated as summary
    assert wb.console_text(corpus / SAMPLES / name) == (
        "step 0 loss 3.0\nstep 1 loss 2.9\nstep 2 loss 2.8\n")


@pytest.mark.corpus
def test_corpus_folder_reads_three_runs(corpus):
    pytest.importorskip("losslens.readers.tensorboard")  # the folder walk needs it
    recs = read_records(corpus / SAMPLES)
    assert sorted((r.run, len(r)) for r in recs) == [(CORE_031, 12), (LEGACY, 6), (CORE_020, 6)]


# ------------------------------------------------------------------------------------------
# Agreement with wandb's own protobuf classes


def _agree(path: Path) -> int:
    """Decode every record with both decoders; returns the number of history rows compared."""
    from wandb.proto import wandb_internal_pb2 as pb

    damage = wlog.Damage(str(path))
    rows = 0
    for _, _, payload in wlog.iter_payloads(path.read_bytes(), damage):
        ref = pb.Record()
        ref.ParseFromString(payload)
        kind = ref.WhichOneof("record_type")
        mine = wproto.record_body(payload)
        names = {2: "history", 3: "summary", 4: "output", 5: "config", 12: "metric",
                 13: "output_raw", 17: "run", 18: "exit"}
        assert (names[mine[0]] if mine else None) == (kind if kind in names.values() else None)
        if kind == "history":
            rows += 1
            items, step = wproto.decode_history(mine[1])
            assert step == (ref.history.step.num if ref.history.HasField("step") else None)
            assert len(items) == len(ref.history.item)
            for (key_path, value), it in zip(items, ref.history.item):
                assert key_path == (tuple(it.nested_key) or (it.key,))
                expect = wproto.json_value(it.value_json)
                assert value == expect or (isinstance(value, float) and math.isnan(value)
                                           and math.isnan(expect))
        elif kind == "run":
            run = wproto.decode_message(mine[1], wproto.RUN_FIELDS)
            assert run.get("run_id", "") == ref.run.run_id
            assert run.get("project", "") == ref.run.project
            assert run.get("display_name", "") == ref.run.display_name
            updates, _ = wproto.decode_updates(run["config"])
            assert [(p, v.decode()) for p, v in updates] == [
                (tuple(u.nested_key) or (u.key,), u.value_json) for u in ref.run.config.update]
        elif kind in ("summary", "config"):
            updates, removed = wproto.decode_updates(mine[1])
            msg = getattr(ref, kind)
            assert [(p, v.decode()) for p, v in updates] == [
                (tuple(u.nested_key) or (u.key,), u.value_json) for u in msg.update]
        elif kind in ("output_raw", "output"):
            out = wproto.decode_message(mine[1], wproto.OUTPUT_FIELDS)
            assert out.get("line", "") == getattr(ref, kind).line
        elif kind == "metric":
            m = wproto.decode_message(mine[1], wproto.METRIC_FIELDS)
            assert (m.get("name", ""), m.get("glob_name", ""), m.get("step_metric", "")) == (
                ref.metric.name, ref.metric.glob_name, ref.metric.step_metric)
    assert damage.messages == []
    return rows


@pytest.mark.corpus
@pytest.mark.parametrize("name", [CORE_031, CORE_020, LEGACY])
def test_decoder_agrees_with_wandb_protos_on_corpus(corpus, name):
    pytest.importorskip("wandb.proto.wandb_internal_pb2")
    assert _agree(corpus / SAMPLES / name) == {CORE_031: 5, CORE_020: 3, LEGACY: 3}[name]


def test_decoder_agrees_with_wandb_protos_on_written_runs(wandb_runs):
    assert _agree(wandb_runs["big"]) == 3000  # the extra log() calls merged into their rows
    assert _agree(wandb_runs["hf"]) == 7


# ------------------------------------------------------------------------------------------
# Runs written by the real wandb package (offline), once per session

_WRITER = textwrap.dedent('''
    import wandb

    config = {"hidden_size": 64, "lr": 3e-4, "init_std": 0.02, "bf16": True, "fp16": False,
              "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_eps": 1e-8, "batch_size": 8,
              "gradient_accumulation_steps": 4, "max_iters": 3000, "weight_decay": 0.1,
              "grad_clip": 1.0, "warmup_iters": 100, "save_interval": 500,
              "model": {"n_layer": 4, "n_head": 4}}
    run = wandb.init(project="losslens-test", name="big-run", id="bigrun01", config=config)
    for i in range(3000):
        row = {"train/loss": 3.0 - i * 1e-4, "train/lr": 1e-4, "nested": {"a": i}}
        if i == 7:
            row["train/loss"] = float("nan")
        if i in (8, 9):
            row["grad_norm"] = float("inf") if i == 8 else float("-inf")
        run.log(row, step=i)
        if i == 10:  # merged into the row of step 10; text and booleans are not series
            run.log({"eval/loss": 2.5, "flag": True, "note": "text"}, step=i)
        if i == 1500:  # one payload over three blocks: FIRST, MIDDLE, LAST
            run.log({"blob": "x" * 70000}, step=i)
    print("console line one")
    run.summary["best"] = 1.5
    run.finish()

    run = wandb.init(project="losslens-test", name="hf-style", id="hfstyle1")
    run.define_metric("train/global_step")
    run.define_metric("*", step_metric="train/global_step", step_sync=True)
    for i in range(1, 6):
        run.log({"train/loss": 2.0 / i, "train/global_step": 10 * i})
        if i % 2 == 0:
            run.log({"eval/loss": 1.0 / i, "train/global_step": 10 * i})
    run.finish()
''')


@pytest.fixture(scope="session")
def wandb_runs(tmp_path_factory) -> dict[str, Path]:
    """Offline runs written by the installed wandb package (in a subprocess: wandb starts a
    service process and patches stdout, which must not leak into the test session)."""
    pytest.importorskip("wandb")
    root = tmp_path_factory.mktemp("wandb-offline")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_DIR=str(root), WANDB_SILENT="true",
               WANDB_DISABLE_GIT="true", WANDB_CONSOLE="wrap")
    proc = subprocess.run([sys.executable, "-c", _WRITER], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = {p.name: p for p in root.glob("wandb/offline-run-*/run-*.wandb")}
    return {"big": found["run-bigrun01.wandb"], "hf": found["run-hfstyle1.wandb"]}


def test_written_run_points(wandb_runs):
    rec = read_one(wandb_runs["big"])
    assert rec.warnings == () and rec.skipped_count == 0
    # wandb-core writes the items of a row in Go map order: tag order is not fixed
    assert sorted(rec.tags) == ["eval/loss", "grad_norm", "nested/a", "train/loss", "train/lr"]
    steps, values, orders = series(rec, "train/loss")
    assert steps == list(range(3000))
    assert math.isnan(values[7]) and sum(v != v for v in values) == 1
    assert values[0] == 3.0 and values[2999] == pytest.approx(3.0 - 2999e-4)
    assert series(rec, "nested/a")[1] == [float(i) for i in range(3000)]
    assert series(rec, "grad_norm")[:2] == ([8, 9], [math.inf, -math.inf])
    assert series(rec, "eval/loss")[:2] == ([10], [2.5])
    assert series(rec, "eval/loss")[2] == [orders[10]]  # merged with the step-10 row
    assert len(series(rec, "train/lr")[0]) == 3000
    assert np.all(np.diff(orders) > 0)
    assert np.all(np.isfinite(rec.wall_time)) and np.all(rec.wall_time > 1.6e9)


def test_written_run_spans_blocks(wandb_runs):
    data = wandb_runs["big"].read_bytes()
    kinds = [k for _, k, _ in physical(data)]
    assert len(data) > 20 * wlog.BLOCK
    assert kinds.count(3) >= 1 and kinds.count(2) == kinds.count(4) >= 20
    first = kinds.index(3) - 1
    assert kinds[first:first + 4] == [2, 3, 3, 4] or kinds[first] in (2, 3)


def test_written_run_metadata(wandb_runs):
    meta = read_one(wandb_runs["big"]).metadata
    assert (meta.hidden_size, meta.num_layers, meta.num_heads) == (64, 4, 4)
    assert (meta.lr, meta.init_method_std, meta.precision) == (0.0003, 0.02, "bf16")
    assert (meta.adam_beta1, meta.adam_beta2, meta.adam_eps) == (0.9, 0.95, 1e-8)
    assert (meta.global_batch_size, meta.train_iters, meta.save_interval) == (32, 3000, 500)
    assert (meta.weight_decay, meta.clip_grad, meta.warmup_steps) == (0.1, 1.0, 100)
    extra = meta.extra
    assert extra["model.n_layer"] == "4" and extra["bf16"] == "true" and extra["lr"] == "0.0003"
    assert extra["wandb.display_name"] == "big-run" and extra["wandb.run_id"] == "bigrun01"
    assert extra["wandb.summary.best"] == "1.5"
    assert extra["wandb.console_head"] == "console line one"
    # summary: keys that history does not hold (the per-step summary mirror is not replayed)
    assert [k for k in extra if k.startswith("wandb.summary.")] == ["wandb.summary.best"]
    assert "_wandb" not in extra


def test_written_run_step_metric(wandb_runs):
    """define_metric("*", step_metric="train/global_step") (HF Trainer) sets the step axis."""
    rec = read_one(wandb_runs["hf"])
    assert rec.tags == ("train/loss", "eval/loss")  # the axis itself is not a series
    assert series(rec, "train/loss")[:2] == ([10, 20, 30, 40, 50], [2.0, 1.0, 2 / 3, 0.5, 0.4])
    assert series(rec, "eval/loss")[:2] == ([20, 40], [0.5, 0.25])
    assert "wandb.summary.train/global_step" not in rec.metadata.extra


# ------------------------------------------------------------------------------------------
# Damaged files


def _copy(tmp_path: Path, data: bytes, name="run-damaged.wandb") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _history_records(data: bytes):
    """(index from 1, start, end, step) of every history record, from the reference parser."""
    out = []
    for index, (start, end, payload) in enumerate(logical(data), 1):
        step = history_step(payload)
        if step is not None:
            out.append((index, start, end, step))
    return out


def test_truncated_tail_keeps_what_is_intact(wandb_runs, tmp_path):
    data = wandb_runs["big"].read_bytes()
    cut = 20 * wlog.BLOCK + 12345
    rows = _history_records(data)
    kept = sorted({s for _, _, end, s in rows if end <= cut})
    rec = read_one(_copy(tmp_path, data[:cut]))
    steps = series(rec, "train/loss")[0]
    assert steps == kept == list(range(len(kept))) and 100 < len(kept) < 2900
    assert len(rec.warnings) == 2
    assert "truncated tail" in rec.warnings[0] and "1 record lost" in rec.warnings[0]
    assert rec.warnings[0].startswith(f"{tmp_path / 'run-damaged.wandb'}: record ")
    assert "1 damaged record(s) lost in 1 place(s)" in rec.warnings[1]


def test_bad_checksum_loses_one_record(wandb_runs, tmp_path):
    data = bytearray(wandb_runs["big"].read_bytes())
    full = {pos for pos, kind, _ in physical(bytes(data)) if kind == 1}
    index, start, _, step = next(r for r in _history_records(bytes(data))
                                 if r[3] >= 1234 and r[1] in full)
    data[start + 7 + 5] ^= 0xFF  # a byte inside the payload
    rec = read_one(_copy(tmp_path, bytes(data)))
    steps = series(rec, "train/loss")[0]
    assert steps == [s for s in range(3000) if s != step]
    assert rec.warnings[0] == (f"{tmp_path / 'run-damaged.wandb'}: record {index} at byte "
                               f"{start}: bad checksum; 1 record lost")
    assert len(rec.warnings) == 2


def test_bad_header_resyncs_at_next_intact_record(wandb_runs, tmp_path):
    data = bytearray(wandb_runs["big"].read_bytes())
    full = {pos for pos, kind, _ in physical(bytes(data)) if kind == 1}
    index, start, end, step = next(r for r in _history_records(bytes(data))
                                   if r[3] >= 1000 and r[1] in full)
    struct.pack_into("<H", data, start + 4, 0xFFFF)  # length field: past the block end
    rec = read_one(_copy(tmp_path, bytes(data)))
    assert series(rec, "train/loss")[0] == [s for s in range(3000) if s != step]
    assert rec.warnings == (
        f"{tmp_path / 'run-damaged.wandb'}: record {index} at byte {start}: bad record header "
        f"(type 1, length 65535), {end - start} bytes skipped; at least 1 record lost",
        f"{tmp_path / 'run-damaged.wandb'}: at least 1 damaged record(s) lost in 1 place(s); "
        "the intact records were read")


def test_unreadable_rest_of_block_resyncs_at_next_block(wandb_runs, tmp_path):
    data = bytearray(wandb_runs["big"].read_bytes())
    rows = _history_records(bytes(data))
    index, start, _, _ = next(r for r in rows  # one with some records after it in its block
                              if r[3] >= 2000 and wlog.BLOCK - r[1] % wlog.BLOCK > 8000)
    block_end = (start // wlog.BLOCK + 1) * wlog.BLOCK
    data[start:block_end] = b"\xff" * (block_end - start)
    lost = {s for _, st, _, s in rows if start <= st < block_end}
    rec = read_one(_copy(tmp_path, bytes(data)))
    steps = series(rec, "train/loss")[0]
    assert steps == [s for s in range(3000) if s not in lost]
    assert 10 < len(lost) < 200 and max(steps) == 2999
    assert rec.warnings[0] == (
        f"{tmp_path / 'run-damaged.wandb'}: record {index} at byte {start}: bad record header "
        f"(type 255, length 65535), {block_end - start} bytes skipped; at least 1 record lost")
    assert len(rec.warnings) == 2  # the orphan continuation in the next block is not recounted


@pytest.mark.parametrize("cut, size", [(10 * wlog.BLOCK + 5000, 16384),
                                       (5 * wlog.BLOCK + 100, 40000)])
def test_bytes_missing_mid_file_cost_only_their_records(wandb_runs, tmp_path, cut, size):
    """Block boundaries are re-learnt from FIRST/MIDDLE fragments after a gap."""
    data = wandb_runs["big"].read_bytes()
    rows = _history_records(data)
    kept = sorted({s for _, start, end, s in rows if end <= cut or start >= cut + size})
    rec = read_one(_copy(tmp_path, data[:cut] + data[cut + size:]))
    assert series(rec, "train/loss")[0] == kept and 2800 < len(kept) < 3000
    assert 2 <= len(rec.warnings) <= 4
    assert all(w.endswith("; at least 1 record lost") for w in rec.warnings[:-1])


def test_garbage_stretch_is_one_warning(wandb_runs, tmp_path):
    import random

    data = bytearray(wandb_runs["big"].read_bytes())
    g0, g1 = 6 * wlog.BLOCK + 10, 6 * wlog.BLOCK + 10 + 100_000
    rows = _history_records(bytes(data))
    data[g0:g1] = random.Random(5).randbytes(g1 - g0)
    kept = sorted({s for _, start, end, s in rows if end <= g0 or start >= g1})
    rec = read_one(_copy(tmp_path, bytes(data)))
    assert series(rec, "train/loss")[0] == kept
    assert len(rec.warnings) == 2
    assert " bytes skipped; at least 1 record lost" in rec.warnings[0]
    assert rec.warnings[1].endswith(": at least 1 damaged record(s) lost in 1 place(s); "
                                    "the intact records were read")


def test_zero_filled_tail_is_noted(wandb_runs, tmp_path):
    data = wandb_runs["big"].read_bytes()
    rec = read_one(_copy(tmp_path, data + b"\0" * 40000))
    assert len(series(rec, "train/loss")[0]) == 3000
    assert rec.warnings == (f"{tmp_path / 'run-damaged.wandb'}: the last 40000 bytes are zeros "
                            "(preallocated, or a write cut off by a crash); nothing in them",)


def test_not_a_wandb_file(tmp_path):
    bad = _copy(tmp_path, b"PK\x03\x04 not a run file" * 10, "run-x.wandb")
    assert wb.sniff_wandb(bad.name, bad.read_bytes()) == 0.5
    with pytest.raises(ParseError) as err:
        wb.read_wandb(bad, "x")
    assert str(err.value).startswith(f"{bad}: not a W&B run file") and "\n" not in str(err.value)
    short = _copy(tmp_path, wlog.MAGIC[:3], "run-y.wandb")
    with pytest.raises(ParseError, match="shorter than the 7-byte W&B header"):
        wb.read_wandb(short, "y")
    assert wb.sniff_wandb("x.bin", b"abc") == 0.0
    assert wb.sniff_wandb("anything", wlog.MAGIC + b"\0" * 10) == 1.0


# ------------------------------------------------------------------------------------------
# Hand-framed files: block padding, split payloads, typed values


def test_composed_padding_split_and_typed_values(tmp_path):
    target = wlog.BLOCK - 7 - 7 - 3  # leaves 3 bytes at the end of block 0: zero padding
    base = history_record([item(nested=("_step",), value_json="0"),
                           item(nested=("loss",), value_json="2.5")], step=0)
    pad = target - len(base) - 4
    first = history_record([item(nested=("_step",), value_json="0"),
                            item(nested=("loss",), value_json="2.5")], step=0, pad=pad)
    while len(first) != target:
        pad += target - len(first)
        first = history_record([item(nested=("_step",), value_json="0"),
                                item(nested=("loss",), value_json="2.5")], step=0, pad=pad)
    second = history_record([item(key="_step", value_json="1"), item(key="loss", number=2.25),
                             item(key="tokens", integer=-3), item(key="done", boolean=True),
                             item(key="name", value_json='"abc"'),
                             item(key="big", value_json=" " * 70000 + "7")], step=None)
    third = history_record([item(key="loss", value_json="-Infinity"),
                            item(key="m", value_json='{"x": 1, "img": {"_type": "image"}}')],
                           step=2)
    data = frame([first, second, third])
    assert data[wlog.BLOCK - 3:wlog.BLOCK] == b"\0\0\0"
    assert [k for _, k, _ in physical(data)] == [1, 2, 3, 4, 1]
    rec = read_one(_copy(tmp_path, data))
    assert rec.warnings == () and rec.skipped_count == 0
    assert rec.tags == ("loss", "tokens", "big", "m/x")
    assert series(rec, "loss") == ([0, 1, 2], [2.5, 2.25, -math.inf], [1, 2, 3])
    assert series(rec, "tokens")[:2] == ([1], [-3.0])
    assert series(rec, "big")[:2] == ([1], [7.0])
    assert series(rec, "m/x")[:2] == ([2], [1.0])


def _rows(pads):
    return [history_record([item(key="_step", value_json=str(i)),
                            item(key="loss", value_json=str(i) + ".5"),
                            item(key="pad", value_json='"' + "y" * pad + '"')])
            for i, pad in enumerate(pads)]


def test_composed_lost_fragments(tmp_path):
    """A damaged fragment loses its whole record, counted once; later records are read."""
    data = bytearray(frame(_rows([30000, 20000, 10, 10])))
    recs = physical(bytes(data))
    assert [k for _, k, _ in recs] == [1, 2, 4, 1, 1]
    first_pos = recs[1][0]
    data[first_pos + 9] ^= 0x01  # FIRST fragment: its LAST is then an orphan, not a 2nd loss
    rec = read_one(_copy(tmp_path, bytes(data)))
    assert series(rec, "loss") == ([0, 2, 3], [0.5, 2.5, 3.5], [1, 3, 4])
    name = tmp_path / "run-damaged.wandb"
    assert rec.warnings == (f"{name}: record 2 at byte {first_pos}: bad checksum; 1 record lost",
                            f"{name}: 1 damaged record(s) lost in 1 place(s); the intact "
                            "records were read")


def test_composed_fragment_without_end(tmp_path):
    """A FIRST whose LAST is missing (cut out) is reported when the next record starts."""
    data = frame(_rows([30000, 20000, 10, 10]))
    recs = physical(data)
    last_pos, last_len = recs[2][0], recs[2][2]
    cut = data[:last_pos] + data[last_pos + 7 + last_len:]  # drop the LAST fragment
    rec = read_one(_copy(tmp_path, cut))
    assert series(rec, "loss")[:2] == ([0, 2, 3], [0.5, 2.5, 3.5])
    assert rec.warnings[0] == (f"{tmp_path / 'run-damaged.wandb'}: record 2 at byte "
                               f"{recs[1][0]}: record start without its end; 1 record lost")
    first_pos = recs[1][0]  # zero the FIRST instead (read as the zero-filled end of a block)
    lone = data[:first_pos] + b"\0" * (wlog.BLOCK - first_pos) + data[wlog.BLOCK:]
    rec = read_one(_copy(tmp_path, lone, "run-lone.wandb"))
    assert series(rec, "loss")[0] == [0, 2, 3]
    # the zeros are damage (data follows them); the orphan LAST fragment is not recounted
    assert rec.warnings == (
        f"{tmp_path / 'run-lone.wandb'}: record 2 at byte {first_pos}: zero-filled gap, "
        f"{wlog.BLOCK - first_pos} bytes skipped; at least 1 record lost",
        f"{tmp_path / 'run-lone.wandb'}: at least 1 damaged record(s) lost in 1 place(s); "
        "the intact records were read")


def test_proto_decoder_rejects_garbage():
    with pytest.raises(wproto.ProtoError):
        wproto.fields(b"\x12\x05ab")  # length 5, 2 bytes left
    with pytest.raises(wproto.ProtoError):
        wproto.fields(b"\x0f")  # wire type 7
    assert wproto.fields(_vi(1, 300) + _ld(2, "hé")) == [(1, 300), (2, "hé".encode())]
    assert wproto.json_value("NaN") != wproto.json_value("NaN")
    assert wproto.json_value("Infinity") == math.inf and wproto.json_value("-Infinity") == -math.inf
    assert wproto.json_value("true") is None and wproto.json_value('"1"') is None
    assert wproto.json_value("[1, 2]") is None and wproto.json_value('{"a": 1}') == {"a": 1}


def test_undecodable_record_is_skipped(tmp_path):
    good = history_record([item(key="_step", value_json="0"), item(key="loss", value_json="1")])
    broken = _ld(2, b"\x0a\x09\x12\x05ab")  # history whose item claims more bytes than it has
    rec = read_one(_copy(tmp_path, frame([good, broken])))
    assert series(rec, "loss")[:2] == ([0], [1.0])
    assert rec.skipped_count == 1 and rec.skipped[0].line == 2
    assert "not a valid Record message" in rec.skipped[0].reason


def test_garbage_never_escapes_as_a_traceback(tmp_path):
    """Mutated payloads (re-framed with valid checksums, so the decoder sees them) and mutated
    framing give salvage, skips or a ParseError: never another exception."""
    import random

    rng = random.Random(7)
    base = [history_record([item(nested=("_step",), value_json=str(i)),
                            item(nested=("train", "loss"), value_json="2.5"),
                            item(key="m", value_json='{"a": 1}')], step=i) for i in range(5)]
    base.append(_ld(17, _ld(1, "abc") + _ld(4, _ld(1, item(key="lr", value_json="0.1")))))
    base.append(_ld(18, _vi(1, 0)))
    path = tmp_path / "run-fuzz.wandb"
    decoded = 0
    for trial in range(400):
        payloads = [bytearray(p) for p in base]
        for _ in range(rng.randint(1, 4)):
            p = rng.choice(payloads)
            pos = rng.randrange(len(p))
            p[pos:pos + rng.randint(0, 3)] = bytes(rng.randrange(256) for _ in range(2))
        data = bytearray(frame([bytes(p) for p in payloads]))
        if trial % 2:  # damage the framing too
            pos = rng.randrange(7, len(data))
            data[pos:pos + rng.randint(1, 30)] = b""
        path.write_bytes(bytes(data))
        try:
            (rec,) = wb.read_wandb(path, "fuzz")
            decoded += 1
            assert len(rec) <= 16
        except ParseError:
            pass
    assert decoded == 400  # the header is intact: every file salvages


# ------------------------------------------------------------------------------------------
# Config -> RunMeta


def test_config_meta_names():
    meta = wb.config_meta({
        "_wandb": {"cli_version": "0.31.0"}, "learning_rate": "6e-4", "n_embd": 768,
        "n_layer": 12, "n_head": 12, "block_size": 1024, "initializer_range": 0.02,
        "adam_epsilon": 1e-6, "betas": [0.9, 0.95], "dtype": "bfloat16",
        "save_steps": 1000, "max_steps": 5000, "max_grad_norm": 1.0, "warmup_steps": 0,
        "lr_scheduler_type": "cosine", "per_device_train_batch_size": 4, "logging_steps": 10,
        "nested": {"deep": {"weight_decay": 0.01}}})
    assert (meta.lr, meta.hidden_size, meta.num_layers, meta.num_heads) == (6e-4, 768, 12, 12)
    assert (meta.seq_length, meta.init_method_std, meta.adam_eps) == (1024, 0.02, 1e-6)
    assert (meta.adam_beta1, meta.adam_beta2, meta.precision) == (0.9, 0.95, "bf16")
    assert (meta.save_interval, meta.train_iters, meta.clip_grad) == (1000, 5000, 1.0)
    assert (meta.warmup_steps, meta.lr_schedule, meta.micro_batch_size) == (0, "cosine", 4)
    assert (meta.log_interval, meta.weight_decay, meta.global_batch_size) == (10, 0.01, None)
    assert meta.extra["nested.deep.weight_decay"] == "0.01" and "_wandb" not in meta.extra
    assert meta.extra["betas"] == "[0.9, 0.95]"


@pytest.mark.parametrize("config, precision", [
    ({"fp16": True, "bf16": False}, "fp16"), ({"fp16": False, "bf16": False}, "fp32"),
    ({"precision": "bf16-mixed"}, "bf16"), ({"precision": "16-mixed"}, "fp16"),
    ({"mixed_precision": "no"}, "fp32"), ({"params_dtype": "torch.float16"}, "fp16"),
    ({"dtype": "float32"}, "fp32"), ({}, None)])
def test_config_precision(config, precision):
    assert wb.config_meta(config).precision == precision


def test_config_extra_is_capped():
    meta = wb.config_meta({f"k{i}": "v" * 500 for i in range(wb.MAX_EXTRA_KEYS + 10)})
    assert len(meta.extra) == wb.MAX_EXTRA_KEYS + 1
    assert meta.extra["wandb.config_keys_omitted"] == "10"
    assert len(meta.extra["k0"]) == wb.MAX_EXTRA_VALUE
    assert wb.config_meta({"max_steps": -1, "save_steps": 0.5}).train_iters is None


# ------------------------------------------------------------------------------------------
# wandb-history.jsonl

HISTORY = (
    '{"loss": 2.31, "_step": 0, "_runtime": 12.3, "_timestamp": 1580000000.1}\n'
    '{"loss": NaN, "lr": 0.001, "_step": 1, "_runtime": 13.0, "_timestamp": 1580000001.0}\n'
    '{"loss": Infinity, "acc": true, "img": {"_type": "image-file", "width": 64}, '
    '"val": {"loss": 2.0}, "note": "hi", "_step": 2, "_runtime": 14, "_timestamp": 1580000002}\n'
    '\n'
    '{"loss": -Infinity, "_step": 3, "_runtime": 15, "_timestamp": 1580000003.0}\n'
    '{"loss": 1.9, "_st')
CONFIG_YAML = """wandb_version: 1
_wandb:
  desc: null
  value:
    cli_version: 0.9.7
learning_rate:
  desc: null
  value: 0.001
n_embd:
  desc: null
  value: 768
"""


def test_history_jsonl(tmp_path):
    path = tmp_path / "run-20200101_000000-abcd1234" / "wandb-history.jsonl"
    path.parent.mkdir()
    path.write_text(HISTORY)
    (path.parent / "config.yaml").write_text(CONFIG_YAML)
    assert sniff(path) is FORMATS["wandb-history"]
    (rec,) = wb.read_wandb_history(path, "r")
    assert rec.format == "wandb-history"
    assert rec.tags == ("loss", "lr", "val/loss")
    assert [infer_role(t) for t in rec.tags] == ["train_loss", "lr", "val_loss"]
    steps, values, orders = series(rec, "loss")
    assert steps == [0, 1, 2, 3] and orders == [1, 2, 3, 5]
    assert same(values, [2.31, NAN, math.inf, -math.inf])
    assert series(rec, "val/loss") == ([2], [2.0], [3])
    assert rec.wall_time[0] == 1580000000.1
    assert rec.skipped_count == 1
    assert (rec.skipped[0].line, rec.skipped[0].reason) == (6, "truncated last line")
    assert (rec.metadata.lr, rec.metadata.hidden_size) == (0.001, 768)


def test_history_sniff_scores():
    s = wb.sniff_wandb_history
    assert s("wandb-history.jsonl", b'{"loss": 1, "_step": 0}\n') == 1.0
    assert s("metrics.jsonl", b'{"loss": 1, "_step": 0, "_runtime": 1.0}\n') == 0.9
    assert s("metrics.jsonl", b'{"loss": 1, "step": 0}\n') == 0.0
    assert s("wandb-history.jsonl", b"step,loss\n") == 0.0
    summary = b'{"loss": 1.5, "_step": 99, "_runtime": 120.5, "_timestamp": 1.7e9, "_wandb": {}}'
    assert s("wandb-summary.json", summary) == 0.0  # a run's last values, not its history


# ------------------------------------------------------------------------------------------
# CSV exports

EXPORT_RUNS = [  # (name, points, first step, last step, first value, last value, missing steps)
    ("gpt2_last_char_to_char1729642919.4054031", 51, 0, 50, 25.48284149169922,
     3.7747888565063477, []),
    ("gpt2_augmented_char_to_token1729630560.5729918", 57, 0, 56, 10.986520767211914,
     3.8689441680908203, []),
    ("gpt2_last_char_token_to_char1729587337.8266432", 166, 0, 166, 24.70099639892578,
     12.2328462600708, [163]),
    ("gpt2_char_to_token1729578574.2848036", 150, 0, 150, 10.944732666015625,
     4.238534450531006, [147]),
    ("gpt2_char_to_token1729534595.422701", 128, 0, 127, 10.993303298950195,
     6.962632656097412, []),
    ("gpt2", 386, 0, 385, 10.95404052734375, 3.2849113941192627, []),
    ("gpt2_last_char_token_to_token1729493675.529459", 118, 0, 117, 10.9784517288208,
     3.365077495574951, []),
    ("gpt2_char_to_token1729491541.2756786", 128, 0, 127, 10.945090293884277,
     6.8979668617248535, []),
]


@pytest.mark.corpus
def test_corpus_ui_export(corpus):
    path = corpus / "wandb-export-nanogpt-multirun" / "wandb_export.csv"
    assert sniff(path) is FORMATS["wandb-csv"]
    recs = wandb_csv.read(path, "wandb_export.csv")
    got = []
    for rec in recs:
        assert rec.tags == ("train/loss",) and rec.format == "wandb-csv"
        assert rec.warnings == () and rec.skipped_count == 0
        steps, values, orders = series(rec, "train/loss")
        assert orders == [s + 2 for s in steps]  # line numbers (header is line 1)
        missing = sorted(set(range(steps[0], steps[-1] + 1)) - set(steps))
        got.append((rec.run, len(rec), steps[0], steps[-1], values[0], values[-1], missing))
        assert rec.metadata.extra["wandb.export_x_axis"] == "Step"
    assert got == EXPORT_RUNS
    frame = build(recs)
    assert [(i.run, [(s.role, s.points) for s in i.series], len(i.segments))
            for i in frame.runs] == [(r[0], [("train_loss", r[1])], 1) for r in EXPORT_RUNS]


UI_EXPORT = (
    '"trainer/global_step","run a - train/loss","run a - train/loss__MIN",'
    '"run a - train/loss__MAX","exp - 2 - train/loss","exp - 2 - train/loss__MIN",'
    '"exp - 2 - train/loss__MAX","exp - 2 - eval/loss","exp - 2 - eval/loss__MIN",'
    '"exp - 2 - eval/loss__MAX"\n'
    '"10","2.5","2.4","2.6","3.0","3.0","3.0","","",""\n'
    '"20","NaN","NaN","NaN","2.8","2.7","2.9","2.9","2.9","2.9"\n'
    '"","","","","1.0","1.0","1.0","","",""\n'
    '"30","","","","Infinity","Infinity","Infinity","","",""\n'
    '"40","2.1","2.1","2.1","2.'
)


def test_composed_ui_export_ragged(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(UI_EXPORT)
    assert wandb_csv.sniff(path.name, path.read_bytes()) == 0.9
    a, b = read_records(path)  # sniffed through the registry
    assert (a.run, b.run) == ("run a", "exp - 2")
    assert a.tags == ("train/loss",) and b.tags == ("train/loss", "eval/loss")
    steps, values, orders = series(a, "train/loss")
    assert steps == [10, 20] and same(values, [2.5, NAN]) and orders == [2, 3]
    assert series(b, "train/loss") == ([10, 20, 30], [3.0, 2.8, math.inf], [2, 3, 5])
    assert series(b, "eval/loss") == ([20], [2.9], [3])
    # file-level problems are reported once, on the first run
    assert [(s.line, s.reason) for s in a.skipped] == [
        (6, "row has 5 of 10 cells (truncated last line)"), (4, "no trainer/global_step value")]
    assert b.skipped_count == 0
    assert a.metadata.extra == {"wandb.display_name": "run a",
                                "wandb.export_x_axis": "trainer/global_step"}


HISTORY_CSV = (
    ',_step,_runtime,_timestamp,train/loss,eval/loss,nested.a,media,lr\n'
    '0,0,1.5,1700000000.5,3.0,,0,,0.1\n'
    '1,1,2.5,1700000001.5,,2.9,1,"{\'_type\': \'image-file\', \'width\': 8}",0.1\n'
    '2,2,3.5,1700000002.5,inf,,2,,oops\n'
    '3,3,4.5,1700000003.5,2.7,,3,,0.1\n')


def test_pandas_history_export(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(HISTORY_CSV)
    assert sniff(path) is FORMATS["wandb-csv"]
    (rec,) = wandb_csv.read(path, "history.csv")
    assert rec.run == "history.csv"
    assert rec.tags == ("train/loss", "eval/loss", "nested.a", "lr")
    assert series(rec, "train/loss") == ([0, 2, 3], [3.0, math.inf, 2.7], [2, 4, 5])
    assert series(rec, "eval/loss")[:2] == ([1], [2.9])
    assert series(rec, "nested.a")[:2] == ([0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])
    assert series(rec, "lr")[:2] == ([0, 1, 3], [0.1, 0.1, 0.1])
    m = rec.tag_code == 0
    assert rec.wall_time[m].tolist() == [1700000000.5, 1700000002.5, 1700000003.5]
    assert [(s.line, s.reason, s.text) for s in rec.skipped] == [
        (4, "column 'lr': not a number", "oops")]


def test_csv_sniff_leaves_generic_csv_alone():
    s = wandb_csv.sniff
    assert s("m.csv", b"step,loss\n0,1.0\n") == 0.0
    assert s("m.csv", b"epoch,train_loss,val_loss\n") == 0.0
    assert s("m.csv", b"Step,a - loss\n0,1\n") == 0.9
    assert s("m.csv", b"x,a - loss,a - loss__MIN\n") == 0.9
    assert s("m.csv", b"x,a - loss\n") == 0.0  # unknown x axis and no companions
    assert s("m.csv", b"_step,loss\n0,1\n") == 0.7
    assert s("m.csv", b",_step,_runtime,loss\n") == 0.9
    assert s("m.csv", b"") == 0.0


def test_csv_errors(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("step,loss\n0,1\n")
    with pytest.raises(ParseError, match="line 1: not a W&B CSV export header"):
        wandb_csv.read(path, "plain")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ParseError, match="empty file"):
        wandb_csv.read(empty, "empty")
    extremes = tmp_path / "extremes.csv"
    extremes.write_text("Step,a - loss__MIN,a - loss__MAX\n0,1,2\n")
    with pytest.raises(ParseError, match="no '<run> - <metric>' column besides __MIN/__MAX"):
        wandb_csv.read(extremes, "extremes")


# ------------------------------------------------------------------------------------------
# wandb:// addresses


@pytest.mark.parametrize("address", ["wandb://foo", "wandb://a/b", "wandb://a//c",
                                     "wandb://a/b/c/d"])
def test_api_address_errors(address):
    with pytest.raises(InvalidParameterError) as err:
        wb.read_api(address)
    assert isinstance(err.value, LossLensError)
    assert str(err.value) == (f"{address}: expected a W&B run address "
                              "wandb://entity/project/run_id")


def test_api_address_forms():
    assert wb.parse_address("wandb://ent/proj/abc123") == "ent/proj/abc123"
    assert wb.parse_address("wandb://ent/proj/runs/abc123/") == "ent/proj/abc123"


def test_api_missing_dependency(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(MissingDependencyError) as err:
        read_records("wandb://ent/proj/abc123")
    assert "pip install 'losslens[wandb]'" in str(err.value)
    assert str(err.value).startswith("wandb://ent/proj/abc123: ")


class _FakeRun:
    name = "fancy-run-7"
    config = {"learning_rate": 1e-3, "hidden_size": 256, "_wandb": {}}

    def scan_history(self):
        yield {"_step": 0, "_timestamp": 1.7e9, "_runtime": 1, "loss": 2.0, "note": "x"}
        yield {"_step": 1, "_timestamp": 1.7e9 + 1, "loss": float("nan"), "eval": {"loss": 1.5}}
        yield {"loss": 1.0}  # no step: skipped, counted


class _FakeApi:
    def __init__(self, fail=False):
        self.fail = fail

    def run(self, path):
        if self.fail:
            raise RuntimeError("Could not find run ent/proj/abc123\nmore detail")
        assert path == "ent/proj/abc123"
        return _FakeRun()


def test_api_rows_with_fake_api():
    (rec,) = wb.read_api("wandb://ent/proj/abc123", api_factory=_FakeApi)
    assert rec.run == "fancy-run-7" and rec.source == "wandb://ent/proj/abc123"
    assert rec.tags == ("loss", "eval/loss")
    steps, values, orders = series(rec, "loss")
    assert steps == [0, 1] and same(values, [2.0, NAN]) and orders == [1, 2]
    assert series(rec, "eval/loss")[:2] == ([1], [1.5])
    assert rec.skipped_count == 1 and rec.skipped[0].reason == "history row without a step"
    assert (rec.metadata.lr, rec.metadata.hidden_size) == (1e-3, 256)
    assert rec.metadata.extra["wandb.run_path"] == "ent/proj/abc123"
    with pytest.raises(LossLensError) as err:
        wb.read_api("wandb://ent/proj/abc123", api_factory=lambda: _FakeApi(fail=True))
    assert str(err.value) == ("wandb://ent/proj/abc123: W&B API error: "
                              "Could not find run ent/proj/abc123")
