"""gzip-compressed logs: sniffed on their first decompressed bytes, read through a temporary
file (never decompressed whole in memory), reading exactly like the plain log; damaged,
cut, multi-member, tar and oversized files. The real NeMo 2 log (.gz) is in
tests/test_readers_real_excerpts.py."""
from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import losslens
from losslens.cli import app
from losslens.errors import ParseError, UnknownFormatError
from losslens.readers import gzipped, read_records, sniff

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_logs"


def _same(a, b) -> None:
    assert a.tags == b.tags and a.format == b.format and a.headers == b.headers
    assert np.array_equal(a.step, b.step) and np.array_equal(a.tag_code, b.tag_code)
    assert np.array_equal(a.value, b.value, equal_nan=True)
    assert a.metadata == b.metadata and a.skipped_count == b.skipped_count


@pytest.mark.parametrize("name", ["megatron_gpt_spikes.log", "nanogpt_clean.log"])
def test_a_gzipped_log_reads_like_the_plain_one(tmp_path, name):
    plain = SAMPLES / name
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert sniff(gz).name == sniff(plain).name
    (a,), (b,) = read_records(plain), read_records(gz)
    _same(a, b)
    assert b.source == str(gz) and b.warnings == a.warnings
    import tempfile

    assert not list(Path(tempfile.gettempdir()).glob("losslens-gz-*/" + name))  # removed


def test_the_formats_see_the_name_without_gz(tmp_path):
    """build-nanogpt's log.txt is sniffed 0.95 by that name (0.9 under another)."""
    text = "0 val 10.9\n0 hella 0.25\n0 train 10.9\n1 train 10.8\n"
    path = tmp_path / "log.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    assert gzipped.inner_name(path.name) == "log.txt"
    assert sniff(path).name == "build-nanogpt-log"
    (rec,) = read_records(path)
    assert rec.tags == ("val loss", "HellaSwag", "loss") and len(rec) == 4


def _lines(n: int) -> bytes:
    return "".join(f"step {i:7d} | loss {3 - i / 1e4:.4f} | lr 3.00e-04\n"
                   for i in range(n)).encode()


def test_a_cut_gzip_stream_is_read_up_to_the_cut_with_a_warning(tmp_path):
    data = gzip.compress(_lines(20000))
    path = tmp_path / "train.out.gz"
    path.write_bytes(data[: len(data) // 2])  # a job killed while it wrote the file
    (rec,) = read_records(path)
    steps = rec.step[rec.tag_code == rec.tags.index("loss")].tolist()
    assert 1000 < len(steps) < 20000 and steps == list(range(len(steps)))
    # (the cut may fall inside a line: then that line is the truncated last line)
    assert {s.reason for s in rec.skipped} <= {"truncated last line"}
    (w,) = rec.warnings
    assert w.startswith(f"{path}: the gzip stream ends early after ") and w.endswith(
        " decompressed bytes (a cut file?): read up to there")


def test_damaged_gzip_data_is_read_up_to_the_damage(tmp_path):
    data = bytearray(gzip.compress(_lines(20000)))
    mid = len(data) // 2
    data[mid:mid + 64] = b"\xff" * 64
    path = tmp_path / "train.out.gz"
    path.write_bytes(bytes(data))
    (rec,) = read_records(path)
    assert rec.step[rec.tag_code == rec.tags.index("loss")][0] == 0
    w = rec.warnings[-1]
    assert w.startswith(f"{path}: damaged gzip data after ") and w.endswith(": read up to there")


def test_members_written_one_after_another_are_read_in_turn(tmp_path):
    path = tmp_path / "train.out.gz"
    text = _lines(300)
    first, second = text[: text.index(b"step     100")], text[text.index(b"step     100"):]
    path.write_bytes(gzip.compress(first) + gzip.compress(second) + b"\0" * 16)
    (rec,) = read_records(path)
    assert rec.step.tolist() == list(range(300)) * 2 and rec.warnings == ()


def test_a_tar_archive_is_not_a_log(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.out")
        body = _lines(100)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    path = tmp_path / "logs.tar.gz"
    path.write_bytes(buf.getvalue())
    assert sniff(path) is None
    with pytest.raises(UnknownFormatError):
        read_records(path)


def test_a_gzip_bomb_stops_with_one_line(tmp_path, monkeypatch):
    path = tmp_path / "train.out.gz"
    path.write_bytes(gzip.compress(_lines(5000)))
    monkeypatch.setattr(gzipped, "MAX_UNPACKED_BYTES", 10_000)
    with pytest.raises(ParseError, match=r"decompresses to more than 10,000 bytes"):
        read_records(path)
    res = CliRunner().invoke(app, ["analyze", str(path)])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"Error: {path}: decompresses to more than 10,000 bytes; decompress it yourself if it "
        "really is a log"]


def test_sniffing_and_reading_never_hold_the_whole_decompressed_log(tmp_path):
    """256 MiB of log lines compress to a few MiB: the sniff decompresses 1 MiB of it, and
    the read streams it to disk 1 MiB at a time."""
    line = b"step       1 | loss 2.5000 | lr 3.00e-04\n"
    path = tmp_path / "big.out.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        block = line * ((1 << 20) // len(line))
        for _ in range(256):
            fh.write(block)
    tracemalloc.start()
    try:
        head = gzipped.head(path, 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
        assert len(head) == 1 << 20 and peak < 16 << 20
        tracemalloc.reset_peak()
        with gzipped.unpacked(path) as (tmp, damage):
            size = tmp.stat().st_size
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert damage is None and size == 256 * len(block) and peak < 16 << 20


def test_a_folder_walk_reads_a_gzipped_log(tmp_path):
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "train.out.gz").write_bytes(gzip.compress(_lines(50)))
    (tmp_path / "run1" / "notes.gz").write_bytes(gzip.compress(b"nothing to see\n"))
    frame = losslens.read(tmp_path)
    assert [r.run for r in frame.runs] == ["run1/train.out.gz"]
    assert frame.runs[0].format == "step-pipes"
