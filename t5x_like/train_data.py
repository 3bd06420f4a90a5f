"""Training data: {"prompt", "target"} jsonl -> tokenised, loss-masked, length-bucketed static-shape batches.

A sequence is `encode(prompt + target)` (the tokenizer adds BOS, as TRL did on the whole text) plus
the EOS id when `learn_eos`. Its loss weights cover the whole sequence (`loss_on="full_sequence"`,
the original's behaviour) or only the target's tokens (`"target_only"`: the tokens after
`len(encode(prompt))`, lm-eval's context/continuation split). With `learn_eos=False` every EOS id
is excluded from the loss, as the original's pad=eos collator did.

The order of batches is a pure function of (seed, epoch), so the data position is one integer
(batches consumed); a resumed run rebuilds the epoch's plan and continues at that batch.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from t5x_like import io_utils
from t5x_like.errors import UserError
from t5x_like.scoring import bucket_for

LOSS_ON = ("full_sequence", "target_only")
OVERLONG = ("drop", "truncate")
Batch = dict[str, np.ndarray]  # tokens, positions (int32), valid (bool), weights (float32), all (B, L)


class DataError(UserError, ValueError):
    """A mixture file that cannot be trained on (missing, empty, malformed)."""


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
    """One tokenised training example: ids and a per-token loss weight (1 = predicted and learned)."""

    tokens: np.ndarray  # int32 (n,)
    weights: np.ndarray  # float32 (n,); weights[0] is always 0 (nothing predicts the first token)


def read_jsonl(path: str | os.PathLike, *, required: bool = True) -> list[dict[str, Any]]:
    """The rows of a {"prompt", "target", ...} mixture file; a clear error when missing, empty or malformed."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        if not required:
            return []
        raise DataError(f"{path}: no such mixture file; run launch/prepare_data.py or set train.mixture_dir")
    rows = io_utils.read_jsonl(path)
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or "prompt" not in row or "target" not in row:
            raise DataError(f"{path}: row {number} lacks 'prompt' and 'target' fields")
    if required and not rows:
        raise DataError(f"{path}: the mixture is empty; nothing to train on")
    return rows


def tokenize_example(prompt: str, target: str, encode: Callable[[str], list[int]], eos_id: int, *,
                     loss_on: str, learn_eos: bool) -> TokenizedExample:
    """Token ids of prompt+target (+EOS) and their loss weights (see the module docstring)."""
    tokens = list(encode(prompt + target))
    weights = np.ones(len(tokens) + learn_eos, np.float32)
    if learn_eos:
        tokens.append(eos_id)
    if loss_on == "target_only":
        weights[:len(encode(prompt))] = 0.0
    elif loss_on != "full_sequence":
        raise ValueError(f"train.loss_on={loss_on!r}; choose one of {LOSS_ON}")
    tokens = np.asarray(tokens, np.int32)
    if not learn_eos:
        weights[tokens == eos_id] = 0.0
    weights[0] = 0.0
    return TokenizedExample(tokens, weights)


def tokenize_rows(rows: Sequence[dict[str, Any]], encode: Callable[[str], list[int]], eos_id: int, *,
                  loss_on: str, learn_eos: bool, max_len: int, overlong: str) -> tuple[list[TokenizedExample], int]:
    """Tokenises every row; returns (sequences, number dropped or truncated for exceeding `max_len`)."""
    if overlong not in OVERLONG:
        raise ValueError(f"train.overlong={overlong!r}; choose one of {OVERLONG}")
    out, too_long = [], 0
    for row in rows:
        seq = tokenize_example(row["prompt"], row["target"], encode, eos_id, loss_on=loss_on, learn_eos=learn_eos)
        if len(seq.tokens) > max_len:
            too_long += 1
            if overlong == "drop":
                continue
            seq = TokenizedExample(seq.tokens[:max_len], seq.weights[:max_len])  # right truncation, like TRL
        if seq.weights.sum() > 0:
            out.append(seq)
    return out, too_long


