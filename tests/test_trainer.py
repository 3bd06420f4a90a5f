"""Training maths and data against independent references: torch AdamW + HF schedule, HF's causal-LM
loss, hand-built token masks; and the bad inputs that must fail before training starts."""
import json
import pathlib

import numpy as np
import pytest

from t5x_like import checkpoints, optimizers, train_data, trainer
from t5x_like import model_dirs
from t5x_like.models.api import DecoderModel
from t5x_like.partitioning import PartitioningError
from t5x_like.tokenization import load_tokenizer
from train_helpers import smoke_config, write_rte_mixture


@pytest.fixture(scope="module")
def llama_tokenizer(tokenizers_dir):
    return load_tokenizer(tokenizers_dir / "llama2")


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, data_dir) -> pathlib.Path:
    return write_rte_mixture(tmp_path_factory.mktemp("mix"), data_dir, n_train=32, n_val=8)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("models")


# --- optimizer ---------------------------------------------------------------------------------
@pytest.mark.torch
def test_adamw_schedule_and_clipping_match_torch_and_hf():
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp
    import optax
    from transformers import get_linear_schedule_with_warmup
    cfg = smoke_config(pathlib.Path("."), pathlib.Path(".")).train
    cfg.learning_rate, cfg.warmup_ratio, cfg.weight_decay, cfg.grad_clip = 1e-2, 0.25, 0.01, 1.0
    total = 10
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(scale=s, size=(3, 4)).astype(np.float32) for s in np.linspace(0.1, 3, total)]

    p = torch.nn.Parameter(torch.tensor(w0))
    opt = torch.optim.AdamW([p], lr=cfg.learning_rate, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, optimizers.warmup_steps(total, 0.25), total)
    torch_lrs = []
    for g in grads:
        p.grad = torch.tensor(g)
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()

    tx, schedule = optimizers.make_optimizer(cfg, total)
    w = jnp.asarray(w0)
    state = tx.init(w)
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, w)
        w = optax.apply_updates(w, updates)
    np.testing.assert_allclose([float(schedule(s)) for s in range(total)], torch_lrs, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.asarray(w), p.detach().numpy(), rtol=1e-5, atol=1e-6)


# --- data ---------------------------------------------------------------------------------------
def test_target_only_mask_and_learned_eos(llama_tokenizer):
    tok = llama_tokenizer
    prompt, target = "Is the sky blue? Answer:", " yes"
    seq = train_data.tokenize_example(prompt, target, tok.encode, tok.eos_id, loss_on="target_only", learn_eos=True)
    n_prompt = len(tok.encode(prompt))
    assert seq.tokens.tolist() == tok.encode(prompt + target) + [tok.eos_id]
    assert seq.tokens[0] == tok.bos_id
    assert seq.weights[:n_prompt].sum() == 0 and seq.weights[n_prompt:].tolist() == [1.0] * (len(seq.tokens) - n_prompt)
    full = train_data.tokenize_example(prompt, target, tok.encode, tok.eos_id, loss_on="full_sequence", learn_eos=True)
    assert full.weights.tolist() == [0.0] + [1.0] * (len(full.tokens) - 1)  # nothing predicts BOS


def test_faithful_eos_is_never_learned(llama_tokenizer):
    tok = llama_tokenizer
    seq = train_data.tokenize_example("<s>[INST] hi [/INST]", " yes</s>", tok.encode, tok.eos_id,
                                      loss_on="full_sequence", learn_eos=False)
    assert tok.eos_id in seq.tokens.tolist()  # the literal </s> is the EOS id ...
    assert seq.weights[seq.tokens == tok.eos_id].sum() == 0  # ... and, as with pad = eos, masked


def test_overlong_sequences_dropped_or_truncated(llama_tokenizer):
    tok = llama_tokenizer
    rows = [{"prompt": "word " * n, "target": " x"} for n in (3, 50, 5)]
    kept, n = train_data.tokenize_rows(rows, tok.encode, tok.eos_id, loss_on="full_sequence", learn_eos=True,
                                       max_len=16, overlong="drop")
    assert (len(kept), n) == (2, 1)
    kept, n = train_data.tokenize_rows(rows, tok.encode, tok.eos_id, loss_on="full_sequence", learn_eos=True,
                                       max_len=16, overlong="truncate")
    assert (len(kept), n) == (3, 1) and max(len(s.tokens) for s in kept) == 16


def _seqs(lengths):
    return [train_data.TokenizedExample(np.arange(1, n + 1, dtype=np.int32), np.ones(n, np.float32)) for n in lengths]


