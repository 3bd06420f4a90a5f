"""Flags shared by the inference CLIs (score, generate, score_demo) and the engine they build.

`--mesh_shape=DATA,FSDP,TENSOR` places the model on a mesh like training's (`-1` = the rest of the
devices). Default: every local device on the data axis on GPU/TPU; one device on CPU (XLA's fake
host devices share the same cores; the 1-vs-8 device speed on CPU has not been measured yet).
"""
from __future__ import annotations

import os
from typing import Any

from absl import flags, logging

from configs.base import get_partitioning_config
from t5x_like import io_utils
from t5x_like.engine import Engine, load_in_dtype
from t5x_like.partitioning import Partitioner, inference_partitioner, parse_mesh_shape, rules_from_config

FLAGS = flags.FLAGS
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute and parameter dtype.")
flags.DEFINE_integer("batch_size", 16, "Rows per batch (fewer in long length buckets).")
flags.DEFINE_integer("max_length", 0, "Longest window in tokens (0: the model's max_position_embeddings).")
flags.DEFINE_string("mesh_shape", "", "DATA,FSDP,TENSOR mesh sizes (-1 = the rest); '' = all local devices "
                    "on the data axis on GPU/TPU, one device on CPU.")


def partitioner_from_flags() -> Partitioner:
    """The mesh of --mesh_shape (checked against the device count before any weight is read)."""
    mesh_shape = parse_mesh_shape(FLAGS.mesh_shape, "--mesh_shape") if FLAGS.mesh_shape else None
    partitioner = inference_partitioner(mesh_shape, rules_from_config(get_partitioning_config().rules))
    logging.info("running on %s", partitioner.describe())
    return partitioner


def check_output_file(path: str, requests_file: str) -> None:
    """Before the model loads: the output's directory is writable and has room for the results (each
    output line is its request line plus a few fields: at least the request file's size)."""
    io_utils.check_writable(os.path.dirname(os.path.abspath(path)), os.path.getsize(requests_file),
                            what="--output directory")


def load_engine(model_dir: str, **kwargs: Any) -> Engine:
    """The engine of `model_dir` on the flags' mesh, dtype, batch size and max length."""
    return load_in_dtype(model_dir, FLAGS.dtype, partitioner_from_flags(), batch_size=FLAGS.batch_size,
                         max_length=FLAGS.max_length or None, **kwargs)
