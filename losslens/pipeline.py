"""The whole analysis of a Frame: events → findings → skip plan, per run, as typed records.

`analyze_frame` is what `losslens analyze`, `check` and `skiplist` call; reporters read the
`Analysis` it returns and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .events import Event, Finding, SkipPlan
from .frame import Frame, RunInfo
from .skipplan import SkipPolicy, plan


@dataclass(frozen=True)
class RunAnalysis:
    """One run: what was read, what happened, what it means, what to do."""

    info: RunInfo
    events: tuple[Event, ...]
    findings: tuple[Finding, ...]
    skip_plan: SkipPlan | None
    plan_warnings: tuple[str, ...] = ()

    @property
    def error(self) -> str | None:
        """Why this run could not be read or analysed (a failed unit of a folder), else None."""
        return self.info.error

    @property
    def worst(self) -> str | None:
        from .diagnosis import SEVERITY_ORDER

        if not self.findings:
            return None
        return max((f.severity for f in self.findings), key=SEVERITY_ORDER.__getitem__)


@dataclass(frozen=True)
class Analysis:
    frame: Frame
    runs: tuple[RunAnalysis, ...]


def last_step(frame: Frame) -> int:
    """The last logged step over every run and series of the frame (0 when there is none)."""
    return max((s.last_step for r in frame.runs for s in r.series if s.last_step is not None),
               default=0)


def checkpoint_grid(frame: Frame, every: int | None) -> list[int] | None:
    """A checkpoint every `every` iterations, spanning every run's step range (None: none)."""
    if not every:
        return None
    if every <= 0:
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"`checkpoint_every` must be > 0, got {every}")
    return list(range(0, last_step(frame) + every, every))


def checkpoints_from_metadata(info: RunInfo) -> list[int] | None:
    """Saved iterations the reader found in the log ("saving checkpoint" lines), if any."""
    text = info.metadata.extra.get("checkpoints", "")
    steps = [int(x) for x in str(text).replace(" ", "").split(",") if x.strip().isdigit()]
    return steps or None


def analyze_run(frame: Frame, info: RunInfo, detectors: Mapping[str, Any] | None = None,
                policy: SkipPolicy | None = None, checkpoints: Sequence[int] | None = None,
                global_batch_size: int | None = None) -> RunAnalysis:
    from .analysis import analyze_run as detect
    from .diagnosis import diagnose, settle

    events = tuple(detect(frame, info, detectors))
    firsts = {s.tag: s.first_step for s in info.series if s.first_step is not None}
    first = min(firsts.values(), default=0)
    findings = tuple(diagnose(events, info.metadata, firsts))
    events = settle(events, findings)
    skip, warns = plan(events, checkpoints if checkpoints is not None
                       else checkpoints_from_metadata(info), policy,
                       global_batch_size or info.metadata.global_batch_size, first_step=first,
                       first_steps=firsts)
    return RunAnalysis(info, events, findings, skip, tuple(warns))


def analyze_frame(frame: Frame, detectors: Mapping[str, Any] | None = None,
                  policy: SkipPolicy | None = None, checkpoints: Sequence[int] | None = None,
                  global_batch_size: int | None = None,
                  unit_timeout: float | None = None) -> Analysis:
    """Analyse every run of the frame, each isolated (`isolated_run`): a run that fails or
    runs past `unit_timeout` seconds gets an error and the others are analysed."""
    runs = tuple(isolated_run(frame, info, detectors, policy, checkpoints, global_batch_size,
                              unit_timeout) for info in frame.runs)
    return Analysis(frame, runs)


def isolated_run(frame: Frame, info: RunInfo, detectors: Mapping[str, Any] | None = None,
                 policy: SkipPolicy | None = None, checkpoints: Sequence[int] | None = None,
                 global_batch_size: int | None = None,
                 timeout: float | None = None) -> RunAnalysis:
    """`analyze_run`, with whatever goes wrong in it (a detector bug, memory, a run past
    `timeout` seconds, default `limits.UNIT_TIMEOUT`) made the run's error instead of the
    command's. A run that failed to read has no events. Parameter errors still propagate."""
    from dataclasses import replace

    from .errors import InvalidParameterError
    from .limits import UNIT_TIMEOUT, deadline

    if info.error is not None:
        return RunAnalysis(info, (), (), None)
    try:
        with deadline(UNIT_TIMEOUT if timeout is None else timeout, f"{info.source}: analysis"):
            return analyze_run(frame, info, detectors, policy, checkpoints, global_batch_size)
    except InvalidParameterError:
        raise
    except MemoryError:
        why = f"{info.source}: out of memory while analysing it"
    except Exception as exc:  # noqa: BLE001 - one run's failure is not the fleet's
        from .errors import LossLensError

        text = str(exc).splitlines()[0][:200] if str(exc) else ""
        why = text if isinstance(exc, LossLensError) else (
            f"{info.source}: could not be analysed (internal error: {type(exc).__name__}"
            f"{': ' + text if text else ''})")
    return RunAnalysis(replace(info, error=why), (), (), None)


@dataclass(frozen=True)
class FleetRow:
    """One line of the fleet summary: how bad, what, how many events, how far the run got."""

    run: str
    worst: str | None  # the worst finding's severity, None when clean
    finding: str | None  # that finding's title (the first of the worst)
    events: int
    last_step: int | None


def fleet(analysis: Analysis) -> list[FleetRow]:
    """One row per run, in the analysis' order."""
    from .diagnosis import SEVERITY_ORDER

    rows = []
    for ra in analysis.runs:
        top = max(ra.findings, key=lambda f: SEVERITY_ORDER[f.severity], default=None)
        last = max((s.last_step for s in ra.info.series if s.last_step is not None),
                   default=None)
        rows.append(FleetRow(ra.info.run, top.severity if top else None,
                             top.title if top else None, len(ra.events), last))
    return rows
