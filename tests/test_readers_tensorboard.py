"""TensorBoard event files: files written by the real writers, damaged on purpose, and the corpus.

Expectations are exact: tags, steps, values (float32 where the writer stores float32), wall
times, record orders, segments and warning texts. A reference decoder built on tensorboard's
own protobuf classes checks random files point for point.
"""
from __future__ import annotations

import math
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c as tb_crc32c
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import losslens
from losslens.errors import LossLensError, NoSeriesError, ParseError
from losslens.readers import tensorboard as tb
from losslens.readers import tfrecord

F32 = lambda x: float(np.float32(x))  # noqa: E731  (simple_value is stored as float32)


# ---------------------------------------------------------------- writing helpers


def simple(step: int, wall: float, **values: float) -> event_pb2.Event:
    vals = [summary_pb2.Summary.Value(tag=t.replace("__", "/"), simple_value=v)
            for t, v in values.items()]
    return event_pb2.Event(step=step, wall_time=wall, summary=summary_pb2.Summary(value=vals))


def tensor_event(step: int, wall: float, tag: str, tensor: tensor_pb2.TensorProto,
                 plugin: str | None = "scalars") -> event_pb2.Event:
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    if plugin is not None:
        value.metadata.plugin_data.plugin_name = plugin
    return event_pb2.Event(step=step, wall_time=wall, summary=summary_pb2.Summary(value=[value]))


def tensor(dtype: int, shape: tuple[int, ...] = (), **fields) -> tensor_pb2.TensorProto:
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in shape]
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=dims), **fields)


