#!/usr/bin/env bash
# Copy this checkout (tracked + untracked, not git-ignored files: configs included, no .git / runs /
# caches) to every worker and install
# jax[tpu] + requirements.txt there. Rerun after changing code or configs.
#   launch/tpu/setup.sh [LOCAL_DATA_DIR]
# LOCAL_DATA_DIR (optional): a local task-data directory (<task>/<split>.jsonl) copied to
# ~/$REMOTE_DIR-data on every worker; point runs at it with T5X_LIKE_DATA_DIR (run.sh does).
source "$(dirname "$0")/env.sh"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
ARCHIVE="$(mktemp -d)/t5x_like.tar.gz"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard | tar -czf "$ARCHIVE" -C "$ROOT" --null -T -
else
  tar -czf "$ARCHIVE" -C "$ROOT" --exclude=runs --exclude='__pycache__' .
fi
set -x
gcloud compute tpus tpu-vm scp "$ARCHIVE" "$TPU_NAME":t5x_like.tar.gz --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all
on_all_workers "mkdir -p ~/$REMOTE_DIR && tar -xzf ~/t5x_like.tar.gz -C ~/$REMOTE_DIR && cd ~/$REMOTE_DIR && \
  python3 -m pip install -q -r requirements.txt 'jax[tpu]==$JAX_VERSION' && \
  python3 -c 'import jax; print(jax.process_index(), jax.local_device_count(), jax.device_count(), jax.devices()[0].device_kind)'"
if [[ $# -ge 1 ]]; then
  DATA_ARCHIVE="$(mktemp -d)/data.tar.gz"
  tar -czf "$DATA_ARCHIVE" -C "$1" .
  gcloud compute tpus tpu-vm scp "$DATA_ARCHIVE" "$TPU_NAME":t5x_like-data.tar.gz --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all
  on_all_workers "mkdir -p ~/$REMOTE_DIR-data && tar -xzf ~/t5x_like-data.tar.gz -C ~/$REMOTE_DIR-data"
fi
