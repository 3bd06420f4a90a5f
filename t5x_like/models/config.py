"""ModelConfig: the decoder's shape and numerics, read from a Hugging Face `config.json`."""
from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp

from t5x_like import io_utils
from t5x_like.errors import UserError

SUPPORTED_MODEL_TYPES = ("llama", "mistral")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
REMAT_POLICIES = ("none", "full", "dots", "dots_with_no_batch_dims")
# auto: "blocked" on CPU (XLA:CPU materialises every score; query blocks skip the masked upper
# triangle and use head-major matmuls, 2.4x faster at 256 tokens), "xla" on GPU/TPU.
ATTENTION_IMPLS = ("auto", "xla", "blocked", "chunked", "cudnn", "splash")


class UnsupportedConfigError(UserError, ValueError):
    """A config.json field this implementation cannot honour (refused, never ignored)."""


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters on named projections: W x + (alpha / rank) B A dropout(x)."""

    rank: int = 64
    alpha: float = 16.0
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q_proj", "v_proj")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything the Llama/Mistral decoder needs; HF names in comments where they differ."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int  # num_hidden_layers
    num_heads: int  # num_attention_heads
    num_kv_heads: int  # num_key_value_heads
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    sliding_window: int | None = None  # a query sees itself and the W-1 previous keys
    tie_word_embeddings: bool = False
    model_type: str = "llama"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    dtype: str = "float32"  # activations / matmul inputs
    param_dtype: str = "float32"  # stored weights
    remat_policy: str = "none"
    attention_impl: str = "auto"  # one of ATTENTION_IMPLS (see llama.attention)
    lora: LoraConfig | None = None

    def __post_init__(self):
        if self.num_heads % self.num_kv_heads:
            raise UnsupportedConfigError(
                f"num_attention_heads={self.num_heads} is not a multiple of "
                f"num_key_value_heads={self.num_kv_heads}")
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in DTYPES:
                raise UnsupportedConfigError(
                    f"{name}={getattr(self, name)!r}; choose one of {sorted(DTYPES)}")
        if self.remat_policy not in REMAT_POLICIES:
            raise UnsupportedConfigError(
                f"remat_policy={self.remat_policy!r}; choose one of {REMAT_POLICIES}")
        if self.attention_impl not in ATTENTION_IMPLS:
            raise UnsupportedConfigError(
                f"attention_impl={self.attention_impl!r}; choose one of {ATTENTION_IMPLS}")
        if self.lora is not None:
            unknown = set(self.lora.targets) - set(PROJECTIONS)
            if unknown:
                raise UnsupportedConfigError(
                    f"unknown LoRA target module(s) {sorted(unknown)}; known: {list(PROJECTIONS)}")
            too_big = [t for t in self.lora.targets if self.lora.rank > min(self.projection_shape(t))]
            if too_big:
                raise UnsupportedConfigError(
                    f"LoRA rank {self.lora.rank} exceeds the smaller dimension of {too_big} "
                    f"({[self.projection_shape(t) for t in too_big]}); lower lora rank")

    @property
    def jnp_dtype(self):
        return DTYPES[self.dtype]

    @property
    def jnp_param_dtype(self):
        return DTYPES[self.param_dtype]

    def projection_shape(self, name: str) -> tuple[int, int]:
        """(in, out) of a named linear layer in one decoder block."""
        d, q, kv, m = (self.hidden_size, self.num_heads * self.head_dim,
                       self.num_kv_heads * self.head_dim, self.intermediate_size)
        return {"q_proj": (d, q), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (q, d),
                "gate_proj": (d, m), "up_proj": (d, m), "down_proj": (m, d)}[name]

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count of the base model (no LoRA), for memory and MFU estimates."""
        per_layer = sum(a * b for a, b in map(self.projection_shape, PROJECTIONS))
        per_layer += 2 * self.hidden_size
        embed = self.vocab_size * self.hidden_size
        return (self.num_layers * per_layer + self.hidden_size + embed
                + (0 if self.tie_word_embeddings else embed))

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json", **overrides: Any) -> "ModelConfig":
        """Reads an HF Llama/Mistral config dict; refuses fields whose semantics we do not implement."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedConfigError(
                f"{source}: model_type={model_type!r} (architectures={hf.get('architectures')}) is "
                f"not supported; t5x_like implements {SUPPORTED_MODEL_TYPES}")
        _refuse_unsupported(hf, source)
        num_heads = hf["num_attention_heads"]
        eos = hf.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (eos,))
        window = hf.get("sliding_window") if model_type == "mistral" else None
        if hf.get("use_sliding_window") is False:
            window = None
        return cls(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // num_heads,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(_rope_theta(hf)),
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            sliding_window=window,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            model_type=model_type,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_ids=eos_ids,
            **overrides,
        )

    @classmethod
    def from_hf_dir(cls, path: str, **overrides: Any) -> "ModelConfig":
        """Reads `<path>/config.json` (clear error when missing or not JSON)."""
        file = os.path.join(path, "config.json")
        if not os.path.isfile(file):
            raise FileNotFoundError(f"{file}: no config.json; is {path!r} a Hugging Face model directory?")
        return cls.from_hf_dict(io_utils.read_json(file), source=file, **overrides)

    def to_hf_dict(self) -> dict[str, Any]:
        """The config.json transformers needs to load exported weights."""
        arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}[self.model_type]
        eos = list(self.eos_token_ids)
        out = {
            "architectures": [arch], "model_type": self.model_type,
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim, "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta, "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos[0] if len(eos) == 1 else (eos or None),
            "torch_dtype": self.param_dtype,
        }
        if self.model_type == "mistral":
            out["sliding_window"] = self.sliding_window
        return out


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _rope_theta(hf: dict[str, Any]) -> float:
    """rope_theta lives at the top level (older configs) or in rope_parameters (transformers >= 5)."""
    if "rope_theta" in hf:
        return hf["rope_theta"]
    params = hf.get("rope_parameters") or {}
    return params.get("rope_theta", 10000.0)


def _refuse_unsupported(hf: dict[str, Any], source: str) -> None:
    """Raises on any field that would change the maths in a way we do not implement."""
    problems = []
    scaling = hf.get("rope_scaling") or {}
    params = hf.get("rope_parameters") or {}
    rope_type = scaling.get("rope_type", scaling.get("type")) or params.get("rope_type", "default")
    if rope_type != "default":
        problems.append(f"rope scaling {rope_type!r} (only plain RoPE is implemented)")
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        problems.append(f"hidden_act={act!r} (only silu/SwiGLU)")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            problems.append(f"{flag}=true (bias-free projections only)")
    if problems:
        raise UnsupportedConfigError(f"{source}: unsupported " + "; ".join(problems))
