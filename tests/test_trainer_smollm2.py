"""Real model, real data: LoRA-tuning SmolLM2-135M on a FLAN-format mixture lowers the loss and lifts
the seen task's log-likelihood accuracy above the base model's (numbers printed for the report)."""
import json

import numpy as np
import pytest

SCORE_ROWS = 8


def option_logliks(model_cfg, params, tokenizer, rows, buckets=(256, 512)):
    """Sum log-prob of "\\nAnswer Solution: <option>" after each test prompt (lm-eval encode_pair)."""
    import jax
    import jax.numpy as jnp
    from t5x_like import train_data
    from t5x_like.models.llama import Llama
    model = Llama(model_cfg)

    @jax.jit
    def row_logliks(params, batch):
        hidden, _ = model.apply({"params": params}, batch["tokens"], batch["positions"], batch["valid"])
        logits = model.apply({"params": params}, hidden[:, :-1], method=Llama.logits).astype(jnp.float32)
        logp = jax.nn.log_softmax(logits)
        target = jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], axis=-1)[..., 0]
        return jnp.sum(target * batch["weights"][:, 1:], axis=1)

    requests = []
    for row in rows:
        for option in row["options"]:
            context, continuation = tokenizer.encode_pair(row["prompt"], f"\nAnswer Solution: {option}")
            weights = np.r_[np.zeros(len(context)), np.ones(len(continuation))].astype(np.float32)
            requests.append(train_data.TokenizedExample(np.asarray(context + continuation, np.int32), weights))
    scores = []
    for start in range(0, len(requests), SCORE_ROWS):
        chunk = requests[start:start + SCORE_ROWS]
        length = train_data.bucket_for(max(len(r.tokens) for r in chunk), buckets)
        batch = train_data.pad_batch(chunk, SCORE_ROWS, length)
        scores += list(np.asarray(row_logliks(params, {k: jnp.asarray(v) for k, v in batch.items()}))[:len(chunk)])
    return np.asarray(scores)


def accuracy(scores, rows):
    i, hits = 0, 0
    for row in rows:
        n = len(row["options"])
        hits += row["options"][int(np.argmax(scores[i:i + n]))] == row["label"]
        i += n
    return hits / len(rows)


@pytest.mark.slow
def test_lora_on_smollm2_lowers_loss_and_lifts_seen_task_accuracy(tmp_path, data_dir, smollm2_dir):
    from configs import base
    from configs.data import default as data_default
    from t5x_like import hf_io, trainer
    from t5x_like.data import pipeline
    from t5x_like.models import lora as lora_lib
    from t5x_like.tokenization import load_tokenizer

    config = base.get_config()
    config.experiment = "smollm2_lora_sst2"
    config.model.path = str(smollm2_dir)
    config.data = data_default.get_config()
    config.data.data_dir = str(data_dir)
    config.data.tasks = "sst2"
    config.data.formats = "flan"
    config.data.num_test = 64
    config.data.mixture_size = 300
    t = config.train
    t.loss_on = "target_only"  # a 40-step run: spend the gradient on the answers
    t.batch_size, t.buckets, t.num_steps = 4, (128, 256), 40
    t.learning_rate, t.warmup_ratio = 1e-3, 0.05
    t.log_every, t.eval_every, t.eval_batches, t.checkpoint_every = 5, 20, 5, 40
    result = trainer.run(config, str(tmp_path / "run"))

    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    losses = [r["loss"] for r in rows if "loss" in r]
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    test_rows = [json.loads(l) for l in open(pipeline.split_path(tmp_path / "run" / "data", "flan", "sst2", "test"))]
    tokenizer = load_tokenizer(smollm2_dir)
    base_cfg, base_params = hf_io.load_model_dir(str(smollm2_dir))
    tuned = lora_lib.combine(result.frozen, result.state.params)
    base_acc = accuracy(option_logliks(base_cfg, base_params, tokenizer, test_rows), test_rows)
    tuned_acc = accuracy(option_logliks(result.setup.model_cfg, tuned, tokenizer, test_rows), test_rows)
    print(json.dumps({"train_loss_first": losses[0], "train_loss_last": losses[-1], "eval_losses": evals,
                      "base_acc": base_acc, "tuned_acc": tuned_acc, "n_test": len(test_rows)}))
    assert np.mean(losses[-2:]) < losses[0]
    assert evals[-1] < evals[0]
    assert tuned_acc > base_acc
