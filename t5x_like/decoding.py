"""Greedy and temperature generation with the model's KV cache, on static shapes.

One compiled program per (prompt bucket, new-token bucket): prompts are left-padded to a length
bucket and prefilled into a cache of `prompt_bucket + new_bucket` slots; then ONE `lax.while_loop`
decodes a token per step for the whole batch. Each row finishes on its own (EOS, one of its stop
token sequences, or its own `max_new_tokens`); a finished row stops contributing (its outputs are
masked and its cache slots stay invalid) and the loop exits as soon as every row is done.

Stragglers: a decode step streams every weight whatever the number of active rows, so a batch
whose rows are mostly done wastes most of each step. When other requests are still waiting, the
loop also exits once at most a quarter of its rows are active (after at least
`MIN_STEPS_BEFORE_PREEMPT` steps); those rows go back to the queue with their tokens so far
appended to the prompt and continue in a later batch with other long-running rows. Their tokens are
the ones an uninterrupted run computes (greedy; the prefill recomputes their cache).

Stop strings are authoritative on the host: after the loop, the continuation text is decoded and
cut at the earliest stop string (`finish_reason="stop"`). To stop early, the loop also matches a few
token spellings of each stop string (`stop_token_sequences`); those only end a row sooner, they
never decide the text.
"""
from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from t5x_like.models.api import DecoderModel
from t5x_like.partitioning import Partitioner
from t5x_like.scoring import DEFAULT_MAX_BATCH_TOKENS, bucket_for, length_buckets, rows_per_batch
from t5x_like.tokenization import Tokenizer

log = logging.getLogger(__name__)

MAX_STOP_SEQUENCES = 8  # token spellings of stop strings matched inside the loop, per row
MAX_STOP_TOKENS = 8  # longer spellings are left to the host-side check
MIN_NEW_BUCKET = 16
PROMPT_BUCKET_STEP = 32  # finer than scoring's 64: every decode step attends over the padded prompt too
_NO_TOKEN = -2  # fills the tail buffer before a row has generated enough tokens
MIN_STEPS_BEFORE_PREEMPT = 16  # a batch decodes at least this many steps before it may hand stragglers back
PREEMPT_ACTIVE_FRACTION = 4  # ... and does so once at most 1/4 of its rows are still active


@dataclasses.dataclass(frozen=True)
class GenerationRequest:
    """Continue `prompt` by at most `max_new_tokens`, cutting the text at the first of `stop`."""

    prompt: str
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Generation:
    """The continuation text (prompt excluded), its token count and why it ended ("stop"/"eos"/"length")."""

    text: str
    num_tokens: int
    finish_reason: str
    tokens: tuple[int, ...] = ()  # the generated ids kept (EOS excluded, cut at the stop string)
    truncated: bool = False  # the prompt was left-truncated to fit max_length


@dataclasses.dataclass(frozen=True)
class _Work:
    """A request in the generation queue: its (fitted) prompt and the tokens generated so far."""

    index: int
    prompt: tuple[int, ...]
    max_new: int
    stops: tuple[tuple[int, ...], ...]
    generated: tuple[int, ...] = ()

    @property
    def ids(self) -> tuple[int, ...]:
        """What the next batch prefills: the prompt and everything generated so far."""
        return self.prompt + self.generated


@dataclasses.dataclass(frozen=True)
class TokenGeneration:
    """What the loop produced for one row: the prompt it read and the generated ids (EOS included)."""

    prompt: tuple[int, ...]  # after left-truncation
    tokens: tuple[int, ...]
    hit_eos: bool
    truncated: bool = False


def new_tokens_bucket(max_new_tokens: int) -> int:
    """Decode-loop length: the next power of two >= max_new_tokens (at least MIN_NEW_BUCKET)."""
    size = MIN_NEW_BUCKET
    while size < max_new_tokens:
        size *= 2
    return size