def write(directory: Path, events: list[event_pb2.Event], name: str | None = None) -> Path:
    """Write with tensorboard's EventFileWriter (header event first); rename if asked."""
    writer = EventFileWriter(str(directory))
    for ev in events:
        writer.add_event(ev)
    writer.close()
    path = Path(writer._file_name)
    if name:
        path = path.rename(directory / name)
    return path


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, payload length) of each record, by a plain Python walk of the framing."""
    data, pos, out = path.read_bytes(), 0, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append((pos, length))
        pos += 16 + length
    return out


def read_one(path: Path, **kw):
    (rec,) = tb.read(path, "run", **kw)
    return rec


def points(rec) -> list[tuple]:
    return [(rec.tags[c], int(s), float(v), float(w), int(o)) for c, s, v, w, o in
            zip(rec.tag_code, rec.step, rec.value, rec.wall_time, rec.order)]


def same(a: list[tuple], b: list[tuple]) -> bool:
    """Equal point lists, NaN equal to NaN."""
    def key(p):
        return tuple("nan" if isinstance(x, float) and math.isnan(x) else x for x in p)
    return [key(p) for p in a] == [key(p) for p in b]


# ---------------------------------------------------------------- CRC32C and names


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 47, 1023, 1024, 1025, 3000, 70_001])
def test_crc32c_matches_tensorboard(n):
    data = os.urandom(n)
    assert tfrecord.crc32c(data) == tb_crc32c(data)
    assert tfrecord.mask(tfrecord.crc32c(data)) == masked_crc32c(data)


def test_length_crc_vectorised():
    lengths = np.array([0, 1, 45, 70_000, 2**31 + 5, 2**32 - 1], dtype=np.uint32)
    stored = np.array([masked_crc32c(int(x).to_bytes(8, "little")) for x in lengths], np.uint32)
    assert tfrecord.length_crc_ok(lengths, stored).tolist() == [True] * 6
    assert tfrecord.length_crc_ok(lengths, stored ^ np.uint32(1)).tolist() == [False] * 6


@pytest.mark.parametrize("name,expected", [
    ("events.out.tfevents.1700000000.host.1234.0", True),
    ("events.out.tfevents.1700000000.host.1234.0.v2", True),
    ("events.out.tfevents.1700000000.host", True),
    ("events.out.tfevents.1700000000.host.profile-empty", False),
    ("events.out.tfevents.", False),
    ("metrics.csv", False),
])
def test_is_event_file_name(name, expected):
    assert tb.is_event_file_name(name) is expected


def test_sniff_by_name_and_by_content(tmp_path):
    path = write(tmp_path, [simple(1, 10.0, loss=1.0)])
    head = path.read_bytes()
    assert tb.sniff(path.name, b"") == 1.0
    assert tb.sniff("renamed.bin", head) == 0.9
    assert tb.sniff("renamed.bin", b"iteration 1/ 10 | lm loss: 1.0 |" * 4) == 0.0
    assert tb.sniff("renamed.bin", b"\x05" + b"\0" * 7 + b"\0\0\0\0" + b"x" * 9) == 0.0


# ---------------------------------------------------------------- scalars


def test_simple_values_exact(tmp_path):
    events = [simple(0, 1000.0, train__loss=10.5, lr=1e-3),
              simple(1, 1001.25, train__loss=float("nan"), lr=2e-3),
              simple(2, 1002.5, train__loss=float("inf"), lr=3e-3),
              simple(300, 1003.75, train__loss=float("-inf"), lr=0.0),
              simple(70_000, 1004.0, train__loss=-2.5, lr=1.0)]
    rec = read_one(write(tmp_path, events))
    assert rec.tags == ("train/loss", "lr")
    assert rec.format == "tensorboard"
    assert rec.metadata.framework == "tensorboard"
    assert same(points(rec), [
        ("train/loss", 0, 10.5, 1000.0, 2), ("lr", 0, F32(1e-3), 1000.0, 2),
        ("train/loss", 1, math.nan, 1001.25, 3), ("lr", 1, F32(2e-3), 1001.25, 3),
        ("train/loss", 2, math.inf, 1002.5, 4), ("lr", 2, F32(3e-3), 1002.5, 4),
        ("train/loss", 300, -math.inf, 1003.75, 5), ("lr", 300, 0.0, 1003.75, 5),
        ("train/loss", 70_000, -2.5, 1004.0, 6), ("lr", 70_000, 1.0, 1004.0, 6)])
    assert F32(1e-3) == 0.0010000000474974513
    assert rec.warnings == () and rec.skipped_count == 0 and rec.headers == ()


def test_tensor_scalars_every_encoding(tmp_path):
    half = np.float16(1.5).tobytes()
    bf16 = np.float32(-2.5).tobytes()[2:]
    events = [
        tensor_event(1, 1.0, "f_val", tensor(1, float_val=[0.25])),
        tensor_event(2, 2.0, "d_val", tensor(2, double_val=[0.1])),
        tensor_event(3, 3.0, "f_content", tensor(1, tensor_content=np.float32(4.0).tobytes())),
        tensor_event(4, 4.0, "d_content", tensor(2, tensor_content=np.float64(0.3).tobytes())),
        tensor_event(5, 5.0, "h_content", tensor(19, tensor_content=half)),
        tensor_event(6, 6.0, "h_val", tensor(19, half_val=[int(np.float16(-0.5).view(np.uint16))])),
        tensor_event(7, 7.0, "bf_content", tensor(14, tensor_content=bf16)),
        tensor_event(8, 8.0, "i32", tensor(3, int_val=[-7])),
        tensor_event(9, 9.0, "i64", tensor(9, int64_val=[-(2**40)])),
        tensor_event(10, 10.0, "i64_content", tensor(9, tensor_content=np.int64(12).tobytes())),
        tensor_event(11, 11.0, "nan", tensor(1, float_val=[float("nan")])),
        tensor_event(12, 12.0, "shape_1x1", tensor(1, (1, 1), float_val=[6.5])),
        tensor_event(13, 13.0, "no_metadata", tensor(2, double_val=[2.0]), plugin=None),
    ]
    rec = read_one(write(tmp_path, events))
    assert same([(t, s, v) for t, s, v, _, _ in points(rec)], [
        ("f_val", 1, 0.25), ("d_val", 2, 0.1), ("f_content", 3, 4.0), ("d_content", 4, 0.3),
        ("h_content", 5, 1.5), ("h_val", 6, -0.5), ("bf_content", 7, -2.5), ("i32", 8, -7.0),
        ("i64", 9, float(-(2**40))), ("i64_content", 10, 12.0), ("nan", 11, math.nan),
        ("shape_1x1", 12, 6.5), ("no_metadata", 13, 2.0)])
    assert rec.wall_time.tolist() == [float(i) for i in range(1, 14)]


def test_non_scalars_are_skipped_quietly(tmp_path):
    image = summary_pb2.Summary.Image(height=1, width=1, encoded_image_string=b"\x89PNG....")
    histo = summary_pb2.HistogramProto(min=0, max=1, num=2, bucket_limit=[1], bucket=[2])
    events = [
        simple(1, 1.0, loss=1.0),
        event_pb2.Event(step=1, wall_time=1.0, summary=summary_pb2.Summary(value=[
            summary_pb2.Summary.Value(tag="img", image=image),
            summary_pb2.Summary.Value(tag="hist", histo=histo)])),
        tensor_event(1, 1.0, "text", tensor(7, string_val=[b"hello"]), plugin="text"),
        tensor_event(1, 1.0, "vector", tensor(1, (3,), float_val=[1, 2, 3])),
        tensor_event(1, 1.0, "hparam", tensor(1, float_val=[0.5]), plugin="hparams"),
        event_pb2.Event(step=1, wall_time=1.0, graph_def=b"\x0a\x00"),
        event_pb2.Event(step=1, wall_time=1.0, log_message=event_pb2.LogMessage(message="hi")),
        simple(2, 2.0, loss=0.5),
    ]
    rec = read_one(write(tmp_path, events))
    assert points(rec) == [("loss", 1, 1.0, 1.0, 2), ("loss", 2, 0.5, 2.0, 9)]
    assert rec.warnings == () and rec.skipped_count == 0


def test_tensorboard_summary_writer(tmp_path):
    from tensorboard.summary import Writer

    writer = Writer(str(tmp_path))
    for step in range(5):
        writer.add_scalar("train/loss", 3.0 - step * 0.5, step, wall_time=100.0 + step)
    writer.add_scalar("val/loss", 2.75, 4, wall_time=200.0)
    writer.close()
    rec = read_one(tmp_path)
    assert rec.tags == ("train/loss", "val/loss")
    assert [(t, s, v, w) for t, s, v, w, _ in points(rec)] == [
        ("train/loss", 0, 3.0, 100.0), ("train/loss", 1, 2.5, 101.0),
        ("train/loss", 2, 2.0, 102.0), ("train/loss", 3, 1.5, 103.0),
        ("train/loss", 4, 1.0, 104.0), ("val/loss", 4, 2.75, 200.0)]


def test_torch_summary_writer_new_style(tmp_path):
    torch_tb = pytest.importorskip("torch.utils.tensorboard")
    writer = torch_tb.SummaryWriter(str(tmp_path))
    writer.add_scalar("loss", 2.5, 1, walltime=10.0)
    writer.add_scalar("loss", 1.25, 2, walltime=11.0, new_style=True)
    writer.add_scalar("lr", 0.1, 2, walltime=11.0, new_style=True, double_precision=True)
    writer.close()
    rec = read_one(tmp_path)
    assert [(t, s, v, w) for t, s, v, w, _ in points(rec)] == [
        ("loss", 1, 2.5, 10.0), ("loss", 2, 1.25, 11.0), ("lr", 2, 0.1, 11.0)]


def test_same_length_tags_and_growing_steps(tmp_path):
    # same payload length, different tags; steps crossing varint widths; negative step
    steps = [-3, 0, 1, 127, 128, 16_383, 16_384, 2**21, 2**35]
    events = [simple(s, 5.0 + i, loss__a=float(i), loss__b=-float(i), loss__c=0.5)
              for i, s in enumerate(steps)]
    events += [simple(s, 50.0, **{"loss__a": 1.0}) for s in range(1000, 1600)]
    events += [simple(s, 60.0, **{"loss__b": 2.0}) for s in range(1000, 1600)]
    rec = read_one(write(tmp_path, events))
    expected = []
    for i, s in enumerate(steps):
        expected += [("loss/a", s, float(i)), ("loss/b", s, -float(i)), ("loss/c", s, 0.5)]
    expected += [("loss/a", s, 1.0) for s in range(1000, 1600)]
    expected += [("loss/b", s, 2.0) for s in range(1000, 1600)]
    assert [(t, s, v) for t, s, v, _, _ in points(rec)] == expected
    assert rec.order.tolist() == sorted(rec.order.tolist())


def test_header_whose_crc_starts_with_a_zero_byte(tmp_path):
    # a 65-byte payload's masked length CRC starts with a 0x00 byte: its header is not at
    # the end of a zero run, and is found from the record before it
    tag = "t" * 43
    assert masked_crc32c((65).to_bytes(8, "little")) & 0xFF == 0
    events = [simple(5, 1.5, **{tag: float(i)}) for i in range(3)]
    path = write(tmp_path, events)
    assert [length for _, length in record_offsets(path)][1:] == [65, 65, 65]
    rec = read_one(path)
    assert rec.value.tolist() == [0.0, 1.0, 2.0] and rec.warnings == ()
    data = path.read_bytes()
    buf = np.zeros(len(data) + tfrecord.PAD, np.uint8)
    buf[:len(data)] = np.frombuffer(data, np.uint8)
    starts, lengths = tfrecord._header_candidates(buf, len(data))
    assert starts.tolist() == [off for off, _ in record_offsets(path)]


def test_multiple_values_in_one_event_share_the_order(tmp_path):
    rec = read_one(write(tmp_path, [simple(7, 1.5, a=1.0, b=2.0, c=3.0)]))
    assert points(rec) == [("a", 7, 1.0, 1.5, 2), ("b", 7, 2.0, 1.5, 2), ("c", 7, 3.0, 1.5, 2)]


# ---------------------------------------------------------------- files, folders, runs


def test_restart_files_form_segments(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write(run, [simple(s, 100.0 + s, loss=10.0 - s) for s in range(1, 6)],
          name="events.out.tfevents.1700000100.host.11.0")
    write(run, [simple(s, 200.0 + s, loss=20.0 - s) for s in range(4, 8)],
          name="events.out.tfevents.1700000200.host.12.0")
    (rec,) = tb.read(run, "run")
    assert rec.headers == (7,)  # records 1-6 in the first file, 7-11 (7: file_version) in the 2nd
    assert rec.step.tolist() == [1, 2, 3, 4, 5, 4, 5, 6, 7]
    frame = losslens.read(run)
    info = frame.runs[0]
    assert info.run == "run"
    assert [(s.first_step, s.last_step, s.points, s.reason) for s in info.segments] == [
        (1, 5, 5, "start"), (4, 7, 4, "header")]
    stitched = frame.series("run", "loss")
    assert stitched.step.tolist() == [1, 2, 3, 4, 5, 6, 7]
    assert stitched.value.tolist() == [9.0, 8.0, 7.0, 16.0, 15.0, 14.0, 13.0]


def test_files_ordered_by_name_timestamp_then_natural_name(tmp_path):
    names = ["events.out.tfevents.1700000300.host.1.0",
             "events.out.tfevents.999999999.host.1.0",  # older although it sorts later as text
             "events.out.tfevents.1700000300.host.1.10",
             "events.out.tfevents.1700000300.host.1.2"]
    for i, name in enumerate(names):
        write(tmp_path, [simple(i, float(i), loss=float(i))], name=name)
    assert [p.name for p in tb.event_files(tmp_path)] == [names[1], names[0], names[3], names[2]]
    rec = read_one(tmp_path)
    assert rec.value.tolist() == [1.0, 0.0, 3.0, 2.0]
    assert rec.headers == (3, 5, 7)


def test_nested_run_folders_read_as_runs(tmp_path):
    for name, offset in (("run_a", 0.0), ("run_b/sub", 100.0)):
        d = tmp_path / name
        d.mkdir(parents=True)
        write(d, [simple(s, s, **{"lm loss": offset + s}) for s in range(3)])
    (tmp_path / "run_a" / "events.out.tfevents.1.host.profile-empty").write_bytes(b"junk")
    frame = losslens.read(tmp_path)
    assert [r.run for r in frame.runs] == ["run_a", "run_b/sub"]
    assert frame.series("run_a", "lm loss").value.tolist() == [0.0, 1.0, 2.0]
    assert frame.series("run_b/sub", "lm loss").value.tolist() == [100.0, 101.0, 102.0]
    assert frame.runs[0].roles == {"lm loss": "train_loss"}


def test_megatron_tensorboard_tags(tmp_path):
    tags = {"lm loss": "train_loss", "lm loss vs samples": "other", "grad-norm": "grad_norm",
            "loss-scale": "loss_scale", "learning-rate": "lr", "lm loss validation": "val_loss"}
    events = [event_pb2.Event(step=s, wall_time=float(s), summary=summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=t, simple_value=1.0) for t in tags])) for s in (1, 2)]
    write(tmp_path, events)
    frame = losslens.read(tmp_path)
    assert frame.runs[0].roles == tags
    assert all(s.points == 2 for s in frame.runs[0].series)


# ---------------------------------------------------------------- damage


def _events(n: int) -> list[event_pb2.Event]:
    return [simple(s, 1000.0 + s, loss=float(s)) for s in range(n)]


def test_flipped_payload_byte_loses_one_record(tmp_path):
    path = write(tmp_path, _events(10))
    offsets = record_offsets(path)
    off, length = offsets[5]  # record 6: step 4
    data = bytearray(path.read_bytes())
    data[off + 12 + length - 2] ^= 0x40  # inside the simple_value
    path.write_bytes(bytes(data))
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert rec.order.tolist() == [2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert rec.warnings == (f"{path.name}: record 6 at byte {off}: data CRC mismatch; "
                            "1 record(s) lost",)


def test_flipped_length_byte_resynchronises(tmp_path):
    path = write(tmp_path, _events(10))
    offsets = record_offsets(path)
    off = offsets[4][0]  # record 5: step 3
    data = bytearray(path.read_bytes())
    data[off] ^= 0x01
    path.write_bytes(bytes(data))
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    skipped = offsets[5][0] - off
    assert rec.warnings == (f"{path.name}: record 5 at byte {off}: length CRC mismatch; "
                            f"{skipped} bytes skipped to the next valid record",)


def test_truncated_tail(tmp_path):
    path = write(tmp_path, _events(6))
    data = path.read_bytes()
    off, length = record_offsets(path)[-1]
    path.write_bytes(data[:off + 20])
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1, 2, 3, 4]
    assert rec.warnings == (f"{path.name}: record 7 at byte {off}: truncated record (its length "
                            f"says {length} bytes, 8 left); 1 record(s) lost",)


def test_truncated_header(tmp_path):
    path = write(tmp_path, _events(3))
    path.write_bytes(path.read_bytes() + b"\x2d\x00\x00")
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1, 2]
    assert rec.warnings == (f"{path.name}: record 5 at byte {path.stat().st_size - 3}: "
                            "truncated record header (3 of 12 bytes); 1 record(s) lost",)


def test_length_pointing_past_the_end(tmp_path):
    path = write(tmp_path, _events(4))
    off, _ = record_offsets(path)[-1]
    data = bytearray(path.read_bytes())
    header = (10_000).to_bytes(8, "little")
    data[off:off + 12] = header + masked_crc32c(header).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1, 2]
    left = len(data) - off - 12
    assert rec.warnings == (f"{path.name}: record 5 at byte {off}: truncated record (its length "
                            f"says 10000 bytes, {left} left); 1 record(s) lost",)


def test_valid_crc_but_not_an_event_is_skipped(tmp_path):
    path = write(tmp_path, _events(2))
    junk = b"\x0f\xff\xff"  # a key with wire type 7: not protobuf
    header = len(junk).to_bytes(8, "little")
    with open(path, "ab") as fh:
        fh.write(header + masked_crc32c(header).to_bytes(4, "little") + junk
                 + masked_crc32c(junk).to_bytes(4, "little"))
    rec = read_one(path)
    assert rec.step.tolist() == [0, 1]
    assert rec.skipped_count == 1
    assert rec.skipped[0].line == 4 and "not a valid Event" in rec.skipped[0].reason


def test_empty_file(tmp_path):
    path = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    path.write_bytes(b"")
    rec = read_one(path)
    assert len(rec) == 0 and rec.warnings == ()
    with pytest.raises(NoSeriesError):
        losslens.read(path)


def test_not_a_tfrecord_file(tmp_path):
    path = tmp_path / "events.out.tfevents.1700000000.host.1.0"
    path.write_text("iteration 1 | lm loss: 3.0\n" * 20)
    with pytest.raises(ParseError, match="not a TFRecord event file"):
        tb.read(path, "run")
    with pytest.raises(LossLensError, match="not a TFRecord event file"):
        losslens.read(path)


def test_not_a_tfrecord_file_beside_a_good_one(tmp_path):
    write(tmp_path, _events(3), name="events.out.tfevents.1700000000.host.1.0")
    (tmp_path / "events.out.tfevents.1700000001.host.1.0").write_bytes(b"\x01" * 40)
    rec = read_one(tmp_path)
    assert rec.step.tolist() == [0, 1, 2]
    assert rec.warnings == ("events.out.tfevents.1700000001.host.1.0: not a TFRecord event "
                            "file (no valid record header in 40 bytes)",)


# ---------------------------------------------------------------- chunks and random files


def _reference(paths: list[Path]) -> list[tuple]:
    """Every scalar point, decoded record by record with tensorboard's protobuf classes."""
    out, order = [], 0
    for path in paths:
        data, pos = path.read_bytes(), 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack_from("<Q", data, pos)
            order += 1
            ev = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for v in ev.summary.value:
                if v.HasField("simple_value"):
                    out.append((v.tag, ev.step, v.simple_value, ev.wall_time, order))
                elif v.HasField("tensor"):
                    t = v.tensor
                    x = (np.frombuffer(t.tensor_content, "<f8" if t.dtype == 2 else "<f4")[0]
                         if t.tensor_content else (list(t.float_val) + list(t.double_val))[0])
                    out.append((v.tag, ev.step, float(x), ev.wall_time, order))
    return out


