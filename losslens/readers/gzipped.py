"""gzip-compressed logs (`pretrain.log.gz`, `trainer_log.jsonl.gz`): any format, compressed.

A log is told gzipped by its first two bytes (1f 8b), not its name. It is never
decompressed whole in memory: the sniff decompresses only the first bytes every format
sniffs (`head`), and a read streams the file, 1 MiB at a time, into a temporary file that
the format's own reader reads like any log, then removes it (`unpacked`). The records name
the `.gz` file, not the temporary one. The formats see the name without `.gz`
(`log.txt.gz` is sniffed as `log.txt`).

Bounded whatever the input: the decompressed size is capped (`MAX_UNPACKED_BYTES`; a gzip
bomb stops with a one-line error naming the file), and a tar archive (`.tar.gz`) is not a
log. A damaged or cut gzip stream (a job killed while it wrote the file) is read up to the
damage, with a warning saying where it stopped. Members written one after another (`gzip
-c a >> log.gz`) are read in turn, as `zcat` does.
"""
from __future__ import annotations

import shutil
import tempfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import ParseError
from .textutil import file_start

MAGIC = b"\x1f\x8b"
#: The most bytes a compressed log may decompress to (past it: an error, not a full disk).
MAX_UNPACKED_BYTES = 8 << 30
_PIECE = 1 << 20
#: compressed bytes handed to zlib at a time: what a damaged stream loses at its damage
_FEED = 1 << 14


def is_gzip(head: bytes) -> bool:
    return head[:2] == MAGIC


def inner_name(name: str) -> str:
    """The name the formats see: `pretrain.log.gz` -> `pretrain.log`."""
    for suffix in (".gz", ".gzip"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@dataclass
class _Stream:
    """Decompressed pieces of a gzip file (every member in turn); `damage` says where and
    why it stopped early, None when the stream ended cleanly."""

    path: Path
    damage: str | None = None
    produced: int = 0

    def pieces(self, limit: int) -> Iterator[bytes]:
        d = zlib.decompressobj(31)
        try:
            fh = open(self.path, "rb")
        except OSError as exc:
            raise ParseError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        with fh:
            data = b""
            while True:
                if not data:
                    data = fh.read(_FEED)
                    if not data:
                        break
                try:
                    out = d.decompress(data, _PIECE)
                except zlib.error as exc:
                    self.damage = (f"damaged gzip data after {self.produced:,} decompressed "
                                   f"bytes ({exc})")
                    return
                data = d.unconsumed_tail
                if out:
                    self.produced += len(out)
                    yield out
                    if self.produced >= limit:
                        return
                if d.eof:
                    rest = d.unused_data.lstrip(b"\0")  # (padding after the last member)
                    if not rest and not data:
                        rest = fh.read(_FEED).lstrip(b"\0")
                        if not rest:
                            return
                    d, data = zlib.decompressobj(31), rest + data
            if not d.eof:
                self.damage = (f"the gzip stream ends early after {self.produced:,} "
                               "decompressed bytes (a cut file?)")


def head(path: Path, size: int) -> bytes:
    """The first `size` decompressed bytes (fewer when the file holds fewer, or is damaged
    there); b"" for a tar archive."""
    parts, got = [], 0
    for piece in _Stream(path).pieces(size):
        parts.append(piece)
        got += len(piece)
        if got >= size:
            break
    data = b"".join(parts)[:size]
    return b"" if data[257:262] == b"ustar" else data


@contextmanager
def unpacked(path: Path, limit: int | None = None) -> Iterator[tuple[Path, str | None]]:
    """(a temporary file holding the decompressed log, why it stopped early or None); the
    file goes when the block ends."""
    limit = MAX_UNPACKED_BYTES if limit is None else limit
    folder = Path(tempfile.mkdtemp(prefix="losslens-gz-"))
    try:
        out = folder / (inner_name(path.name) or "log")
        stream = _Stream(path)
        with open(out, "wb") as fh:
            for piece in stream.pieces(limit + 1):
                fh.write(piece)
        if stream.produced > limit:
            raise ParseError(f"{path}: decompresses to more than {limit:,} bytes; "
                             "decompress it yourself if it really is a log")
        yield out, stream.damage
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def damage_warnings(path: Path, damage: str | None) -> tuple[str, ...]:
    """The warning a damaged stream's records carry (none for a clean one)."""
    return (f"{path}: {damage}: read up to there",) if damage else ()


def is_gzip_file(path: Path) -> bool:
    """Whether the regular file at `path` starts like a gzip stream (False when it cannot be
    read, and for a named pipe or device, which opening could block on)."""
    return is_gzip(file_start(path, 2))
