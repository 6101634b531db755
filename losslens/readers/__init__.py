"""Readers: one module per log format, an explicit registry, sniffing, and the folder walk.

Every reader module exposes two functions:

- `sniff(name: str, head: bytes) -> float`: how sure it is (0 = not this format, 1 = certain)
  that a file called `name` whose first bytes are `head` is its format;
- `read(path: Path, run: str) -> list[RunRecords]`: the runs in that file (most files hold one;
  a W&B CSV export holds several). `run` is the name the walk gives the file.

`read_records(path, format=None)` sniffs (or takes `format`), walks folders, and returns the
records; `losslens.read` builds the Frame from them. Modules are imported only when needed.

One bad unit never sinks a folder: `read_unit` reads one unit of a walk in isolation, and
whatever goes wrong there (a damaged file, a folder that cannot be listed, a bug, memory, a
time-out) becomes a run with `error` set, which every report shows as a failed run. A path
the user named directly still fails the command with its one-line error.
"""
from __future__ import annotations

import importlib
import os
import re
import stat
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import (LogNotFoundError, LossLensError, LossLensWarning, NoSeriesError,
                      ParseError, UnknownFormatError)
from ..records import RunRecords, read_as

#: Files a folder walk never sniffs: code, weights and checkpoints (which can be large).
_NOT_LOGS = (".py", ".pyc", ".so", ".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npy",
             ".npz", ".distcp", ".pkl")

_HF_CKPT = re.compile(r"^checkpoint-\d+$")

#: Bytes read from the start of a file for sniffing.
HEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class Unreadable:
    """A unit of a walk that cannot be read at all (permissions, a vanished file): why."""

    reason: str


@dataclass(frozen=True)
class Format:
    """A registered log format: its name, the module that reads it, one line about it."""

    name: str
    module: str
    description: str

    def load(self):
        return importlib.import_module(self.module)


_F = Format
#: The registry. Order matters only to break sniffing ties (earlier wins).
FORMATS: dict[str, Format] = {f.name: f for f in (
    _F("tensorboard", "losslens.readers.tensorboard",
       "TensorBoard event files (events.out.tfevents.*), simple_value and tensor scalars"),
    _F("wandb", "losslens.readers.wandb", "W&B offline run file run-*.wandb (wandb-core and legacy)"),
    _F("wandb-history", "losslens.readers.wandb", "W&B wandb-history.jsonl"),
    _F("wandb-csv", "losslens.readers.wandb_csv", "W&B UI CSV export (runs side by side)"),
    _F("hf-trainer-state", "losslens.readers.hf", "HF Trainer trainer_state.json"),
    _F("hf-trainer", "losslens.readers.hf", "HF Trainer console output (4.x dicts, 5.x strings)"),
    _F("megatron", "losslens.readers.megatron",
       "Megatron-LM and Megatron-DeepSpeed (BigScience, Microsoft) stdout"),
    _F("deepspeed", "losslens.readers.deepspeed", "DeepSpeed engine step/OVERFLOW lines"),
    _F("nanogpt", "losslens.readers.nanogpt", "nanoGPT train.py stdout"),
    _F("modded-nanogpt", "losslens.readers.modded_nanogpt",
       "modded-nanogpt record logs and stdout (step:N/M train_loss:X ...)"),
    _F("llmc", "losslens.readers.llmc", "llm.c console output"),
    _F("llmc-mainlog", "losslens.readers.llmc", "llm.c main.log (s:N trl:/tel:)"),
    _F("build-nanogpt", "losslens.readers.build_nanogpt",
       "Karpathy's build-nanogpt train_gpt2.py stdout (step N | loss: X | lr ... | norm: ...)"),
    _F("build-nanogpt-log", "losslens.readers.build_nanogpt",
       "Karpathy's build-nanogpt log/log.txt (N train X, N val X, N hella X)"),
    _F("torchtitan", "losslens.readers.torchtitan", "torchtitan console (ANSI colours)"),
    _F("olmo", "losslens.readers.olmo", "OLMo (v1) console"),
    _F("olmo-core", "losslens.readers.olmo", "OLMo-core console"),
    _F("fairseq", "losslens.readers.fairseq", "fairseq / metaseq logs (json and simple)"),
    _F("fairseq2", "losslens.readers.fairseq2", "fairseq2 `Train Metrics (step N) - ...` lines"),
    _F("fairseq2-jsonl", "losslens.readers.fairseq2",
       "fairseq2 JsonlMetricRecorder files (metrics/train.jsonl: Time, Step, display names)"),
    _F("maxtext", "losslens.readers.maxtext", "MaxText stdout (completed step: N, ... loss: X)"),
    _F("t5x", "losslens.readers.t5x",
       "t5x stdout: CLU LoggingWriter lines ([N] collection=train loss=X, ...)"),
    _F("levanter", "losslens.readers.levanter",
       "Levanter json_logger tracker records, else its progress-bar lines"),
    _F("torchtune", "losslens.readers.torchtune",
       "torchtune DiskLogger log_*.txt and StdoutLogger `Step N | name:value` lines, and the "
       "recipes' `epoch|step|Loss: x` progress bar"),
    _F("composer", "losslens.readers.composer",
       "MosaicML Composer / llm-foundry ConsoleLogger and FileLogger"),
    _F("pix2pix", "losslens.readers.pix2pix", "pytorch-CycleGAN-and-pix2pix loss_log.txt"),
    _F("epoch-pipes", "losslens.readers.epoch_pipes",
       "PyTorch examples' `| epoch N | i/M batches | lr x | ... | loss x | ppl x` lines "
       "(word_language_model and scripts copied from it)"),
    _F("step-pipes", "losslens.readers.step_pipes",
       "training scripts' own `step N | name value | ...` lines (a Qwen3-from-scratch script's)"),
    _F("epoch-lines", "losslens.readers.epochs",
       "training scripts' own epoch lines (Epoch [1/50], Train Loss: x, Val Loss: y), step lines "
       "(Step 100, Loss: x; Step 650 | Loss: x; [step 25] avg_loss=x), loss sentences "
       "(grpo_loss is x and kl is y) and Keras fit"),
    _F("history-json", "losslens.readers.history",
       "column-oriented JSON histories: Keras `json.dump(history.history)`, a script's "
       "training_history.json ({\"epoch\": [...], \"loss\": [...], ...})"),
    _F("lightning-csv", "losslens.readers.table", "PyTorch Lightning CSVLogger metrics.csv"),
    _F("csv", "losslens.readers.table", "generic CSV (long or wide, any step column)"),
    _F("jsonl", "losslens.readers.jsonl", "generic JSON lines (one record per step)"),
)}

