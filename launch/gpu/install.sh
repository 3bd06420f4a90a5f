#!/usr/bin/env bash
# Install t5x_like's requirements with CUDA 12 JAX (NVIDIA driver >= 525; the CUDA libraries come from pip).
#   launch/gpu/install.sh            (run from anywhere; installs into the active Python environment)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
JAX_VERSION="0.10.2"  # requirements.txt pins jax/jaxlib to this version
python -m pip install -r "$ROOT/requirements.txt" "jax[cuda12]==$JAX_VERSION"
python -c 'import jax; print(jax.device_count(), "devices:", jax.devices()[0].device_kind)'
