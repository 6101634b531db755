"""Spikes inside a divergence, folded into it: the rise of a divergence reads as spikes that
never recover (and the grad norm rises with it), which are the divergence, not events of their
own. `analyze` (analysis.py) and the streaming forms (detectors/stream.py) use it.
"""
from __future__ import annotations

from dataclasses import replace

from ..events import Event


def fold_spikes(events: list[Event]) -> list[Event]:
    """Events with the spikes (and grad spikes) found inside a divergence folded into it:
    the rise of a divergence reads as a spike that never recovers, and the grad norm rises
    with it; `details.spikes_within` counts them. A spike back at its level at once (fast)
    is no part of the rise: it stays an event of its own (one-point x8-x50 spikes on a PINN
    total that rises x15 by its weight schedule). `analyze` and the streaming forms use it."""
    divs = [e for e in events if e.kind == "divergence"]
    if not divs:
        return events
    keep, folded = [], {id(d): 0 for d in divs}
    for e in events:
        owner = None
        if e.kind == "grad_spike" or (e.kind == "spike" and e.recovery != "fast"):
            owner = next((d for d in divs if (d.tag == e.tag or e.kind == "grad_spike")
                          and d.start_step < e.start_step
                          and (d.end_step is None or e.start_step <= d.end_step)), None)
        if owner is None:
            keep.append(e)
        else:
            folded[id(owner)] += 1
    return [replace(e, details={**e.details, "spikes_within": folded[id(e)]})
            if id(e) in folded else e for e in keep]