#: Module functions are looked up by format name: a module serving several formats
#: exposes `sniff_<name>` / `read_<name>` (dashes as underscores) or plain `sniff` / `read`.


def _fn(fmt: Format, kind: str) -> Callable:
    mod = fmt.load()
    specific = f"{kind}_{fmt.name.replace('-', '_')}"
    return getattr(mod, specific, None) or getattr(mod, kind)


def known_formats() -> str:
    return ", ".join(FORMATS)


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise UnknownFormatError(
            f"unknown format {name!r}; known formats: {known_formats()}") from None


def sniff(path: Path) -> Format | None:
    """The format a file most likely has, or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:  # permissions, a dangling link: one line, no traceback
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    name = path.name
    if head[:2] == b"\x1f\x8b":  # gzip: the formats sniff its first decompressed bytes
        from . import gzipped

        name, head = gzipped.inner_name(name), gzipped.head(path, HEAD_BYTES)
        if not head:
            return None
    elif head[:1] == b"\0" and not _event_file_name(name):
        from . import nulprefix  # a log emptied while its writer kept its offset

        if not nulprefix.starts_with_nul(head):
            return _best(name, head)
        lead = len(head) - len(head.lstrip(b"\0"))
        skip = lead if lead < len(head) else nulprefix.prefix_length(path)
        head = nulprefix.head_after(path, skip, HEAD_BYTES)
        if not head:
            return None
    return _best(name, head)


def _best(name: str, head: bytes) -> Format | None:
    best, best_score = None, 0.0
    for fmt in FORMATS.values():
        try:
            score = float(_fn(fmt, "sniff")(name, head))
        except ImportError:
            continue
        if score > best_score:
            best, best_score = fmt, score
    return best


def read_file(path: Path, run: str, format: str | None = None) -> list[RunRecords]:
    """Read one file (sniffed unless `format` is given)."""
    fmt = get_format(format) if format else sniff(path)
    if fmt is None:
        _raise_if_empty(path)
        _raise_if_wide_text(path)
        raise UnknownFormatError(
            f"{path}: not a log format losslens knows (tried: {known_formats()}); "
            "name one with --input-format")
    return _read_unit(fmt, path, run)


def _read_unit(fmt: Format, path: Path, run: str) -> list[RunRecords]:
    """A unit's runs, their checkpoints completed from the folders beside it (a gzipped log
    read through a temporary file: `gzipped`)."""
    from . import gzipped
    from .checkpoints import discover

    if fmt.name not in _BINARY:  # a text format on UTF-16 text finds nothing: say why
        _raise_if_wide_text(path)
    if gzipped.is_gzip_file(path):
        with gzipped.unpacked(path) as (tmp, damage):
            records = [read_as(r, str(tmp), str(path),
                               trailing=gzipped.damage_warnings(path, damage))
                       for r in _fn(fmt, "read")(tmp, run)]
        return [discover(r, path) for r in records]
    if fmt.name != "tensorboard" and not _event_file_name(path.name):
        from . import nulprefix

        if nulprefix.is_nul_prefixed(path):
            with nulprefix.stripped(path) as (tmp, skip):
                records = [read_as(r, str(tmp), str(path),
                                   leading=(nulprefix.warning(path, skip),))
                           for r in _fn(fmt, "read")(tmp, run)]
            return [discover(r, path) for r in records]
    return [discover(r, path) for r in _fn(fmt, "read")(path, run)]


#: formats whose files are binary records, not text (a byte-order mark means nothing there)
_BINARY = ("tensorboard", "wandb")

_SPECIAL = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
            (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _raise_if_special(path: Path) -> None:
    """A path that is neither a file nor a folder (a FIFO, `/dev/zero`, a socket, a
    process substitution `<(...)`) says what it is: reading it could block or never end."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ParseError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for test, what in _SPECIAL:
        if test(mode):
            raise ParseError(f"{path}: {what}, not a log file or folder; save the stream to a "
                             "file first (`losslens watch` follows a growing file)")


