"""The Llama-2 / Mistral decoder in Flax Linen (numerically HF's LlamaModel / MistralModel).

Parameter paths mirror HF names (`layers_3/self_attn/q_proj/kernel`, `norm/scale`, ...) so that
conversion is rename + transpose. Every parameter and activation carries a logical axis name; the
sharding rules that map them onto a mesh live in `t5x_like.partitioning`.

Attention uses explicit token positions and validity instead of array indices, so left-padded
prompts, right-padded scoring batches and the KV cache share one masking rule:
a query at position p sees the valid keys at positions p-W < q <= p (W = sliding window or inf).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from t5x_like.models import splash
from t5x_like.models.config import ModelConfig
from t5x_like.models.lora import Projection

Cache = dict[str, Any]  # {"k": [L x (B,Nkv,S,H)], "v": [...], "positions": (B,S) int32, "valid": (B,S) bool}

_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_with_no_batch_dims": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def init_cache(config: ModelConfig, batch: int, length: int, dtype: Any = None) -> Cache:
    """An empty KV cache of `length` slots per row (no slot valid yet)."""
    dtype = dtype or config.jnp_dtype
    shape = (batch, config.num_kv_heads, length, config.head_dim)  # head-major: see Attention
    return {
        "k": [jnp.zeros(shape, dtype) for _ in range(config.num_layers)],
        "v": [jnp.zeros(shape, dtype) for _ in range(config.num_layers)],
        "positions": jnp.zeros((batch, length), jnp.int32),
        "valid": jnp.zeros((batch, length), bool),
    }


def attention_mask(q_pos_bt: jax.Array, kv_pos_bs: jax.Array, kv_valid_bs: jax.Array,
                   sliding_window: int | None, segments_bt: jax.Array | None = None,
                   documents_bt: jax.Array | None = None) -> jax.Array:
    """Boolean (B, 1, T, S): causal by position, valid keys only, optional sliding window.

    With `segments_bt` (no cache), a row packs one shared prefix (segment 0) and several branches
    (segments 1, 2, ...) that continue it at the same positions: a branch sees the prefix and
    itself, never another branch — k multiple-choice options score in one pass over the context.
    With `documents_bt` (no cache), a row packs independent sequences: a token sees only tokens of
    its own document (segments then apply within each document).
    """
    delta_bts = q_pos_bt[:, :, None] - kv_pos_bs[:, None, :]
    mask_bts = kv_valid_bs[:, None, :] & (delta_bts >= 0)
    if sliding_window is not None:
        mask_bts &= delta_bts < sliding_window
    if segments_bt is not None:
        kv_seg = segments_bt[:, None, :]
        mask_bts &= (kv_seg == 0) | (kv_seg == segments_bt[:, :, None])
    if documents_bt is not None:
        mask_bts &= documents_bt[:, None, :] == documents_bt[:, :, None]
    return mask_bts[:, None]


def rope_tables(positions_bt: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """HF's rotate-half RoPE cos/sin tables, (B, T, 1, H), computed in fp32."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs_bth = positions_bt.astype(jnp.float32)[..., None] * inv_freq
    emb_bth = jnp.concatenate([freqs_bth, freqs_bth], axis=-1)
    return jnp.cos(emb_bth)[:, :, None, :], jnp.sin(emb_bth)[:, :, None, :]


def apply_rope(x_btnh: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1]."""
    x1, x2 = jnp.split(x_btnh, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x_btnh * cos.astype(x_btnh.dtype) + rotated * sin.astype(x_btnh.dtype)


ATTENTION_BLOCK = 64  # query rows per block of blocked attention (fastest on XLA:CPU, 128-512 tokens)
MAX_ATTENTION_BLOCKS = 8  # longer rows use longer blocks: compile time grows with the block count


ATTENTION_CHUNK = 512  # query rows per step of chunked attention (accelerators, rows longer than this)


def target_backend() -> str:
    """The platform a program being traced will run on: the devices of the mesh in context (a
    deviceless compile for TPU traces on a CPU host), else JAX's default backend."""
    device = jax.sharding.get_abstract_mesh().abstract_device  # None without a mesh in context
    return jax.default_backend() if device is None else device.platform


