"""A loaded model for inference: config + params + tokenizer + compiled scoring and generation.

This is the object evaluation and the demos use: load once (`Engine.from_dir`), or wrap params
you already hold (e.g. after training, LoRA adapters are merged into the kernels here), then call
`score` / `generate` on text requests. Programs compile lazily, at most one per shape bucket, and
are reused across calls.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn

from t5x_like import hf_io
from t5x_like.decoding import Generation, GenerationRequest, Generator, finish, stop_token_sequences
from t5x_like.models.config import ModelConfig
from t5x_like.models.llama import Llama
from t5x_like.models.lora import merge_lora
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS, ScoreRequest, ScoreResult, Scorer
from t5x_like.tokenization import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)


class Engine:
    """Scores loglikelihood requests and generates continuations with one model."""

    def __init__(self, config: ModelConfig, params: Any, tokenizer: Tokenizer, *, batch_size: int = 16,
                 max_length: int | None = None, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                 seed: int = 0, progress: bool = True):
        """`params` may be boxed and may carry LoRA leaves (merged here, so inference pays no adapter cost)."""
        params = nn.meta.unbox(params)
        if config.lora is not None:
            params, config = merge_lora(params, config.lora), config.replace(lora=None)
        tokenizer.check_matches_model(config.vocab_size)
        self.config, self.params, self.tokenizer, self.progress = config, params, tokenizer, progress
        self.model = Llama(config)
        self.max_length = max_length or config.max_position_embeddings
        self.eos_ids = tuple(sorted({*config.eos_token_ids, *(() if tokenizer.eos_id is None else (tokenizer.eos_id,))}))
        self.scorer = Scorer(self.model, params, batch_size=batch_size, max_length=self.max_length,
                             pad_id=tokenizer.pad_id, max_batch_tokens=max_batch_tokens)
        self.generator = Generator(self.model, params, eos_ids=self.eos_ids, pad_id=tokenizer.pad_id,
                                   batch_size=batch_size, max_length=self.max_length, seed=seed,
                                   max_batch_tokens=max_batch_tokens)

    @classmethod
    def from_dir(cls, path: str | os.PathLike, *, dtype: str = "float32", tokenizer_dir: str | None = None,
                 add_bos: bool | None = None, **kwargs: Any) -> "Engine":
        """Loads an HF model directory (config.json, safetensors, tokenizer files) once."""
        path = os.fspath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"model directory not found: {path}")
        start = time.perf_counter()
        config, params = hf_io.load_model_dir(path, dtype=dtype)
        tokenizer = load_tokenizer(tokenizer_dir or path, add_bos=add_bos)
        log.info("loaded %s (%s, %.1fM params) in %.1fs", path, dtype, config.num_params() / 1e6,
                 time.perf_counter() - start)
        return cls(config, params, tokenizer, **kwargs)

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
    def stats(self) -> dict[str, Any]:
        """Counters (requests, truncations, batches, compile / compute seconds, FLOPs) of both paths."""
        return {"score": dict(self.scorer.stats), "generate": dict(self.generator.stats),
                "compile_counts": self.compile_counts}
