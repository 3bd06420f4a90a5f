"""Per-device memory of compiled programs, checked before long work (training and inference alike).

XLA's `compiled.memory_analysis()` is the figure for the real program on the real mesh (on TPU and
GPU; the CPU compiler upcasts bf16 and ignores remat, so its numbers are no guide there).
"""
from __future__ import annotations

import logging
from typing import Any

import jax

from t5x_like.errors import UserError

log = logging.getLogger(__name__)


class MemoryBudgetError(UserError, MemoryError):
    """A compiled program needs more device memory than the configured fraction of a device."""


def device_memory_bytes() -> int:
    """Memory of one device: its allocator limit (GPU/TPU), or host RAM shared by the local CPU devices."""
    stats = jax.local_devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    import psutil
    return psutil.virtual_memory().total // jax.local_device_count()


def program_bytes(analysis: Any) -> int:
    """Peak bytes per device of a compiled program: arguments + outputs (less donated) + temporaries + code."""
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes - analysis.alias_size_in_bytes
               + analysis.temp_size_in_bytes + analysis.generated_code_size_in_bytes)


def check_program(analysis: Any, what: str, fix: str, max_fraction: float) -> None:
    """Logs `what`'s per-device memory; raises MemoryBudgetError naming `what` and `fix` above the fraction."""
    if analysis is None:
        log.info("%s: memory analysis unavailable on this backend", what)
        return
    need, have = program_bytes(analysis), device_memory_bytes()
    log.info("%s per device: arguments %.3f GiB, outputs %.3f GiB (aliased %.3f), temporaries %.3f GiB; "
             "total %.3f GiB of %.3f GiB", what, analysis.argument_size_in_bytes / 2**30,
             analysis.output_size_in_bytes / 2**30, analysis.alias_size_in_bytes / 2**30,
             analysis.temp_size_in_bytes / 2**30, need / 2**30, have / 2**30)
    if need > max_fraction * have:
        raise MemoryBudgetError(f"{what} needs {need / 2**30:.2f} GiB per device but a device has "
                                f"{have / 2**30:.2f} GiB (x{max_fraction} allowed). {fix}")
