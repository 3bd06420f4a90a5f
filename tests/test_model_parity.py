"""Logits and greedy-decoding parity with transformers' PyTorch Llama/Mistral, through real files.

Each case in `CASES` is a tiny random HF model written by transformers' `save_pretrained` into
tests/fixtures/parity/<case>/ together with `reference.npz`: HF logits on a batch of sequences and
HF greedy continuations (`generate`, one prompt at a time, so no padding is involved) of prompts of
different lengths. The default tests load those files with our `hf_io.load_params` and need no
torch; the `torch` tests rebuild the references live. Regenerate the fixtures with
`python tests/test_model_parity.py`.
"""
from __future__ import annotations

import json
import pathlib
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from t5x_like import hf_io  # noqa: E402
from t5x_like.models.config import ModelConfig  # noqa: E402
from t5x_like.models.llama import Llama, init_cache  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "parity"
LOGIT_TOL = 1e-4
NEW_TOKENS = 32
PROMPT_LENGTHS = (3, 8, 13)

_COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
               initializer_range=0.2, bos_token_id=0, eos_token_id=1, pad_token_id=0)
CASES = {
    "llama_gqa": dict(model_type="llama", rope_theta=500.0),
    "llama_tied": dict(model_type="llama", tie_word_embeddings=True),
    "mistral_window": dict(model_type="mistral", sliding_window=5),
    "llama_sharded": dict(model_type="llama", shard_size="40KB"),
    "llama_bf16": dict(model_type="llama", torch_dtype="bfloat16"),
}


# --------------------------------------------------------------------------------------------
# Ours (JAX)
# --------------------------------------------------------------------------------------------
def our_logits(config: ModelConfig, params, tokens_bt: np.ndarray) -> np.ndarray:
    positions = np.broadcast_to(np.arange(tokens_bt.shape[1]), tokens_bt.shape)
    out = Llama(config).apply({"params": params}, tokens_bt, positions, method=Llama.forward_logits)
    return np.asarray(out)


def our_greedy(config: ModelConfig, params, prompts: list[list[int]], new_tokens: int) -> np.ndarray:
    """A minimal greedy loop on the model's KV-cache API: left-padded prefill, then one token per step."""
    model = Llama(config)
    batch, width = len(prompts), max(map(len, prompts))
    tokens = np.zeros((batch, width), np.int32)
    valid = np.zeros((batch, width), bool)
    for row, prompt in enumerate(prompts):
        tokens[row, width - len(prompt):] = prompt
        valid[row, width - len(prompt):] = True
    positions = np.maximum(np.cumsum(valid, axis=1) - 1, 0)

    @jax.jit
    def step(params, tokens, positions, valid, cache, index):
        hidden, cache = model.apply({"params": params}, tokens, positions, valid, cache=cache, cache_index=index)
        logits = model.apply({"params": params}, hidden[:, -1], method=Llama.logits)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32), cache

    cache = init_cache(config, batch, width + new_tokens)
    next_b, cache = step(params, tokens, positions, valid, cache, 0)
    last_pos = positions[:, -1]
    out = [next_b]
    for i in range(1, new_tokens):
        last_pos = last_pos + 1
        next_b, cache = step(params, next_b[:, None], last_pos[:, None], np.ones((batch, 1), bool),
                             cache, width + i - 1)
        out.append(next_b)
    return np.stack([np.asarray(t) for t in out], axis=1)


def load_case(case_dir: pathlib.Path) -> tuple[ModelConfig, dict]:
    return hf_io.load_model_dir(str(case_dir), dtype="float32")


def reference(case: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / case / "reference.npz"))


# --------------------------------------------------------------------------------------------
# Tests on the committed fixtures (no torch)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case):
    config, params = load_case(FIXTURES / case)
    ref = reference(case)
    diff = np.abs(our_logits(config, params, ref["tokens"]) - ref["logits"]).max()
    assert diff <= LOGIT_TOL, f"{case}: max |d logits| = {diff:.2e}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_greedy_matches_transformers_generate(case):
    config, params = load_case(FIXTURES / case)
    ref = reference(case)
    prompts = [list(p[:n]) for p, n in zip(ref["prompts"], ref["prompt_lengths"])]
    ours = our_greedy(config, params, prompts, NEW_TOKENS)
    np.testing.assert_array_equal(ours, ref["greedy"])


def test_fixtures_cover_the_required_cases():
    """The fixture files really are what the case names claim (a sharded index, bf16, tied, window)."""
    assert (FIXTURES / "llama_sharded" / "model.safetensors.index.json").is_file()
    config = {c: json.loads((FIXTURES / c / "config.json").read_text()) for c in CASES}
    assert config["llama_tied"]["tie_word_embeddings"] is True
    assert config["mistral_window"]["sliding_window"] < reference("mistral_window")["tokens"].shape[1]
    assert config["llama_gqa"]["num_key_value_heads"] < config["llama_gqa"]["num_attention_heads"]
    from safetensors import safe_open
    with safe_open(str(FIXTURES / "llama_bf16" / "model.safetensors"), framework="flax") as f:
        assert f.get_slice("model.norm.weight").get_dtype() == "BF16"
    assert len(set(reference("llama_gqa")["prompt_lengths"])) == len(PROMPT_LENGTHS)


