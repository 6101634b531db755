"""Replay: re-run the flagged batches through the user's model to confirm a diagnosis.

    from losslens.replay import replay
    report = replay("my_plugin.py", "train.log")          # or an Analysis, or analysis.json
    for r in report.results:
        print(r.event.id, r.verdict, r.evidence, r.samples[:3])

The plug-in (see `plugin.py`) gives the model, optimizer, checkpoints, batches and per-sample
loss. For each replayable event `probes.py` runs a preflight, a static scan, a dynamic replay
and counterfactuals; `verdicts.py` turns the measurements into one of `bad_batch`,
`batch_state_interaction`, `optimizer_state`, `lr_schedule`, `numerics`, `not_reproducible`,
`inconclusive` (docs/replay.md).

torch is imported only when `replay()` runs (`pip install 'losslens[replay]'`). CPU works
everywhere; `device="auto"` uses CUDA when present, with deterministic algorithms
(`torch.use_deterministic_algorithms`, `CUBLAS_WORKSPACE_CONFIG`). A model larger than one
GPU is built by the plug-in under torchrun (not covered by the tests).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import MissingDependencyError
from .plugin import Plugin, PluginError, load_plugin
from .targets import Target, read_document, targets_from_analysis, targets_from_document
from .verdicts import VERDICTS

if TYPE_CHECKING:
    from .options import Options
    from .probes import EventResult, Progress

SCHEMA = "losslens.replay/1"

__all__ = ["replay", "ReplayReport", "Plugin", "PluginError", "load_plugin", "VERDICTS",
           "SCHEMA", "require_torch"]


def require_torch() -> Any:
    """torch, or a one-line MissingDependencyError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(
            "losslens replay needs PyTorch: pip install 'losslens[replay]'") from None
    return torch


@dataclass
class ReplayReport:
    """Every replayed event of one run, with the setting it ran in."""

    run: str
    plugin: str
    device: str
    torch_version: str
    determinism: dict[str, Any]
    checkpoints: list[int]
    results: list["EventResult"] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        from .. import __version__

        return {"schema": SCHEMA, "version": __version__, "run": self.run,
                "plugin": self.plugin, "device": self.device, "torch": self.torch_version,
                "determinism": self.determinism, "checkpoints": self.checkpoints,
                "seconds": round(self.seconds, 3),
                "results": [r.to_dict() for r in self.results]}


def _targets(source: Any, run: str | None, events: Sequence[str] | None
             ) -> tuple[str, list[Target]]:
    """Targets from an Analysis, an analysis/1 document, or a path (JSON document or log)."""
    if isinstance(source, Mapping):
        return targets_from_document(source, run, events)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.suffix == ".json" and path.is_file():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                doc = None
            except RecursionError:  # read_document says why, in one line
                doc = {"schema": None}
            if isinstance(doc, dict) and "schema" in doc:
                return targets_from_document(read_document(path), run, events)
        from .. import read
        from ..pipeline import analyze

        source = analyze(read(path))
    return targets_from_analysis(source, run, events)


def replay(plugin: str | Plugin, source: Any, *, run: str | None = None,
           events: Sequence[str] | None = None, device: str = "auto",
           options: "Options | None" = None, progress: "Progress | None" = None
           ) -> ReplayReport:
    """Replay the flagged events of `source` with `plugin` and give a verdict on each.

    Args:
        plugin: a path to a .py file, an importable module name, or a loaded Plugin.
        source: a `pipeline.Analysis`, a `losslens.analysis/1` document (dict), or a path to
            such a JSON file or to a log (read and analysed).
        run: which run, when the source has several.
        events: event ids to replay (default: every replayable event, overlaps folded).
        device: "auto", "cpu", "cuda" or "cuda:N".
        options: limits (`probes.Options`).
        progress: called as progress(event_id, stage, done, total).
    """
    torch = require_torch()
    from .engine import Session, deterministic, pick_threads, resolve_device
    from .probes import Options, on_second_device, probe

    t0 = time.perf_counter()
    plug = plugin if isinstance(plugin, Plugin) else load_plugin(plugin)
    name, targets = _targets(source, run, events)
    dev = resolve_device(device)
    ckpts = _checkpoints(plug)
    opts = options or Options()
    if opts.budget_s is not None:  # one deadline for every event (probes check it per step)
        opts = dataclasses.replace(opts, deadline=t0 + opts.budget_s)
    report = ReplayReport(name, plug.name, str(dev), torch.__version__, {}, ckpts)
    threads = torch.get_num_threads()  # set back afterwards: a library call leaves none set
    with deterministic(dev, opts.deterministic) as det:
        session = Session(plug, dev)
        if dev.type == "cpu" and opts.threads:
            torch.set_num_threads(opts.threads)
            det["cpu_threads"] = {"threads": opts.threads, "chosen": "--threads"}
        elif dev.type == "cpu" and session.dtype is not None:  # bf16/fp16 rounding moves
            det["cpu_threads"] = {"threads": torch.get_num_threads(),  # with the thread count
                                  "chosen": "torch's default (the run's precision is "
                                            f"{session.dtype}: --threads as the trainer's)"}
        elif dev.type == "cpu" and targets:
            det["cpu_threads"] = pick_threads(session, targets[0].event.start_step)
        if dev.type == "cuda":  # what the plug-in left it at: replay must match training
            det["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                           "cudnn": torch.backends.cudnn.allow_tf32}
        try:
            for target in targets:
                report.results.append(probe(session, target, ckpts, opts, progress))
        finally:
            session.close()
        second = _second_device(opts.second_device, dev)
        if second is not None and any("counterfactuals" in r.measurements
                                      for r in report.results):
            session = Session(plug, second)  # after the first is done: adapters may move
            try:                             # one model between devices
                for r in report.results:
                    on_second_device(session, r, ckpts, opts)
            finally:
                session.close()
    torch.set_num_threads(threads)
    report.determinism = det
    report.seconds = time.perf_counter() - t0
    return report


def _second_device(name: str | None, first: Any) -> Any:
    """The device to re-run reproduced events on: as given, or with "auto" another CUDA
    device when there is one; None when there is none (or it is the first device)."""
    import torch

    if not name:
        return None
    if name == "auto":
        if first.type == "cuda" and torch.cuda.device_count() > 1:
            idx = first.index or 0
            return torch.device(f"cuda:{(idx + 1) % torch.cuda.device_count()}")
        return None
    from .engine import resolve_device

    return resolve_device(name)


def _checkpoints(plug: Plugin) -> list[int]:
    raw = plug.call("checkpoints")
    try:
        steps = sorted({int(s) for s in raw})
    except (TypeError, ValueError):
        raise PluginError(f"plugin {plug.name}: checkpoints() must return a list of "
                          f"iterations (ints), got {raw!r:.80}") from None
    if not steps:
        raise PluginError(f"plugin {plug.name}: checkpoints() returned no checkpoint")
    return steps