#: byte-order marks of the text encodings a log may come in that losslens does not read
#: (PowerShell 5's `>` writes UTF-16LE), longest first
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
         (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))


def wide_text(path: Path) -> str | None:
    """Why a file that no reader recognised cannot be read, when it is UTF-16 or UTF-32
    text (a byte-order mark at its start): the message, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    for bom, name in _BOMS:
        if head.startswith(bom):
            return (f"{name} text (byte-order mark {bom.hex(' ').upper()}); losslens reads "
                    f"UTF-8 logs: convert it first, e.g. iconv -f {name} -t UTF-8")
    return None


def _raise_if_wide_text(path: Path) -> None:
    why = wide_text(path)
    if why:
        raise UnknownFormatError(f"{path}: {why}")


def _event_file_name(name: str) -> bool:
    from .tensorboard import is_event_file_name

    return is_event_file_name(name)


def _raise_if_empty(path: Path) -> None:
    """An empty log (a job that crashed before it logged) says so, not "unknown format"."""
    from .nulprefix import is_nul_prefixed, prefix_length

    try:
        size = path.stat().st_size
        if size and is_nul_prefixed(path) and prefix_length(path) == size:
            raise NoSeriesError(f"{path}: holds only NUL bytes ({size:,}): nothing was logged "
                                "after the log was emptied (or a crash left a hole)")
        blank = size == 0 or (size <= HEAD_BYTES and not path.read_bytes().strip())
    except OSError:
        return
    if blank:
        raise NoSeriesError(f"{path}: file is empty ({size} bytes"
                            + ("" if size == 0 else ", only whitespace")
                            + "): nothing was logged; did the job crash before its first "
                            "log line?")


def _walk(root: Path, format: str | None = None, lazy: bool = False,
          passed: list[str] | None = None) -> list[tuple[Path, str, "Format | Unreadable | None"]]:
    """The readable units under a folder: TensorBoard dirs, W&B run files, log files.

    With `format`, every file is read as that format (TensorBoard: only event files are).
    With `lazy`, files are not sniffed here (the slow part of a walk: ~60 ms a file): their
    format is None and the caller sniffs them (None or tensorboard: not a unit). Entries
    passed over that could have been logs (a dangling link, a FIFO: opening it would block)
    are said in `passed`, one message each (the caller warns).
    """
    said = passed if passed is not None else []
    forced = get_format(format) if format else None
    from . import tensorboard as tb

    units: list[tuple[Path, str, Format | Unreadable | None]] = []

    def unlistable(exc: OSError) -> None:  # a subfolder that cannot be listed is a failed unit
        where = Path(exc.filename) if exc.filename else root
        rel = str(where.relative_to(root)) if where != root else root.name
        units.append((where, rel, Unreadable(f"cannot list folder ({exc.strerror or exc})")))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable):
        dirnames.sort()
        if any(f.endswith(".wandb") for f in filenames):
            # a W&B run dir: files/ (console copy, summary, config) and logs/ repeat the run
            dirnames[:] = [d for d in dirnames if d not in ("files", "logs", "tmp")]
        ckpts = [d for d in dirnames if _HF_CKPT.match(d)]
        if len(ckpts) > 1:
            # HF output dir: each checkpoint-N/trainer_state.json is a prefix of the newest
            newest = max(ckpts, key=lambda d: int(d.rsplit("-", 1)[1]))
            dirnames[:] = [d for d in dirnames if d not in ckpts or d == newest]
        here = Path(dirpath)
        rel = here.relative_to(root)
        events = [f for f in sorted(filenames) if tb.is_event_file_name(f)]
        if events and forced in (None, FORMATS["tensorboard"]):
            units.append((here, str(rel) if str(rel) != "." else root.name, FORMATS["tensorboard"]))
        for name in sorted(filenames):
            if name in events or name.startswith(".") or name.endswith(_NOT_LOGS):
                continue
            p = here / name
            if forced is not None and forced.name == "tensorboard":
                continue
            try:
                st = p.stat()
            except FileNotFoundError:  # a dangling link, or gone since the listing
                if p.is_symlink():
                    said.append(f"{p}: a link to {os.readlink(p)}, which does not exist: "
                                "passed over")
                continue
            except OSError as exc:  # a folder without search permission: say so
                units.append((p, str(p.relative_to(root)),
                              Unreadable(f"cannot read ({exc.strerror or exc})")))
                continue
            if not stat.S_ISREG(st.st_mode):  # a FIFO (opening it would block), a socket
                said.append(f"{p}: not a regular file (a named pipe, a socket or a device): "
                            "passed over")
                continue
            if lazy and forced is None:
                units.append((p, str(p.relative_to(root)), None))
                continue
            try:
                fmt = forced or sniff(p)
            except LossLensError as exc:  # an unreadable file is a failed unit, not silence
                units.append((p, str(p.relative_to(root)), Unreadable(
                    str(exc).removeprefix(f"{p}: "))))
                continue
            if fmt is None and wide_text(p):  # a log in UTF-16: a failed unit, not silence
                units.append((p, str(p.relative_to(root)), Unreadable(wide_text(p) or "")))
                continue
            if fmt is None or fmt.name == "tensorboard":
                continue
            units.append((p, str(p.relative_to(root)), fmt))
    return units


def walk_units(root: Path, format: str | None = None, passed: list[str] | None = None
               ) -> list[tuple[Path, str, Format | None]]:
    """The units `read_records` reads under a folder, (path, run name, format), without
    sniffing the files (their format is None unless `format` forces one; TensorBoard folders
    come with theirs): what a follower of the folder follows. `passed`: as `_walk`'s."""
    return _walk(root, format, lazy=True, passed=passed)


