"""Log-likelihood of (context, continuation) requests with lm-evaluation-harness semantics.

A request's tokens are `(context_ids + continuation_ids)[-(max_length + 1):]` (left-truncated when
too long, and counted); the model reads all but the last token and the continuation's tokens are
scored at the last `len(continuation_ids)` positions. The result is the summed log-probability,
whether every continuation token is the argmax (`is_greedy`), and the number of tokens.

Static shapes, so XLA compiles a handful of programs rather than one per batch:
- Requests are packed into rows of `pack_length` tokens (best fit, longest first): each request is a
  document of its row that attends only to itself (`documents_bt` of the model) and keeps its own
  positions, so padding is nearly gone and the numbers equal scoring it alone. A request longer than
  `pack_length` opens a row of its length bucket (16, 32, multiples of 64 up to 512, then powers of
  two up to `max_length`) that shorter requests may fill. Rows of one length form batches of that
  bucket's fixed number of rows (only the last batch has empty, masked rows): the decoder body is
  compiled at most once per length bucket. `pack_length=0` gives every request its own row.
- The vocabulary projection and the fp32 log-softmax run only at the scored positions: their flat
  indices are gathered into a vector padded to a power of two (the largest any batch of the bucket
  needs), and a small head program (compiled once per bucket) projects just those. For
  multiple-choice requests that is a few percent of the positions, which saves the ~25% of a full
  forward a small model spends there.
- Requests sharing their context tokens (the options of a multiple-choice item) are packed into one
  row: the context once, then each continuation as a branch at the same positions that sees only
  the context and itself (`segments_bt` of the model). The first continuation token of every branch
  is predicted at the shared last context position. k options cost one pass over the context
  instead of k; the numbers equal scoring each request alone.
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

from jax.sharding import NamedSharding, PartitionSpec

from t5x_like.models.api import DecoderModel
from t5x_like.partitioning import BATCH_AXES, Partitioner

log = logging.getLogger(__name__)

BUCKET_STEP = 64  # length buckets: 16, 32, then multiples of 64 up to LINEAR_BUCKETS_UP_TO, then powers of two
LINEAR_BUCKETS_UP_TO = 512
SHORT_BUCKETS = (16, 32)  # short requests (one-sentence contexts) would waste most of a 64-token row
MIN_SCORED_WIDTH = 32
DEFAULT_MAX_BATCH_TOKENS = 16384  # caps rows per batch in long buckets (CPU attention materialises L x L scores)
CPU_SCORE_BATCH_TOKENS = 1024  # XLA:CPU is fastest per token near 1024-token batches (activations stay in cache)
DEFAULT_PACK_LENGTH = 256  # tokens per packed row: long enough to pack, short enough for cheap attention


@dataclasses.dataclass(frozen=True)
class ScoreRequest:
    """One loglikelihood request: score `continuation` given `context`."""

    context: str
    continuation: str


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """Sum of continuation log-probs, whether greedy decoding would produce it, and its length."""

    logprob: float
    is_greedy: bool
    num_tokens: int
    truncated: bool = False  # the context was left-truncated to fit `max_length`


@dataclasses.dataclass(frozen=True)
class _Member:
    """One request inside a row: the row positions whose next-token logits score its `targets`."""

    index: int
    scored: np.ndarray
    targets: np.ndarray
    truncated: bool


@dataclasses.dataclass(frozen=True)
class _Row:
    """Model input of one or more requests: tokens, their positions, segments (0 = shared prefix) and
    documents (tokens attend only within their document)."""

    inputs: np.ndarray
    positions: np.ndarray
    segments: np.ndarray
    documents: np.ndarray
    members: tuple[_Member, ...]

    @property
    def index(self) -> int:
        """The first request index in the row (a stable sort key)."""
        return self.members[0].index


@dataclasses.dataclass(frozen=True)
class _Batch:
    """Rows padded to `length`; `width` = padded number of scored positions in the batch."""

    rows: tuple[_Row, ...]
    length: int
    width: int


def length_buckets(max_length: int, step: int = BUCKET_STEP,
                   linear_up_to: int = LINEAR_BUCKETS_UP_TO) -> tuple[int, ...]:
    """Padded lengths: 16, 32, step, 2*step, ... up to `linear_up_to`, then doubling; the last is `max_length`."""
    buckets = [b for b in SHORT_BUCKETS if b < min(step, max_length)]
    buckets += list(range(step, min(linear_up_to, max_length) + 1, step))
    size = buckets[-1] if buckets else step
    while size < max_length:
        size *= 2
        buckets.append(min(size, max_length))
    if not buckets or buckets[-1] != max_length:
        buckets.append(max_length)
    return tuple(sorted(set(buckets)))


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding `n` tokens."""
    for size in buckets:
        if size >= n:
            return size
    raise ValueError(f"{n} tokens exceed the largest bucket {buckets[-1]}")


