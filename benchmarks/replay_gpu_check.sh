#!/usr/bin/env bash
# Old name of benchmarks/replay_gpu.sh (kept for scripts that call it).
exec bash "$(dirname "$0")/replay_gpu.sh" "$@"
