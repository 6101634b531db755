"""Fuzz losslens: mutate real logs of every format and run the library and the CLI on them.

Why: readers meet cut, spliced and corrupted files all the time (a node dies mid-write, two
ranks write one line, a copy goes through the wrong encoding). Whatever the bytes, losslens
must answer with exit 0, 1 or 2, never a traceback; a refusal is one `Error: ...` line that
names the file; what was salvaged is said on stderr.

Seeds: the fixtures in tests/data, sample_logs, the heads of the real logs in ../shared/corpus
(when present), and files generated here for every format (TensorBoard through tensorboard's
EventFileWriter, `.wandb` framed here and copied from the corpus writer samples, text formats
composed from the format strings in each framework's source). Mutations: truncation anywhere, flipped bytes,
garbage and binary spliced into lines, duplicated, deleted and reordered lines, enormous
lines, empty files, wrong names, mixed encodings and line endings, odd numbers (NaN spellings,
1e999, integers past int64), TFRecord CRC damage and lengths past the end, `.wandb` blocks cut
in half, JSON NaN/Infinity, ragged CSV rows; 1 to 3 of them stacked.

Each input is read and analysed by the library (and its reports rendered), then run through
one CLI command in process (series, analyze, check, skiplist in turn, via typer's CliRunner);
a sample also runs `python -m losslens` in a subprocess to check real exit codes. Outcomes:
ok, salvaged (warnings or skipped lines reported), error (exit 2 with one `Error:` line naming
the file), and the failures: crash (a traceback or an exception escaping), bad-msg (exit 2
without a proper one-line error), hang (over --timeout seconds).

    python benchmarks/fuzz.py --n 5000            # the acceptance run (a few minutes)
    python benchmarks/fuzz.py --structured --n 5000 --jobs 2   # fuzz_structured.py
    python benchmarks/fuzz.py --n 300 --save out  # keep the failing inputs in out/

tests/test_fuzz.py drives the same seeds and mutators from hypothesis.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
DATA = ROOT / "tests" / "data"
SAMPLES = ROOT / "sample_logs"
COMMANDS = ("series", "analyze", "check", "skiplist")
OUTCOMES = ("ok", "salvaged", "error", "crash", "bad-msg", "hang")
FAILURES = ("crash", "bad-msg", "hang")


@dataclass(frozen=True)
class Seed:
    """One input before mutation: the file name the sniffer sees, a format label, the bytes."""

    name: str
    kind: str
    data: bytes


# ============================================================================ seeds


def seeds(max_bytes: int = 48 << 10, corpus: Path | None = CORPUS) -> list[Seed]:
    """Every seed: fixtures, samples, generated files, and corpus heads when present."""
    out = _fixture_seeds(max_bytes) + generated_seeds()
    if corpus is not None and corpus.is_dir():
        out += _corpus_seeds(corpus, max_bytes)
    return out


def _kind_of(path: Path) -> str:
    from losslens.readers import sniff

    fmt = sniff(path)
    return fmt.name if fmt else "unknown"


def _head(data: bytes, max_bytes: int) -> bytes:
    """At most `max_bytes`, cut at a line end (binary files are kept whole)."""
    if len(data) <= max_bytes or b"\0" in data[:4096]:
        return data
    cut = data.rfind(b"\n", 0, max_bytes)
    return data[: cut + 1 if cut > 0 else max_bytes]


def _fixture_seeds(max_bytes: int) -> list[Seed]:
    files = [p for p in sorted(DATA.rglob("*")) if p.is_file() and p.suffix != ".py"]
    files += [p for p in sorted(SAMPLES.glob("*.log"))]
    return [Seed(p.name, _kind_of(p), _head(p.read_bytes(), max_bytes)) for p in files]


def _corpus_seeds(corpus: Path, max_bytes: int) -> list[Seed]:
    out = []
    for p in sorted(corpus.rglob("*")):
        if not p.is_file() or p.name == "README.md" and p.parent.name == "writer-samples":
            continue
        data = p.read_bytes()
        if len(data) > (4 << 20):
            continue
        out.append(Seed(p.name, _kind_of(p), _head(data, max_bytes)))
    return out


def generated_seeds() -> list[Seed]:
    """Files of every format, composed here (no corpus needed)."""
    out = [Seed("events.out.tfevents.1700000000.fuzz.1.0", "tensorboard", tensorboard_bytes()),
           Seed("run-fuzz0001.wandb", "wandb", wandb_bytes())]
    for name, kind, text in _text_seeds():
        out.append(Seed(name, kind, text.encode("utf-8")))
    return out


def _curve(n: int, spike: int | None = None) -> list[float]:
    """A decaying loss with one spike (something for the detectors to find)."""
    out = []
    for i in range(n):
        v = 6.0 * (1 + i) ** -0.3 + 0.01 * ((i * 7919) % 13) / 13
        if spike is not None and spike <= i < spike + 3:
            v *= 3.0
        out.append(round(v, 6))
    return out


def tensorboard_bytes(n: int = 80) -> bytes:
    """An event file written by tensorboard's EventFileWriter: simple values, tensor scalars
    (float_val, double_val, tensor_content), a histogram, NaN and inf."""
    from tensorboard.compat.proto import (event_pb2, histogram_pb2, summary_pb2, tensor_pb2,
                                          tensor_shape_pb2)
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    scalars = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    loss = _curve(n, spike=n // 2)
    loss[n // 3], loss[n // 3 + 1] = float("nan"), float("inf")
    with tempfile.TemporaryDirectory() as d:
        w = EventFileWriter(d)
        for i, v in enumerate(loss):
            values = [summary_pb2.Summary.Value(tag="train/loss", simple_value=v),
                      summary_pb2.Summary.Value(tag="learning-rate", simple_value=1e-4 * i)]
            if i % 10 == 0:
                kind = (i // 10) % 3
                t = tensor_pb2.TensorProto(dtype=1 if kind != 1 else 2,
                                           tensor_shape=tensor_shape_pb2.TensorShapeProto())
                if kind == 0:
                    t.float_val.append(v * 0.9)
                elif kind == 1:
                    t.double_val.append(v * 0.9)
                else:
                    t.tensor_content = struct.pack("<f", v * 0.9)
                values.append(summary_pb2.Summary.Value(tag="eval/loss", tensor=t,
                                                        metadata=scalars))
            if i % 25 == 0:
                h = histogram_pb2.HistogramProto(min=0, max=1, num=2, sum=1, sum_squares=1,
                                                 bucket_limit=[0.5, 1.0], bucket=[1, 1])
                values.append(summary_pb2.Summary.Value(tag="weights", histo=h))
            w.add_event(event_pb2.Event(wall_time=1.7e9 + i, step=i,
                                        summary=summary_pb2.Summary(value=values)))
        w.close()
        (path,) = Path(d).glob("events.out.tfevents.*")
        return path.read_bytes()


# ---------------------------------------------------------------------------- .wandb


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(num: int, data: bytes | str) -> bytes:
    data = data.encode() if isinstance(data, str) else data
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _item(path: tuple[str, ...], value_json: str) -> bytes:
    return b"".join(_ld(2, k) for k in path) + _ld(16, value_json)


def _history(step: int, values: dict[str, str], pad: int = 0) -> bytes:
    items = [_item(("_step",), str(step)), _item(("_timestamp",), str(1.7e9 + step))]
    items += [_item(tuple(k.split("/")), v) for k, v in values.items()]
    body = b"".join(_ld(1, it) for it in items) + _ld(2, _varint(1 << 3) + _varint(step))
    return _ld(2, body) + (_ld(19, "p" * pad) if pad else b"")


def wandb_frame(payloads: Iterable[bytes], block: int = 32 * 1024) -> bytes:
    """LevelDB-log framing as wandb writes it: 32 KiB blocks, FULL/FIRST/MIDDLE/LAST."""
    out = bytearray(b":W&B\xe1\xbe\x00")
    for payload in payloads:
        first, rest = True, payload
        while True:
            left = block - len(out) % block
            if left < 7:
                out += b"\0" * left
                continue
            frag, rest = rest[: left - 7], rest[left - 7:]
            kind = (1 if not rest else 2) if first else (4 if not rest else 3)
            crc = zlib.crc32(frag, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", crc, len(frag), kind) + frag
            first = False
            if not rest:
                break
    return bytes(out)


def wandb_bytes(n: int = 120) -> bytes:
    """A run file with config, run, history (NaN, Infinity, nested keys), console output and
    one record spread over three blocks."""
    config = _ld(5, _ld(1, _ld(1, "hidden_size") + _ld(16, '{"value": 64}')))
    run = _ld(17, _ld(1, "fuzz0001") + _ld(3, "losslens-fuzz") + _ld(8, "fuzz-run"))
    payloads = [run, config]
    for i, v in enumerate(_curve(n, spike=n // 2)):
        values = {"train/loss": "NaN" if i == n // 4 else repr(v), "train/lr": "0.0003"}
        if i == n // 3:
            values["grad_norm"] = "Infinity"
        payloads.append(_history(i, values, pad=70000 if i == n // 2 else 0))
        if i % 40 == 0:
            payloads.append(_ld(13, _ld(3, f"step {i} printed\n")))
    payloads.append(_ld(18, _varint(1 << 3) + _varint(0)))
    return wandb_frame(payloads)


# ---------------------------------------------------------------------------- text formats


def _text_seeds() -> list[tuple[str, str, str]]:
    loss = _curve(60, spike=30)
    return [
        ("console.log", "hf-trainer", _hf_console(loss)),
        ("titan.log", "torchtitan", _titan(loss)),
        ("train.log", "llmc", _llmc(loss)),
        ("wandb-history.jsonl", "wandb-history", "".join(
            f'{{"_step": {i}, "_runtime": {i}.5, "_timestamp": {1.7e9 + i}, "train/loss": '
            f'{"NaN" if i == 9 else v}, "lr": 0.0003, "sys": {{"gpu": {i % 3}}}}}\n'
            for i, v in enumerate(loss))),
        ("wandb_export.csv", "wandb-csv", '"Step","run-a - train/loss","run-a - train/loss__MIN",'
         '"run-b - train/loss"\n' + "".join(
             f'"{i}","{v}","{v}","{"" if i % 7 == 0 else v * 1.1}"\n'
             for i, v in enumerate(loss))),
        ("history.csv", "wandb-csv", ",_step,_runtime,_timestamp,loss\n" + "".join(
            f"{i},{i},{i}.5,{1.7e9 + i},{v}\n" for i, v in enumerate(loss))),
        ("metrics.csv", "lightning-csv", "epoch,step,train_loss_step,val_loss\r\n" + "".join(
            f"{i // 20},{i},{v},{v * 1.1 if i % 10 == 9 else ''}\r\n"
            for i, v in enumerate(loss))),
        ("table.csv", "csv", "step,tag,value,run\n" + "".join(
            f"{i},loss,{v},r{i % 2}\n" for i, v in enumerate(loss))),
        ("metrics.jsonl", "jsonl", "".join(
            f'{{"step": {i}, "loss": {"Infinity" if i == 5 else v}, "train": {{"acc": 0.5}}}}\n'
            for i, v in enumerate(loss))),
        ("levanter.log", "levanter", "".join(
            f'2024-05-01T10:00:{i % 60:02d} INFO {{"tracker": "json_logger", "event": "log", '
            f'"step": {i}, "metrics": {{"train/loss": {v}}}}}\n' for i, v in enumerate(loss))),
    ]


def _hf_console(loss: list[float]) -> str:
    lines = ["TrainingArguments(", "logging_steps=10,", "max_steps=600,", "bf16=True,", ")",
             "***** Running training *****", "  Total optimization steps = 600"]
    for i, v in enumerate(loss, 1):
        lines.append(f"\r{100 * i // 60:3d}%|#####     | {10 * i}/600 [00:01<00:02,  1.00it/s]"
                     f"{{'loss': {v}, 'grad_norm': {v / 3}, 'learning_rate': 5e-05, "
                     f"'epoch': {i / 60:.2f}}}")
        if i % 20 == 0:
            lines.append(f"{{'eval_loss': {v * 1.1}, 'eval_runtime': 1.2, 'epoch': {i / 60:.2f}}}")
    return "\n".join(lines) + "\n"


def _titan(loss: list[float]) -> str:
    pre = "[rank0]:[titan] 2025-06-01 12:{m:02d}:{s:02d},000 - root - INFO - "
    lines = [pre.format(m=0, s=0) + "Training starts at step 1."]
    for i, v in enumerate(loss, 1):
        lines.append(pre.format(m=i // 60, s=i % 60) + f"\x1b[31mstep: {i}  \x1b[32mloss: {v}  "
                     f"grad_norm:  1.2  memory: 12.34GiB(25.00%)  tps: 12,345  tflops: 1.5  "
                     f"mfu: 12.34%\x1b[39m")
    return "\n".join(lines) + "\n"


def _llmc(loss: list[float]) -> str:
    lines = ["| Parameter             | Value                |",
             "| total batch size      | 8192                 |"]
    for i, v in enumerate(loss, 1):
        lines.append(f"step {i:4d}/60 | loss {v:.6f} (+0.00z)| norm 1.0000 (+0.00z)| lr 6.00e-04"
                     f" | 4100.00 ms | 32.0% bf16 MFU | 121000 tok/s")
        if i % 20 == 0:
            lines.append(f"val loss {v * 1.1:.6f}")
    return "\n".join(lines) + "\n"


# ============================================================================ mutations

Mutator = Callable[[bytes, random.Random], bytes]
_ODD_NUMBERS = ("nan", "NaN", "-nan", "Infinity", "-Infinity", "inf", "1e999", "-1e999",
                "99999999999999999999999", "-9223372036854775809", "9" * 400, "0x1F", "",
                "1.2.3", "\u22121", "\uff11\uff12", "1e-400", "-0", "+", ".", "1_000")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _pos(data: bytes, rng: random.Random) -> int:
    return rng.randrange(len(data) + 1)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: _pos(data, rng)]


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    buf = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
    return bytes(buf)


def splice_garbage(data: bytes, rng: random.Random) -> bytes:
    junk = "".join(rng.choice("abc|:=,[]{}()'\" \t0123456789.-eE%/\\nanif")
                   for _ in range(rng.randint(1, 80)))
    at = _pos(data, rng)
    return data[:at] + junk.encode() + data[at:]


def splice_binary(data: bytes, rng: random.Random) -> bytes:
    junk = bytes(rng.choice((0, 0xFF, 0x1B, 0x0D, 0x80, 0xC3, 0xFE, rng.randrange(256)))
                 for _ in range(rng.randint(1, 64)))
    at = _pos(data, rng)
    return data[:at] + junk + data[at:]


def duplicate_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    b = min(len(lines), a + rng.randint(1, 20))
    at = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:at] + lines[a:b] + lines[at:])


def reorder_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    window = lines[a:a + rng.randint(2, 30)]
    rng.shuffle(window)
    return b"\n".join(lines[:a] + window + lines[a + len(window):])


def delete_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    a = rng.randrange(len(lines))
    return b"\n".join(lines[:a] + lines[a + rng.randint(1, 10):])


def enormous_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    size = rng.choice((1 << 16, 1 << 18, 1 << 20, 3 << 20))
    base = rng.choice(lines) or b"x"
    big = (base * (size // len(base) + 1))[:size] if rng.random() < 0.5 else (
        rng.choice((b"9", b"x", b"|", b"{", b"[", b"\0", b" ")) * size)
    at = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:at] + [big] + lines[at:])


def empty(data: bytes, rng: random.Random) -> bytes:
    return rng.choice((b"", b"\n", b"\n\n\n", b" ", b"\0", b"\xef\xbb\xbf"))


def mixed_encoding(data: bytes, rng: random.Random) -> bytes:
    text = data.decode("utf-8", "replace")
    choice = rng.randrange(5)
    if choice == 0:  # one stretch re-encoded, with characters outside ASCII
        lines = text.split("\n")
        a = rng.randrange(len(lines))
        enc = rng.choice(("latin-1", "cp1252", "utf-16", "utf-16-le", "utf-32"))
        piece = "\n".join(lines[a:a + rng.randint(1, 5)]) + " é ü ∞"
        mid = piece.encode(enc, "replace")
        return ("\n".join(lines[:a]) + "\n").encode() + mid + (
            "\n" + "\n".join(lines[a + 5:])).encode()
    if choice == 1:
        return b"\xef\xbb\xbf" + data
    if choice == 2:
        return text.encode("utf-16")
    if choice == 3:
        return data.replace(b"\n", rng.choice((b"\r\n", b"\r", b"\n\r")))
    return data.replace(b" ", "\u00a0".encode(), rng.randint(1, 50))


def odd_numbers(data: bytes, rng: random.Random) -> bytes:
    spans = [m.span() for m in _NUMBER.finditer(data[: 1 << 20])]
    if not spans:
        return data
    out = bytearray(data)
    for a, b in sorted(rng.sample(spans, min(len(spans), rng.randint(1, 6))), reverse=True):
        out[a:b] = rng.choice(_ODD_NUMBERS).encode("utf-8")
    return bytes(out)


def json_nan(data: bytes, rng: random.Random) -> bytes:
    word = rng.choice((b"NaN", b"Infinity", b"-Infinity", b"nan", b"1e999", b"null", b'"NaN"',
                       b"true", b"[1, 2]", b'{"a": 1}', b"12345678901234567890123",
                       b"[" * 5000, b'{"a": ' * 990 + b"1" + b"}" * 990))  # deep nesting
    def swap(m: re.Match) -> bytes:
        return m.group(1) + (word if rng.random() < 0.3 else m.group(0)[len(m.group(1)):])

    return re.sub(rb"(:\s*)-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", swap, data[: 4 << 20])


def ragged_csv(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(lines))
        cells = lines[i].split(b",")
        if rng.random() < 0.5 and len(cells) > 1:
            del cells[rng.randrange(len(cells))]
        else:
            cell = rng.choice((b"", b"x", b"1", b'"a,b"', b'"'))
            cells.insert(rng.randrange(len(cells) + 1), cell)
        lines[i] = b",".join(cells)
    return b"\n".join(lines)


def _tf_records(data: bytes) -> list[tuple[int, int]]:
    """(offset, payload length) of the records of an intact TFRecord prefix."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 8], "little")
        if length > len(data):
            break
        out.append((pos, length))
        pos += 16 + length
    return out


