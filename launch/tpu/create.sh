#!/usr/bin/env bash
# Create a TPU VM (single host) or pod slice (several hosts) for t5x_like.
#   ACCELERATOR=v5litepod-8 ZONE=us-west4-a launch/tpu/create.sh [--spot]
# Extra arguments go to `gcloud compute tpus tpu-vm create` (e.g. --spot, --network=...).
source "$(dirname "$0")/env.sh"
VERSION="$(runtime_version "$ACCELERATOR")"
set -x
gcloud compute tpus tpu-vm create "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" \
  --accelerator-type="$ACCELERATOR" --version="$VERSION" "$@"
