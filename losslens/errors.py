"""The one error family of losslens, caught once at the CLI boundary.

Every message says what was wrong and where (file, line or record) so that the CLI can
print it as a single `Error: ...` line without a traceback.
"""
from __future__ import annotations


class LossLensError(Exception):
    """Base class of every error losslens raises on purpose."""


class LogNotFoundError(LossLensError, FileNotFoundError):
    """A path given by the user does not exist."""


class UnknownRunError(LossLensError, KeyError):
    """A run (or a run's tag) asked for by name is not in the Frame."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UnknownFormatError(LossLensError, ValueError):
    """The format could not be sniffed, or the name given is not a known format."""


class NoSeriesError(LossLensError, ValueError):
    """A file was read but holds no metric series."""


class ParseError(LossLensError, ValueError):
    """A file of a known format is damaged beyond salvage."""


class InvalidParameterError(LossLensError, ValueError):
    """A parameter (detector field, CLI option) is out of its allowed range."""


class OutputError(LossLensError, OSError):
    """An output file (report, skip list, JUnit) could not be written; the old one is kept."""


class MissingDependencyError(LossLensError, ImportError):
    """An optional extra (wandb, replay) is needed and not installed."""


class LossLensWarning(UserWarning):
    """Recoverable oddities: damaged records salvaged, lines skipped, duplicate steps."""