def tfrecord_bad_crc(data: bytes, rng: random.Random) -> bytes:
    recs = _tf_records(data)
    if not recs:
        return flip_bytes(data, rng)
    pos, length = rng.choice(recs)
    where = rng.choice((pos + 8 + rng.randrange(4), pos + 12 + length + rng.randrange(4),
                        pos + rng.randrange(8)))
    buf = bytearray(data)
    if where < len(buf):
        buf[where] ^= rng.randint(1, 255)
    return bytes(buf)


def tfrecord_long_length(data: bytes, rng: random.Random) -> bytes:
    """A record whose length (with a valid length CRC) points past the end of the file."""
    from losslens.readers import tfrecord

    recs = _tf_records(data)
    if not recs:
        return data
    pos, length = rng.choice(recs)
    new = rng.choice((len(data) + 1, len(data) * 4, 1 << 31, (1 << 32) - 1, length + 1))
    head = new.to_bytes(8, "little")
    crc = tfrecord.mask(tfrecord.crc32c(head)).to_bytes(4, "little")
    return data[:pos] + head + crc + data[pos + 12:]


def wandb_cut(data: bytes, rng: random.Random) -> bytes:
    """A `.wandb` block cut in half, bytes missing mid-file, or a record cut short."""
    block = 32 * 1024
    choice = rng.randrange(3)
    if choice == 0 and len(data) > block:
        k = rng.randrange(len(data) // block + 1)
        return data[: k * block + block // 2]
    if choice == 1:
        a = rng.randrange(7, max(len(data), 8))
        return data[:a] + data[a + rng.randint(1, 4096):]
    return data[: rng.randrange(7, max(len(data), 8))]


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 4096)))