def test_chunk_boundaries_give_the_same_points(tmp_path):
    rng = np.random.default_rng(1)
    events = [simple(int(s), float(w), **{f"t{int(k)}": float(v)})
              for s, w, k, v in zip(range(3000), 1e9 + rng.random(3000),
                                    rng.integers(0, 12, 3000), rng.normal(size=3000))]
    path = write(tmp_path, events)
    expected = _reference([path])
    for chunk in (4096, 5000, 65_536, 64 << 20):
        rec = read_one(path, chunk_bytes=chunk)
        assert same(points(rec), expected), chunk
        assert rec.warnings == ()


def test_merge_all_events_evenly_spaced_match_the_protobuf_decoder(tmp_path):
    """TF1 `merge_all`: one event per step with every tag's value. Records of one layout lie
    evenly spaced in the file (the strided fast path), except where the step's varint grows
    and where an odd event with another layout sits in between."""
    rng = np.random.default_rng(3)
    events = []
    for s in range(3000):
        vals = dict(zip(("loss", "lr", "grad_norm", "scale"), rng.normal(size=4).tolist()))
        events.append(simple(s, 1.7e9 + s * 0.5 + float(rng.random()), **vals))
        if s == 1700:
            events.append(simple(s, 1.7e9, other=1.0))
    path = write(tmp_path, events)
    expected = _reference([path])
    assert len(expected) == 12001
    for chunk in (4096, 100_003, 64 << 20):
        rec = read_one(path, chunk_bytes=chunk)
        assert same(points(rec), expected), chunk
        assert rec.warnings == ()


