"""losslens: read a training run's logbook, find loss spikes, divergence, grokking, resume and
rollback artefacts, explain them with the instability playbook, and say what to do.

Library first: `read()` gives the Frame, `analyze(frame, Options(...))` the Analysis every
command consumes (events, findings, skip plans); the CLI (`losslens ...`) is a thin shell over
them. See docs/architecture.md.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping

from .errors import LossLensError, LossLensWarning
from .events import Event, Finding, SkipPlan

__version__ = "0.1.0"

__all__ = ["read", "analyze", "Options", "Analysis", "RunAnalysis", "load_options", "Frame", "RunInfo", "Segment", "Series", "SeriesInfo", "RunMeta",
           "RunRecords", "Event", "Finding", "SkipPlan", "LossLensError", "LossLensWarning",
           "__version__"]


_LAZY = {"Options": "options", "Analysis": "pipeline", "RunAnalysis": "pipeline",
         "Frame": "frame", "RunInfo": "frame", "Segment": "frame", "Series": "frame",
         "SeriesInfo": "frame", "RunMeta": "records", "RunRecords": "records"}


def __dir__() -> list[str]:
    # what a notebook's completion shows: the public names, not this module's imports
    return sorted(__all__)


def __getattr__(name: str):
    # pandas/numpy load only when the Frame is needed, so `losslens --help` stays fast
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'losslens' has no attribute {name!r}")


def read(paths: str | os.PathLike | Iterable[str | os.PathLike], format: str | None = None,
         roles: Mapping[str, str] | None = None,
         progress: "Callable[[str, int, int], None] | None" = None,
         unit_timeout: float | None = None) -> "Frame":
    """Read one or more paths (files, folders, `wandb://` addresses) into a Frame.

    Args:
        paths: what to read; a folder is walked and every log in it becomes a run.
        format: a name from `losslens.readers.FORMATS`; sniffed when None.
        roles: tag → role overrides (see `losslens.roles.ROLES`).
        progress: called as progress(name, done, total) before each file or folder unit.
        unit_timeout: seconds one unit of a folder may take (default
            `limits.UNIT_TIMEOUT`); a unit that fails or runs out of time is a run with
            `error` set, and the others are read.
    """
    from .frame import build
    from .readers import read_records

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    records = []
    for path in paths:
        records.extend(read_records(path, format, progress, unit_timeout))
    return build(records, roles)


def analyze(source: "Frame | str | os.PathLike | Iterable[str | os.PathLike]",
            options: "Options | None" = None, **fields: Any) -> "Analysis":
    """The analysis every command consumes: events, findings and skip plan of every run.

    Args:
        source: a Frame (from `read`), or paths to read with the options' format and roles.
        options: `losslens.Options` (detector fields, ignored tags/kinds/steps, checkpoints,
            skip policy); `load_options()` reads them from `[tool.losslens]` / losslens.toml.
        **fields: Options fields given directly, over `options`:
            `analyze("train.log", checkpoint_every=500, fail_on="warning")`.

    `Analysis.to_json()` is the `losslens.analysis/1` document; in Jupyter an Analysis and a
    Frame show themselves (findings, the loss chart with the events drawn).
    """
    from .frame import Frame
    from .options import Options
    from .pipeline import analyze as run

    options = options or Options()
    if fields:
        options = options.merged(**fields).validate()
    if not isinstance(source, Frame):
        source = read(source, format=options.input_format, roles=options.roles)
    return run(source, options)


def load_options(path: "str | os.PathLike | None" = None) -> "Options":
    """Options from the settings file `path`, or from `[tool.losslens]` in pyproject.toml or a
    losslens.toml found from the current folder upward (the defaults when there is none)."""
    from .options import load

    return load(path)