GENERIC: tuple[Mutator, ...] = (truncate, flip_bytes, splice_garbage, splice_binary,
                                duplicate_lines, reorder_lines, delete_lines, enormous_line,
                                empty, mixed_encoding, odd_numbers, json_nan, ragged_csv,
                                random_bytes)
BY_KIND: dict[str, tuple[Mutator, ...]] = {
    "tensorboard": (tfrecord_bad_crc, tfrecord_long_length, truncate, flip_bytes),
    "wandb": (wandb_cut, flip_bytes, truncate),
}
WRONG_NAMES = ("events.out.tfevents.1700000000.x.0", "run-x.wandb", "trainer_state.json",
               "metrics.csv", "main.log", "wandb-history.jsonl", "loss_log.txt", "noext",
               "wandb_export.csv", "x.tsv", "events.out.tfevents.1.profile-empty")


def mutators_for(kind: str) -> tuple[Mutator, ...]:
    return BY_KIND.get(kind, ()) * 2 + GENERIC


def mutate(seed: Seed, rng: random.Random) -> tuple[str, bytes, list[str]]:
    """(file name, bytes, names of the mutations applied) — 1 to 3 stacked, maybe renamed."""
    data, applied = seed.data, []
    pool = mutators_for(seed.kind)
    for _ in range(rng.choice((1, 1, 2, 3))):
        m = rng.choice(pool)
        data = m(data, rng)
        applied.append(m.__name__)
    name = seed.name
    if rng.random() < 0.08:
        name = rng.choice(WRONG_NAMES)
        applied.append(f"renamed:{name}")
    return name, data, applied


