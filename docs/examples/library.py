"""losslens as a library: read a log, analyse it, look at the result in pandas.

    python docs/examples/library.py [LOG]

In a notebook, `frame` and `analysis` on the last line of a cell show themselves: the series
read, the findings and the loss chart with the events drawn on it.
"""
import json
import sys
from pathlib import Path

import losslens

log = sys.argv[1] if len(sys.argv) > 1 else str(
    Path(__file__).resolve().parents[2] / "sample_logs" / "megatron_gpt_spikes.log")

frame = losslens.read(log)                       # every series of every run, tidy
print(frame)                                     # <losslens.Frame: 1 run(s), ...>

wide = frame.to_pandas(wide=True)                # one row per (run, step), a column per tag
print(wide[["step", "lm loss", "grad norm"]].describe().loc[["count", "min", "max"]])

analysis = losslens.analyze(frame, checkpoint_every=500)   # Options fields as keywords
print(analysis)
for ra in analysis.runs:
    for f in ra.findings:
        print(f"{f.severity:8} {f.title}")
    for e in ra.events:
        print(f"  {e.id:14} step {e.start_step:>5}  {e.tag}")
    if ra.skip_plan:
        print("restart from", ra.skip_plan.restart_from_step, "skip", ra.skip_plan.skip)

doc = json.loads(analysis.to_json())             # the losslens.analysis/1 document
print(doc["schema"], [len(r["events"]) for r in doc["runs"]])
