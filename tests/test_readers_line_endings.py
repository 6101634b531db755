"""Line endings: a log whose lines end in a bare `\\r` (classic Mac OS, some terminal
captures) or in `\\r\\n` reads exactly like the `\\n` one, in every text format; tqdm's `\\r`
redraws inside `\\n` lines are still pieces of their line."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import losslens
from losslens.readers import read_records, sniff
from losslens.readers.textutil import cr_lines, head_text, read_bytes

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

#: one fixture of each text format the tests keep (its format as sniffed from the `\n` file)
FIXTURES = {
    "megatron/megatron_2022_resume.log": "megatron",
    "megatron/bigscience.log": "megatron",
    "megatron/deepspeed_engine.log": "deepspeed",
    "textlogs/nanogpt_resume.log": "nanogpt",
    "textlogs/llmc_main_resume.log": "llmc-mainlog",
    "textlogs/pix2pix_loss_log.txt": "pix2pix",
    "textlogs/trainer_state.json": "hf-trainer-state",
    "misc/olmo_core.log": "olmo-core",
    "misc/olmo_v1.log": "olmo",
    "misc/fairseq_simple.log": "fairseq",
    "misc/cnn_scaled_input_step140.jsonl": "jsonl",
    "real_excerpts/flax_gemma3-1b_lm1b.log": "t5x",
    "real_excerpts/llm-foundry_mpt-125m.log": "composer",
    "real_excerpts/nemo_bionemo_esm2.log": "megatron",
}


def _ends(path: Path, tmp_path: Path, ending: bytes) -> Path:
    out = tmp_path / ending.hex() / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", ending))
    return out


def _same(a, b) -> None:
    assert (a.format, a.tags, a.skipped_count) == (b.format, b.tags, b.skipped_count)
    assert [(s.line, s.reason) for s in a.skipped] == [(s.line, s.reason) for s in b.skipped]
    assert np.array_equal(a.tag_code, b.tag_code) and np.array_equal(a.step, b.step)
    assert np.array_equal(a.value, b.value, equal_nan=True)
    assert np.array_equal(a.order, b.order) and a.headers == b.headers
    assert np.array_equal(a.wall_time, b.wall_time, equal_nan=True)
    assert a.metadata == b.metadata
    assert [w.replace(a.source, "LOG") for w in a.warnings] == [
        w.replace(b.source, "LOG") for w in b.warnings]


@pytest.mark.parametrize("rel", sorted(FIXTURES))
@pytest.mark.parametrize("ending", [b"\r", b"\r\n"], ids=["cr", "crlf"])
def test_every_text_format_reads_cr_and_crlf_files_like_lf(tmp_path, rel, ending):
    lf = _ends(DATA / rel, tmp_path, b"\n")
    other = _ends(DATA / rel, tmp_path, ending)
    assert sniff(lf).name == sniff(other).name == FIXTURES[rel]
    (a,) = read_records(lf)
    (b,) = read_records(other)
    assert len(a) > 0
    _same(a, b)


def test_cr_only_megatron_log_on_the_vectorised_path(tmp_path):
    """Above 1 MiB Megatron is read in bulk (megatron_fast): a `\\r` file takes that path too,
    with no fallback warning."""
    lines = [f" iteration {i:8d}/   20000 | consumed samples: {i * 256:12d} | elapsed time per "
             f"iteration (ms): 987.6 | learning rate: 1.000E-04 | global batch size:   256 | "
             f"lm loss: {8 - i / 5000:.6E} | loss scale: 1.0 | grad norm: 1.234 | number of "
             "skipped iterations:   0 | number of nan iterations:   0 |"
             for i in range(1, 6001)]
    lf = tmp_path / "lf" / "train.log"
    cr = tmp_path / "cr" / "train.log"
    lf.parent.mkdir()
    cr.parent.mkdir()
    lf.write_bytes(("\n".join(lines) + "\n").encode())
    cr.write_bytes(lf.read_bytes().replace(b"\n", b"\r"))
    assert cr.stat().st_size > 1 << 20
    (a,) = read_records(lf)
    (b,) = read_records(cr)
    _same(a, b)
    assert not b.warnings
    sel = b.tag_code == b.tags.index("lm loss")
    assert b.step[sel].tolist() == list(range(1, 6001))


def test_tqdm_redraws_inside_lf_lines_are_not_line_ends(tmp_path):
    """A file with `\\n` lines whose bars redraw with `\\r` is not a `\\r` file: its line
    numbers stay those of the `\\n` lines."""
    text = ("step 0: train loss 4.0000, val loss 4.1000\n"
            "iter 0: loss 4.0000, time 10.00ms, mfu -100.00%\r 10%|#   | 1/10\r 20%|##  | 2/10\n"
            "iter 1: loss 3.9000, time 10.00ms, mfu -100.00%\n"
            "iter 2: loss 3.8")
    path = tmp_path / "nanogpt.log"
    path.write_bytes(text.encode())
    assert not cr_lines(path.read_bytes())
    assert read_bytes(path) == text.encode()
    (rec,) = read_records(path)
    assert rec.format == "nanogpt"
    sel = rec.tag_code == rec.tags.index("loss")
    assert rec.step[sel].tolist() == [0, 1] and rec.order[sel].tolist() == [2, 3]
    assert [(s.line, s.reason) for s in rec.skipped] == [(4, "truncated last line")]


def test_cr_file_line_numbers_count_its_cr_lines(tmp_path):
    path = tmp_path / "nanogpt.log"
    path.write_bytes(b"step 0: train loss 4.0000, val loss 4.1000\riter 0: loss 4.0000, "
                     b"time 10.00ms, mfu -100.00%\riter 1: loss oops, time 1ms, mfu 1%\r"
                     b"iter 2: loss 3.8")
    assert head_text(path.read_bytes()).count("\n") == 3
    (rec,) = read_records(path)
    assert [(s.line, s.reason) for s in rec.skipped][-1] == (4, "truncated last line")


def test_cli_reads_a_cr_only_log(tmp_path):
    path = tmp_path / "megatron.log"
    path.write_bytes((DATA / "megatron" / "megatron_2022_resume.log").read_bytes()
                     .replace(b"\n", b"\r"))
    res = subprocess.run([sys.executable, "-m", "losslens", "analyze", str(path)],
                         capture_output=True, text=True)
    assert res.returncode in (0, 1) and res.stderr == "", res.stderr
    runs = losslens.read(path).runs
    assert [s.tag for s in runs[0].series if s.role == "train_loss"] == ["lm loss"]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmHWM (Linux)")
def test_a_large_cr_only_file_is_read_in_one_copy(tmp_path):
    """A 256 MiB `\\r` file (no `\\n` at all), in a process capped at 3 GiB of address
    space: the conversion holds one copy of the file at a time (the plain read of its `\\n`
    twin holds as much), not two (the buffer is made at the file's size)."""
    path = tmp_path / "big.log"
    line = b"Epoch 1, Loss: 1.0\r" + b"x" * 44 + b"\r"
    with open(path, "wb") as fh:
        block = line * (1 << 14)
        for _ in range((256 << 20) // len(block)):
            fh.write(block)
    code = ("import sys, resource; from pathlib import Path;"
            "from losslens.readers.textutil import read_bytes;"
            "d = read_bytes(Path(sys.argv[1]));"
            "assert b'\\r' not in d and d.count(b'\\n') == int(sys.argv[2]);"
            # VmHWM, not ru_maxrss: a child forked from a big pytest keeps the parent's
            # resident size as its ru_maxrss across exec
            "print(next(ln.split()[1] for ln in open('/proc/self/status') "
            "if ln.startswith('VmHWM:')))")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    lines = 2 * (path.stat().st_size // len(line))
    res = subprocess.run([sys.executable, "-c", code, str(path), str(lines)],
                         capture_output=True, text=True, preexec_fn=limit, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-500:]
    peak_mib = int(res.stdout) / 1024
    assert peak_mib < 256 + 200, peak_mib  # one copy and the interpreter (two: 512 + ...)


@pytest.mark.parametrize("seed", [1, 2])
def test_watch_follows_a_growing_cr_only_log(tmp_path, seed):
    """`watch` on a Megatron log written with bare `\\r` line ends, in random pieces: the
    same series as one read of the finished file (a half-written line waits for its `\\r`)."""
    from follow_check import follow_in_pieces

    data = (DATA / "megatron" / "megatron_2022_resume.log").read_bytes().replace(b"\n", b"\r")
    dst = tmp_path / "run.log"
    st = follow_in_pieces(dst, data, "megatron", seed=seed)
    frame = losslens.read(dst)
    assert st.series and set(st.series) <= set(frame.runs[0].roles)
    for tag, s in st.series.items():
        ref = frame.series(frame.runs[0].run, tag)
        assert list(s.step[:s.n]) == list(ref.step) and len(ref.step) > 0, tag
        assert list(s.value[:s.n]) == list(ref.value), tag