def scored_width(num_scored: int, limit: int) -> int:
    """Padded number of scored positions: the next power of two (>= MIN_SCORED_WIDTH), capped at `limit`."""
    width = MIN_SCORED_WIDTH
    while width < num_scored:
        width *= 2
    return min(width, limit)


def to_row(index: int, context_ids: Sequence[int], continuation_ids: Sequence[int], max_length: int) -> _Row:
    """One request alone: lm-eval's `(context + continuation)[-(max_length + 1):]`, split into inputs
    and the targets scored at its last len(continuation) positions."""
    if not continuation_ids:
        raise ValueError(f"request {index}: the continuation has no tokens; nothing to score")
    if not context_ids:
        raise ValueError(f"request {index}: the context has no tokens (lm-eval uses [BOS] for an empty "
                         "context; encode requests with Tokenizer.encode_pair)")
    if len(continuation_ids) > max_length:
        raise ValueError(f"request {index}: the continuation has {len(continuation_ids)} tokens, more than "
                         f"max_length={max_length}; it cannot be scored in one window")
    whole = np.asarray([*context_ids, *continuation_ids], dtype=np.int32)
    truncated = len(whole) > max_length + 1
    whole = whole[-(max_length + 1):]
    n, c = len(whole) - 1, len(continuation_ids)
    member = _Member(index, np.arange(n - c, n), whole[-c:], truncated)
    return _Row(whole[:-1], np.arange(n, dtype=np.int32), np.zeros(n, np.int32), np.zeros(n, np.int32), (member,))