# ============================================================================ running


@dataclass
class Result:
    outcome: str
    detail: str = ""
    seconds: float = 0.0


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _Timeout()


def _failure(exc: BaseException) -> Result:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Result("hang" if isinstance(exc, _Timeout) else "crash", tb)


def run_library(path: Path, analyze: bool = True) -> Result:
    """losslens.read + the JSON document, and with `analyze` analyze_frame and every report;
    LossLensError is a clean refusal when its one-line message names the file."""
    import losslens
    from losslens.errors import LossLensError, LossLensWarning
    from losslens.report.jsondoc import document, dumps

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossLensWarning)
        try:
            frame = losslens.read(path)
            _ = frame.stitched
            dumps(document(frame))
            if analyze:
                from losslens.report import render as render_report
                from losslens.pipeline import analyze_frame

                analysis = analyze_frame(frame)
                for fmt in ("json", "markdown", "html", "text"):
                    render_report(analysis, fmt)
        except LossLensError as exc:
            msg = str(exc)
            ok = "\n" not in msg and (str(path) in msg or path.name in msg)
            return Result("error" if ok else "bad-msg", msg)
    salvaged = any(r.warnings or r.skipped_count for r in frame.runs) or any(
        issubclass(w.category, LossLensWarning) for w in caught)
    return Result("salvaged" if salvaged else "ok")