def test_damage_across_chunk_boundaries(tmp_path):
    path = write(tmp_path, _events(400))
    offsets = record_offsets(path)
    data = bytearray(path.read_bytes())
    for i in (50, 51, 52):  # three lengths in a row: one long unframed stretch
        data[offsets[i][0] + 1] ^= 0xFF
    data[offsets[300][0] + 14] ^= 0x01  # a payload byte
    path.write_bytes(bytes(data))
    expected = [s for s in range(400) if s not in (49, 50, 51, 299)]
    for chunk in (1000, 4096, 64 << 20):
        rec = read_one(path, chunk_bytes=chunk)
        assert rec.step.tolist() == expected, chunk
        assert rec.warnings == (
            f"{path.name}: record 51 at byte {offsets[50][0]}: length CRC mismatch; "
            f"{offsets[53][0] - offsets[50][0]} bytes skipped to the next valid record",
            # records are numbered as framed: the three in the unframed stretch are not counted
            f"{path.name}: record 298 at byte {offsets[300][0]}: data CRC mismatch; "
            "1 record(s) lost"), chunk


_tags = st.sampled_from(["loss", "lr", "loss/a", "loss/b", "grad norm", "x" * 130])
_values = st.floats(width=32, allow_nan=True, allow_infinity=True)
_steps = st.one_of(st.integers(0, 300), st.integers(-(2**63), 2**63 - 1))
_walls = st.one_of(st.just(0.0), st.floats(0, 2e9), st.integers(0, 2**31).map(float))


