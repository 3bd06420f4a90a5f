#!/usr/bin/env bash
# Mount a GCS bucket at /gcs/<bucket> on every worker (gcsfuse), for a workdir shared by all hosts
# and kept after the VM is deleted: --workdir=/gcs/<bucket>/runs/<name>.
#   launch/tpu/mount_gcs.sh BUCKET
# The VM's service account needs read/write access to the bucket.
source "$(dirname "$0")/env.sh"
BUCKET="${1:?usage: mount_gcs.sh BUCKET}"
set -x
on_all_workers "if ! command -v gcsfuse >/dev/null; then \
    export GCSFUSE_REPO=gcsfuse-\$(lsb_release -c -s); \
    echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt \$GCSFUSE_REPO main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list; \
    curl -s https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null; \
    sudo apt-get update -q && sudo apt-get install -y -q gcsfuse; fi && \
  sudo mkdir -p /gcs/$BUCKET && sudo chown \$USER /gcs/$BUCKET && \
  (mountpoint -q /gcs/$BUCKET || gcsfuse --implicit-dirs $BUCKET /gcs/$BUCKET)"