def pack_row(indices: Sequence[int], context_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> _Row:
    """Requests with the same context in one row: context, then each continuation but its last token
    as branch k (segment k, positions continuing the context). Branch k's first token is predicted at
    the last context position; its token j+1 at the row position of its token j."""
    c = len(context_ids)
    inputs, positions, segments, members = list(context_ids), list(range(c)), [0] * c, []
    for k, (index, cont) in enumerate(zip(indices, continuations), start=1):
        start = len(inputs)
        inputs += cont[:-1]
        positions += range(c, c + len(cont) - 1)
        segments += [k] * (len(cont) - 1)
        scored = np.asarray([c - 1, *range(start, start + len(cont) - 1)])
        members.append(_Member(index, scored, np.asarray(cont, np.int32), False))
    return _Row(np.asarray(inputs, np.int32), np.asarray(positions, np.int32), np.asarray(segments, np.int32),
                np.zeros(len(inputs), np.int32), tuple(members))


def packed_rows(token_requests: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int) -> list[_Row]:
    """Validated rows: requests sharing a context packed together when the packed row fits `max_length`,
    the others (and every left-truncated request) alone."""
    singles = [to_row(i, ctx, cont, max_length) for i, (ctx, cont) in enumerate(token_requests)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for row in singles:
        if not row.members[0].truncated:
            groups.setdefault(tuple(token_requests[row.index][0]), []).append(row.index)
    rows, packed = [], set()
    for context, indices in groups.items():
        conts = [list(token_requests[i][1]) for i in indices]
        if len(indices) > 1 and len(context) + sum(len(x) - 1 for x in conts) <= max_length:
            rows.append(pack_row(indices, context, conts))
            packed.update(indices)
    return rows + [row for row in singles if row.index not in packed]


def default_score_batch_tokens() -> int:
    """Tokens per scoring batch: 1024 on CPU (measured on SmolLM2-135M: ~800 tokens/s vs ~710 at 4096),
    DEFAULT_MAX_BATCH_TOKENS on accelerators, where larger batches keep the matrix units busy."""
    return CPU_SCORE_BATCH_TOKENS if jax.default_backend() == "cpu" else DEFAULT_MAX_BATCH_TOKENS


def rows_per_batch(length: int, batch_size: int, max_batch_tokens: int, multiple: int = 1) -> int:
    """The fixed number of rows of a bucket: `batch_size`, fewer when `length` x rows would pass the token
    cap, rounded up to a multiple of `multiple` (the mesh's data-parallel size: rows split evenly)."""
    rows = max(1, min(batch_size, max_batch_tokens // length))
    return -(-rows // multiple) * multiple


def concat_rows(rows: Sequence[_Row]) -> _Row:
    """Rows side by side in one row: row j becomes document j and keeps its positions and segments."""
    offsets = np.cumsum([0] + [len(r.inputs) for r in rows[:-1]])
    members = tuple(dataclasses.replace(m, scored=m.scored + offset)
                    for row, offset in zip(rows, offsets) for m in row.members)
    documents = np.concatenate([np.full(len(r.inputs), j, np.int32) for j, r in enumerate(rows)])
    return _Row(np.concatenate([r.inputs for r in rows]), np.concatenate([r.positions for r in rows]),
                np.concatenate([r.segments for r in rows]), documents, members)


def pack_rows(rows: Sequence[_Row], buckets: Sequence[int], pack_length: int) -> list[tuple[int, _Row]]:
    """(length, packed row) pairs: best-fit decreasing into bins of max(bucket of pack_length, bucket of
    the row that opens the bin) tokens; `pack_length=0` keeps every row alone in its bucket."""
    ordered = sorted(rows, key=lambda r: (-len(r.inputs), r.index))
    if pack_length <= 0:
        return [(bucket_for(len(r.inputs), buckets), r) for r in ordered]
    pack_to = bucket_for(min(pack_length, buckets[-1]), buckets)
    bins: list[tuple[int, list[_Row]]] = []
    free: list[tuple[int, int]] = []  # (free tokens, bin index), sorted
    for row in ordered:
        n = len(row.inputs)
        slot = bisect.bisect_left(free, (n, -1))
        if slot == len(free):
            bins.append((max(pack_to, bucket_for(n, buckets)), [row]))
            remaining, index = bins[-1][0] - n, len(bins) - 1
        else:
            remaining, index = free.pop(slot)
            bins[index][1].append(row)
            remaining -= n
        if remaining > 0:
            bisect.insort(free, (remaining, index))
    return [(length, concat_rows(members)) for length, members in bins]


def plan_batches(rows: Sequence[_Row], buckets: Sequence[int], batch_size: int,
                 max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
                 pack_length: int = DEFAULT_PACK_LENGTH) -> list[_Batch]:
    """Packed rows grouped by length, longest first, cut into batches of the bucket's fixed number of
    rows (only a bucket's last batch has empty rows); one scored width per bucket."""
    by_length: dict[int, list[_Row]] = {}
    for length, row in pack_rows(rows, buckets, pack_length):
        by_length.setdefault(length, []).append(row)
    batches: list[_Batch] = []
    for length in sorted(by_length, reverse=True):
        capacity = rows_per_batch(length, batch_size, max_batch_tokens)
        group = by_length[length]
        chunks = [tuple(group[i:i + capacity]) for i in range(0, len(group), capacity)]
        most_scored = max(sum(len(m.targets) for r in chunk for m in r.members) for chunk in chunks)
        width = scored_width(most_scored, capacity * length)
        batches += [_Batch(chunk, length, width) for chunk in chunks]
    return batches


def _batch_arrays(batch: _Batch, batch_size: int, pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded tokens/positions/segments/documents/validity (B, L) and the flat indices/targets
    of the scored positions (K,)."""
    tokens = np.full((batch_size, batch.length), pad_id, np.int32)
    positions = np.zeros((batch_size, batch.length), np.int32)
    segments = np.zeros((batch_size, batch.length), np.int32)
    documents = np.zeros((batch_size, batch.length), np.int32)
    valid = np.zeros((batch_size, batch.length), bool)
    flat_index = np.zeros((batch.width,), np.int32)
    targets = np.zeros((batch.width,), np.int32)
    k = 0
    for b, row in enumerate(batch.rows):
        n = len(row.inputs)
        tokens[b, :n], positions[b, :n], segments[b, :n] = row.inputs, row.positions, row.segments
        documents[b, :n] = row.documents
        valid[b, :n] = True
        for member in row.members:
            c = len(member.targets)
            flat_index[k:k + c] = b * batch.length + member.scored
            targets[k:k + c] = member.targets
            k += c
    return {"tokens": tokens, "positions": positions, "segments": segments, "documents": documents,
            "valid": valid, "flat_index": flat_index, "targets": targets}


class Scorer:
    """Scores token-level requests with one compiled body per length bucket (see the module docstring).

    Programs run on the partitioner's mesh: weights by the rules table, rows over (data, fsdp), the
    scored positions and results replicated so every process reads them.
    """

    def __init__(self, model: DecoderModel, params: Any, *, partitioner: Partitioner | None = None,
                 batch_size: int = 16, max_length: int | None = None, pad_id: int = 0,
                 buckets: Sequence[int] | None = None, max_batch_tokens: int | None = None,
                 pack_length: int = DEFAULT_PACK_LENGTH):
        """`max_batch_tokens` caps rows x length per batch (None: `default_score_batch_tokens()`)."""
        self.model = model
        self.partitioner = partitioner or Partitioner.single_device()
        self.param_shardings = self.partitioner.shardings_of(model.abstract_params())
        self.params = self.partitioner.place(params, self.param_shardings)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens or default_score_batch_tokens()
        self.pack_length = pack_length
        self.max_length = max_length or model.config.max_position_embeddings
        self.buckets = tuple(buckets) if buckets else length_buckets(self.max_length)
        self.pad_id = pad_id
        self._bodies: dict[int, Any] = {}  # length -> compiled decoder body
        self._heads: dict[tuple[int, int], Any] = {}  # (length, width) -> compiled head
        self.stats = {"requests": 0, "truncated": 0, "batches": 0, "body_flops": 0.0,
                      "head_flops": 0.0, "compute_s": 0.0, "compile_s": 0.0}

    @property
    def compile_count(self) -> dict[str, int]:
        """Programs compiled so far: decoder bodies (<= one per length bucket) and scoring heads."""
        return {"body": len(self._bodies), "head": len(self._heads)}

    def _hidden_sharding(self) -> NamedSharding:
        return NamedSharding(self.partitioner.mesh, PartitionSpec(BATCH_AXES, None, None))

    def _body(self, length: int) -> Any:
        if length not in self._bodies:
            p = self.partitioner
            rows = self.rows(length)
            rows_2d = p.batch_sharding(2)
            ints = jax.ShapeDtypeStruct((rows, length), jnp.int32, sharding=rows_2d)
            valid = jax.ShapeDtypeStruct((rows, length), jnp.bool_, sharding=rows_2d)
            start = time.perf_counter()
            fn = p.jit(self.model.score_body, in_shardings=(self.param_shardings,) + (rows_2d,) * 5,
                       out_shardings=self._hidden_sharding())
            self._bodies[length] = fn.lower(self.params, ints, ints, valid, ints, ints).compile()
            self.stats["compile_s"] += time.perf_counter() - start
            log.info("scoring: compiled decoder body for (%d, %d) in %.1fs", rows, length,
                     time.perf_counter() - start)
        return self._bodies[length]

    def _head(self, length: int, width: int) -> Any:
        if (length, width) not in self._heads:
            p, c = self.partitioner, self.model.config
            hidden = jax.ShapeDtypeStruct((self.rows(length), length, c.hidden_size), c.jnp_dtype,
                                          sharding=self._hidden_sharding())
            index = jax.ShapeDtypeStruct((width,), jnp.int32, sharding=p.replicated())
            start = time.perf_counter()
            fn = p.jit(self.model.score_head,
                       in_shardings=(self.param_shardings, self._hidden_sharding(), p.replicated(), p.replicated()),
                       out_shardings=(p.replicated(), p.replicated()))
            self._heads[(length, width)] = fn.lower(self.params, hidden, index, index).compile()
            self.stats["compile_s"] += time.perf_counter() - start
        return self._heads[(length, width)]

    def memory_analysis(self) -> Any:
        """XLA's per-device memory analysis of the largest decoder body (the longest bucket)."""
        return self._body(self.buckets[-1]).memory_analysis()

    def rows(self, length: int) -> int:
        """Rows per batch in the `length` bucket."""
        return rows_per_batch(length, self.batch_size, self.max_batch_tokens, self.partitioner.data_parallel_size)

    def prepare(self, token_requests: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[_Row]:
        """Validates, truncates and packs every request before any compute (errors name the request index)."""
        return packed_rows(token_requests, self.max_length)

    def score_tokens(self, token_requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                     progress: bool = True) -> list[ScoreResult]:
        """Results for (context_ids, continuation_ids) pairs, in input order."""
        rows = self.prepare(token_requests)
        truncated = sum(m.truncated for r in rows for m in r.members)
        if truncated:
            log.warning("scoring: %d of %d requests were longer than max_length=%d + 1 tokens; their "
                        "contexts were left-truncated", truncated, len(token_requests), self.max_length)
        results: list[ScoreResult | None] = [None] * len(token_requests)
        bar = tqdm(total=len(token_requests), desc="scoring", unit="req", disable=not progress)
        for batch in plan_batches(rows, self.buckets, self.batch_size, self.max_batch_tokens, self.pack_length):
            batch_results = self._run(batch)
            for index, result in batch_results:
                results[index] = result
            bar.update(len(batch_results))
        bar.close()
        self.stats["requests"] += len(token_requests)
        self.stats["truncated"] += truncated
        return results  # type: ignore[return-value]

    def _run(self, batch: _Batch) -> list[tuple[int, ScoreResult]]:
        """One batch through the compiled body and head; (request index, result) per request."""
        arrays = _batch_arrays(batch, self.rows(batch.length), self.pad_id)
        body, head = self._body(batch.length), self._head(batch.length, batch.width)
        p = self.partitioner
        start = time.perf_counter()
        rows = [p.place_array(arrays[k], p.batch_sharding(2))
                for k in ("tokens", "positions", "valid", "segments", "documents")]
        hidden = body(self.params, *rows)
        index, targets = (p.place_array(arrays[k], p.replicated()) for k in ("flat_index", "targets"))
        logprob_k, greedy_k = (np.asarray(x) for x in head(self.params, hidden, index, targets))
        self.stats["compute_s"] += time.perf_counter() - start
        self.stats["body_flops"] += _flops(body)
        self.stats["head_flops"] += _flops(head)
        self.stats["batches"] += 1
        results, k = [], 0
        for member in (m for row in batch.rows for m in row.members):
            c = len(member.targets)
            results.append((member.index, ScoreResult(float(np.sum(logprob_k[k:k + c], dtype=np.float64)),
                                                      bool(np.all(greedy_k[k:k + c])), c, member.truncated)))
            k += c
        return results


def _flops(compiled: Any) -> float:
    """XLA's FLOP count of one call of a compiled program (0 when the backend does not say)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", 0.0))