def resolve_attention_impl(impl: str, queries: int, backend: str, splash_ok: bool = False) -> str:
    """What runs for `queries`-token rows on `backend`. "auto": blocked on CPU; on accelerators the
    XLA kernel, and once the fp32 (T, S) scores of a long row would dominate memory, splash on TPU
    or chunked elsewhere. Splash ("auto" on TPU, or "splash") takes only rows where `splash_ok` (no
    branches, no filled cache) whose length fits its blocks; other rows get what "auto" gives them
    on an accelerator (XLA up to ATTENTION_CHUNK queries, chunked beyond)."""
    if impl == "auto" and backend == "cpu":
        return "blocked"
    if impl == "splash" or (impl == "auto" and backend == "tpu" and queries > ATTENTION_CHUNK):
        if splash_ok and splash.supports(queries):
            return "splash"
        impl = "auto"
    if impl == "auto":
        return "chunked" if queries > ATTENTION_CHUNK else "xla"
    return impl


def attention(q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array, mask_b1ts: jax.Array, impl: str) -> jax.Array:
    """Masked softmax attention (GQA) without a cache, by the configured implementation.

    "blocked" relies on no query attending to a key at a later array index, which holds for every
    row without a KV cache here (right-padded, left-padded and packed rows keep causal order).
    """
    impl = resolve_attention_impl(impl, q_btnh.shape[1], target_backend())
    if impl == "blocked":
        return blocked_attention(q_btnh, k_btkh, v_btkh, mask_b1ts)
    if impl == "chunked":
        return chunked_attention(q_btnh, k_btkh, v_btkh, mask_b1ts)
    implementation = "cudnn" if impl == "cudnn" else "xla"
    return jax.nn.dot_product_attention(q_btnh, k_btkh, v_btkh, mask=mask_b1ts, implementation=implementation)


