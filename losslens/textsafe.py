"""Output safety: text from logs made safe for each output, and report files written safely.

Tag names, run names, file names and metadata come from logs that anyone can write, so they
are data, never instructions to whatever shows them. One function per output:

- `terminal(s)` / `line(s)`: control characters (ESC sequences such as OSC 52 clipboard
  writes or `ESC[2J`, C1 controls, DEL, bidi overrides, lone surrogates) shown as visible
  escapes; `line` also folds newlines, so a name cannot start a line of its own (a CI log
  reads `::error::` at a line start as a GitHub workflow command);
- `github_message(s)` / `github_property(s)`: the escaping GitHub's workflow commands define;
- `markdown(s)` / `markdown_cell(s)` / `markdown_code(s)`: Markdown specials and HTML inert;
- `html(s)`: entities, quotes included;
- `csv_cell(s)`: spreadsheet formula injection defused (`=HYPERLINK(...)` → `'=HYPERLINK(...)`).

`write_file(path, text, inputs=...)` writes a report atomically (temp file + fsync + rename)
while honouring the umask, keeping an existing file's mode, writing through a symlink to its
target, refusing to overwrite an input log, and writing devices (`/dev/stdout`, a FIFO) in
place instead of replacing them. Every failure is an `OutputError` (one line, exit 2).
"""
from __future__ import annotations

import html as _html
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import OutputError

__all__ = ["valid_unicode", "terminal", "line", "github_message", "github_property", "markdown",
           "markdown_cell", "markdown_code", "html", "csv_cell", "write_file", "umask"]

# C0 controls but tab/newline, DEL, C1 controls, bidi marks (LRM, RLM and the Arabic letter
# mark U+061C) and embeddings/overrides/isolates, the line/paragraph separators, and lone
# surrogates (which no UTF-8 encoder accepts)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028"
                     "\u2029\u2066-\u2069\ud800-\udfff]")
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029"
                          "\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\x1b": "\\e"}


def _visible(m: re.Match) -> str:
    ch = m.group()
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_unicode(value: str) -> str:
    """`value` with lone surrogates (a JSON `"\\ud800"` escape, `surrogateescape`d bytes) as
    visible `\\ud800` escapes: the text can then be encoded, printed and stored anywhere."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def terminal(value: object) -> str:
    """Text for a terminal (or any plain-text log): controls shown as `\\e`, `\\x07`, ...;
    tabs and newlines kept."""
    s = str(value)
    return _UNSAFE.sub(_visible, s) if _UNSAFE.search(s) else s


def line(value: object) -> str:
    """One line of plain text: like `terminal`, and newlines / tabs shown as `\\n` / `\\t`."""
    s = str(value)
    return _UNSAFE_LINE.sub(_visible, s) if _UNSAFE_LINE.search(s) else s


def github_message(value: object) -> str:
    """The message of a GitHub workflow command (`::error file=..::MESSAGE`): `%`, CR and LF
    escaped as GitHub defines; other controls made visible."""
    s = _UNSAFE.sub(_visible, str(value))
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def github_property(value: object) -> str:
    """A property value of a GitHub workflow command (`file=`, `title=`): also `:` and `,`."""
    return github_message(value).replace(":", "%3A").replace(",", "%2C")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|~>-])")


def markdown(value: object) -> str:
    """Inline Markdown text: HTML inert (entities), Markdown specials backslash-escaped,
    newlines folded, controls visible. Safe in headings, list items and table cells."""
    s = line(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", s)


def markdown_cell(value: object) -> str:
    """A Markdown table cell (the same as `markdown`; pipes are among the escaped)."""
    return "" if value is None else markdown(value)


def markdown_code(value: object) -> str:
    """An inline code span holding any text: the fence is longer than any backtick run in it."""
    s = line(value)
    run = max((len(m) for m in re.findall("`+", s)), default=0)
    fence = "`" * (run + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def html(value: object) -> str:
    """HTML text or attribute value: entities (quotes included), controls visible."""
    return _html.escape(terminal(value), quote=True)


_FORMULA = ("=", "+", "-", "@", "\t", "\r", "\n", "|", "%")


def csv_cell(value: object) -> str:
    """A text cell of a CSV file that a spreadsheet may open: a leading `=`, `+`, `-`, `@`,
    tab, CR, `|` or `%` (a formula to Excel, LibreOffice or Sheets) gets a `'` in front
    (OWASP's advice); controls visible. Numbers are never passed here."""
    s = str(value)
    if s.startswith(_FORMULA):
        s = "'" + s
    return line(s) if _UNSAFE_LINE.search(s) else s


# --------------------------------------------------------------------------- files

def umask() -> int:
    """The process umask (read from /proc where possible: no process-wide change)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for row in fh:
                if row.startswith("Umask:"):
                    return int(row.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _input_stats(inputs: Iterable[str | os.PathLike]) -> list[os.stat_result]:
    out = []
    for p in inputs:
        try:
            st = os.stat(p)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(st)
    return out


def write_file(path: str | os.PathLike, text: str | bytes,
               inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Write `text` to `path` so that nobody sees half a file and nothing is lost by mistake.

    - a regular file (or a new one) is replaced atomically: a temp file in the same folder,
      fsync, then `os.replace`; the new file keeps the old one's mode (and owner, where
      allowed), a new file gets `0o666 & ~umask` like any other program's output;
    - a symlink is written through: its target is replaced, the link stays;
    - a device, a FIFO or a socket (`/dev/stdout`, `/dev/null`, a named pipe) is written in
      place, never replaced, whoever runs it;
    - a path that is one of `inputs` (the logs being read) is refused: a report never
      overwrites its own input.
    """
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    target = Path(path)
    shown = str(path)
    try:
        st = os.stat(target)  # (through links: what a write would reach)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as exc:
        raise OutputError(f"{shown}: cannot write ({getattr(exc, 'strerror', None) or exc})") \
            from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{shown}: is a folder; name a file to write")
    if st is not None and any(_same_file(st, s) for s in _input_stats(inputs)):
        raise OutputError(f"{shown}: is one of the inputs being read; refusing to overwrite it")
    if st is not None and not stat.S_ISREG(st.st_mode):
        # /dev/stdout (a link to /proc/self/fd/1, a pipe or a terminal), /dev/null, a FIFO:
        # opened by the name given, never resolved and never replaced
        _write_in_place(target, data, shown)
        return
    try:
        real = Path(os.path.realpath(target))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{shown}: cannot write ({exc})") from None
    folder = real.parent
    if not folder.is_dir():
        raise OutputError(f"{shown}: folder {folder} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write ({exc.strerror or exc})") from None
    try:
        mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~umask()
        os.fchmod(fd, mode)
        if st is not None and (st.st_uid, st.st_gid) != (os.getuid(), os.getgid()):
            try:
                os.fchown(fd, st.st_uid, st.st_gid)
            except OSError:
                pass  # not allowed (not root): the file becomes ours, as with any editor
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())  # the bytes are on disk before the name points at them
        os.replace(tmp, real)
    except BaseException as exc:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):  # disk full, permissions: one line, no traceback
            raise OutputError(f"{shown}: cannot write ({exc.strerror or exc}); "
                              "the old file is kept") from None
        raise


def _write_in_place(real: Path, data: bytes, shown: str) -> None:
    try:
        with open(real, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise OutputError(f"{shown}: cannot write ({exc.strerror or exc})") from None