def _merge_resumed(records: list[RunRecords]) -> list[RunRecords]:
    """A resumed W&B run writes a new run dir with the same run id: stitch them into one run
    (in walk order, which is the dirs' timestamp order), as W&B itself cannot plot it."""
    from ..records import concat_records

    groups: dict[str, list[RunRecords]] = {}
    for r in records:
        rid = r.metadata.extra.get("wandb.run_id") if r.format == "wandb" else None
        if rid:
            groups.setdefault(rid, []).append(r)
    out, done = [], set()
    for r in records:
        rid = r.metadata.extra.get("wandb.run_id") if r.format == "wandb" else None
        if not rid or len(groups[rid]) == 1:
            out.append(r)
        elif rid not in done:
            done.add(rid)
            out.append(concat_records(groups[rid]))
    return out


def read_unit(unit: Path, run: str, fmt: "Format | Unreadable | None",
              format: str | None = None, timeout: float | None = None) -> list[RunRecords]:
    """One unit of a folder walk, isolated: its records, or one record with `error` set.

    `fmt` is the walk's verdict (None: sniff here; then a file that is no log, or an event
    file, gives no records). Every exception but Ctrl-C is caught; `timeout` seconds bound it.
    Warnings of a unit that yields no points are re-raised here, never lost.
    """
    from ..limits import UNIT_TIMEOUT, deadline

    if isinstance(fmt, Unreadable):
        return [_failed(unit, run, f"{unit}: {fmt.reason}")]
    try:
        with deadline(UNIT_TIMEOUT if timeout is None else timeout, str(unit)):
            if fmt is None:
                fmt = get_format(format) if format else sniff(unit)
                if fmt is None and wide_text(unit):  # a log in UTF-16: say so (the walk's rule)
                    return [_failed(unit, run, f"{unit}: {wide_text(unit)}")]
                if fmt is None or (format is None and fmt.name == "tensorboard"):
                    return []  # not a log (the walk's rule): event files are read by folder
            records = _read_unit(fmt, unit, run)
    except MemoryError:
        return [_failed(unit, run, f"{unit}: out of memory while reading it")]
    except LossLensError as exc:
        return [_failed(unit, run, str(exc) if str(unit) in str(exc) else f"{unit}: {exc}")]
    except RecursionError:
        return [_failed(unit, run, f"{unit}: nested too deeply to read")]
    except Exception as exc:  # noqa: BLE001 - a reader bug costs this unit, not the folder
        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        return [_failed(unit, run, f"{unit}: could not be read (internal error: "
                                   f"{type(exc).__name__}{': ' + text if text else ''})")]
    if records and not any(len(r) for r in records):  # a log with nothing readable in it
        first = next((r for r in records if r.skipped or r.warnings), records[0])
        why = (f"line {first.skipped[0].line}: {first.skipped[0].reason}" if first.skipped
               else first.warnings[0].removeprefix(f"{unit}: ") if first.warnings
               else "no points")
        return [replace(_failed(unit, run, f"{unit}: no metric series could be read ({why})"),
                        format=fmt.name, warnings=first.warnings)]
    return records