# --------------------------------------------------------------------------------------------
# References from transformers (torch)
# --------------------------------------------------------------------------------------------
def build_hf_case(case: str, out_dir: pathlib.Path) -> None:
    """A seeded tiny random HF model for `case`, written by save_pretrained into `out_dir`."""
    import torch
    import transformers

    spec = dict(CASES[case])
    model_type = spec.pop("model_type")
    shard_size = spec.pop("shard_size", None)
    dtype = getattr(torch, spec.pop("torch_dtype", "float32"))
    cls = {"llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
           "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM)}[model_type]
    torch.manual_seed(sorted(CASES).index(case))
    model = cls[1](cls[0](**_COMMON, **spec)).to(dtype)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(out_dir, **kwargs)


def hf_reference(model_dir: pathlib.Path, case: str) -> dict[str, np.ndarray]:
    """HF fp32 logits and per-prompt greedy continuations of the model saved in `model_dir`."""
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rng = np.random.default_rng(sorted(CASES).index(case))
    tokens = rng.integers(2, _COMMON["vocab_size"], size=(3, 12))
    prompts = np.zeros((len(PROMPT_LENGTHS), max(PROMPT_LENGTHS)), np.int64)
    greedy, margins = [], []
    with torch.no_grad():
        logits = model(torch.tensor(tokens)).logits.numpy()
        for row, n in enumerate(PROMPT_LENGTHS):
            prompts[row, :n] = rng.integers(2, _COMMON["vocab_size"], size=n)
            out = model.generate(torch.tensor(prompts[row:row + 1, :n]), max_new_tokens=NEW_TOKENS,
                                 min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None,
                                 output_logits=True, return_dict_in_generate=True)
            greedy.append(out.sequences[0, n:].numpy())
            top2 = np.sort(torch.stack(out.logits)[:, 0].numpy(), axis=-1)[:, -2:]
            margins.append((top2[:, 1] - top2[:, 0]).min())
    return {"tokens": tokens, "logits": logits, "prompts": prompts,
            "prompt_lengths": np.array(PROMPT_LENGTHS), "greedy": np.stack(greedy),
            "min_top2_margin": np.float32(min(margins))}


def regenerate_fixtures() -> None:
    """Rewrites tests/fixtures/parity/ from scratch (needs torch)."""
    for case in sorted(CASES):
        out = FIXTURES / case
        shutil.rmtree(out, ignore_errors=True)
        build_hf_case(case, out)
        ref = hf_reference(out, case)
        np.savez(out / "reference.npz", **ref)
        print(f"{case}: min top-2 logit margin along greedy = {ref['min_top2_margin']:.3g}")


@pytest.mark.torch
@pytest.mark.parametrize("case", sorted(CASES))
def test_live_transformers_reference(case, tmp_path):
    """Rebuilds the case with transformers now: same files' logits and generations as committed, and ours match."""
    pytest.importorskip("torch")
    build_hf_case(case, tmp_path)
    live = hf_reference(tmp_path, case)
    committed = reference(case)
    np.testing.assert_allclose(live["logits"], committed["logits"], atol=1e-5)
    np.testing.assert_array_equal(live["greedy"], committed["greedy"])
    config, params = load_case(tmp_path)
    assert np.abs(our_logits(config, params, live["tokens"]) - live["logits"]).max() <= LOGIT_TOL


@pytest.mark.torch
def test_hf_generate_left_padded_batch_equals_single_prompts():
    """HF's own batched generate with left padding gives the per-prompt references we compare against."""
    torch = pytest.importorskip("torch")
    import transformers

    case = "mistral_window"
    ref = reference(case)
    model = transformers.AutoModelForCausalLM.from_pretrained(FIXTURES / case, dtype=torch.float32).eval()
    width = max(ref["prompt_lengths"])
    ids = np.zeros((len(ref["prompts"]), width), np.int64)
    mask = np.zeros_like(ids)
    for row, (p, n) in enumerate(zip(ref["prompts"], ref["prompt_lengths"])):
        ids[row, width - n:] = p[:n]
        mask[row, width - n:] = 1
    with torch.no_grad():
        out = model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=NEW_TOKENS,
                             min_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=None)
    np.testing.assert_array_equal(out[:, width:].numpy(), ref["greedy"])


@pytest.mark.torch
@pytest.mark.parametrize("case", ["llama_gqa", "llama_tied"])
def test_export_loads_in_transformers_with_same_logits(case, tmp_path):
    """Our params -> save_params -> transformers from_pretrained -> the reference logits."""
    torch = pytest.importorskip("torch")
    import transformers

    config, params = load_case(FIXTURES / case)
    hf_io.save_params(params, config, str(tmp_path / "export"))
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export", dtype=torch.float32).eval()
    ref = reference(case)
    with torch.no_grad():
        logits = model(torch.tensor(ref["tokens"])).logits.numpy()
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-5)


@pytest.mark.slow
@pytest.mark.torch
def test_real_smollm2_logits_match_transformers():
    """The real SmolLM2-135M (converted from its GGUF, cached) loads with our hf_io and matches transformers."""
    torch = pytest.importorskip("torch")
    import transformers

    from t5x_like import model_dirs

    model_cfg = _config_module("smollm2_135m").get_config()
    model_dir = model_dirs.resolve_model_dir(model_cfg)
    config, params = hf_io.load_model_dir(model_dir)
    expected = model_dirs.model_config(model_cfg)
    assert config.replace(rms_norm_eps=expected.rms_norm_eps) == expected  # GGUF stores eps as float32
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, 40))
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        ref = model(torch.tensor(tokens)).logits.numpy()
    diff = np.abs(our_logits(config, params, tokens) - ref)
    # 30 fp32 layers, logits up to ~32: measured max 1.4e-4, mean 1.5e-5, flat across positions.
    assert diff.max() <= 5e-4 and diff.mean() <= 5e-5, f"max {diff.max():.2e}, mean {diff.mean():.2e}"


def _config_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"model_config_{name}", REPO / "configs" / "models" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    regenerate_fixtures()