def to_head_major(q_btnh: jax.Array, num_kv_heads: int) -> jax.Array:
    """(B, T, N, H) queries as (B, Nkv, G, T, H), pre-scaled by 1/sqrt(H): the grouped heads sharing a
    key/value head sit next to it, so score and output products are canonical batched matmuls."""
    b, t, n, h = q_btnh.shape
    q_bkgth = jnp.transpose(q_btnh.reshape(b, t, num_kv_heads, n // num_kv_heads, h), (0, 2, 3, 1, 4))
    return q_bkgth * jnp.asarray(h ** -0.5, q_btnh.dtype)


def from_head_major(out_bkgth: jax.Array) -> jax.Array:
    """(B, Nkv, G, T, H) attention outputs back to (B, T, N, H)."""
    b, kv, g, t, h = out_bkgth.shape
    return jnp.transpose(out_bkgth, (0, 3, 1, 2, 4)).reshape(b, t, kv * g, h)


def head_major_attention(q_bkgth: jax.Array, k_bksh: jax.Array, v_bksh: jax.Array, mask_b1ts: jax.Array
                         ) -> jax.Array:
    """softmax(q k^T + mask) v on head-major operands; scores and softmax in fp32 (as HF and
    `jax.nn.dot_product_attention`). A fully masked query row yields a finite average."""
    scores = jnp.einsum("bkgqh,bksh->bkgqs", q_bkgth, k_bksh, preferred_element_type=jnp.float32)
    scores = jnp.where(mask_b1ts[:, :, None], scores, jnp.finfo(jnp.float32).min)
    probs = jnp.exp(scores - jnp.max(scores, axis=-1, keepdims=True))
    denom = jnp.sum(probs, axis=-1, keepdims=True)
    out = jnp.einsum("bkgqs,bksh->bkgqh", probs.astype(v_bksh.dtype), v_bksh, preferred_element_type=jnp.float32)
    return (out / denom).astype(q_bkgth.dtype)


def blocked_attention(q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array, mask_b1ts: jax.Array) -> jax.Array:
    """Causal attention in query blocks: block i attends only to keys [0, end of block i).

    XLA:CPU writes every (query, key) score to memory, so skipping the all-masked upper triangle and
    using head-major matmuls (no per-op transposes) is 2-3x faster than one
    `dot_product_attention` at 128-512 tokens.
    """
    t = q_btnh.shape[1]
    block = max(ATTENTION_BLOCK, -(-t // MAX_ATTENTION_BLOCKS))
    q_bkgth = to_head_major(q_btnh, k_btkh.shape[2])
    k_bksh, v_bksh = jnp.transpose(k_btkh, (0, 2, 1, 3)), jnp.transpose(v_btkh, (0, 2, 1, 3))
    blocks = [head_major_attention(q_bkgth[:, :, :, lo:lo + block], k_bksh[:, :, :lo + block],
                                   v_bksh[:, :, :lo + block], mask_b1ts[:, :, lo:lo + block, :lo + block])
              for lo in range(0, t, block)]
    return from_head_major(jnp.concatenate(blocks, axis=3))


def chunked_attention(q_btnh: jax.Array, k_btkh: jax.Array, v_btkh: jax.Array, mask_b1ts: jax.Array) -> jax.Array:
    """`head_major_chunks` on (B, T, N, H) operands (attention without a cache)."""
    k_bksh, v_bksh = jnp.transpose(k_btkh, (0, 2, 1, 3)), jnp.transpose(v_btkh, (0, 2, 1, 3))
    return from_head_major(head_major_chunks(to_head_major(q_btnh, k_btkh.shape[2]), k_bksh, v_bksh, mask_b1ts))


def head_major_chunks(q_bkgth: jax.Array, k_bksh: jax.Array, v_bksh: jax.Array, mask_b1ts: jax.Array) -> jax.Array:
    """`head_major_attention` over query chunks taken one after another (`lax.map`, each rematerialised).

    Only one chunk's fp32 scores and probabilities (rows x heads x chunk x keys) are live at a time,
    instead of the whole (T, S) square per layer — 17 GiB for 4 rows of 4096 tokens of Llama-2-7B —
    and the backward pass recomputes them per chunk. Exact: every query row sees all its keys.
    """
    b, kv, g, t, h = q_bkgth.shape
    chunk = min(ATTENTION_CHUNK, t)
    pad = -t % chunk
    q_bkgth = jnp.pad(q_bkgth, ((0, 0), (0, 0), (0, 0), (0, pad), (0, 0)))
    mask_b1ts = jnp.pad(mask_b1ts, ((0, 0), (0, 0), (0, pad), (0, 0)))  # padded queries see nothing
    chunks = (t + pad) // chunk
    q_cbkgth = jnp.moveaxis(q_bkgth.reshape(b, kv, g, chunks, chunk, h), 3, 0)
    mask_cb1ts = jnp.moveaxis(mask_b1ts.reshape(b, 1, chunks, chunk, -1), 2, 0)
    one_chunk = jax.checkpoint(lambda qm: head_major_attention(qm[0], k_bksh, v_bksh, qm[1]))
    out_cbkgth = jax.lax.map(one_chunk, (q_cbkgth, mask_cb1ts))
    return jnp.moveaxis(out_cbkgth, 0, 3).reshape(b, kv, g, t + pad, h)[:, :, :, :t]


class RMSNorm(nn.Module):
    """HF LlamaRMSNorm: normalise in fp32, cast back, then scale."""

    eps: float
    dtype: Any
    param_dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (x.shape[-1],), self.param_dtype)
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * x32.astype(self.dtype)


class Attention(nn.Module):
    """Grouped-query self-attention with RoPE and an optional KV cache slice to write into."""

    config: ModelConfig
    deterministic: bool = True

    def _proj(self, name: str, features: int, axes: tuple[str, str]) -> Projection:
        c = self.config
        lora = c.lora if c.lora is not None and name in c.lora.targets else None
        return Projection(features, axes, lora=lora, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype,
                          deterministic=self.deterministic, name=name)

    @nn.compact
    def __call__(self, x_btd, cos, sin, mask_b1ts, kv_cache=None, cache_index=None, splash_segments_bt=None):
        """With `splash_segments_bt` (see splash.segment_ids) attention runs the splash kernel over
        these T tokens' own keys (a prefill writes them into the cache as well)."""
        c = self.config
        b, t, _ = x_btd.shape
        q = self._proj("q_proj", c.num_heads * c.head_dim, ("embed", "q_heads"))(x_btd)
        k = self._proj("k_proj", c.num_kv_heads * c.head_dim, ("embed", "kv_heads"))(x_btd)
        v = self._proj("v_proj", c.num_kv_heads * c.head_dim, ("embed", "kv_heads"))(x_btd)
        q_btnh = apply_rope(q.reshape(b, t, c.num_heads, c.head_dim), cos, sin)
        k_btkh = apply_rope(k.reshape(b, t, c.num_kv_heads, c.head_dim), cos, sin)
        v_btkh = v.reshape(b, t, c.num_kv_heads, c.head_dim)
        q_btnh = nn.with_logical_constraint(
            q_btnh, ("activation_batch", "activation_length", "activation_heads", "activation_head_dim"))
        new_kv = None
        if kv_cache is not None:  # the cache is head-major (B, Nkv, S, H): decoding attends to it without transposing
            k_bksh, v_bksh = (jax.lax.dynamic_update_slice(
                cached, jnp.transpose(new, (0, 2, 1, 3)).astype(cached.dtype), (0, 0, cache_index, 0))
                for cached, new in zip(kv_cache, (k_btkh, v_btkh)))
            k_bksh = nn.with_logical_constraint(
                k_bksh, ("activation_batch", "activation_kv_heads", "activation_length", "activation_head_dim"))
            new_kv = (k_bksh, v_bksh)
        if splash_segments_bt is not None:
            out_btnh = splash.splash_attention(q_btnh, k_btkh, v_btkh, splash_segments_bt, c.sliding_window,
                                               interpret=target_backend() != "tpu")
        elif kv_cache is None:
            k_btkh = nn.with_logical_constraint(
                k_btkh, ("activation_batch", "activation_length", "activation_kv_heads", "activation_head_dim"))
            out_btnh = attention(q_btnh, k_btkh, v_btkh, mask_b1ts, c.attention_impl)
        else:
            chunked = resolve_attention_impl(c.attention_impl, t, target_backend()) == "chunked"
            attend = head_major_chunks if chunked else head_major_attention  # a long prefill is chunked too
            out_btnh = from_head_major(attend(
                to_head_major(q_btnh, c.num_kv_heads), k_bksh.astype(q_btnh.dtype), v_bksh.astype(q_btnh.dtype),
                mask_b1ts))
        out = self._proj("o_proj", c.hidden_size, ("q_heads", "embed"))(
            out_btnh.reshape(b, t, c.num_heads * c.head_dim))
        return out, new_kv


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: ModelConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_btd):
        c = self.config

        def proj(name, features, axes):
            lora = c.lora if c.lora is not None and name in c.lora.targets else None
            return Projection(features, axes, lora=lora, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype,
                              deterministic=self.deterministic, name=name)

        gate = proj("gate_proj", c.intermediate_size, ("embed", "mlp"))(x_btd)
        up = proj("up_proj", c.intermediate_size, ("embed", "mlp"))(x_btd)
        h_btm = nn.with_logical_constraint(
            nn.silu(gate) * up, ("activation_batch", "activation_length", "activation_mlp"))
        return proj("down_proj", c.hidden_size, ("mlp", "embed"))(h_btm)


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(.))."""

    config: ModelConfig
    deterministic: bool = True

    @nn.compact
    def __call__(self, x_btd, cos, sin, mask_b1ts, kv_cache=None, cache_index=None, splash_segments_bt=None):
        c = self.config
        norm = lambda name: RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype, name=name)
        attn_out, new_kv = Attention(c, self.deterministic, name="self_attn")(
            norm("input_layernorm")(x_btd), cos, sin, mask_b1ts, kv_cache, cache_index, splash_segments_bt)
        h_btd = x_btd + attn_out
        out = h_btd + MLP(c, self.deterministic, name="mlp")(norm("post_attention_layernorm")(h_btd))
        out = nn.with_logical_constraint(out, ("activation_batch", "activation_length", "activation_embed"))
        return out, new_kv


class Llama(nn.Module):
    """Token ids -> final-normed hidden states; `logits` projects chosen positions to the vocab.

    Keeping the vocabulary projection separate lets scoring compute it only where a continuation
    token is scored, and training fuse it with the loss.
    """

    config: ModelConfig
    deterministic: bool = True

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size, c.hidden_size, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")))
        layer_cls = DecoderLayer
        if c.remat_policy != "none":
            layer_cls = nn.remat(DecoderLayer, policy=_REMAT_POLICIES[c.remat_policy], prevent_cse=True)
        self.layers = [layer_cls(c, self.deterministic) for _ in range(c.num_layers)]
        self.norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype)
        if not c.tie_word_embeddings:
            self.lm_head = Projection(c.vocab_size, ("embed", "vocab"), dtype=c.jnp_dtype,
                                      param_dtype=c.jnp_param_dtype)

    def __call__(self, tokens_bt: jax.Array, positions_bt: jax.Array, valid_bt: jax.Array | None = None,
                 cache: Cache | None = None, cache_index: jax.Array | None = None,
                 segments_bt: jax.Array | None = None,
                 documents_bt: jax.Array | None = None) -> tuple[jax.Array, Cache | None]:
        """Runs the decoder; with `cache`, writes these T tokens at slot `cache_index` and attends to all slots.

        `segments_bt` (prefix = 0, branches = 1, 2, ...) packs branches sharing a prefix and
        `documents_bt` packs independent sequences in one row; see attention_mask.
        """
        c = self.config
        if (segments_bt is not None or documents_bt is not None) and cache is not None:
            raise ValueError("segments_bt / documents_bt (packed rows) cannot be combined with a KV cache")
        if valid_bt is None:
            valid_bt = jnp.ones(tokens_bt.shape, bool)
        x_btd = self.embed_tokens(tokens_bt)
        x_btd = nn.with_logical_constraint(x_btd, ("activation_batch", "activation_length", "activation_embed"))
        cos, sin = rope_tables(positions_bt, c.head_dim, c.rope_theta)
        if cache is None:
            kv_pos, kv_valid = positions_bt, valid_bt
        else:
            kv_pos = jax.lax.dynamic_update_slice(cache["positions"], positions_bt.astype(jnp.int32), (0, cache_index))
            kv_valid = jax.lax.dynamic_update_slice(cache["valid"], valid_bt, (0, cache_index))
        fresh = cache is None or (isinstance(cache_index, int) and cache_index == 0)  # no earlier keys to see
        splash_ok = segments_bt is None and fresh
        if resolve_attention_impl(c.attention_impl, tokens_bt.shape[1], target_backend(), splash_ok) == "splash":
            mask, splash_segments = None, splash.segment_ids(valid_bt, documents_bt)
        else:
            mask = attention_mask(positions_bt, kv_pos, kv_valid, c.sliding_window, segments_bt, documents_bt)
            splash_segments = None
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            kv = None if cache is None else (cache["k"][i], cache["v"][i])
            x_btd, new_kv = layer(x_btd, cos, sin, mask, kv, cache_index, splash_segments)
            if new_kv is not None:
                new_k.append(new_kv[0])
                new_v.append(new_kv[1])
        hidden = self.norm(x_btd)
        new_cache = None if cache is None else {"k": new_k, "v": new_v, "positions": kv_pos, "valid": kv_valid}
        return hidden, new_cache

    def logits(self, hidden_xd: jax.Array) -> jax.Array:
        """Vocabulary logits of hidden states of any leading shape (tied or separate head)."""
        if self.config.tie_word_embeddings:
            return self.embed_tokens.attend(hidden_xd.astype(self.config.jnp_dtype))
        return self.lm_head(hidden_xd)

    def forward_logits(self, tokens_bt: jax.Array, positions_bt: jax.Array,
                       valid_bt: jax.Array | None = None) -> jax.Array:
        """Logits at every position (HF's forward); also the init path that creates every weight."""
        hidden, _ = self(tokens_bt, positions_bt, valid_bt)
        return self.logits(hidden)


def init_params(config: ModelConfig, rng: jax.Array, deterministic: bool = True) -> Any:
    """Randomly initialised params (boxed with logical axis metadata), HF's normal(0.02) scheme."""
    tokens = jnp.zeros((1, 1), jnp.int32)
    return Llama(config, deterministic).init(rng, tokens, tokens, method=Llama.forward_logits)["params"]