def _combine_layouts(records: list[RunRecords]) -> list[RunRecords]:
    """`layouts.combine` over the runs read, each failed unit kept where it was (the runs
    between two failures are combined among themselves)."""
    from .layouts import combine

    out: list[RunRecords] = []
    chunk: list[RunRecords] = []
    for r in records:
        if r.error:
            out += combine(chunk) + [r]
            chunk = []
        else:
            chunk.append(r)
    return out + combine(chunk)


def _failed(unit: Path, run: str, message: str) -> RunRecords:
    empty = np.empty(0, np.int64)
    return RunRecords(run=run, source=str(unit), format="unknown", tags=(),
                      tag_code=np.empty(0, np.int8), step=empty, value=np.empty(0),
                      wall_time=np.empty(0), order=empty, error=message)


def read_records(path: str | os.PathLike, format: str | None = None,
                 progress: Callable[[str, int, int], None] | None = None,
                 unit_timeout: float | None = None) -> list[RunRecords]:
    """All runs under `path` (a file, a folder, or a `wandb://entity/project/run` address).

    `progress(name, done, total)` is called before each unit is read (the CLI shows it on a
    terminal). In a folder every unit is read by `read_unit` (isolated, `unit_timeout`
    seconds at most): a unit that fails is a run with `error` set.
    """
    text = str(path)
    if text.startswith("wandb://"):
        from . import wandb as wb
        return list(wb.read_api(text))
    p = Path(path)
    if not p.exists():
        raise LogNotFoundError(f"{p}: no such file or directory")
    _raise_if_special(p)
    if p.is_file():
        if progress:
            progress(str(p), 0, 1)
        records = read_file(p, p.name, format)
        for r in records:
            if not len(r):
                for w in r.warnings:  # a damaged file with nothing readable: say what
                    warnings.warn(w, LossLensWarning, stacklevel=2)
    else:
        records = []
        passed: list[str] = []
        units = _walk(p, format, passed=passed)
        for message in passed:
            warnings.warn(message, LossLensWarning, stacklevel=2)
        for done, (unit, run, fmt) in enumerate(units):
            if progress:
                progress(str(unit), done, len(units))
            records.extend(read_unit(unit, run, fmt, format, unit_timeout))
    records = [r for r in records if len(r) or r.error]
    if not p.is_file():
        records = _combine_layouts(records)
    records = _merge_resumed(records)
    if not records:
        raise NoSeriesError(f"{p}: no metric series found (known formats: {known_formats()})")
    return records
