"""Logs that start with NUL bytes (a log emptied while its writer kept its offset): the prefix
is skipped with a warning, whatever the format."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import losslens
from losslens.errors import NoSeriesError, UnknownFormatError
from losslens.readers import read_records, sniff

NANOGPT = ["step 0: train loss 10.9, val loss 10.9\n",
           "iter 0: loss 10.9000, time 100.00ms, mfu -100.00%\n",
           "iter 10: loss 8.5000, time 50.00ms, mfu 10.00%\n",
           "iter 20: loss 7.2500, time 50.00ms, mfu 10.00%\n"]
JSONL = ['{"step": 1, "loss": 3.0}\n', '{"step": 2, "loss": 2.5}\n', '{"step": 3, "loss": 2.0}\n']
CSV = ["step,loss\n", "1,3.0\n", "2,2.5\n", "3,2.0\n"]
PIPES = ["step   700 | loss 4.5105 | lr 2.99e-04 | 427 tok/s\n",
         "step   710 | loss 4.3713 | lr 2.99e-04 | 414 tok/s\n"]


def _emptied_while_written(path, before: list[str], after: list[str]) -> None:
    """What `> log` does to a log a process writes with a plain `open(path, "w")`: the file
    is emptied, the writer's next write lands at its old offset, the gap reads as NULs."""
    with open(path, "w") as writer:
        writer.writelines(before)
        writer.flush()
        os.truncate(path, 0)  # the shell's `> train.log`
        writer.writelines(after)


@pytest.mark.parametrize("lines, fmt, tag, steps", [
    (NANOGPT, "nanogpt", "loss", [0, 10, 20]),
    (JSONL, "jsonl", "loss", [1, 2, 3]),
    (CSV, "csv", "loss", [1, 2, 3]),
    (PIPES, "step-pipes", "loss", [700, 710]),
])
def test_a_log_emptied_while_written_is_read_after_its_nul_prefix(tmp_path, lines, fmt, tag,
                                                                 steps):
    path = tmp_path / ("train.csv" if fmt == "csv" else "train.jsonl" if fmt == "jsonl"
                       else "train.log")
    before = ["x" * 60 + "\n"] * 40
    _emptied_while_written(path, before, lines)
    skip = sum(len(x) for x in before)
    assert path.read_bytes()[:skip] == b"\0" * skip
    assert sniff(path).name == fmt
    (rec,) = read_records(path)
    assert rec.format == fmt and rec.source == str(path)
    assert rec.warnings[0] == (
        f"{path}: starts with {skip:,} NUL bytes (a log emptied while its writer kept writing "
        f"at its old offset, e.g. `> log` or logrotate's copytruncate): read from byte "
        f"{skip:,} on")
    sel = rec.tag_code == rec.tags.index(tag)
    assert rec.step[sel].tolist() == steps
    # a clean copy of the text reads the same points
    clean = tmp_path / ("clean" + path.suffix)
    clean.write_text("".join(lines))
    (ref,) = read_records(clean)
    assert ref.tags == rec.tags and ref.step.tolist() == rec.step.tolist()
    assert ref.value.tolist() == rec.value.tolist()


def test_a_prefix_longer_than_the_sniffed_head(tmp_path):
    path = tmp_path / "train.log"
    with open(path, "wb") as fh:
        fh.seek(3 << 20)  # a 3 MiB hole (a sparse file)
        fh.write("".join(NANOGPT).encode())
    assert sniff(path).name == "nanogpt"
    (rec,) = read_records(path)
    assert f"starts with {3 << 20:,} NUL bytes" in rec.warnings[0]
    assert rec.step[rec.tag_code == rec.tags.index("loss")].tolist() == [0, 10, 20]


def test_only_nul_bytes_is_an_empty_log(tmp_path):
    path = tmp_path / "train.log"
    path.write_bytes(b"\0" * 5000)
    with pytest.raises(NoSeriesError, match=r"train.log: holds only NUL bytes \(5,000\)"):
        read_records(path)


def test_a_few_nul_bytes_are_not_a_prefix_and_binary_is_still_unknown(tmp_path):
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\0\0\0\x01" + os.urandom(2000))
    with pytest.raises(UnknownFormatError, match="not a log format losslens knows"):
        read_records(path)
    path.write_bytes(b"\0" * 100 + os.urandom(2000).replace(b"\n", b" "))
    with pytest.raises(UnknownFormatError, match="not a log format losslens knows"):
        read_records(path)


def test_in_a_folder_and_from_the_cli(tmp_path):
    run = tmp_path / "runs"
    run.mkdir()
    _emptied_while_written(run / "train.log", ["y" * 99 + "\n"] * 3, NANOGPT)
    (rec,) = read_records(run)
    assert rec.format == "nanogpt" and "starts with 300 NUL bytes" in rec.warnings[0]
    out = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(run / "train.log")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Warning: " in out.stderr and "starts with 300 NUL bytes" in out.stderr
    assert "Traceback" not in out.stderr


def test_scanning_a_long_prefix_is_linear(tmp_path):
    path = tmp_path / "train.log"
    with open(path, "wb") as fh:
        fh.seek(256 << 20)
        fh.write("".join(NANOGPT).encode())
    t = time.process_time()
    (rec,) = read_records(path)
    assert time.process_time() - t < 10
    assert rec.step[rec.tag_code == rec.tags.index("loss")].tolist() == [0, 10, 20]


def test_losslens_read_gives_the_same_frame_as_the_clean_text(tmp_path):
    path = tmp_path / "train.log"
    _emptied_while_written(path, ["z\n"] * 20, NANOGPT)
    clean = tmp_path / "clean.log"
    clean.write_text("".join(NANOGPT))
    a, b = losslens.read(path).runs[0], losslens.read(clean).runs[0]
    assert [(s.tag, s.role, s.points) for s in a.series] == \
        [(s.tag, s.role, s.points) for s in b.series]


@pytest.mark.parametrize("lines, name", [(NANOGPT, "train.log"), (JSONL, "train.jsonl")])
def test_watch_follows_a_nul_prefixed_log_as_it_grows(tmp_path, lines, name):
    """`watch` reads such a log whole when it changes (the prefix is skipped by every read, and
    its warning names the log): the points fed over three polls are the points of one read of
    the final file."""
    from losslens.readers import read_file
    from losslens.readers.follow import TextSource

    path = tmp_path / name
    _emptied_while_written(path, ["w" * 80 + "\n"] * 10, lines[:1])
    src = TextSource(path, None, strict=True)
    fed: list[tuple[str, int, float]] = []
    said: list[str] = []
    try:
        for extra in ([], lines[1:2], lines[2:]):
            with open(path, "a") as fh:
                fh.writelines(extra)
            notices: list[str] = []
            batches, _ = src.poll(notices)
            assert not notices
            for batch in batches:
                rec = batch.records
                said += [w for w in rec.warnings if "NUL" in w]
                if batch.reset:
                    fed.clear()
                fed += [(rec.tags[c], int(s), float(v))
                        for c, s, v in zip(rec.tag_code, rec.step, rec.value)]
    finally:
        src.close()
    (whole,) = read_file(path, path.name)
    want = [(whole.tags[c], int(s), float(v))
            for c, s, v in zip(whole.tag_code, whole.step, whole.value)]
    assert sorted(fed) == sorted(want)
    assert len(fed) >= 3 and len(want) >= 3
    # the warning names the log, not a temporary file of the line decoder
    assert said and all(w.startswith(f"{path}: starts with 810 NUL bytes") for w in said)