def left_pad(prompts: Sequence[Sequence[int]], batch_size: int, length: int, pad_id: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and validity (B, P) with each prompt right-aligned; unused rows all invalid."""
    tokens = np.full((batch_size, length), pad_id, np.int32)
    valid = np.zeros((batch_size, length), bool)
    for b, ids in enumerate(prompts):
        if ids:
            tokens[b, length - len(ids):] = ids
            valid[b, length - len(ids):] = True
    return tokens, valid


def stop_token_sequences(tokenizer: Tokenizer, stop: Sequence[str]) -> list[tuple[int, ...]]:
    """Likely token spellings of each stop string (alone, and after a word / a space / a newline)
    whose decoded text contains the string, so matching one in the loop implies the host finds it."""
    spellings: list[tuple[int, ...]] = []
    for text in stop:
        candidates = [tokenizer.encode(text, add_bos=False)]
        for anchor in ("hello", "hello ", "\n"):
            anchor_ids = tokenizer.encode(anchor, add_bos=False)
            joint = tokenizer.encode(anchor + text, add_bos=False)
            if joint[:len(anchor_ids)] == anchor_ids:
                candidates.append(joint[len(anchor_ids):])
        for ids in candidates:
            ids = tuple(ids)
            if (ids and len(ids) <= MAX_STOP_TOKENS and ids not in spellings
                    and text in tokenizer.decode(ids)):
                spellings.append(ids)
    return spellings[:MAX_STOP_SEQUENCES]


def stop_arrays(per_row: Sequence[Sequence[tuple[int, ...]]], batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, S, T) right-aligned stop sequences (-1 = wildcard) and (B, S) their lengths (0 = unused)."""
    seqs = np.full((batch_size, MAX_STOP_SEQUENCES, MAX_STOP_TOKENS), -1, np.int32)
    lengths = np.zeros((batch_size, MAX_STOP_SEQUENCES), np.int32)
    for b, row in enumerate(per_row):
        for s, ids in enumerate(row[:MAX_STOP_SEQUENCES]):
            seqs[b, s, MAX_STOP_TOKENS - len(ids):] = ids
            lengths[b, s] = len(ids)
    return seqs, lengths


def _select(logits_bv: jax.Array, temperature: jax.Array, rng: jax.Array) -> jax.Array:
    """Argmax when temperature == 0, else a sample from softmax(logits / temperature) (fp32)."""
    logits_bv = logits_bv.astype(jnp.float32)
    sampled = jax.random.categorical(rng, logits_bv / jnp.maximum(temperature, 1e-6), axis=-1)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits_bv, axis=-1)).astype(jnp.int32)


