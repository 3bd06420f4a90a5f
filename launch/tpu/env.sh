# Settings shared by the TPU scripts (source it; override any of them in the environment).
#   TPU_NAME     name of the TPU VM / slice                      (default t5x-like)
#   ZONE         GCP zone that offers the accelerator            (default us-west4-a: v5e)
#   ACCELERATOR  accelerator type: v5litepod-8 (1 host, 8 chips), v5litepod-16 (4 hosts),
#                v4-8 (1 host, 4 chips), v4-32 (4 hosts, 16 chips), ...    (default v5litepod-8)
#   PROJECT      GCP project (default: gcloud's configured project)
#   REMOTE_DIR   where the repository lives on every worker        (default t5x_like, under $HOME)
set -euo pipefail
TPU_NAME="${TPU_NAME:-t5x-like}"
ZONE="${ZONE:-us-west4-a}"
ACCELERATOR="${ACCELERATOR:-v5litepod-8}"
REMOTE_DIR="${REMOTE_DIR:-t5x_like}"
JAX_VERSION="0.10.2"  # requirements.txt pins jax/jaxlib to this version
PROJECT_FLAG=()
if [[ -n "${PROJECT:-}" ]]; then PROJECT_FLAG=(--project="$PROJECT"); fi

# The TPU VM software version that matches the accelerator family.
runtime_version() {
  case "$1" in
    v5litepod-*) echo "v2-alpha-tpuv5-lite" ;;
    v5p-*) echo "v2-alpha-tpuv5" ;;
    v6e-*) echo "v2-alpha-tpuv6e" ;;
    v4-*) echo "tpu-ubuntu2204-base" ;;
    *) echo "unknown accelerator type $1 (expected v5litepod-N, v5p-N, v6e-N or v4-N)" >&2; return 1 ;;
  esac
}

# gcloud compute tpus tpu-vm ssh on every worker of the slice, running one bash command line.
on_all_workers() {
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" --zone="$ZONE" "${PROJECT_FLAG[@]}" --worker=all --command="$1"
}