def test_batches_cover_each_epoch_once_deterministically_and_resume_by_position():
    lengths = [5, 9, 17, 3, 30, 12, 8, 25, 7, 16, 2, 31]
    seqs = _seqs(lengths)
    make = lambda: train_data.TrainBatches(seqs, batch_size=3, buckets=(8, 16, 32), seed=1, group_size=2)
    data = make()
    assert data.batches_per_epoch == 4
    epoch0 = [data.batch_at(i) for i in range(4)]
    seen = sorted(int(row.sum() > 0 and row.max()) for b in epoch0 for row in b["tokens"])
    assert seen == sorted(lengths)  # every row exactly once (tokens are 1..n, so max = length)
    for b in epoch0:
        longest = b["valid"].sum(1).max()
        assert b["tokens"].shape[1] == train_data.bucket_for(longest, (8, 16, 32))
        assert (b["positions"] == np.arange(b["tokens"].shape[1])).all()
    fresh = make()  # a resumed run rebuilds the same plan from (seed, epoch) alone
    for i in (5, 2, 6):
        np.testing.assert_array_equal(fresh.batch_at(i)["tokens"], data.batch_at(i)["tokens"])
    assert [data.batch_at(i)["tokens"].tolist() for i in range(4, 8)] != [b["tokens"].tolist() for b in epoch0]


def test_eval_batches_pad_missing_rows_with_zero_weight():
    batches = list(train_data.eval_batches(_seqs([4, 6, 2, 9, 3]), batch_size=2, buckets=(8, 16)))
    assert len(batches) == 3
    last = batches[-1]
    assert last["weights"][1].sum() == 0 and not last["valid"][1].any()
    assert sum(float(b["weights"].sum()) for b in batches) == 4 + 6 + 2 + 9 + 3


def test_empty_or_malformed_mixture_is_refused(tmp_path):
    (tmp_path / "train.jsonl").write_text("")
    with pytest.raises(train_data.DataError, match="empty"):
        train_data.read_jsonl(tmp_path / "train.jsonl")
    (tmp_path / "train.jsonl").write_text(json.dumps({"prompt": "a"}) + "\n")
    with pytest.raises(train_data.DataError, match="'prompt' and 'target'"):
        train_data.read_jsonl(tmp_path / "train.jsonl")


# --- loss ---------------------------------------------------------------------------------------
@pytest.mark.torch
def test_masked_loss_equals_hf_causal_lm_loss(model_cache, llama_tokenizer):
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp
    import transformers
    from t5x_like import hf_io
    cfg = smoke_config(pathlib.Path("."), model_cache)
    model_dir = model_dirs.resolve_model_dir(cfg.model)
    model_cfg, params = hf_io.load_model_dir(model_dir)
    tok = llama_tokenizer
    seqs = [train_data.tokenize_example(p, t, tok.encode, tok.eos_id, loss_on="target_only", learn_eos=True)
            for p, t in (("The capital of France is", " Paris"), ("Two plus two equals four? Answer:", " yes it does"))]
    batch = train_data.pad_batch(seqs, 2, 16)
    nll, weight = DecoderModel(model_cfg).loss_sums(params, {k: jnp.asarray(v) for k, v in batch.items()}, None)

    hf = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    labels = np.where(batch["weights"] > 0, batch["tokens"], -100)
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(batch["tokens"], dtype=torch.long),
                 attention_mask=torch.tensor(batch["valid"], dtype=torch.long), labels=torch.tensor(labels, dtype=torch.long))
    assert float(weight) == (labels[:, 1:] != -100).sum()
    np.testing.assert_allclose(float(nll / weight), out.loss.item(), rtol=2e-5)


# --- bad inputs: clear errors before any training -------------------------------------------------
@pytest.mark.parametrize("override, error, words", [
    ({"train.lora.targets": ("q_proj", "qkv_proj")}, ValueError, "unknown LoRA target module"),
    ({"train.lora.rank": 100}, ValueError, "exceeds the smaller dimension"),
    ({"partitioning.mesh_shape": (2, 1, 1)}, PartitioningError, "2 slots but there are 1 devices"),
    ({"train.microbatches": 3}, PartitioningError, r"train.batch_size=8 \(in 3 microbatches\)"),
])
def test_bad_config_fails_before_training(tmp_path, mixture, model_cache, override, error, words):
    config = smoke_config(mixture, model_cache, **override)
    with pytest.raises(error, match=words):
        trainer.run(config, str(tmp_path / "wd"))
    assert not (tmp_path / "wd" / "checkpoints").exists()


def test_empty_mixture_fails_before_training(tmp_path, model_cache):
    (tmp_path / "mix").mkdir()
    (tmp_path / "mix" / "train.jsonl").write_text("\n")
    with pytest.raises(train_data.DataError, match="mixture is empty"):
        trainer.run(smoke_config(tmp_path / "mix", model_cache), str(tmp_path / "wd"))


def test_workdir_of_another_experiment_is_refused(tmp_path, mixture, model_cache):
    workdir = tmp_path / "wd"
    workdir.mkdir()
    other = trainer.run_identity(smoke_config(mixture, model_cache, **{"train.lora.rank": 4}),
                                 model_dirs.model_config(smoke_config(mixture, model_cache).model)
                                 .replace(lora=trainer.lora_config(smoke_config(mixture, model_cache, **{"train.lora.rank": 4}).train)))
    (workdir / checkpoints.IDENTITY_FILE).write_text(json.dumps(other))
    (workdir / "checkpoints" / "4").mkdir(parents=True)  # that run got as far as a checkpoint
    with pytest.raises(checkpoints.ForeignCheckpointError, match=r"another run \(lora: workdir has \[4"):
        trainer.run(smoke_config(mixture, model_cache), str(workdir))
