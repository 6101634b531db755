"""The one orchestration: a Frame and its Options → events → findings → skip plan, per run.

`analyze(frame, options)` is what every command consumes: `analyze` (reports), `check` (this
plus a gate, `checks.gate`), `skiplist` (its plans, `exporters`), `replay`, `--jobs` and Dask
workers (`parallel`, one unit at a time). So they cannot disagree on the same log and settings.

Per run (`conclude`): the detectors' events (`analysis.detect_run`) less those the options
ignore (tags, kinds, allowed step ranges: kept apart in `RunAnalysis.ignored`); the findings of
the diagnosis rules, which know where each series starts (a loss that is NaN from its first
logged step is a broken setup, not an instability); the PaLM skip plan from the checkpoints
that apply (`checkpoints.resolve`: the user's, else the log's). Reporters read the `Analysis`
and nothing else. Also here: a frame's last step and the fleet summary rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from . import checkpoints as ckpt
from .events import Event, Finding, SkipPlan, severity_rank
from .frame import Frame, RunInfo
from .options import Options
from .skipplan import SkipPolicy, plan, restart_note


@dataclass(frozen=True)
class RunAnalysis:
    """One run: what was read, what happened, what it means, what to do."""

    info: RunInfo
    events: tuple[Event, ...]
    findings: tuple[Finding, ...]
    skip_plan: SkipPlan | None
    plan_warnings: tuple[str, ...] = ()
    ignored: tuple[Event, ...] = ()  # events the options ignore (not diagnosed, not planned)
    checkpoints: tuple[int, ...] | None = None  # what the skip plan could restart from
    checkpoint_source: str = "none"

    @property
    def error(self) -> str | None:
        """Why this run could not be read or analysed (a failed unit of a folder), else None."""
        return self.info.error

    @property
    def worst(self) -> str | None:
        """The worst finding's severity (None when clean)."""
        return worst(f.severity for f in self.findings)


@dataclass(frozen=True)
class Analysis:
    frame: Frame
    runs: tuple[RunAnalysis, ...]
    options: Options = field(default_factory=Options)

    def to_json(self) -> str:
        """The `losslens.analysis/1` JSON document (what `analyze --format json` prints)."""
        from .report.jsondoc import analysis_document, dumps

        return dumps(analysis_document(self))

    def __repr__(self) -> str:
        runs = ", ".join(f"{ra.info.run}: {ra.worst or 'clean'}" for ra in self.runs[:4])
        return (f"<losslens.Analysis: {len(self.runs)} run(s), "
                f"{sum(len(ra.events) for ra in self.runs)} event(s); {runs}"
                + (", ..." if len(self.runs) > 4 else "") + ">")

    def _repr_html_(self) -> str:
        from .report.notebook import analysis_html

        return analysis_html(self)


def worst(severities: Any) -> str | None:
    """The most severe of `severities` (None when there is none)."""
    return max(severities, key=severity_rank, default=None)


def last_step(frame: Frame) -> int:
    """The last logged step over every run and series of the frame (0 when there is none)."""
    return max((r.last_step for r in frame.runs if r.last_step is not None), default=0)


def first_steps(info: RunInfo) -> dict[str, int]:
    """tag → the first logged step of that series."""
    return {s.tag: s.first_step for s in info.series if s.first_step is not None}


def analyze(frame: Frame, options: Options | None = None, *,
            detectors: Any = None) -> Analysis:
    """Analyse every run of the frame with `options` (the defaults when None).

    `detectors` (instances, as `detectors.resolve_detectors` takes them) replaces the
    detectors the options describe; for tuning and tests.
    """
    from .analysis import detect_run

    options = (options or Options()).validate()
    if detectors is None:
        detectors = options.detector_instances()
    from .detectors import resolve_detectors

    resolved = resolve_detectors(detectors)
    explicit, source = ckpt.resolve(options.checkpoints, options.checkpoint_dir,
                                    options.checkpoint_every, last_step(frame))
    runs = tuple(isolated(info, lambda info=info: conclude(
        info, detect_run(frame, info, resolved), options, explicit, source),
        options.unit_timeout) for info in frame.runs)
    return Analysis(frame, runs, options)


