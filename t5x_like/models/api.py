"""The one model API: the pure functions every jitted program is built from (t5x's `models.py` idea).

The trainer's loss, the scorer's decoder body and scored head, and the generator's prefill and
decode step all call `DecoderModel`; no other module runs the network (`Llama.apply`) itself, so
numerics (fp32 log-softmax, dtypes, remat, attention implementation) and the logical sharding
constraints of activations and the KV cache have one home. Every method is pure and traceable:
the caller jits it through the `Partitioner`, which supplies the mesh and the rules table.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from t5x_like.models.config import ModelConfig
from t5x_like.models.llama import Cache, Llama, init_cache, init_params

Params = Any
CACHE_KV_AXES = ("activation_batch", "activation_kv_heads", "activation_length", "activation_head_dim")
CACHE_ROW_AXES = ("activation_batch", "activation_length")


@dataclasses.dataclass(frozen=True)
class DecoderModel:
    """A decoder-only LM (Llama-2 / Mistral / SmolLM2) seen through the functions jitted programs use."""

    config: ModelConfig
    deterministic: bool = True  # False: LoRA dropout active (training)

    @property
    def network(self) -> Llama:
        return Llama(self.config, self.deterministic)

    # -- parameters ---------------------------------------------------------------------------
    def init(self, rng: jax.Array) -> Params:
        """Randomly initialised params, boxed with their logical axis names."""
        return init_params(self.config, rng, self.deterministic)

    def abstract_params(self) -> Params:
        """Shapes, dtypes and logical axes of every param (boxed ShapeDtypeStructs; no memory used)."""
        return jax.eval_shape(lambda: self.init(jax.random.PRNGKey(0)))

    # -- building blocks ----------------------------------------------------------------------
    def hidden(self, params: Params, tokens_bt: jax.Array, positions_bt: jax.Array, valid_bt: jax.Array, *,
               segments_bt: jax.Array | None = None, documents_bt: jax.Array | None = None,
               dropout_rng: jax.Array | None = None) -> jax.Array:
        """Final-normed hidden states (B, T, D) of rows without a cache (training, scoring)."""
        rngs = {"dropout": dropout_rng} if dropout_rng is not None else {}
        hidden_btd, _ = self.network.apply({"params": params}, tokens_bt, positions_bt, valid_bt,
                                           segments_bt=segments_bt, documents_bt=documents_bt, rngs=rngs)
        return hidden_btd

    def logits(self, params: Params, hidden_xd: jax.Array) -> jax.Array:
        """Vocabulary logits of hidden states of any leading shape (tied or separate head)."""
        return self.network.apply({"params": params}, hidden_xd, method=Llama.logits)

    # -- training -----------------------------------------------------------------------------
    def loss_sums(self, params: Params, batch: dict[str, jax.Array], dropout_rng: jax.Array | None
                  ) -> tuple[jax.Array, jax.Array]:
        """(sum of weighted next-token NLL, sum of weights) of a batch; NLL in fp32 via logsumexp."""
        hidden_btd = self.hidden(params, batch["tokens"], batch["positions"], batch["valid"], dropout_rng=dropout_rng)
        logits_btv = self.logits(params, hidden_btd[:, :-1]).astype(jnp.float32)
        targets_bt = batch["tokens"][:, 1:]
        target_logit_bt = jnp.take_along_axis(logits_btv, targets_bt[..., None], axis=-1)[..., 0]
        nll_bt = jax.nn.logsumexp(logits_btv, axis=-1) - target_logit_bt
        weights_bt = batch["weights"][:, 1:]
        return jnp.sum(nll_bt * weights_bt), jnp.sum(weights_bt)

    # -- scoring ------------------------------------------------------------------------------
    def score_body(self, params: Params, tokens_bl: jax.Array, positions_bl: jax.Array, valid_bl: jax.Array,
                   segments_bl: jax.Array, documents_bl: jax.Array) -> jax.Array:
        """Hidden states (B, L, D) of right-padded, possibly packed scoring rows."""
        return self.hidden(params, tokens_bl, positions_bl, valid_bl, segments_bt=segments_bl,
                           documents_bt=documents_bl)

    def score_head(self, params: Params, hidden_bld: jax.Array, flat_index_k: jax.Array, targets_k: jax.Array
                   ) -> tuple[jax.Array, jax.Array]:
        """fp32 log-prob of each target and whether it is the argmax, at the K gathered positions only.

        With the vocabulary axis sharded, XLA's SPMD partitioner turns the log-softmax and argmax
        into cross-shard reductions, so the numbers equal the unsharded ones.
        """
        hidden_kd = hidden_bld.reshape(-1, hidden_bld.shape[-1])[flat_index_k]
        logits_kv = self.logits(params, hidden_kd).astype(jnp.float32)
        logprobs_kv = jax.nn.log_softmax(logits_kv, axis=-1)
        target_logprob_k = jnp.take_along_axis(logprobs_kv, targets_k[:, None], axis=-1)[:, 0]
        is_argmax_k = jnp.argmax(logits_kv, axis=-1) == targets_k
        return target_logprob_k, is_argmax_k

    # -- generation ---------------------------------------------------------------------------
    def init_cache(self, batch: int, length: int) -> Cache:
        """An empty KV cache, sharded over batch rows and KV heads by the rules table."""
        cache = init_cache(self.config, batch, length)
        kv = lambda xs: [nn.with_logical_constraint(x, CACHE_KV_AXES) for x in xs]
        return {"k": kv(cache["k"]), "v": kv(cache["v"]),
                "positions": nn.with_logical_constraint(cache["positions"], CACHE_ROW_AXES),
                "valid": nn.with_logical_constraint(cache["valid"], CACHE_ROW_AXES)}

    def prefill(self, params: Params, tokens_bp: jax.Array, positions_bp: jax.Array, valid_bp: jax.Array,
                cache: Cache) -> tuple[jax.Array, Cache]:
        """Writes the prompts into cache slots [0, P) and returns the logits (B, V) at their last slot."""
        hidden_bpd, cache = self.network.apply({"params": params}, tokens_bp, positions_bp, valid_bp,
                                               cache=cache, cache_index=0)
        return self.logits(params, hidden_bpd[:, -1]), cache

    def decode_step(self, params: Params, cache: Cache, tokens_b1: jax.Array, positions_b1: jax.Array,
                    valid_b1: jax.Array, cache_index: jax.Array) -> tuple[jax.Array, Cache]:
        """One token per row into slot `cache_index`; the next-token logits (B, V) and the cache."""
        hidden_b1d, cache = self.network.apply({"params": params}, tokens_b1, positions_b1, valid_b1,
                                               cache=cache, cache_index=cache_index)
        return self.logits(params, hidden_b1d[:, 0]), cache
