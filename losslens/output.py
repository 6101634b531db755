"""Writing a report to a file: atomically, so that a reader (or a crash) never sees half of it.

Library code (the CLI's `-o/--output FILE` and `check --junit-file` come here): a missing
folder or a full disk is an `OutputError` naming the file, and the old file is kept.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically: a temp file in the same folder, then os.replace."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{target}: cannot write (folder {folder} does not exist)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, target)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, permissions: one line, no traceback
            raise OutputError(f"{target}: cannot write ({exc.strerror or exc})") from None
        raise