@st.composite
def _event(draw):
    step, wall = draw(_steps), draw(_walls)
    kind = draw(st.sampled_from(["simple", "float_val", "double_val", "content", "multi"]))
    tag, value = draw(_tags), draw(_values)
    if kind == "simple":
        return simple(step, wall, **{tag.replace("/", "__"): value})
    if kind == "multi":
        return simple(step, wall, a=value, b=draw(_values), c=draw(_values))
    if kind == "float_val":
        return tensor_event(step, wall, tag, tensor(1, float_val=[value]))
    if kind == "double_val":
        return tensor_event(step, wall, tag, tensor(2, double_val=[draw(st.floats())]))
    return tensor_event(step, wall, tag, tensor(1, tensor_content=np.float32(value).tobytes()))


#: TB_EXAMPLES=600 for a longer search
_SETTINGS = settings(max_examples=int(os.environ.get("TB_EXAMPLES", 40)), deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(events=st.lists(_event(), min_size=0, max_size=60),
       chunk=st.sampled_from([64, 300, 1 << 20]))
def test_random_files_match_the_protobuf_decoder(tmp_path_factory, events, chunk):
    directory = tmp_path_factory.mktemp("random")
    path = write(directory, events)
    assert same(points(read_one(path, chunk_bytes=chunk)), _reference([path]))


# ---------------------------------------------------------------- corpus


def test_corpus_writer_sample_exact(corpus):
    path = corpus / "writer-samples" / "tensorboard"
    frame = losslens.read(path)
    (info,) = frame.runs
    assert info.run == "tensorboard" and info.format == "tensorboard"
    assert [(s.tag, s.role, s.points, s.nonfinite) for s in info.series] == [
        ("train/loss", "train_loss", 5, 2), ("learning-rate", "lr", 5, 0),
        ("eval/loss", "val_loss", 3, 0)]
    assert [(s.index, s.first_step, s.last_step, s.points) for s in info.segments] == [
        (0, 0, 70, 13)]
    loss = frame.series("tensorboard", "train/loss")
    assert loss.step.tolist() == [0, 10, 20, 30, 40]
    assert same([tuple(loss.value.tolist())], [(10.5, 7.25, math.nan, math.inf, 5.125)])
    assert loss.wall_time.tolist() == [1700000000.0 + s for s in (0, 10, 20, 30, 40)]
    lr = frame.series("tensorboard", "learning-rate")
    assert lr.value.tolist() == [F32(1e-4 * s) for s in (0, 10, 20, 30, 40)]
    ev = frame.series("tensorboard", "eval/loss")
    assert (ev.step.tolist(), ev.value.tolist()) == ([50, 60, 70], [4.5, 4.25, 4.0])
    assert info.warnings == ()


def test_corpus_lightning_file(corpus):
    path = corpus / "tb-lstm-textgen"
    (rec,) = tb.read(path, "tb-lstm-textgen")
    assert same(points(rec), _reference(tb.event_files(path)))
    frame = losslens.read(path)
    (info,) = frame.runs
    assert [(s.tag, s.role, s.points, s.raw_points, s.first_step, s.last_step)
            for s in info.series] == [
        ("hp_metric", "other", 1, 1, 0, 0),
        ("train_loss", "train_loss", 7691, 7691, 49, 384549),
        ("epoch", "other", 7719, 7720, 49, 384597),
        ("val_loss", "val_loss", 29, 29, 13261, 384597)]
    # Lightning logs `epoch` twice at step 331549: a double log, not a resume
    assert [(s.first_step, s.last_step, s.points, s.reason) for s in info.segments] == [
        (0, 384597, 15441, "start")]
    loss = frame.series("tb-lstm-textgen", "train_loss")
    assert loss.value[:2].tolist() == [2.0573372840881348, 1.7567052841186523]
    assert loss.wall_time[0] == 1716735749.0009108
    assert info.warnings == () and info.skipped_count == 0


@_SETTINGS
@given(events=st.lists(_event(), min_size=1, max_size=40), data=st.data(),
       chunk=st.sampled_from([100, 1 << 20]))
def test_random_damage_keeps_every_intact_record(tmp_path_factory, events, data, chunk):
    path = write(tmp_path_factory.mktemp("damaged"), events)
    reference, offsets = _reference([path]), record_offsets(path)
    raw = bytearray(path.read_bytes())
    flips = data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=3))
    for i in flips:
        raw[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(raw))))
    path.write_bytes(bytes(raw[:cut]))
    end = len(raw) if cut is None else cut
    try:
        rec = read_one(path, chunk_bytes=chunk)
    except ParseError:
        assert min(flips) < 12  # only when the very first header is gone
        return
    got = [p[:4] for p in points(rec)]
    intact = {k + 1 for k, (off, length) in enumerate(offsets)
              if off + 16 + length <= min(end, min(flips)) or
              (off >= max(flips) + 1 and off + 16 + length <= end and k and
               all(not (o <= f < o + 12) for f in flips for o, _ in offsets))}
    want = [p[:4] for p in reference if p[4] in intact]
    assert all(any(same([g], [w]) for w in [r[:4] for r in reference]) for g in got)
    assert all(any(same([w], [g]) for g in got) for w in want)
    # fewer points than the records the cut left whole: something must be said
    whole = {k + 1 for k, (off, length) in enumerate(offsets) if off + 16 + length <= end}
    lost = sum(p[4] in whole for p in reference) > len(got)
    assert not lost or rec.warnings or rec.skipped_count


def test_a_folder_without_scalars_says_what_it_holds(tmp_path):
    """A launch that wrote only text (its arguments) and an image: the failed unit names the
    summaries it found instead of saying "no points"."""
    import numpy as np
    from torch.utils.tensorboard import SummaryWriter

    import losslens

    w = SummaryWriter(tmp_path / "run")
    w.add_text("args", "lr=3e-4", 0)
    w.add_text("config", "layers=2", 0)
    w.add_image("sample", np.zeros((3, 4, 4)), 0)
    w.close()
    (run,) = losslens.read(tmp_path).runs
    assert run.error.endswith(
        "no metric series could be read (no scalars, only text summaries: 2 tags (args/"
        "text_summary, config/text_summary); image summaries: 1 tag (sample))")