def _stderr(res) -> str:
    try:
        return res.stderr
    except ValueError:
        return res.output


_STRAY = re.compile(r"^\S*(?:Error|Exception)\b|.*No module named ")


def judge_cli(code: int, stdout: str, stderr: str, path: Path,
              exception: BaseException | None = None) -> Result:
    """Outcome of one CLI run from its exit code and streams."""
    if exception is not None and not isinstance(exception, SystemExit):
        return _failure(exception)
    if "Traceback (most recent call last)" in stderr + stdout or code not in (0, 1, 2):
        return Result("crash", f"exit {code}\n{stderr[-3000:]}")
    lines = stderr.splitlines()
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    if code == 2:
        good = (len(errors) == 1 and lines[-1] == errors[0]
                and (str(path) in errors[0] or path.name in errors[0]))
        return Result("error" if good else "bad-msg", stderr[-2000:])
    if errors:
        return Result("bad-msg", stderr[-2000:])
    # on exit 0/1 stderr carries warnings and notes; an interpreter's complaint (`No module
    # named losslens`, a bare `ValueError: ...`) is not a message the user was meant to get
    if any(_STRAY.match(ln) for ln in lines):
        return Result("bad-msg", stderr[-2000:])
    salvaged = any(ln.startswith("Warning: ") for ln in lines)
    return Result("salvaged" if salvaged else "ok")


