"""Logs that start with NUL bytes: a log truncated while its writer kept its file offset.

`> train.log` (or logrotate's `copytruncate`) on a log that a process still writes with a plain
(not append-mode) file handle empties the file, and the writer's next line lands at its old
offset: the file is a hole of NUL bytes, then text. `file` calls it "data" and no format's
sniff sees a log in it. Here the NUL prefix is skipped whatever the format: the sniff looks at
the bytes after it, and a read copies the rest into a temporary file the format's own reader
reads (1 MiB at a time), then removes it; the records name the original file, with a warning
saying how many bytes were skipped. A file of NUL bytes only is an empty log.

Only a prefix of at least `MIN_PREFIX` bytes: a file that starts with text keeps its bytes as they are. Binary formats that can
start with a NUL byte are told by their names (TensorBoard event files) and never come here.
Scanning the prefix reads it once, 1 MiB at a time (bounded memory, linear time).
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import ParseError
from .textutil import file_start

_PIECE = 1 << 20
#: The shortest prefix skipped: a truncated log's hole is at least a line long, and a binary
#: record (a TFRecord's length) can start with a few NUL bytes.
MIN_PREFIX = 16


def starts_with_nul(head: bytes) -> bool:
    """Whether `head` (at least MIN_PREFIX bytes of a file, or all of it) starts with a NUL
    prefix."""
    return bool(head) and not head[:MIN_PREFIX].strip(b"\0")


def prefix_length(path: Path) -> int:
    """How many NUL bytes the file starts with (its size when it holds nothing else)."""
    n = 0
    try:
        with open(path, "rb") as fh:
            while True:
                piece = fh.read(_PIECE)
                if not piece:
                    return n
                rest = len(piece.lstrip(b"\0"))
                n += len(piece) - rest
                if rest:
                    return n
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None


def head_after(path: Path, skip: int, size: int) -> bytes:
    """`size` bytes from byte `skip` on."""
    try:
        with open(path, "rb") as fh:
            fh.seek(skip)
            return fh.read(size)
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None


def is_nul_prefixed(path: Path) -> bool:
    """Whether the regular file at `path` starts with a NUL prefix (False when it cannot be
    read, and for a named pipe or device, which opening could block on)."""
    return starts_with_nul(file_start(path, MIN_PREFIX))


def warning(path: Path, skip: int) -> str:
    return (f"{path}: starts with {skip:,} NUL bytes (a log emptied while its writer kept "
            f"writing at its old offset, e.g. `> log` or logrotate's copytruncate): read from "
            f"byte {skip:,} on")


@contextmanager
def stripped(path: Path) -> Iterator[tuple[Path, int]]:
    """(a temporary file holding the log after its NUL prefix, the prefix's length); the file
    goes when the block ends."""
    skip = prefix_length(path)
    folder = Path(tempfile.mkdtemp(prefix="losslens-nul-"))
    try:
        out = folder / path.name
        try:
            with open(path, "rb") as src, open(out, "wb") as dst:
                src.seek(skip)
                shutil.copyfileobj(src, dst, _PIECE)
        except OSError as exc:
            raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
        yield out, skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
