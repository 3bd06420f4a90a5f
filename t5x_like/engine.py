"""A loaded model for inference: config + params + tokenizer + compiled scoring and generation.

This is the object evaluation, the CLIs and the demos use. `Engine.load` is the one way in from
files: the resolved ModelConfig (the model section's dtype, param_dtype, remat and attention impl)
and a Partitioner; every tensor streams from the safetensors straight to its sharding under the
rules table, as training's load does. Wrapping params already held (after training) goes through
the constructor; LoRA adapters are merged into the kernels there. Scoring and generation programs
compile lazily through the partitioner, at most one per shape bucket, and are reused across calls.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

from t5x_like import checkpoints, hf_io, memory
from t5x_like.decoding import Generation, GenerationRequest, Generator, finish, stop_token_sequences
from t5x_like.errors import UserError
from t5x_like.io_utils import iter_jsonl
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import ModelConfig
from t5x_like.models.lora import merge_lora
from t5x_like.partitioning import Partitioner
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS, DEFAULT_PACK_LENGTH, ScoreRequest, ScoreResult, Scorer
from t5x_like.tokenization import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)


def check_model_dir(path: str | os.PathLike) -> str:
    """`path` as a string, or one clear error when there is no such directory."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    return path


class Engine:
    """Scores loglikelihood requests and generates continuations with one model, on one mesh."""

    def __init__(self, config: ModelConfig, params: Any, tokenizer: Tokenizer, *,
                 partitioner: Partitioner | None = None, batch_size: int = 16,
                 max_length: int | None = None, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                 score_batch_tokens: int | None = None, pack_length: int = DEFAULT_PACK_LENGTH, seed: int = 0,
                 progress: bool = True):
        """`params` may be boxed and may carry LoRA leaves (merged here, so inference pays no adapter cost);
        host or device arrays are placed on the partitioner's shardings (default: one device)."""
        params = nn.meta.unbox(params)
        if config.lora is not None:
            params, config = merge_lora(params, config.lora), config.replace(lora=None)
        tokenizer.check_matches_model(config.vocab_size)
        self.partitioner = partitioner or Partitioner.single_device()
        self.partitioner.check_model(config.num_heads, config.num_kv_heads)
        self.config, self.tokenizer, self.progress = config, tokenizer, progress
        self.load_s = 0.0  # set by load: seconds to read weights and tokenizer
        self.model = DecoderModel(config)
        self.max_length = max_length or config.max_position_embeddings
        self.eos_ids = tuple(sorted({*config.eos_token_ids, *(() if tokenizer.eos_id is None else (tokenizer.eos_id,))}))
        self.scorer = Scorer(self.model, params, partitioner=self.partitioner, batch_size=batch_size,
                             max_length=self.max_length, pad_id=tokenizer.pad_id,
                             max_batch_tokens=score_batch_tokens, pack_length=pack_length)
        self.params = self.scorer.params  # placed once, shared by both paths
        self.generator = Generator(self.model, self.params, partitioner=self.partitioner, eos_ids=self.eos_ids,
                                   pad_id=tokenizer.pad_id, batch_size=batch_size, max_length=self.max_length,
                                   seed=seed, max_batch_tokens=max_batch_tokens)
        log.info("engine: %s; process %d holds rows %s of each batch", self.partitioner.describe(),
                 jax.process_index(), self.partitioner.local_row_range(self.scorer.rows(self.scorer.buckets[-1])))

    @classmethod
    def load(cls, model_dir: str | os.PathLike, config: ModelConfig | None = None,
             partitioner: Partitioner | None = None, *, adapter_dir: str | None = None,
             tokenizer_dir: str | None = None, add_bos: bool | None = None, **kwargs: Any) -> "Engine":
        """Loads an HF model directory (config.json, safetensors, tokenizer files) onto the mesh.

        `config`: the resolved ModelConfig (`sources.model_config` of the model section, so dtype,
        param_dtype, remat and attention impl are the configured ones); None reads config.json in
        float32. `adapter_dir`: a PEFT adapter over this base model (an export's adapter/), merged.
        """
        model_dir = check_model_dir(model_dir)
        partitioner = partitioner or Partitioner.single_device()
        config = (config or ModelConfig.from_hf_dir(model_dir)).replace(lora=None)
        partitioner.check_model(config.num_heads, config.num_kv_heads)  # before any tensor is read
        start = time.perf_counter()
        shardings = partitioner.shardings_of(DecoderModel(config).abstract_params())
        params = hf_io.load_params(model_dir, config, shardings=shardings)
        if adapter_dir:
            lora, leaves = checkpoints.read_adapter(adapter_dir, config.param_dtype)
            config = config.replace(lora=lora)
            flat = traverse_util.flatten_dict(params)
            lora_shardings = traverse_util.flatten_dict(partitioner.shardings_of(DecoderModel(config).abstract_params()))
            flat.update({path: partitioner.place_array(leaf, lora_shardings[path]) for path, leaf in leaves.items()})
            params = traverse_util.unflatten_dict(flat)
        tokenizer = load_tokenizer(tokenizer_dir or model_dir, add_bos=add_bos)
        load_s = time.perf_counter() - start
        log.info("loaded %s%s (%s params, %.1fM) in %.1fs", model_dir, f" + adapter {adapter_dir}" if adapter_dir else "",
                 config.param_dtype, config.num_params() / 1e6, load_s)
        engine = cls(config, params, tokenizer, partitioner=partitioner, **kwargs)
        engine.load_s = load_s
        return engine

    def check_memory(self, max_new_tokens: int | None, max_fraction: float) -> None:
        """Compiles the largest scoring body (and, with `max_new_tokens`, the largest generation program)
        for this mesh, logs their per-device memory and refuses what does not fit, before any work."""
        fix = ("Lower eval.batch_size, eval.score_batch_tokens or eval.max_length, or shard the weights more "
               "(partitioning.mesh_shape fsdp / tensor)")
        length = self.scorer.buckets[-1]
        memory.check_program(self.scorer.memory_analysis(),
                             f"scoring bucket {length} ({self.scorer.rows(length)} rows)", fix, max_fraction)
        if max_new_tokens:
            memory.check_program(self.generator.memory_analysis(max_new_tokens),
                                 f"generation of {max_new_tokens} new tokens after prompts of up to "
                                 f"{self.max_length - max_new_tokens}", fix, max_fraction)

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
        """Loglikelihood results in input order (lm-eval semantics, see t5x_like.scoring)."""
        token_requests = [self.tokenizer.encode_pair(r.context, r.continuation) for r in requests]
        return self.scorer.score_tokens(token_requests, progress=self.progress)

    def generate(self, requests: Sequence[GenerationRequest], temperature: float = 0.0) -> list[Generation]:
        """Continuations in input order; greedy unless `temperature` > 0 (seeded by the engine's seed)."""
        prompts = [self.tokenizer.encode(r.prompt) for r in requests]
        stops = [stop_token_sequences(self.tokenizer, r.stop) for r in requests]
        outputs = self.generator.generate_tokens(prompts, [r.max_new_tokens for r in requests], stops,
                                                 temperature=temperature, progress=self.progress)
        return [finish(self.tokenizer, out, r.stop) for out, r in zip(outputs, requests)]

    @property
    def compile_counts(self) -> dict[str, int]:
        """Programs compiled so far: scoring bodies / heads and generation programs."""
        return {"score_body": self.scorer.compile_count["body"], "score_head": self.scorer.compile_count["head"],
                "generate": self.generator.compile_count}

    @property
    def timing(self) -> dict[str, float]:
        """Seconds spent loading, compiling and computing (both paths), for logs and benchmarks."""
        paths = (self.scorer.stats, self.generator.stats)
        return {"load_s": round(self.load_s, 2), "compile_s": round(sum(s["compile_s"] for s in paths), 2),
                "compute_s": round(sum(s["compute_s"] for s in paths), 2)}

    @property
    def stats(self) -> dict[str, Any]:
        """Counters (requests, truncations, batches, compile / compute seconds, FLOPs) of both paths."""
        return {"score": dict(self.scorer.stats), "generate": dict(self.generator.stats),
                "compile_counts": self.compile_counts}


