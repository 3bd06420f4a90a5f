"""Loglikelihood scoring against independent references: an unpadded full forward + log_softmax,
transformers' PyTorch Llama (torch marker), and hand-built lm-eval requests."""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from t5x_like.engine import Engine
from t5x_like.models.config import LoraConfig, ModelConfig
from t5x_like.models.api import DecoderModel
from t5x_like.models.llama import Llama, init_params
from t5x_like.scoring import ScoreRequest, Scorer, length_buckets, plan_batches, to_row
from t5x_like.tokenization import load_tokenizer

TINY = ModelConfig(vocab_size=211, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                   num_kv_heads=2, head_dim=8, max_position_embeddings=128, rope_theta=10000.0,
                   tie_word_embeddings=False, model_type="llama")


@pytest.fixture(scope="module")
def params():
    return nn.meta.unbox(init_params(TINY, jax.random.PRNGKey(0)))


@functools.cache
def full_forward(config: ModelConfig):
    """Jitted HF-style forward: logits at every position of unpadded rows."""
    return jax.jit(lambda p, t: Llama(config).apply({"params": p}, t, jnp.arange(t.shape[1])[None],
                                                    method=Llama.forward_logits))


def reference_score(config: ModelConfig, params, context: list[int], continuation: list[int],
                    max_length: int) -> tuple[float, bool]:
    """Sum of log_softmax(forward_logits) over the continuation of ONE unpadded sequence."""
    whole = ([*context, *continuation])[-(max_length + 1):]
    logits = full_forward(config)(params, jnp.asarray([whole[:-1]], jnp.int32))[0]
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    n = len(continuation)
    rows = np.asarray(logp[-n:])
    targets = np.asarray(whole[-n:])
    return float(rows[np.arange(n), targets].sum()), bool((rows.argmax(-1) == targets).all())


def random_requests(seed: int, lengths: list[tuple[int, int]], vocab: int) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    return [(rng.integers(1, vocab, c).tolist(), rng.integers(1, vocab, k).tolist()) for c, k in lengths]


def test_buckets_and_plan():
    assert length_buckets(200, step=64, linear_up_to=128) == (16, 32, 64, 128, 200)
    assert length_buckets(4096)[:10] == (16, 32, 64, 128, 192, 256, 320, 384, 448, 512)
    assert length_buckets(4096)[10:] == (1024, 2048, 4096)
    assert length_buckets(24) == (16, 24)
    rows = [to_row(i, [1] * n, [2], 100) for i, n in enumerate([5, 70, 3, 66, 128])]
    batches = plan_batches(rows, (64, 128), batch_size=2, pack_length=0)  # each request alone, in its bucket
    assert [(b.length, [r.index for r in b.rows]) for b in batches] == [(128, [4, 1]), (128, [3]), (64, [0, 2])]


def test_packing_fills_rows_best_fit_longest_first():
    """Best-fit decreasing into 128-token rows, worked by hand: 200 opens a 256 row (its bucket) that
    55 fills best; 128 fills a row alone; 70 and 66 each open one; 9, 5 and 3 best-fit after 70."""
    lengths = [5, 70, 3, 66, 128, 55, 9, 200]
    rows = [to_row(i, [1] * (n - 1), [2, 3], 300) for i, n in enumerate(lengths)]  # inputs = n tokens
    batches = plan_batches(rows, (64, 128, 256), batch_size=2, pack_length=128)
    layout = [(b.length, [[m.index for m in r.members] for r in b.rows]) for b in batches]
    assert layout == [(256, [[7, 5]]), (128, [[4], [1, 6, 0, 2]]), (128, [[3]])]
    # Members keep their own scored positions, shifted by their offset in the row.
    packed = batches[1].rows[1]
    assert [m.scored.tolist() for m in packed.members] == [[68, 69], [77, 78], [82, 83], [85, 86]]
    assert packed.documents.tolist() == [0] * 70 + [1] * 9 + [2] * 5 + [3] * 3
    assert packed.positions.tolist() == [*range(70), *range(9), *range(5), *range(3)]
    assert all(b.width == 32 for b in batches)  # one scored width per bucket