def pad_batch(seqs: Sequence[TokenizedExample], rows: int, length: int) -> Batch:
    """Right-padded (rows, length) arrays; missing rows are all-padding with zero weight."""
    tokens = np.zeros((rows, length), np.int32)
    weights = np.zeros((rows, length), np.float32)
    valid = np.zeros((rows, length), bool)
    for i, seq in enumerate(seqs):
        n = len(seq.tokens)
        tokens[i, :n], weights[i, :n], valid[i, :n] = seq.tokens, seq.weights, True
    positions = np.broadcast_to(np.arange(length, dtype=np.int32), (rows, length)).copy()
    return {"tokens": tokens, "positions": positions, "valid": valid, "weights": weights}


class TrainBatches:
    """Deterministic, resumable batches: shuffle per epoch, group by length, one bucket per batch.

    Like HF's `group_by_length`: each window of `group_size * batch_size` shuffled rows is sorted by
    length and cut into batches, and the batches of the epoch are shuffled; every batch is padded to
    the smallest bucket that holds its longest row, so a step compiles once per bucket.
    """

    def __init__(self, seqs: Sequence[TokenizedExample], *, batch_size: int, buckets: Sequence[int],
                 seed: int, group_size: int):
        if not seqs:
            raise DataError("no training sequence left after tokenisation (all too long or empty)")
        if len(seqs) < batch_size:
            raise DataError(f"{len(seqs)} training sequences are fewer than train.batch_size={batch_size}")
        self.seqs, self.batch_size, self.buckets = list(seqs), batch_size, tuple(sorted(buckets))
        self.seed, self.group_size = seed, group_size
        self.batches_per_epoch = len(self.seqs) // batch_size  # the incomplete last batch is dropped
        self._plan_epoch, self._plan = -1, []

    def epoch_plan(self, epoch: int) -> list[list[int]]:
        """Row indices of every batch of `epoch` (a pure function of seed and epoch)."""
        rng = random.Random(f"{self.seed}:train:{epoch}")
        order = list(range(len(self.seqs)))
        rng.shuffle(order)
        order = order[:self.batches_per_epoch * self.batch_size]
        window = self.group_size * self.batch_size
        batches = []
        for start in range(0, len(order), window):
            group = sorted(order[start:start + window], key=lambda i: -len(self.seqs[i].tokens))
            batches += [group[j:j + self.batch_size] for j in range(0, len(group), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def batch_at(self, position: int, rows: tuple[int, int] | None = None) -> Batch:
        """The global batch number `position` (counted over epochs); `rows` selects this host's slice."""
        epoch, index = divmod(position, self.batches_per_epoch)
        if epoch != self._plan_epoch:
            self._plan_epoch, self._plan = epoch, self.epoch_plan(epoch)
        members = [self.seqs[i] for i in self._plan[index]]
        length = bucket_for(max(len(s.tokens) for s in members), self.buckets)
        start, stop = rows or (0, self.batch_size)
        return pad_batch(members[start:stop], stop - start, length)

    def bucket_lengths(self) -> list[int]:
        """The buckets some batch can use (those that hold at least one sequence length)."""
        return sorted({bucket_for(len(s.tokens), self.buckets) for s in self.seqs})


def eval_batches(seqs: Sequence[TokenizedExample], *, batch_size: int, buckets: Sequence[int],
                 rows: tuple[int, int] | None = None, max_batches: int = 0) -> Iterator[Batch]:
    """Validation batches in length order (least padding); the last one is padded with empty rows."""
    buckets = sorted(buckets)
    ordered = sorted(seqs, key=lambda s: len(s.tokens))
    count = math.ceil(len(ordered) / batch_size)
    if max_batches:
        count = min(count, max_batches)
    start, stop = rows or (0, batch_size)
    for b in range(count):
        members = ordered[b * batch_size:(b + 1) * batch_size]
        length = bucket_for(max(len(s.tokens) for s in members), buckets)
        yield pad_batch(members[start:stop], stop - start, length)