def conclude(info: RunInfo, events: Sequence[Event], options: Options | None = None,
             checkpoints: Sequence[int] | None = None, source: str = "") -> RunAnalysis:
    """A run's analysis from its detected events: ignore, diagnose (events take the severity
    of the findings citing them: `diagnosis.settle`; a validation loss' echo of a training
    event, `echoes.mark_echoes`, is left to the training event's finding), plan."""
    from .diagnosis import diagnose, mark_not_computed, settle
    from .echoes import is_echo

    options = options or Options()
    kept = tuple(e for e in events if options.keep(e))
    ignored = tuple(e for e in events if not options.keep(e))
    firsts = first_steps(info)
    kept = mark_not_computed(kept, {s.tag for s in info.series if s.role == "train_loss"
                                    and s.points}, firsts)
    findings = tuple(diagnose([e for e in kept if not is_echo(e)], info.metadata, firsts,
                              {s.tag: s.role for s in info.series}))
    kept = settle(kept, findings)
    ckpts, src = ckpt.for_run(info, checkpoints, source)
    skip, warns = plan(kept, ckpts, options.policy,
                       options.global_batch_size or info.metadata.global_batch_size,
                       first_step=min(firsts.values(), default=0), first_steps=firsts)
    if skip is not None:  # the plan says where its checkpoints came from, and its restart
        skip = replace(skip, checkpoint_source=src if ckpts is not None else
                       f"none known: the restart is assumed {options.policy.before} steps "
                       "before the onset",
                       restart_note=restart_note(skip.restart_from_step, ckpts, src,
                                                 min(firsts.values(), default=None),
                                                 options.policy.before))
    return RunAnalysis(info, kept, findings, skip, tuple(warns), ignored, ckpts, src)


def analyze_frame(frame: Frame, detectors: Mapping[str, Any] | Sequence[Any] | None = None,
                  policy: SkipPolicy | None = None, checkpoints: Sequence[int] | None = None,
                  global_batch_size: int | None = None) -> Analysis:
    """`analyze` with its options as keywords (detector instances, a SkipPolicy, a list of
    checkpoints): a shorthand for scripts and tests."""
    policy = policy or SkipPolicy()
    options = Options(checkpoints=tuple(checkpoints) if checkpoints is not None else None,
                      before=policy.before, min_skip=policy.min_skip, max_skip=policy.max_skip,
                      global_batch_size=global_batch_size)
    return analyze(frame, options, detectors=detectors)


def rename_run(ra: RunAnalysis, name: str) -> RunAnalysis:
    """The same analysis under another run name (its events renamed with it)."""
    if ra.info.run == name:
        return ra
    return replace(ra, info=replace(ra.info, run=name),
                   events=tuple(replace(e, run=name) for e in ra.events),
                   ignored=tuple(replace(e, run=name) for e in ra.ignored))


def isolated(info: RunInfo, analyse: Callable[[], RunAnalysis],
             timeout: float | None = None) -> RunAnalysis:
    """`analyse()` of one run, with whatever goes wrong in it (a detector bug, memory, a run
    past `timeout` seconds, default `limits.UNIT_TIMEOUT`) made the run's error instead of the
    command's. A run that failed to read has no events. Parameter errors still propagate."""
    from .errors import InvalidParameterError, LossLensError
    from .limits import UNIT_TIMEOUT, deadline

    if info.error is not None:
        return RunAnalysis(info, (), (), None)
    try:
        with deadline(UNIT_TIMEOUT if timeout is None else timeout, f"{info.source}: analysis"):
            return analyse()
    except InvalidParameterError:
        raise
    except MemoryError:
        why = f"{info.source}: out of memory while analysing it"
    except Exception as exc:  # noqa: BLE001 - one run's failure is not the fleet's
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
    rows = []
    for ra in analysis.runs:
        top = max(ra.findings, key=lambda f: severity_rank(f.severity), default=None)
        rows.append(FleetRow(ra.info.run, top.severity if top else None,
                             top.title if top else None, len(ra.events), ra.info.last_step))
    return rows


def settle_events(info: RunInfo, events: Sequence[Event],
                  options: Options | None = None, series: Any = None) -> list[Event]:
    """`events` (of a run seen so far: `watch`, the in-training guard) with the severities
    `analyze` gives them: marked as `analysis.detect_run` marks what reads the losses against
    each other (`analysis.mark_over_time`, on `series`: the live run's points,
    `LiveRun.view()`; skipped without them), diagnosed as `conclude` does, each as severe as
    the most severe finding citing it. Ids and order are kept."""
    if series is not None:
        from .analysis import mark_over_time

        events = mark_over_time(list(events), series, info)
    counters: dict[str, int] = {}
    ided = []
    for e in events:
        counters[e.kind] = counters.get(e.kind, 0) + 1
        ided.append(replace(e, id=f"{e.kind}-{counters[e.kind]}"))
    level = {e.id: e.severity for e in conclude(info, ided, options).events}
    return [e if level.get(i.id, e.severity) == e.severity
            else replace(e, severity=level[i.id]) for e, i in zip(events, ided)]
