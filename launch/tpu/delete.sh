#!/usr/bin/env bash
# Delete the TPU VM / slice (a GCS workdir under /gcs/<bucket> stays).
source "$(dirname "$0")/env.sh"
set -x
gcloud compute tpus tpu-vm delete "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --quiet
