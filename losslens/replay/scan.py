"""The static scan of one event (a mix-in of `probes.EventProbe`): per-sample loss and
gradient norm of every flagged batch at the checkpoint's weights, no updates, against the
neighbouring batches (robust z-scores); the samples to look at are the flagged rows with the
highest loss z (the gradient z is reported beside it)."""
from __future__ import annotations

import math
from typing import Any

from . import stats
from .persample import per_sample
from .verdicts import Facts


class StaticScan:
    """The static scan; the attributes it uses are `probes.EventProbe`'s."""


    def _static(self, facts: Facts) -> list[dict[str, Any]]:
        s = self.s
        s.load(self.ckpt)
        flagged = list(range(self.first, self.last + 1))
        steps = flagged + self.neighbours
        per = {}
        for i, step in enumerate(steps):
            per[step] = per_sample(s, s.batch(step))
            self.progress(self.ev.id, "static", i + 1, len(steps))
        ref = self.neighbours
        bl = stats.robust_z([per[x].batch_loss for x in flagged], [per[x].batch_loss for x in ref])
        bg = stats.robust_z([per[x].batch_grad_norm for x in flagged],
                            [per[x].batch_grad_norm for x in ref])
        facts.flagged_loss_z = _max(bl)
        facts.flagged_grad_z = _max(bg)
        samples = self._samples(per, flagged, ref)
        facts.top_sample_z = samples[0]["z"] if samples else None
        methods = sorted({p.method for p in per.values()})
        self.m["static"] = {
            "checkpoint": self.ckpt, "per_sample_method": methods,
            "notes": sorted({p.note for p in per.values() if p.note}),
            "flagged": [{"step": x, "loss": per[x].batch_loss, "grad_norm": per[x].batch_grad_norm,
                         "loss_z": float(a), "grad_norm_z": float(b)}
                        for x, a, b in zip(flagged, bl, bg)],
            "neighbours": [{"step": x, "loss": per[x].batch_loss,
                            "grad_norm": per[x].batch_grad_norm} for x in ref]}
        return samples

    def _samples(self, per: dict, flagged: list[int], ref: list[int]) -> list[dict[str, Any]]:
        """The flagged rows ranked by loss z (a row the model finds surprising); the gradient
        z is reported beside it, not ranked on (a clean row of a large-gradient batch is no
        sample to look at)."""
        ref_l = [v for x in ref for v in per[x].losses]
        have_g = all(per[x].grad_norms is not None for x in flagged + ref)
        ref_g = [v for x in ref for v in per[x].grad_norms] if have_g else []
        rows = []
        for x in flagged:
            zl = stats.robust_z(per[x].losses, ref_l)
            zg = stats.robust_z(per[x].grad_norms, ref_g) if have_g else [math.nan] * len(zl)
            ids = self._sample_ids(x, len(zl))
            for i, (a, b) in enumerate(zip(zl, zg)):
                loss = float(per[x].losses[i])
                # a non-finite loss among finite neighbours is the first row to look at
                z = float(a) if not math.isnan(float(a)) else (
                    math.inf if not math.isfinite(loss) and ref_l else -math.inf)
                rows.append({"step": x, "index": i, "sample_id": ids[i],
                             "loss": per[x].losses[i],
                             "grad_norm": per[x].grad_norms[i] if have_g else None,
                             "loss_z": float(a), "grad_norm_z": float(b), "z": z})
        rows.sort(key=lambda r: r["z"], reverse=True)  # z is never NaN; inf first
        return rows[: self.o.top_samples]

    def _sample_ids(self, step: int, n: int, exact: bool = True) -> list[Any]:
        if self.s.plugin.has("sample_ids"):
            ids = list(self.s.plugin.call("sample_ids", step))
            if len(ids) == n or not exact:
                return ids
        return [None] * n

    def _flagged_samples(self) -> set[Any]:
        """The dataset ids of the flagged batches' rows (empty without `sample_ids`)."""
        if not self.s.plugin.has("sample_ids"):
            return set()
        try:
            return {i for x in range(self.first, self.last + 1)
                    for i in self._sample_ids(x, 0, exact=False) if i is not None}
        except TypeError:  # ids that cannot be compared as a set: not used
            return set()

    def _shares(self, step: int, samples: set[Any]) -> bool:
        if not samples:
            return False
        try:
            return bool(samples & set(self._sample_ids(step, 0, exact=False)))
        except TypeError:
            return False


def _max(values: Any) -> float | None:
    fin = [float(v) for v in values if not math.isnan(float(v))]
    return max(fin) if fin else None
