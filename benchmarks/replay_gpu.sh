#!/usr/bin/env bash
# Replay on a GPU, end to end, on every example of examples/: train it ON THE GPU
# (LOSSLENS_TRAIN_DEVICE), `losslens analyze` -> `losslens skiplist` -> `losslens replay
# --device cuda` (a GPU run replayed on a GPU); print each verdict, the preflight (bitwise?),
# TF32 as pinned in training and recorded by replay, the time of each probe and the cost of a
# replayed step against a plain forward+backward; then the CUDA test of tests/test_replay.py.
#
#   bash benchmarks/replay_gpu.sh [WORKDIR]                (run from the repository root)
#   LOSSLENS_TF32=1 bash benchmarks/replay_gpu.sh          (TF32 on in training and replay)
#   REPLAY_DEVICE=cpu bash benchmarks/replay_gpu.sh        (a dry run of the script on CPU)
#
# Installs nothing: needs python with torch (a CUDA build) and losslens's dependencies
# (pandas, pyarrow, scipy, ruptures, typer, rich, tensorboard); says what is missing otherwise.
# Expected verdicts: bad_batch -> bad_batch, sdc -> not_reproducible,
#   adam -> optimizer_state, fp16 -> numerics, idle -> batch_state_interaction.
#   Exit status 1 when a verdict differs.
# TF32 is pinned (LOSSLENS_TF32, default 0 = off) by the examples' build_model in training and
# in replay alike, and replay.json records it (determinism.tf32); TF32 in one and not the other
# is the commonest reason a GPU replay departs from its log.
set -uo pipefail
cd "$(dirname "$0")/.."
WORK="${1:-$(mktemp -d)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export REPLAY_DEVICE="${REPLAY_DEVICE:-cuda}"
export LOSSLENS_TRAIN_DEVICE="${LOSSLENS_TRAIN_DEVICE:-$REPLAY_DEVICE}"
export LOSSLENS_TF32="${LOSSLENS_TF32:-0}"
echo "training on $LOSSLENS_TRAIN_DEVICE, replaying on $REPLAY_DEVICE, TF32=$LOSSLENS_TF32"

python - <<'PY' || exit 3
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
PY

# name | training command | plug-in | the plug-in's run-folder variable | expected verdict
EXAMPLES=(
  "bad_batch|python examples/make_tiny_run.py RUN --scenario bad_batch|examples/tiny_gpt_plugin.py|LOSSLENS_TINY_RUN|bad_batch"
  "sdc|python examples/make_tiny_run.py RUN --scenario sdc|examples/tiny_gpt_plugin.py|LOSSLENS_TINY_RUN|not_reproducible"
  "adam|python examples/adam_spike.py RUN|examples/adam_spike.py|LOSSLENS_ADAM_RUN|optimizer_state"
  "fp16|python examples/fp16_attention.py RUN|examples/fp16_attention.py|LOSSLENS_FP16_RUN|numerics"
  "idle|python examples/adam_idle.py RUN|examples/adam_idle.py|LOSSLENS_IDLE_RUN|batch_state_interaction"
)

status=0
for spec in "${EXAMPLES[@]}"; do
    IFS='|' read -r name train plugin var want <<<"$spec"
    run="$WORK/$name"
    t0=$(date +%s.%N)
    ${train//RUN/$run} 2>&1 | tail -1
    t1=$(date +%s.%N)
    python -m losslens analyze "$run/train.log" --format json --output "$run/analysis.json" || status=1
    python -m losslens skiplist "$run/train.log" > "$run/skiplist.txt" 2>&1
    t2=$(date +%s.%N)
    # the log itself (not analysis.json): replay then checks its steps against the logged loss
    env "$var=$run" python -m losslens replay --plugin "$plugin" "$run/train.log" \
        --device "$REPLAY_DEVICE" --format json --output "$run/replay.json" || status=1
    t3=$(date +%s.%N)
    python - "$run/replay.json" "$name" "$want" "$t0" "$t1" "$t2" "$t3" <<'PY' || status=1
import json, sys
path, name, want, t0, t1, t2, t3 = sys.argv[1], sys.argv[2], sys.argv[3], *map(float, sys.argv[4:])
doc = json.load(open(path))
print(f"== {name}: train {t1 - t0:.1f} s, analyze+skiplist {t2 - t1:.1f} s, replay command "
      f"{t3 - t2:.1f} s (replay itself {doc['seconds']:.2f} s on {doc['device']}, "
      f"torch {doc['torch']})")
print(f"   determinism: {doc['determinism']}")
if doc["device"].startswith("cuda"):
    print(f"   TF32 in replay: {doc['determinism'].get('tf32')} (training: LOSSLENS_TF32="
          f"{__import__('os').environ.get('LOSSLENS_TF32')})")
ok = bool(doc["results"])
for r in doc["results"]:
    m = r["measurements"]
    pf, cost = m.get("preflight", {}), m.get("cost", {})
    log = m.get("log") or {}
    print(f"   {r['event']['id']} steps {r['flagged_steps']} from checkpoint {r['checkpoint']}: "
          f"{r['verdict']} ({r.get('cause')})  (preflight bitwise={pf.get('bitwise')}, "
          f"rel diff={pf.get('loss_rel_diff')}, params {pf.get('param_rel_diff')}; log before "
          f"the event: match={log.get('pre_match')} worst={log.get('pre_max_rel_diff')}, at "
          f"it: {log.get('event_match')})")
    print("   timings: " + ", ".join(f"{k} {v:.3f} s" for k, v in r["timings"].items()))
    if cost.get("replay_step_ratio") is not None:
        print(f"   cost: replayed step {1000 * cost['replay_step_s']:.2f} ms = "
              f"{cost['replay_step_ratio']:.2f}x a plain forward+backward "
              f"({1000 * cost['forward_backward_s']:.2f} ms); event "
              f"{cost['event_forward_backward_units']:.0f} forward+backward passes")
    for e in r["evidence"]:
        print(f"     - {e}")
    print("   samples: " + ", ".join(f"{s['step']}:{s['index']} (z {s['z']:.1f})"
                                     for s in r["samples"][:6]))
    ok = ok and r["verdict"] == want
if not ok:
    print(f"   UNEXPECTED: wanted {want}")
    sys.exit(1)
PY
done

python -m pytest tests/test_replay.py -q -k cuda -p no:cacheprovider || status=1
exit $status
