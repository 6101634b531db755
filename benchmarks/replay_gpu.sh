#!/usr/bin/env bash
# Replay on a GPU, end to end: train the example tiny GPT (CPU, ~10 s per scenario), then
# `losslens replay --device cuda` on the bad_batch and sdc scenarios; print the verdicts,
# preflight (bitwise?) and the time of each probe; then the CUDA test of tests/test_replay.py.
#
#   bash benchmarks/replay_gpu_check.sh [WORKDIR]        (run from the repository root)
#   REPLAY_DEVICE=cpu bash benchmarks/replay_gpu_check.sh  (a dry run of the script on CPU)
#
# Installs nothing: needs python with torch (a CUDA build) and losslens's dependencies
# (pandas, pyarrow, scipy, ruptures, typer, rich, tensorboard); says what is missing otherwise.
# Expected: bad_batch -> bad_batch (samples 2, 5, 9, 13 of batch 180 on top),
#           sdc       -> not_reproducible. Exit status 1 when a verdict differs.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export REPLAY_DEVICE="${REPLAY_DEVICE:-cuda}"

python - <<'EOF' || exit 3
import importlib, os, sys
missing = [m for m in ("torch", "pandas", "pyarrow", "scipy", "ruptures", "typer", "rich")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing python packages: {', '.join(missing)}")
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
if not torch.cuda.is_available() and os.environ["REPLAY_DEVICE"] != "cpu":
    sys.exit("no CUDA device: nothing to check here (REPLAY_DEVICE=cpu for a dry run)")
EOF

status=0
for scenario in bad_batch sdc; do
    run="$WORK/$scenario"
    t0=$(date +%s.%N)
    python examples/make_tiny_run.py "$run" --scenario "$scenario" 2>&1 | tail -1
    t1=$(date +%s.%N)
    LOSSLENS_TINY_RUN="$run" python -m losslens replay --plugin examples/tiny_gpt_plugin.py \
        "$run/train.log" --device "$REPLAY_DEVICE" --format json --output "$run/replay.json" || status=1
    t2=$(date +%s.%N)
    python - "$run/replay.json" "$scenario" "$t0" "$t1" "$t2" <<'EOF' || status=1
import json, sys
path, scenario, t0, t1, t2 = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:])
doc = json.load(open(path))
want = {"bad_batch": "bad_batch", "sdc": "not_reproducible"}[scenario]
print(f"== {scenario}: train {t1 - t0:.1f} s, replay command {t2 - t1:.1f} s "
      f"(replay itself {doc['seconds']:.2f} s on {doc['device']}, torch {doc['torch']})")
print(f"   determinism: {doc['determinism']}")
ok = True
for r in doc["results"]:
    pf = r["measurements"].get("preflight", {})
    print(f"   {r['event']['id']} steps {r['flagged_steps']} from checkpoint {r['checkpoint']}: "
          f"{r['verdict']}  (preflight bitwise={pf.get('bitwise')}, "
          f"rel diff={pf.get('loss_rel_diff')})")
    print("   timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in r["timings"].items()))
    for e in r["evidence"]:
        print(f"     - {e}")
    print("   samples: " + ", ".join(f"{s['step']}:{s['index']} (z {s['z']:.1f})"
                                     for s in r["samples"][:5]))
    ok = ok and r["verdict"] == want
if not doc["results"] or not ok:
    print(f"   UNEXPECTED: wanted {want}")
    sys.exit(1)
EOF
done

python -m pytest tests/test_replay.py -q -k cuda -p no:cacheprovider || status=1
exit $status
