"""Gradient-norm spikes, and whether the training loss followed.

Training meaning (docs/playbook.md): a grad-norm spike that the loss follows is the early warning of
a loss spike (Adam carries the bad update for ~1/(1 - beta1) steps; PaLM and OLMo watch both);
one the loss does not follow was absorbed (clipping, Adam's second moment) and is information
only. Molybog et al. trace divergent spikes to gradient components comparable to Adam epsilon.

Statistic: the spike statistic of `losslens.detectors.spike` (trailing median/MAD in log space)
on every `grad_norm` series, with its own threshold and ratio (grad norms are noisier than
losses and sit near zero early on); the loss spikes come from `SpikeDetector()` with defaults on
every `train_loss` series. The loss followed when one of its spikes starts between the grad
spike's start and `follow_within` steps later (`details.lag_steps`), looked for in the stretch
of the loss from 4 windows before the grad spike.
Known false positives: the grad norm of the very first steps after a resume (optimizer state
rebuilt) reads as a spike the loss did not follow.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np

from ..events import Event
from ..frame import Frame, RunInfo
from .spike import Known, SpikeDetector, is_int, is_num, require


@dataclass(frozen=True)
class GradSpikeDetector:
    """Spikes of the grad norm, each saying whether (and how soon) the loss spiked too."""

    #: Trailing points for the grad-norm level and scale (as SpikeDetector.window).
    window: int = 129
    #: Robust z-score over the trailing level (as SpikeDetector.threshold).
    threshold: float = 6.0
    #: A grad-norm spike must also be this many times its level: the grad norm wanders by
    #: tens of percent without anything happening.
    min_ratio: float = 1.5
    #: A loss spike starting up to this many steps after the grad spike "followed" it (Adam's
    #: momentum carries a bad update ~10 steps; logs every 10-50 steps delay what we see).
    follow_within: int = 100

    scope: ClassVar[str] = "run"
    roles: ClassVar[tuple[str, ...]] = ("grad_norm", "train_loss")
    causal: ClassVar[bool] = True
    kind: ClassVar[str] = "grad_spike"

    def validate(self) -> None:
        self.spike_detector().validate()
        require(self, "follow_within", is_int(self.follow_within) and self.follow_within >= 0,
                "an int >= 0")
        require(self, "min_ratio", is_num(self.min_ratio) and self.min_ratio >= 1, "a number >= 1")

    def spike_detector(self) -> SpikeDetector:
        # trailing statistic only: the grad norm of a run's first steps jumps about at will;
        # near 0 without having fallen (a noisy grad norm near its start level: additive);
        # no loss rules for lone points (lone_rules: a lone grad-norm outlier that doubled
        # near 0 is judged by the heavy tail; lone spikes, however common, are its events)
        return SpikeDetector(window=self.window, threshold=self.threshold,
                             min_ratio=self.min_ratio, look_ahead=False, floor_fallen=0.0,
                             lone_rules=False)

    def detect_run(self, frame: Frame, run: RunInfo,
                   known: Mapping[str, Known | None] | None = None) -> list[Event]:
        """The grad spikes of the run (`known`: per grad-norm tag, as `SpikeDetector.find`
        takes it: a streaming form keeps the statistic up to date)."""
        self.validate()
        known = known or {}
        grads = run.tags_with_role("grad_norm")
        losses = run.tags_with_role("train_loss")
        if not grads:
            return []
        loss_series = [frame.series(run.run, tag) for tag in losses]
        events = []
        detector = self.spike_detector()
        for tag in grads:
            s = frame.series(run.run, tag)
            for g in detector.find(s.step, s.value, known.get(tag)):
                events.append(self._event(run.run, tag, g, loss_series))
        return sorted(events, key=lambda e: (e.start_step, e.tag))

    def _followed(self, g: dict[str, Any], loss_series: list) -> tuple[str, dict] | None:
        """The first loss spike starting from the grad spike to follow_within steps later,
        looked for in the stretch of each loss from 4 windows before it (the trailing
        statistics need no more; a whole 1M-point loss is not scanned again per grad spike)."""
        found = []
        for s in loss_series:
            i = int(np.searchsorted(s.step, g["start"]))
            j = int(np.searchsorted(s.step, g["start"] + self.follow_within, side="right"))
            if i >= j:
                continue
            lo = max(0, i - 4 * SpikeDetector.window)
            hi = min(s.step.shape[0], j + SpikeDetector.level_window + 1)
            for d in SpikeDetector().find(s.step[lo:hi], s.value[lo:hi], head=lo == 0):
                if g["start"] <= d["start"] <= g["start"] + self.follow_within:
                    found.append((d["start"], s.tag, d))
        if not found:
            return None
        _, tag, d = min(found, key=lambda t: (t[0], t[1]))
        return tag, d

    def _event(self, run: str, tag: str, g: dict[str, Any], loss_series: list) -> Event:
        hit = self._followed(g, loss_series)
        followed = hit is not None
        details = dict(g["details"], loss_followed=followed)
        if hit is not None:
            loss_tag, d = hit
            details.update(lag_steps=int(d["start"] - g["start"]), loss_tag=loss_tag,
                           loss_spike_step=d["start"], loss_magnitude=float(d["magnitude"]))
        return Event(kind=self.kind, run=run, tag=tag, start_step=g["start"],
                     peak_step=g["peak"], end_step=g["end"],
                     severity="warning" if followed else "info", recovery=g["recovery"],
                     recovery_steps=g["recovery_steps"], magnitude=float(g["magnitude"]),
                     details=details)
