"""Flags shared by the inference CLIs (score, generate, score_demo) and the engine they build.

`--mesh_shape=DATA,FSDP,TENSOR` places the model on a mesh like training's (`-1` = the rest of the
devices). Default: every local device on the data axis on GPU/TPU; one device on CPU (XLA's fake
host devices share the same cores; the 1-vs-8 device speed on CPU has not been measured yet).
"""
from __future__ import annotations

import os
from typing import Any

import jax
from absl import flags, logging

from configs.base import get_partitioning_config
from t5x_like import io_utils
from t5x_like.engine import Engine, check_model_dir
from t5x_like.models.config import ModelConfig
from t5x_like.partitioning import Partitioner, PartitioningError, create_mesh, rules_from_config

FLAGS = flags.FLAGS
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute and parameter dtype.")
flags.DEFINE_integer("batch_size", 16, "Rows per batch (fewer in long length buckets).")
flags.DEFINE_integer("max_length", 0, "Longest window in tokens (0: the model's max_position_embeddings).")
flags.DEFINE_string("mesh_shape", "", "DATA,FSDP,TENSOR mesh sizes (-1 = the rest); '' = all local devices "
                    "on the data axis on GPU/TPU, one device on CPU.")


def parse_mesh_shape(text: str) -> tuple[int, int, int]:
    """'2,2,2' -> (2, 2, 2); a malformed value is one clear error."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3:
        raise PartitioningError(f"--mesh_shape={text!r}: give three integers DATA,FSDP,TENSOR (e.g. 1,-1,1)")
    return shape  # type: ignore[return-value]


def partitioner_from_flags() -> Partitioner:
    """The mesh of --mesh_shape (checked against the device count before any weight is read)."""
    rules = rules_from_config(get_partitioning_config().rules)
    if FLAGS.mesh_shape:
        partitioner = Partitioner(create_mesh(parse_mesh_shape(FLAGS.mesh_shape)), rules)
    elif jax.default_backend() == "cpu":
        partitioner = Partitioner(create_mesh((1, 1, 1), jax.local_devices()[:1]), rules)
    else:
        partitioner = Partitioner(create_mesh((-1, 1, 1), jax.local_devices()), rules)
    logging.info("running on %s", partitioner.describe())
    return partitioner


def check_output_file(path: str, requests_file: str) -> None:
    """Before the model loads: the output's directory is writable and has room for the results (each
    output line is its request line plus a few fields: at least the request file's size)."""
    io_utils.check_writable(os.path.dirname(os.path.abspath(path)), os.path.getsize(requests_file),
                            what="--output directory")


def load_engine(model_dir: str, **kwargs: Any) -> Engine:
    """The engine of `model_dir` on the flags' mesh, dtype, batch size and max length."""
    partitioner = partitioner_from_flags()
    config = ModelConfig.from_hf_dir(check_model_dir(model_dir), dtype=FLAGS.dtype, param_dtype=FLAGS.dtype)
    return Engine.load(model_dir, config, partitioner, batch_size=FLAGS.batch_size,
                       max_length=FLAGS.max_length or None, **kwargs)