def generate_batch(model: DecoderModel, params: Any, tokens_bp: jax.Array, valid_bp: jax.Array,
                   max_new_b: jax.Array, stop_seqs_bst: jax.Array, stop_lens_bs: jax.Array, tail_bt: jax.Array,
                   temperature: jax.Array, rng: jax.Array, may_preempt: jax.Array, *, num_new: int,
                   eos_ids: tuple[int, ...], pad_id: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Prefill left-padded prompts, then decode up to `num_new` tokens in one while_loop.

    `rng` is raw key data (`jax.random.key_data`), so every process can pass the same host array.
    `tail_bt` holds each row's last generated tokens (a continued row's; `_NO_TOKEN` otherwise) so
    stop sequences spanning two batches still match. With `may_preempt`, the loop also ends when
    stragglers remain (see the module docstring). Returns the generated ids (B, num_new) (pad after
    a row's end), the number of ids each row produced (EOS included) and which rows finished.
    """
    batch, prompt_len = tokens_bp.shape
    rng = jax.random.wrap_key_data(rng)
    positions_bp = jnp.maximum(jnp.cumsum(valid_bp, axis=1) - 1, 0).astype(jnp.int32)
    cache = model.init_cache(batch, prompt_len + num_new)
    logits_bv, cache = model.prefill(params, tokens_bp, positions_bp, valid_bp, cache)
    next_b = positions_bp[:, -1] + 1  # position of the first generated token
    eos = jnp.asarray(eos_ids if eos_ids else (-1,), jnp.int32)

    def record(state: dict[str, Any], token_b: jax.Array) -> dict[str, Any]:
        """Append `token_b` to the rows still active and update which rows are done."""
        i, active_b = state["i"], ~state["done"]
        token_b = jnp.where(active_b, token_b, pad_id)
        tail_bt = jnp.concatenate([state["tail"][:, 1:], jnp.where(active_b, token_b, _NO_TOKEN)[:, None]], axis=1)
        matches_bs = jnp.all((stop_seqs_bst == tail_bt[:, None, :]) | (stop_seqs_bst < 0), axis=-1)
        stopped_b = jnp.any(matches_bs & (stop_lens_bs > 0), axis=-1)
        is_eos_b = jnp.any(token_b[:, None] == eos[None, :], axis=-1)
        finished_b = is_eos_b | stopped_b | (i + 1 >= max_new_b)
        return {**state, "i": i + 1, "tail": tail_bt,
                "out": state["out"].at[:, i].set(token_b),
                "count": state["count"] + active_b.astype(jnp.int32),
                "done": state["done"] | (active_b & finished_b)}

    state = {"i": jnp.int32(0), "cache": cache, "rng": rng,
             "out": jnp.full((batch, num_new), pad_id, jnp.int32),
             "count": jnp.zeros((batch,), jnp.int32),
             "done": ~jnp.any(valid_bp, axis=1),  # padding rows are done from the start
             "tail": tail_bt}
    state = record(state, _select(logits_bv, temperature, jax.random.fold_in(rng, 0)))

    def cond(state: dict[str, Any]) -> jax.Array:
        active = jnp.sum(~state["done"])
        stragglers = may_preempt & (state["i"] >= MIN_STEPS_BEFORE_PREEMPT) & (
            active * PREEMPT_ACTIVE_FRACTION <= batch)
        return (state["i"] < num_new) & (active > 0) & ~stragglers

    def step(state: dict[str, Any]) -> dict[str, Any]:
        i = state["i"]
        last_b1 = jax.lax.dynamic_slice_in_dim(state["out"], i - 1, 1, axis=1)
        positions_b1 = (next_b + i - 1)[:, None]
        logits_bv, cache = model.decode_step(params, state["cache"], last_b1, positions_b1, ~state["done"][:, None],
                                             prompt_len + i - 1)
        token_b = _select(logits_bv, temperature, jax.random.fold_in(state["rng"], i))
        return record({**state, "cache": cache}, token_b)

    state = jax.lax.while_loop(cond, step, state)
    return state["out"], state["count"], state["done"]


class Generator:
    """Token-level batched generation; one compiled program per (prompt bucket, new-token bucket).

    Programs run on the partitioner's mesh: weights by the rules table, rows and the KV cache over
    (data, fsdp) and KV heads over tensor; the generated ids come back replicated to every process.
    """

    def __init__(self, model: DecoderModel, params: Any, *, eos_ids: Sequence[int], pad_id: int,
                 partitioner: Partitioner | None = None, batch_size: int = 16, max_length: int | None = None,
                 seed: int = 0, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS):
        self.model = model
        self.partitioner = partitioner or Partitioner.single_device()
        self.param_shardings = self.partitioner.shardings_of(model.abstract_params())
        self.params = self.partitioner.place(params, self.param_shardings)
        self.max_batch_tokens = max_batch_tokens
        self.eos_ids = tuple(sorted(set(eos_ids)))
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.max_length = max_length or model.config.max_position_embeddings
        self.buckets = length_buckets(self.max_length, step=PROMPT_BUCKET_STEP)
        self.seed = seed
        self._programs: dict[tuple[int, int], Any] = {}
        self.stats = {"requests": 0, "truncated": 0, "batches": 0, "preempted": 0, "compile_s": 0.0,
                      "compute_s": 0.0}

    @property
    def compile_count(self) -> int:
        """Programs compiled so far (at most one per (prompt bucket, new-token bucket))."""
        return len(self._programs)

    def _input_shardings(self) -> tuple[Any, ...]:
        """Shardings of generate_batch's arguments after params: per-row arrays over the batch axes."""
        p = self.partitioner
        rows = p.batch_sharding
        return (rows(2), rows(2), rows(1), rows(3), rows(2), rows(2), p.replicated(), p.replicated(), p.replicated())

    def _program(self, prompt_len: int, num_new: int) -> Any:
        key = (prompt_len, num_new)
        if key not in self._programs:
            b = self.rows(prompt_len, num_new)
            shapes = (((b, prompt_len), jnp.int32), ((b, prompt_len), jnp.bool_), ((b,), jnp.int32),
                      ((b, MAX_STOP_SEQUENCES, MAX_STOP_TOKENS), jnp.int32), ((b, MAX_STOP_SEQUENCES), jnp.int32),
                      ((b, MAX_STOP_TOKENS), jnp.int32), ((), jnp.float32), ((2,), jnp.uint32), ((), jnp.bool_))
            shardings = self._input_shardings()
            args = [jax.ShapeDtypeStruct(shape, dtype, sharding=s) for (shape, dtype), s in zip(shapes, shardings)]
            p = self.partitioner
            fn = p.jit(lambda *a: generate_batch(self.model, *a, num_new=num_new, eos_ids=self.eos_ids,
                                                 pad_id=self.pad_id),
                       in_shardings=(self.param_shardings, *shardings), out_shardings=(p.replicated(),) * 3)
            start = time.perf_counter()
            self._programs[key] = fn.lower(self.params, *args).compile()
            self.stats["compile_s"] += time.perf_counter() - start
            log.info("generation: compiled (batch %d, prompt %d, new %d) in %.1fs", b, prompt_len, num_new,
                     time.perf_counter() - start)
        return self._programs[key]

    def memory_analysis(self, max_new_tokens: int) -> Any:
        """XLA's per-device memory analysis of the largest program for `max_new_tokens`: the longest
        prompt bucket that leaves room for them, with its cache of prompt + new slots."""
        num_new = new_tokens_bucket(max_new_tokens)
        prompt_len = bucket_for(self.max_length - max_new_tokens, self.buckets)
        return self._program(prompt_len, num_new).memory_analysis()

    def rows(self, prompt_len: int, num_new: int) -> int:
        """Rows per batch: the token cap counts every cache slot (prompt + new tokens), whole over the mesh."""
        return rows_per_batch(prompt_len + num_new, self.batch_size, self.max_batch_tokens,
                              self.partitioner.data_parallel_size)

    def fit_prompt(self, prompt: Sequence[int], max_new_tokens: int) -> tuple[list[int], bool]:
        """Left-truncates a prompt so prompt + new tokens fit `max_length`; says whether it did."""
        if max_new_tokens < 1 or max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be in [1, max_length={self.max_length})")
        if not prompt:
            raise ValueError("empty prompt: encode it with BOS (or give some text) so there is a token to continue")
        keep = self.max_length - max_new_tokens
        return list(prompt[-keep:]), len(prompt) > keep

    def generate_tokens(self, prompts: Sequence[Sequence[int]], max_new_tokens: Sequence[int],
                        stop_sequences: Sequence[Sequence[tuple[int, ...]]] | None = None,
                        temperature: float = 0.0, seed: int | None = None, progress: bool = True
                        ) -> list[TokenGeneration]:
        """Generated ids per prompt, in input order; the queue is kept longest first and cut into batches.

        Sampling (temperature > 0) draws from `seed` (default: the generator's) folded with the batch index.
        """
        stop_sequences = stop_sequences or [()] * len(prompts)
        fitted = [self.fit_prompt(p, n) for p, n in zip(prompts, max_new_tokens)]
        truncated = sum(t for _, t in fitted)
        if truncated:
            log.warning("generation: %d of %d prompts left-truncated to fit max_length=%d", truncated,
                        len(prompts), self.max_length)
        queue = sorted((_Work(i, tuple(fitted[i][0]), max_new_tokens[i], tuple(stop_sequences[i]))
                        for i in range(len(prompts))), key=_queue_key)
        results: list[TokenGeneration | None] = [None] * len(prompts)
        bar = tqdm(total=len(prompts), desc="generating", unit="req", disable=not progress)
        batch_index = 0
        while queue:
            prompt_bucket = bucket_for(len(queue[0].ids), self.buckets)
            candidates = queue[:self.rows(prompt_bucket, MIN_NEW_BUCKET)]  # the most rows any program has here
            bound = new_tokens_bucket(max(w.max_new - len(w.generated) for w in candidates))
            size = self.rows(prompt_bucket, bound)  # <= the rows of the program the batch will pick
            batch, queue = queue[:size], queue[size:]
            key = jax.random.fold_in(jax.random.key(self.seed if seed is None else seed), batch_index)
            for work, finished in self._run(batch, temperature, key, may_preempt=bool(queue)):
                if finished:
                    hit_eos = bool(work.generated) and work.generated[-1] in self.eos_ids
                    results[work.index] = TokenGeneration(work.prompt, work.generated, hit_eos, fitted[work.index][1])
                    bar.update(1)
                else:
                    bisect.insort(queue, work, key=_queue_key)
                    self.stats["preempted"] += 1
            batch_index += 1
        bar.close()
        self.stats["requests"] += len(prompts)
        self.stats["truncated"] += truncated
        return results  # type: ignore[return-value]

    def _run(self, batch: list[_Work], temperature: float, rng: jax.Array, may_preempt: bool
             ) -> list[tuple[_Work, bool]]:
        """One batch: pad, run the compiled program; each row with its new tokens and whether it finished."""
        remaining = [w.max_new - len(w.generated) for w in batch]
        num_new = new_tokens_bucket(max(remaining))
        prompt_len = bucket_for(max(len(w.ids) for w in batch), self.buckets)  # cache slots may exceed max_length; positions do not
        b = self.rows(prompt_len, num_new)
        program = self._program(prompt_len, num_new)
        tokens, valid = left_pad([w.ids for w in batch], b, prompt_len, self.pad_id)
        max_new_b = np.zeros((b,), np.int32)
        max_new_b[:len(batch)] = remaining
        seqs, lens = stop_arrays([w.stops for w in batch], b)
        tails = np.full((b, MAX_STOP_TOKENS), _NO_TOKEN, np.int32)
        for r, work in enumerate(batch):
            last = work.generated[-MAX_STOP_TOKENS:]
            tails[r, MAX_STOP_TOKENS - len(last):] = last
        start = time.perf_counter()
        host = (tokens, valid, max_new_b, seqs, lens, tails, np.float32(temperature),
                np.asarray(jax.random.key_data(rng)), np.bool_(may_preempt))
        args = [self.partitioner.place_array(x, s) for x, s in zip(host, self._input_shardings())]
        out, count, done = (np.asarray(x) for x in program(self.params, *args))
        self.stats["compute_s"] += time.perf_counter() - start
        self.stats["batches"] += 1
        return [(dataclasses.replace(w, generated=w.generated + tuple(int(t) for t in out[r, :count[r]])),
                 bool(done[r])) for r, w in enumerate(batch)]


def _queue_key(work: _Work) -> tuple[int, int]:
    """Longest first (the batch's first row sets its prompt bucket), then input order."""
    return -len(work.ids), work.index


def continuation_text(tokenizer: Tokenizer, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """Text the new ids add after the prompt (keeps a leading space SentencePiece drops when decoding alone)."""
    base = tokenizer.decode(prompt_ids)
    full = tokenizer.decode([*prompt_ids, *new_ids])
    return full[len(base):] if full.startswith(base) else tokenizer.decode(new_ids)


def finish(tokenizer: Tokenizer, generated: TokenGeneration, stop: Sequence[str]) -> Generation:
    """Cuts the text at the earliest stop string and names why generation ended."""
    prompt_ids, truncated = generated.prompt, generated.truncated
    ids = generated.tokens[:-1] if generated.hit_eos else generated.tokens
    text = continuation_text(tokenizer, prompt_ids, ids)
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if cuts:
        cut = min(cuts)
        hit = next(s for s in stop if s and text.find(s) == cut)
        kept = next(k for k in range(1, len(ids) + 1)
                    if hit in continuation_text(tokenizer, prompt_ids, ids[:k]))
        return Generation(text[:cut], kept, "stop", tuple(ids[:kept]), truncated)
    reason = "eos" if generated.hit_eos else "length"
    return Generation(text, len(ids), reason, tuple(ids), truncated)