def test_matches_unpadded_forward_across_buckets(params):
    lengths = [(3, 1), (40, 5), (17, 2), (70, 9), (1, 12)]
    requests = random_requests(1, lengths, TINY.vocab_size)
    scorer = Scorer(DecoderModel(TINY), params, batch_size=3, max_length=127, buckets=(32, 64, 127), pad_id=0)
    results = scorer.score_tokens(requests, progress=False)
    for (ctx, cont), result in zip(requests, results):
        logprob, greedy = reference_score(TINY, params, ctx, cont, 127)
        assert result.num_tokens == len(cont)
        assert result.logprob == pytest.approx(logprob, abs=1e-4)
        assert result.is_greedy == greedy
        assert not result.truncated
    # Other batch-mates, padding rows and order do not change any result (and compile nothing new).
    shuffled = [requests[i] for i in (4, 2, 0, 3, 1)] + requests[:1]
    again = scorer.score_tokens(shuffled, progress=False)
    assert [r.logprob for r in again] == pytest.approx([results[i].logprob for i in (4, 2, 0, 3, 1, 0)], abs=1e-5)
    assert scorer.compile_count["body"] <= 3


def test_is_greedy_true_for_the_models_own_continuation(params):
    context = [5, 17, 33, 2, 90]
    greedy = []
    for _ in range(4):
        logits = full_forward(TINY)(params, jnp.asarray([context + greedy]))
        greedy.append(int(jnp.argmax(logits[0, -1])))
    scorer = Scorer(DecoderModel(TINY), params, batch_size=2, max_length=64)
    own, other = scorer.score_tokens([(context, greedy), (context, greedy[:-1] + [(greedy[-1] + 1) % 211])],
                                     progress=False)
    assert own.is_greedy and not other.is_greedy
    assert own.logprob > other.logprob


def test_truncation_is_counted_and_matches_lm_eval_window(params):
    requests = random_requests(2, [(60, 4), (10, 3), (45, 2)], TINY.vocab_size)
    scorer = Scorer(DecoderModel(TINY), params, batch_size=4, max_length=32)
    results = scorer.score_tokens(requests, progress=False)
    assert [r.truncated for r in results] == [True, False, True]
    assert scorer.stats["truncated"] == 2
    for (ctx, cont), result in zip(requests, results):
        assert result.logprob == pytest.approx(reference_score(TINY, params, ctx, cont, 32)[0], abs=1e-4)


@pytest.mark.parametrize("pack_length, programs", [(0, 2), (128, 1)])
def test_compiles_once_per_bucket(params, pack_length, programs):
    """Unpacked rows use the 32 and 64 buckets; packed into 128-token rows they need one program."""
    scorer = Scorer(DecoderModel(TINY), params, batch_size=2, max_length=128, buckets=(32, 64, 128),
                    pack_length=pack_length)
    for seed in range(3):  # different batches, same buckets: nothing recompiles
        scorer.score_tokens(random_requests(seed, [(20, 2), (50, 3), (25, 1), (10, 1)], TINY.vocab_size),
                            progress=False)
    assert scorer.compile_count == {"body": programs, "head": programs}


def test_bad_requests_fail_before_compute(params):
    scorer = Scorer(DecoderModel(TINY), params, batch_size=2, max_length=16)
    with pytest.raises(ValueError, match="request 1: the continuation has 20 tokens"):
        scorer.score_tokens([([1, 2], [3]), ([1], [4] * 20)], progress=False)
    with pytest.raises(ValueError, match="request 0: the continuation has no tokens"):
        scorer.score_tokens([([1, 2], [])], progress=False)
    assert scorer.compile_count == {"body": 0, "head": 0}


def test_bfloat16_close_to_float32(params):
    requests = random_requests(3, [(30, 4), (12, 6)], TINY.vocab_size)
    bf16 = TINY.replace(dtype="bfloat16")
    f32 = Scorer(DecoderModel(TINY), params, batch_size=2, max_length=64).score_tokens(requests, progress=False)
    b16 = Scorer(DecoderModel(bf16), params, batch_size=2, max_length=64).score_tokens(requests, progress=False)
    assert [b.logprob for b in b16] == pytest.approx([f.logprob for f in f32], abs=0.05 * 6)


