"""What every command shares: the options (declared once), the error boundary, reading, output.

- Options: one declaration per option, the same flag, metavar and help text in every command
  (`-f/--format`, `-o/--output FILE`, `--config FILE`, `--role ROLE=TAG`, `-i/--input-format`,
  `--debug`, the skip-plan parameters).
- `guarded`: the one error boundary. Every command is registered through it:
  `LossLensError` → `Error: ...` on stderr, exit 2, no traceback; library warnings →
  `Warning: ...` on stderr.
- `emit`: the one place a command's output goes out (stdout, or `-o FILE` written atomically).
- `flag`: library messages name parameters (`checkpoint_every`); users typed flags.

Heavy modules (pandas, the readers, the detectors) are imported inside functions so that
`losslens --help` stays fast.
"""
from __future__ import annotations

import functools
import sys
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator, List, Optional, Sequence

import typer
from typer.core import TyperArgument, TyperCommand

# --------------------------------------------------------------------------- options

PATHS = typer.Argument(..., metavar="PATH",
                       help="Log files, folders (walked) or wandb://entity/project/run.")
PATH = typer.Argument(..., metavar="PATH", help="A log file or folder.")
INPUT_FORMAT = typer.Option(None, "--input-format", "-i", metavar="FORMAT",
                            help="Force a format instead of sniffing (see `losslens formats`).")
ROLE = typer.Option([], "--role", metavar="ROLE=TAG",
                    help="Override a series role: ROLE=TAG (repeatable).")
DEBUG = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")
OUTPUT = typer.Option(None, "--output", "-o", metavar="FILE",
                      help="Write to FILE (atomically) instead of stdout.")
CONFIG = typer.Option(None, "--config", metavar="FILE",
                      help="Settings file (default: [tool.losslens] in pyproject.toml or "
                           "losslens.toml, searched from the current folder upward).")
CHECKPOINT_EVERY = typer.Option(None, "--checkpoint-every", metavar="N",
                                help="A checkpoint every N iterations (for the skip plan).")
CHECKPOINTS = typer.Option(None, "--checkpoints", metavar="LIST",
                           help="Saved iterations, comma-separated: 1000,2000,3000.")
CHECKPOINT_DIR = typer.Option(
    None, "--checkpoint-dir", metavar="PATH",
    help="Checkpoint folder: iter_0001000 / global_step1000 / checkpoint-1000 entries.")
GLOBAL_BATCH_SIZE = typer.Option(None, "--global-batch-size", metavar="N",
                                 help="Samples per iteration (skip plan in samples).")
BEFORE = typer.Option(None, "--before", metavar="N",
                      help="Restart at least N steps before the onset (default 100).")
MIN_SKIP = typer.Option(None, "--min-skip", metavar="N", help="Skip at least N batches "
                                                             "(default 200).")
UNIT_TIMEOUT = typer.Option(
    None, "--unit-timeout", metavar="SECONDS",
    help="Give up on one file or folder of a walked path after SECONDS (default 600); it is "
         "reported as a failed run, the others complete, exit 2.")
MAX_SKIP = typer.Option(None, "--max-skip", metavar="N",
                        help="Skip at most N batches (default 500; 0: no cap).")

#: Library parameter name → the flag a user types (for messages and errors).
FLAGS = {
    "checkpoint_every": "--checkpoint-every", "checkpoints": "--checkpoints",
    "checkpoint_dir": "--checkpoint-dir", "global_batch_size": "--global-batch-size",
    "before": "--before", "min_skip": "--min-skip", "max_skip": "--max-skip",
    "allow_no_checkpoint": "--allow-no-checkpoint", "indexing": "--indexing",
    "jobs": "--jobs", "fail_on": "--fail-on", "rtol": "--rtol", "baseline": "--baseline",
    "config": "--config", "roles": "--role", "input_format": "--input-format", "run": "--run",
    "scheduler": "--scheduler",
}


class Command(TyperCommand):
    """A command whose arguments' help shows their metavar alone (`PATH`, not `PATH <str>`),
    as the options' do."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]


def format_option(default: Any, help: str) -> Any:
    """`-f/--format` with the command's own choices."""
    return typer.Option(default, "--format", "-f", help=help)


def flag(name: str) -> str:
    """The CLI flag for a library parameter name."""
    return FLAGS.get(name, "--" + name.replace("_", "-"))


# --------------------------------------------------------------------------- errors

def err(message: str) -> None:
    """One message on stderr, as one line: text from logs (run names, tags, file names) may
    carry escape sequences, bidi overrides or a newline that would start a CI workflow
    command (`::error::`), so controls are shown as visible escapes (`textsafe.line`)."""
    from ..textsafe import line

    sys.stderr.write(line(message.rstrip("\n")) + "\n")


