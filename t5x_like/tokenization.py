"""Tokenizer loading and lm-evaluation-harness style request encoding.

Policies (explicit, so results do not depend on a transformers version's defaults):
- **Loading**: a directory with `tokenizer.json` is loaded with `PreTrainedTokenizerFast`, i.e. that
  file as it is (what transformers 4.x, lm-eval and vLLM use). transformers 5's `AutoTokenizer`
  rebuilds Llama/Mistral tokenizers from the vocab and then tokenizes a leading space differently
  from SentencePiece (" Paris" -> [3681] instead of [29871, 3681]); directories without
  `tokenizer.json` fall back to `AutoTokenizer`. Never the hub: `local_files_only=True`.
- **BOS**: the HF tokenizer never adds special tokens itself; `Tokenizer.add_bos` decides. By
  default it is what the tokenizer would do on its own (probed once at load: Llama-2/Mistral True,
  SmolLM2 False), logged, and can be forced with `load_tokenizer(path, add_bos=...)`. Special
  tokens written literally in the text (e.g. "<s>") are still parsed as special tokens.
- **Padding**: `pad_id` is the tokenizer's pad token, else EOS, else UNK (Llama-2 and Mistral have
  no pad token, so theirs is EOS = 2). Padded positions must be masked by the caller anyway.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
from typing import Sequence

import transformers

from t5x_like.errors import UserError

log = logging.getLogger(__name__)


class TokenizerMismatchError(UserError, ValueError):
    """The tokenizer's vocabulary does not fit the model's embedding table."""


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """An HF tokenizer plus the explicit BOS / pad decisions the rest of t5x_like relies on."""

    hf: transformers.PreTrainedTokenizerBase
    path: str
    add_bos: bool
    bos_id: int | None
    eos_id: int | None
    pad_id: int

    @property
    def vocab_size(self) -> int:
        """Number of token ids the tokenizer can emit (base vocabulary plus added tokens)."""
        return len(self.hf)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`, with BOS prepended when `add_bos` (default: `self.add_bos`)."""
        ids = self.hf.encode(text, add_special_tokens=False)
        bos = self.add_bos if add_bos is None else add_bos
        return [self.bos_id, *ids] if bos and self.bos_id is not None else ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids` (no clean-up of spaces around punctuation)."""
        return self.hf.decode(list(ids), skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids) of a loglikelihood request, with lm-eval-harness semantics.

        Trailing whitespace of the context moves to the start of the continuation; then
        `context + continuation` is encoded as one text and split at `len(encode(context))`, so the
        continuation's tokens are those of the joint text. The context ids returned are
        `encode(context)` (as lm-eval does; they differ from the joint prefix only where a merge
        crosses the boundary). An empty context becomes `[BOS]` (EOS when there is no BOS),
        lm-eval's prefix token, so the first continuation token is still scored. An empty
        continuation, or one that yields no tokens of its own, raises ValueError.
        """
        stripped = context.rstrip()
        continuation = context[len(stripped):] + continuation
        context = stripped
        if not continuation:
            raise ValueError(f"empty continuation for context {context[-60:]!r}: nothing to score")
        if not context:
            prefix = self.bos_id if self.bos_id is not None else self.eos_id
            return [prefix], self.encode(continuation, add_bos=False)
        context_ids = self.encode(context)
        continuation_ids = self.encode(context + continuation)[len(context_ids):]
        if not continuation_ids:  # lm-eval asserts this too: a zero-token continuation scores 0
            raise ValueError(f"continuation {continuation!r} merges entirely into the last token of context "
                             f"{context[-40:]!r} when encoded together; rephrase the request")
        return context_ids, continuation_ids

    def check_matches_model(self, model_vocab_size: int) -> None:
        """Raise TokenizerMismatchError unless every token id indexes the model's embedding."""
        if self.vocab_size > model_vocab_size:
            raise TokenizerMismatchError(
                f"tokenizer {self.path} has {self.vocab_size} tokens but the model's embedding has "
                f"{model_vocab_size} rows: ids >= {model_vocab_size} would index past it. Use the "
                "tokenizer saved with this model (or resize the model's embedding).")


def _load_hf(path: pathlib.Path) -> transformers.PreTrainedTokenizerBase:
    """The HF tokenizer in a local directory (see the module docstring for why not always AutoTokenizer)."""
    if (path / "tokenizer.json").is_file():
        return transformers.PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _adds_bos_by_default(hf: transformers.PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer on its own puts BOS in front of a text."""
    if hf.bos_token_id is None:
        return False
    plain = hf.encode("a", add_special_tokens=False)
    return hf.encode("a", add_special_tokens=True)[: len(plain) + 1] == [hf.bos_token_id, *plain]


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")  # a fast tokenizer, or a sentencepiece model


def load_tokenizer(path: str | os.PathLike, add_bos: bool | None = None) -> Tokenizer:
    """Load the tokenizer in a local directory, with explicit BOS and pad decisions (module docstring)."""
    directory = pathlib.Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {directory}")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{directory} has no tokenizer ({' or '.join(TOKENIZER_FILES)}); copy the "
                                "tokenizer files of the model into it")
    try:
        hf = _load_hf(directory)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"no loadable tokenizer in {directory} (need tokenizer.json or tokenizer.model "
                                f"+ tokenizer_config.json): {e}") from e
    pad_id = next((i for i in (hf.pad_token_id, hf.eos_token_id, hf.unk_token_id) if i is not None), None)
    if pad_id is None:
        raise ValueError(f"tokenizer {directory} has no pad, EOS or UNK token to pad with")
    resolved_bos = _adds_bos_by_default(hf) if add_bos is None else add_bos
    if resolved_bos and hf.bos_token_id is None:
        raise ValueError(f"add_bos=True but tokenizer {directory} has no BOS token")
    log.info("tokenizer %s: %d tokens, add_bos=%s%s, pad_id=%d", directory, len(hf), resolved_bos,
             " (tokenizer default)" if add_bos is None else "", pad_id)
    return Tokenizer(hf=hf, path=str(directory), add_bos=resolved_bos, bos_id=hf.bos_token_id,
                     eos_id=hf.eos_token_id, pad_id=pad_id)