def run_cli(runner, command: str, path: Path) -> Result:
    from losslens.cli import app

    res = runner.invoke(app, [command, str(path)])
    return judge_cli(res.exit_code, res.stdout, _stderr(res), path, res.exception)


def run_subprocess(command: str, path: Path, timeout: float = 120) -> Result:
    try:
        proc = subprocess.run([sys.executable, "-m", "losslens", command, str(path)],
                              capture_output=True, text=True, timeout=timeout,
                              errors="replace", cwd=path.parent)
    except subprocess.TimeoutExpired:
        return Result("hang", f"python -m losslens {command} {path}")
    return judge_cli(proc.returncode, proc.stdout, proc.stderr, path)


def guarded(fn: Callable[[], Result], timeout: float) -> Result:
    """fn() with a wall-clock limit (SIGALRM) and every escaping exception caught."""
    start = time.perf_counter()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = fn()
    except BaseException as exc:  # noqa: BLE001  (a crash is what we are counting)
        if isinstance(exc, KeyboardInterrupt):
            raise
        result = _failure(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    result.seconds = time.perf_counter() - start
    return result


def place(folder: Path, name: str, data: bytes, companion: Seed | None) -> Path:
    """Write the input; with a companion, as a folder holding it and an intact log."""
    if companion is None:
        path = folder / name
        path.write_bytes(data)
        return path
    run = folder / "runs"
    (run / "a").mkdir(parents=True)
    (run / "b").mkdir()
    (run / "a" / name).write_bytes(data)
    (run / "b" / companion.name).write_bytes(companion.data)
    return run


# ============================================================================ the campaign


@dataclass(frozen=True)
class Case:
    """One input, fully determined by (campaign seed, index): workers and the parent agree."""

    index: int
    seed: Seed
    name: str
    data: bytes
    applied: tuple[str, ...]
    companion: Seed | None


def make_case(pool: list[Seed], seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    s = rng.choice(pool)
    name, data, applied = mutate(s, rng)
    companion = rng.choice(pool) if rng.random() < 0.1 else None
    if companion is not None:
        applied.append("in-folder")
    return Case(index, s, name, data, tuple(applied), companion)


_W: dict = {}  # per worker process: seeds, CLI runner, scratch folder


def _init(max_bytes: int, scratch: str) -> None:
    from typer.testing import CliRunner

    _W["pool"] = seeds(max_bytes)
    _W["runner"] = CliRunner()
    _W["dir"] = Path(tempfile.mkdtemp(dir=scratch))
    os.chdir(_W["dir"])  # `check` looks for settings upward from here


def run_case(job: tuple[int, int, float, str | None]) -> list[tuple[str, Result]]:
    """Library, one CLI command and maybe a subprocess on input `index`: (channel, result)."""
    index, seed, timeout, sub_command = job
    case = make_case(_W["pool"], seed, index)
    work = Path(tempfile.mkdtemp(dir=_W["dir"]))
    path = place(work, case.name, case.data, case.companion)
    command = COMMANDS[index % len(COMMANDS)]
    out = [("library", guarded(lambda: run_library(path, command == "series"), timeout)),
           (command, guarded(lambda: run_cli(_W["runner"], command, path), timeout))]
    if sub_command:
        out.append(("subprocess", run_subprocess(sub_command, path)))
    for _, r in out:
        r.detail = r.detail.replace(str(work), "<input>")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return out


@dataclass
class Tally:
    """Outcomes per format and channel (library, series, analyze, check, skiplist, subprocess)."""

    counts: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    slowest: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    failures: list[tuple[Case, str, Result]] = field(default_factory=list)
    wall: float = 0.0

    def add(self, case: Case, channel: str, r: Result) -> None:
        kind = case.seed.kind
        self.counts[(kind, channel)][r.outcome] += 1
        if channel != "subprocess":  # interpreter start-up is not losslens' time
            self.seconds[kind] += r.seconds
            self.slowest[kind] = max(self.slowest[kind], r.seconds)
        if r.outcome in FAILURES:
            self.failures.append((case, channel, r))


def campaign(n: int, seed: int = 0, timeout: float = 60.0, subprocesses: int = 40,
             max_bytes: int = 24 << 10, jobs: int = 1,
             log: Callable[[str], None] = print) -> Tally:
    """Run `n` mutated inputs (in `jobs` worker processes) and tally what happened."""
    import multiprocessing as mp

    pool = seeds(max_bytes)
    every = max(1, n // subprocesses) if subprocesses else 0
    work = [(i, seed, timeout, COMMANDS[(i // every) % len(COMMANDS)]
             if every and i % every == 0 else None) for i in range(n)]
    tally, start = Tally(), time.perf_counter()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="losslens-fuzz-") as scratch:
        try:
            if jobs == 1:
                _init(max_bytes, scratch)
                results = map(run_case, work)
            else:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                procs = ctx.Pool(jobs, _init, (max_bytes, scratch), maxtasksperchild=500)
                results = procs.imap(run_case, work, chunksize=4)
            for i, out in enumerate(results):
                case = make_case(pool, seed, i)
                for channel, r in out:
                    tally.add(case, channel, r)
                if (i + 1) % 1000 == 0:
                    log(f"  {i + 1}/{n} inputs, {time.perf_counter() - start:.0f} s")
            if jobs != 1:
                procs.close()
                procs.join()
        finally:
            os.chdir(cwd)
    tally.wall = time.perf_counter() - start
    return tally


def save_failures(tally: Tally, folder: Path) -> None:
    """Each failing input and its traceback, to reproduce with `losslens <command> <file>`."""
    folder.mkdir(parents=True, exist_ok=True)
    for case, channel, r in tally.failures:
        stem = f"{case.index:05d}-{channel}"
        (folder / f"{stem}-{case.name}").write_bytes(case.data)
        (folder / f"{stem}.txt").write_text(
            f"seed {case.seed.name} ({case.seed.kind}); mutations {list(case.applied)}\n\n"
            f"{r.detail}")


# ============================================================================ report

CHANNELS = ("library",) + COMMANDS + ("subprocess",)


def table(tally: Tally) -> str:
    """Inputs tried per format; outcomes ok/salvaged/error/FAIL of the library and CLI runs."""
    kinds = sorted({k for k, _ in tally.counts})
    head = (f"{'format':17}{'inputs':>7}  {'library':>17}  {'cli (4 commands)':>17}  "
            f"{'subprocess':>11}  {'cpu s':>6} {'max s':>6}")
    legend = f"{'':24}  {'ok/salv/err/FAIL':>17}  {'ok/salv/err/FAIL':>17}"
    out = [head, legend, "-" * len(head)]
    totals: dict[str, Counter] = defaultdict(Counter)
    for k in kinds + ["all"]:
        if k == "all":
            out.append("-" * len(head))
            lib, cli, sub = totals["library"], totals["cli"], totals["subprocess"]
            secs, slow = sum(tally.seconds.values()), max(tally.slowest.values(), default=0)
        else:
            lib, sub = tally.counts[(k, "library")], tally.counts[(k, "subprocess")]
            cli = sum((tally.counts[(k, c)] for c in COMMANDS), Counter())
            totals["library"].update(lib), totals["cli"].update(cli)
            totals["subprocess"].update(sub)
            secs, slow = tally.seconds[k], tally.slowest[k]
        out.append(f"{k:17}{sum(lib.values()):>7}  {_cells(lib):>17}  {_cells(cli):>17}  "
                   f"{_cells(sub):>11}  {secs:6.0f} {slow:6.2f}")
    per_cmd = "  ".join(f"{c} {_cells(sum((tally.counts[(k, c)] for k in kinds), Counter()))}"
                        for c in COMMANDS)
    out.append(f"per command: {per_cmd}")
    out.append(f"wall time: {tally.wall:.0f} s")
    return "\n".join(out)


def _cells(c: Counter) -> str:
    fail = sum(c[f] for f in FAILURES)
    return f"{c['ok']}/{c['salvaged']}/{c['error']}/{fail}"


def signature(r: Result) -> str:
    """Where a failure comes from: the innermost losslens frame and the exception line."""
    lines = [ln.strip() for ln in r.detail.strip().splitlines()]
    frames = [ln for ln in lines if ln.startswith("File ") and "/losslens/" in ln]
    last = lines[-1] if lines else r.outcome
    where = frames[-1].split("/losslens/", 1)[1] if frames else ""
    return f"[{r.outcome}] {where} {last}"[:240]


def report_failures(tally: Tally, limit: int = 12) -> list[str]:
    """One example per distinct failure, with how often it was seen."""
    groups: dict[str, list] = {}
    for case, channel, r in tally.failures:
        groups.setdefault(signature(r), []).append((case, channel, r))
    out = []
    for sig, items in list(groups.items())[:limit]:
        case, channel, r = items[0]
        out.append(f"{sig}  (x{len(items)})\n  e.g. input {case.index} ({case.seed.name}, "
                   f"{list(case.applied)}), {channel}\n{r.detail[-2500:]}")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--structured" in argv:  # inputs shaped to hurt, one forked child per case
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import fuzz_structured

        return fuzz_structured.main([a for a in argv if a != "--structured"])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500, help="inputs to try")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per run (a hang)")
    ap.add_argument("--subprocess", type=int, default=40, help="runs checked in a subprocess")
    ap.add_argument("--save", type=Path, default=None, help="folder for failing inputs")
    ap.add_argument("--max-bytes", type=int, default=24 << 10, help="seed size cap (text)")
    args = ap.parse_args(argv)
    print(f"losslens fuzz: {args.n} inputs, seed {args.seed}, {args.jobs} worker(s), "
          f"{len(seeds(args.max_bytes))} seeds", flush=True)
    tally = campaign(args.n, args.seed, args.timeout, args.subprocess, args.max_bytes,
                     args.jobs, log=lambda m: print(m, flush=True))
    print(table(tally))
    for text in report_failures(tally):
        print("\n" + text)
    if args.save and tally.failures:
        save_failures(tally, args.save)
    failed = len(tally.failures)
    print(f"\n{failed} failure(s)" if failed else "\nclean: no crash, hang or bad message")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