@contextmanager
def boundary(debug: bool = False) -> Iterator[None]:
    """The one place errors become messages: `Error: ...` on stderr, exit code 2."""
    from ..errors import LossLensError, LossLensWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LossLensWarning)
        try:
            yield
        except LossLensError as exc:
            if debug:
                raise
            _flush_warnings(caught)
            err(f"Error: {_flags_for(str(exc))}")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except typer.Exit:  # a command's own exit code (check: 1 on findings)
            _flush_warnings(caught)
            raise
        except Exception as exc:  # noqa: BLE001 - exit 1 means findings: never for a crash
            if debug or type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise  # (usage errors: the command line's own messages)
            _flush_warnings(caught)
            err(f"Error: {_failure(exc)}")
            raise typer.Exit(2) from None
        _flush_warnings(caught)


def _failure(exc: BaseException) -> str:
    """One line for an exception that is not a LossLensError: the output could not be
    written (a closed pipe, a full disk behind stdout), memory ran out, or a bug."""
    from ..textsafe import line

    if isinstance(exc, OSError) and _is_stdout_error(exc):
        _silence_stdout()  # (the interpreter's last flush would fail again)
        what = "the output pipe was closed" if isinstance(exc, BrokenPipeError) else \
            f"cannot write the output ({exc.strerror or exc})"
        return f"stdout: {what}"
    if isinstance(exc, MemoryError):
        return "out of memory (a unit of a folder that runs out is reported as a failed run; " \
               "here the command itself did)"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return line(f"{where}{exc.strerror or exc}")
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return line(f"internal error: {type(exc).__name__}{': ' + text if text else ''} "
                "(--debug shows the traceback)")


def _is_stdout_error(exc: OSError) -> bool:
    import errno

    return isinstance(exc, BrokenPipeError) or (
        exc.filename is None and exc.errno in (errno.ENOSPC, errno.EIO, errno.EDQUOT,
                                               errno.EFBIG, errno.EPIPE))


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _flags_for(message: str) -> str:
    """A library message names a parameter as `name` in backquotes; the user sees the flag."""
    import re

    return re.sub(r"`([a-z_]+)`", lambda m: flag(m.group(1)) if m.group(1) in FLAGS
                  else m.group(0), message)


def guarded(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command in the error boundary (its `debug` parameter shows tracebacks)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with boundary(bool(kwargs.get("debug", False))):
            return command(*args, **kwargs)

    return run


def _flush_warnings(caught: list) -> None:
    from ..errors import LossLensWarning

    for w in caught:
        if issubclass(w.category, LossLensWarning):
            err(f"Warning: {w.message}")


# --------------------------------------------------------------------------- reading

def settings(config: Optional[str], role: Sequence[str] = (), **given: Any):
    """The command's Options: the settings file (`--config FILE`, else the first found upward),
    with the values given on the command line over it (None: not given)."""
    from ..options import load
    from ..roles import parse_overrides

    options = load(config).merged(roles=parse_overrides(role), **given).validate()
    if options.source:
        err(f"losslens: settings from {options.source}")
    return options


def progress():
    """The progress line (`report.progress.Progress`) on a terminal; None otherwise, so that
    nothing reaches a log file or a pipe."""
    if not sys.stderr.isatty():
        return None
    from ..report.progress import Progress

    return Progress(sys.stderr)


def read_frame(paths: Sequence[str], options: Any, bar: Any = None):
    """The Frame of the paths (a progress line on a terminal), with its reader warnings shown.
    With `bar` (a `progress()`), the line stays for the next phase; else it is cleared."""
    from .. import read

    own = bar is None
    bar = bar or progress()
    try:
        frame = read(paths, format=options.input_format, roles=options.roles,
                     progress=bar.reading if bar else None, unit_timeout=options.unit_timeout)
    finally:
        if bar and own:
            bar.close()
    warn_frame(frame)
    return frame


def warn_frame(frame) -> None:
    """Per-run reader warnings and skipped-line counts, on stderr (never lost)."""
    for info in frame.runs:
        for w in info.warnings:  # (readers' messages mostly name their file already)
            err(f"Warning: {w}" if w.startswith(info.source) else f"Warning: {info.run}: {w}")
        if info.skipped_count:
            first = info.skipped[0] if info.skipped else None
            where = f" (first: {first.location}: {first.reason})" if first else ""
            err(f"Warning: {info.run}: {info.skipped_count} line(s) looked like metrics but "
                f"did not parse{where}")


def failed_runs(runs: Sequence[Any]) -> None:
    """Runs that could not be read or analysed (a folder's bad units): one `Error:` line each
    on stderr, after the report of the others, and exit 2."""
    errors = [r.error for r in runs if getattr(r, "error", None)]
    if errors:
        from ..textsafe import line

        for message in errors:
            err(f"Error: {line(message)}")
        raise typer.Exit(2)


# --------------------------------------------------------------------------- output

def emit(text: str, output: Optional[str], inputs: Sequence[str] = ()) -> None:
    """The one way a command's output leaves: stdout, or `output` written safely
    (`textsafe.write_file`: atomic, never over one of the `inputs`) and said so on stderr.
    `-` is stdout."""
    if output and output != "-":
        from ..textsafe import write_file

        write_file(output, text, inputs=inputs)
        err(f"losslens: wrote {output}")
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