def load_in_dtype(model_dir: str | os.PathLike, dtype: str, partitioner: Partitioner, **kwargs: Any) -> Engine:
    """`Engine.load` of an HF directory with `dtype` compute and parameters (the inference CLIs' and the
    lm-eval backend's way in); `kwargs` go to the Engine (batch_size, max_length, ...)."""
    config = ModelConfig.from_hf_dir(check_model_dir(model_dir), dtype=dtype, param_dtype=dtype)
    return Engine.load(model_dir, config, partitioner, **kwargs)


# --------------------------------------------------------------------------------------------
# jsonl request files (the CLIs' formats, also used by later stages)
# --------------------------------------------------------------------------------------------
class RequestFileError(UserError, ValueError):
    """A request file that cannot be read; the message names the file and line."""


def _numbered_objects(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, JSON object) of every non-blank line of a jsonl file (io_utils.iter_jsonl)."""
    if not os.path.isfile(path):
        raise RequestFileError(f"{path}: request file not found")
    for number, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise RequestFileError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
        yield number, obj


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    """obj[key] checked against `kind` (a missing key takes `default` when one is given)."""
    if key not in obj:
        if default is ...:
            raise RequestFileError(f"{where}: missing field {key!r}")
        return default
    value = obj[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RequestFileError(f"{where}: field {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def read_score_requests(path: str) -> tuple[list[dict[str, Any]], list[ScoreRequest]]:
    """Rows `{"id", "context", "continuation"}` of a jsonl file and their requests; all checked up front."""
    rows, requests = [], []
    for number, obj in _numbered_objects(path):
        where = f"{path}:{number}"
        context = _field(obj, "context", str, where)
        continuation = _field(obj, "continuation", str, where)
        if not (context + continuation)[len(context.rstrip()):]:
            raise RequestFileError(f"{where}: empty continuation; there is nothing to score")
        rows.append(obj)
        requests.append(ScoreRequest(context, continuation))
    if not rows:
        raise RequestFileError(f"{path}: no requests")
    return rows, requests


def read_generation_requests(path: str, default_max_new_tokens: int) -> tuple[list[dict[str, Any]], list[GenerationRequest]]:
    """Rows `{"id", "prompt", "max_new_tokens", "stop": [..]}` of a jsonl file and their requests."""
    rows, requests = [], []
    for number, obj in _numbered_objects(path):
        where = f"{path}:{number}"
        prompt = _field(obj, "prompt", str, where)
        max_new = _field(obj, "max_new_tokens", int, where, default_max_new_tokens)
        if max_new < 1:
            raise RequestFileError(f"{where}: max_new_tokens must be >= 1, got {max_new}")
        stop = _field(obj, "stop", (list, str), where, [])
        stop = [stop] if isinstance(stop, str) else stop
        if not all(isinstance(s, str) and s for s in stop):
            raise RequestFileError(f"{where}: 'stop' must be a list of non-empty strings, got {stop!r}")
        rows.append(obj)
        requests.append(GenerationRequest(prompt, max_new, tuple(stop)))
    if not rows:
        raise RequestFileError(f"{path}: no requests")
    return rows, requests


def score_fields(result: ScoreResult) -> dict[str, Any]:
    """The fields a scored request line gains."""
    return {"logprob": result.logprob, "is_greedy": result.is_greedy, "num_tokens": result.num_tokens,
            "truncated": result.truncated}


def generation_fields(generation: Generation) -> dict[str, Any]:
    """The fields a generation request line gains."""
    return {"text": generation.text, "num_tokens": generation.num_tokens,
            "finish_reason": generation.finish_reason, "truncated": generation.truncated}