@pytest.fixture(scope="module")
def llama2_tokenizer(tokenizers_dir):
    return load_tokenizer(tokenizers_dir / "llama2")


def test_engine_text_requests_and_merged_lora(llama2_tokenizer):
    """Engine encodes with lm-eval's encode_pair; LoRA params are merged and score like the adapter model."""
    lora = LoraConfig(rank=4, alpha=8.0, dropout=0.0, targets=("q_proj", "v_proj", "down_proj"))
    config = TINY.replace(vocab_size=32000, lora=lora)
    params = nn.meta.unbox(init_params(config, jax.random.PRNGKey(3)))
    params = jax.tree_util.tree_map_with_path(  # make the adapters non-zero (lora_b starts at zero)
        lambda path, x: x + 0.05 if str(path[-1]) == "['lora_b']" else x, params)
    engine = Engine(config, params, llama2_tokenizer, batch_size=2, max_length=64, progress=False)
    requests = [ScoreRequest("The capital of France is ", "Paris"), ScoreRequest("", "Hello world"),
                ScoreRequest("Question: 2 + 2 =", " 4")]
    results = engine.score(requests)
    for request, result in zip(requests, results):
        ctx, cont = llama2_tokenizer.encode_pair(request.context, request.continuation)
        logprob, greedy = reference_score(config, params, ctx, cont, 64)  # the unmerged adapter model
        assert (result.logprob, result.is_greedy, result.num_tokens) == (pytest.approx(logprob, abs=1e-4), greedy, len(cont))
    assert engine.config.lora is None


@pytest.mark.torch
def test_matches_transformers_pytorch(tmp_path, params, tokenizers_dir):
    """Scores equal log_softmax of transformers' LlamaForCausalLM on the same saved weights."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from t5x_like import hf_io

    hf_io.save_params(params, TINY, str(tmp_path / "model"))
    hf = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "model"), torch_dtype=torch.float32).eval()
    requests = random_requests(4, [(5, 3), (50, 7), (90, 1), (20, 20)], TINY.vocab_size)
    results = Scorer(DecoderModel(TINY), params, batch_size=3, max_length=127).score_tokens(requests, progress=False)
    for (ctx, cont), result in zip(requests, results):
        whole = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = torch.log_softmax(hf(whole[:, :-1]).logits[0].float(), -1)
        n = len(cont)
        expected = logp[-n:].gather(-1, torch.tensor(cont)[:, None]).sum().item()
        greedy = bool((logp[-n:].argmax(-1) == torch.tensor(cont)).all())
        assert result.logprob == pytest.approx(expected, abs=1e-4)
        assert result.is_greedy == greedy


def test_multiple_choice_requests_pack_and_equal_separate_scoring(params):
    """Options sharing a context go into one packed row; each still equals its own unpadded forward."""
    from t5x_like.scoring import packed_rows

    rng = np.random.default_rng(3)
    requests = []
    for context_len, option_lens in [(30, (1, 4, 2)), (9, (3, 3)), (50, (6,))]:
        context = rng.integers(1, TINY.vocab_size, context_len).tolist()
        requests += [(context, rng.integers(1, TINY.vocab_size, k).tolist()) for k in option_lens]
    rows = packed_rows(requests, 127)
    assert sorted(len(r.members) for r in rows) == [1, 2, 3]  # two packed items + the lone request
    assert sum(len(r.inputs) for r in rows) == 30 + 0 + 3 + 1 + 9 + 2 + 2 + 50 + 5
    scorer = Scorer(DecoderModel(TINY), params, batch_size=2, max_length=127, buckets=(32, 64, 127), pad_id=0)
    results = scorer.score_tokens(requests, progress=False)
    for (ctx, cont), result in zip(requests, results):
        logprob, greedy = reference_score(TINY, params, ctx, cont, 127)
        assert result.logprob == pytest.approx(logprob, abs=1e-4)
        assert result.is_greedy == greedy and result.num_tokens == len(cont)
