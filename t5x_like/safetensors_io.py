"""Writing Hugging Face safetensors checkpoints (JAX-free; hf_io's export and the GGUF importer share it):
the shard plan, HF's file names and index, and a streaming writer that holds one tensor at a time."""
from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ml_dtypes
import numpy as np

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
ST_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
NP_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16),
             "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def shard_plan(nbytes: Sequence[int], max_shard_bytes: int) -> list[range]:
    """Consecutive tensors (given by their sizes, in write order) grouped into files of at most
    `max_shard_bytes` (a bigger tensor gets its own): the index range of each file."""
    starts = [0]
    filled = 0
    for i, size in enumerate(nbytes):
        if i > starts[-1] and filled + size > max_shard_bytes:
            starts.append(i)
            filled = 0
        filled += size
    return [range(a, b) for a, b in zip(starts, starts[1:] + [len(nbytes)])]


def shard_file_names(count: int) -> list[str]:
    """`model.safetensors`, or HF's numbered shard names when there are several files."""
    return [SINGLE_FILE] if count == 1 else [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def write_index(out_dir: str, weight_map: Mapping[str, str], total_size: int) -> None:
    """The shard index of a multi-file checkpoint."""
    with open(os.path.join(out_dir, INDEX_FILE), "w") as f:
        json.dump({"metadata": {"total_size": total_size}, "weight_map": dict(weight_map)}, f, indent=2)
        f.write("\n")


def write_safetensors(file: str, tensors: list[tuple[str, tuple[int, ...]]], dtype: str,
                      arrays: Iterator[np.ndarray]) -> None:
    """Writes a safetensors file incrementally: the header from known shapes, then each array as it comes."""
    itemsize = NP_DTYPES[dtype].itemsize
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in tensors:
        nbytes = math.prod(shape) * itemsize
        header[name] = {"dtype": ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(file, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for (name, shape), array in zip(tensors, arrays, strict=True):
            if array.shape != shape or array.dtype != NP_DTYPES[dtype]:
                raise AssertionError(f"{name}: got {array.shape} {array.dtype}, header says {shape} {dtype}")
            np.ascontiguousarray(array).tofile(f)
