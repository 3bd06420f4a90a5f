#!/usr/bin/env bash
# Run one t5x_like entry point on EVERY worker of the slice at once (what multi-host JAX needs: each
# host runs the same program; jax.distributed.initialize() finds the others).
#   launch/tpu/run.sh launch.run_experiment --config=configs/experiments/paper_llama2_7b.py \
#       --workdir=/gcs/BUCKET/runs/llama2_7b --config.model.path=/home/$USER/models/llama2_7b
#   launch/tpu/run.sh launch.train --config=... --workdir=/gcs/BUCKET/train --config.partitioning.multi_host=True
# The first argument is the module, the rest its flags (quoted for the remote shell here).
# T5X_LIKE_DATA_DIR on the workers is ~/$REMOTE_DIR-data when setup.sh copied a data dir there.
# Output of every worker streams back; the log of worker 0 is the one to read.
source "$(dirname "$0")/env.sh"
MODULE="${1:?usage: run.sh <module, e.g. launch.run_experiment> [flags...]}"
shift
ARGS="$(printf '%q ' "$@")"
set -x
on_all_workers "cd ~/$REMOTE_DIR && if [ -d ~/$REMOTE_DIR-data ]; then export T5X_LIKE_DATA_DIR=~/$REMOTE_DIR-data; fi && \
  python3 -m $MODULE $ARGS"
