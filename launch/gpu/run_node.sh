#!/usr/bin/env bash
# One experiment on one node with several GPUs: a single process drives all local GPUs (no
# jax.distributed needed). Training shards over them with the config's mesh; set hardware to the
# node you have so --dry_run's estimates are right.
#   launch/gpu/run_node.sh configs/experiments/paper_llama2_7b.py /data/runs/llama2_7b \
#       --config.model.path=/models/Llama-2-7b-hf [--config.hardware=h100-8] [--dry_run]
# Extra flags go to launch.run_experiment. T5X_LIKE_DATA_DIR, if set, is the local task data.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CONFIG="${1:?usage: run_node.sh CONFIG WORKDIR [flags...]}"
WORKDIR="${2:?usage: run_node.sh CONFIG WORKDIR [flags...]}"
shift 2
# XLA may take most of each GPU's memory up front (the compiled step's own analysis is checked
# against train.max_memory_fraction before training starts).
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}"
cd "$ROOT"
echo "GPUs: $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | tr -s ' ')"
exec python -m launch.run_experiment --config="$CONFIG" --workdir="$WORKDIR" "$@"
