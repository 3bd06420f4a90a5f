"""Instruction tuning: the jitted train/eval steps and the resumable training loop around them.

`build_train_step` is the whole optimisation maths (loss, microbatch gradient accumulation,
clipping + AdamW, non-finite guard); `run` wires config -> model, data, partitioner, checkpoints,
metrics and export. Shardings all come from the `Partitioner` (the config's rules table).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import signal
import time
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils

from t5x_like import checkpoints, hf_io, io_utils, optimizers, train_data
from t5x_like.errors import UserError
from t5x_like.estimates import BYTES, peak_flops_of_device_kind, train_flops_per_token
from t5x_like.memory import check_program
from t5x_like.models import lora as lora_lib
from t5x_like import model_dirs
from t5x_like.models.api import DecoderModel
from t5x_like.models.config import LoraConfig, ModelConfig
from t5x_like.partitioning import Partitioner, initialize_distributed
from t5x_like.tokenization import load_tokenizer
from t5x_like.train_state import TrainState, init_state, split_trainable, state_logical_specs

log = logging.getLogger(__name__)
Batch = dict[str, jax.Array]


class DivergenceError(UserError, FloatingPointError):
    """The loss, gradient norm or parameter norm left its bound (train.divergence_*); the run stopped
    without applying that update, and the last checkpoint is the last good state."""


class NonFiniteError(DivergenceError):
    """The loss or the gradients became NaN/inf; the run stopped without applying that update."""


@dataclasses.dataclass(frozen=True)
class DivergenceLimits:
    """Bounds a healthy step stays within (inf = unbounded): mean loss per token, global gradient norm
    (before clipping) and the trained parameters' global norm after the update."""

    loss: float = math.inf
    grad_norm: float = math.inf
    param_norm: float = math.inf

    @classmethod
    def from_config(cls, train_cfg: Any) -> "DivergenceLimits":
        """train.divergence_{loss,grad_norm,param_norm}; 0 turns a bound off."""
        bound = lambda value: float(value) or math.inf
        return cls(bound(train_cfg.divergence_loss), bound(train_cfg.divergence_grad_norm),
                   bound(train_cfg.divergence_param_norm))

    def exceeded(self, metrics: Mapping[str, Any]) -> list[str]:
        """'name=value > bound' for every metric of one step beyond its bound."""
        return [f"{name}={float(metrics[name]):.4g} > train.divergence_{name}={bound:g}"
                for name, bound in (("loss", self.loss), ("grad_norm", self.grad_norm),
                                    ("param_norm", self.param_norm)) if float(metrics[name]) > bound]


# ---------------------------------------------------------------------------------------------
# The step maths
# ---------------------------------------------------------------------------------------------
def split_microbatches(batch: Batch, count: int) -> Batch:
    """(B, L) -> (count, B/count, L) with microbatch j = rows j, j+count, ... (spread over all devices)."""
    return jax.tree.map(lambda x: jnp.swapaxes(x.reshape((x.shape[0] // count, count) + x.shape[1:]), 0, 1), batch)


def build_train_step(model: DecoderModel, tx: optax.GradientTransformation, schedule: optax.Schedule,
                     microbatches: int, limits: DivergenceLimits = DivergenceLimits()
                     ) -> Callable[[TrainState, dict, Batch], tuple[TrainState, dict]]:
    """(state, frozen params, batch) -> (new state, metrics). Loss = mean NLL over all weighted tokens.

    Gradients are summed over microbatches (a `lax.scan`) and divided once by the batch's total
    weight, so the result does not depend on `microbatches` beyond float rounding. A non-finite
    loss or gradient, or a step beyond `limits`, leaves the state unchanged and reports
    `healthy=False` (and `finite=False` for NaN/inf).
    """

    def step(state: TrainState, frozen: dict, batch: Batch) -> tuple[TrainState, dict]:
        step_rng = jax.random.fold_in(state.rng, state.step)

        def loss_sums(trained, micro, index):
            params = lora_lib.combine(frozen, trained)
            return model.loss_sums(params, micro, jax.random.fold_in(step_rng, index))

        grad_fn = jax.value_and_grad(loss_sums, has_aux=True)

        def accumulate(carry, xs):
            micro, index = xs
            (nll, weight), grads = grad_fn(state.params, micro, index)
            acc_grads, acc_nll, acc_weight = carry
            return (jax.tree.map(jnp.add, acc_grads, grads), acc_nll + nll, acc_weight + weight), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
        (grads, nll, weight), _ = jax.lax.scan(
            accumulate, init, (split_microbatches(batch, microbatches), jnp.arange(microbatches)))
        denominator = jnp.maximum(weight, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        loss = nll / denominator
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state)
        param_norm = optax.tree.norm(new.params)
        healthy = finite & (loss <= limits.loss) & (grad_norm <= limits.grad_norm) & (param_norm <= limits.param_norm)
        new = jax.tree.map(lambda n, o: jnp.where(healthy, n, o), new, state)
        metrics = {"loss": loss, "grad_norm": grad_norm, "param_norm": param_norm,
                   "learning_rate": schedule(state.step), "loss_tokens": weight,
                   "tokens": jnp.sum(batch["valid"]), "finite": finite, "healthy": healthy}
        return new, metrics

    return step


def build_eval_step(model: DecoderModel) -> Callable[[dict, dict, Batch], tuple[jax.Array, jax.Array]]:
    """(trained params, frozen params, batch) -> (NLL sum, weight sum), deterministic (no dropout)."""

    def step(trained: dict, frozen: dict, batch: Batch) -> tuple[jax.Array, jax.Array]:
        return model.loss_sums(lora_lib.combine(frozen, trained), batch, None)

    return step


def measured_matmul_flops(seconds: float = 0.5, size: int = 1024) -> float:
    """FLOP/s of repeated fp32 (size x size) matmuls on the first device (a CPU's practical peak)."""
    a = jax.device_put(jnp.ones((size, size), jnp.float32), jax.local_devices()[0])
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        f(a).block_until_ready()
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - start)


def peak_flops_per_device(train_cfg: Any) -> float:
    """Configured peak, else the vendor figure for this chip, else a measured matmul rate shared by the CPU's devices."""
    if train_cfg.peak_tflops_per_device:
        return train_cfg.peak_tflops_per_device * 1e12
    vendor = peak_flops_of_device_kind(jax.devices()[0].device_kind)
    return vendor if vendor is not None else measured_matmul_flops() / jax.local_device_count()


# ---------------------------------------------------------------------------------------------
# Setup: everything checked before the first step
# ---------------------------------------------------------------------------------------------
def lora_config(train_cfg: Any) -> LoraConfig | None:
    """The adapter config of the `train` section (None for full fine-tuning)."""
    if train_cfg.mode != "lora":
        return None
    return LoraConfig(rank=int(train_cfg.lora.rank), alpha=float(train_cfg.lora.alpha),
                      dropout=float(train_cfg.lora.dropout), targets=tuple(train_cfg.lora.targets))


def run_identity(config: ml_collections.ConfigDict, model_cfg: ModelConfig) -> dict[str, Any]:
    """What a checkpoint in the workdir must match to be resumed by this run."""
    lora = model_cfg.lora
    return {"experiment": config.experiment, "model": config.model.name,
            "model_shape": [model_cfg.num_layers, model_cfg.hidden_size, model_cfg.vocab_size],
            "mode": config.train.mode,
            "lora": None if lora is None else [lora.rank, lora.alpha, sorted(lora.targets)]}


@dataclasses.dataclass
class Setup:
    """A training run, resolved and validated: model, data, optimizer, abstract state and shardings."""

    config: ml_collections.ConfigDict
    model_dir: str
    model_cfg: ModelConfig
    partitioner: Partitioner
    data: train_data.TrainBatches | None  # None: a deviceless compile (abstract_setup)
    validation: list[train_data.TokenizedExample]
    total_steps: int
    tx: optax.GradientTransformation
    schedule: optax.Schedule
    param_shardings: Any  # full tree (base + adapters), NamedShardings
    state_shardings: TrainState
    abstract_state: TrainState
    frozen_abstract: Any


def resolve_model(config: ml_collections.ConfigDict) -> tuple[str, ModelConfig]:
    """(HF dir, ModelConfig with the train section's LoRA and the model section's numerics)."""
    model_dir = model_dirs.resolve_model_dir(config.model)
    base = model_dirs.model_config(config.model, model_dir)
    return model_dir, base.replace(lora=lora_config(config.train))  # re-validated: bad targets / rank raise


def resolve_mixture_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """`train.mixture_dir`, else the mixture of the config's `data` section, prepared once into <workdir>/data."""
    if config.train.mixture_dir:
        return config.train.mixture_dir
    if "data" not in config or not config.data.get("mixture"):
        raise train_data.DataError("train.mixture_dir is not set and the config has no data.mixture; point "
                                   "--config.train.mixture_dir at <prepare_data output>/mixtures/<name>")
    from t5x_like.data import pipeline  # the data stage, only needed when preparing here
    out = os.path.join(workdir, "data")
    name = pipeline.mixture_name(pipeline.parse_names(config.data.formats)[0], config.data.mixture)
    train_file = pipeline.mixture_path(out, name, "train")
    if not os.path.isfile(train_file):
        if jax.process_index() == 0:
            log.info("preparing mixture %s into %s", name, out)
            try:
                pipeline.prepare(config.data, out)
            except pipeline.DataConfigError as e:
                raise train_data.DataError(f"config.data: {e}") from e
        multihost_utils.sync_global_devices("mixture prepared")
    return os.path.dirname(train_file)


def mixture_files(mixture_dir: str) -> tuple[str, str]:
    """(train.jsonl, validation.jsonl) of a prepared mixture directory."""
    return os.path.join(mixture_dir, "train.jsonl"), os.path.join(mixture_dir, "validation.jsonl")


def load_data(train_cfg: Any, mixture_dir: str, tokenizer: Any, seed: int) -> tuple[train_data.TrainBatches, list]:
    """Tokenised, bucketed training batches and validation sequences (errors before any compile)."""
    train_file, val_file = mixture_files(mixture_dir)
    options = dict(loss_on=train_cfg.loss_on, learn_eos=train_cfg.learn_eos, max_len=max(train_cfg.buckets),
                   overlong=train_cfg.overlong)
    train_seqs, too_long = train_data.tokenize_rows(train_data.read_jsonl(train_file), tokenizer.encode,
                                                    tokenizer.eos_id, **options)
    if too_long:
        log.warning("%d training sequences longer than %d tokens were %s (train.overlong)", too_long,
                    max(train_cfg.buckets), "dropped" if train_cfg.overlong == "drop" else "truncated")
    val_seqs, _ = train_data.tokenize_rows(train_data.read_jsonl(val_file, required=False), tokenizer.encode,
                                           tokenizer.eos_id, **options)
    batches = train_data.TrainBatches(train_seqs, batch_size=train_cfg.batch_size, buckets=train_cfg.buckets, seed=seed,
                                      group_size=train_cfg.group_size)
    return batches, val_seqs


def total_steps(train_cfg: Any, batches_per_epoch: int) -> int:
    return int(train_cfg.num_steps) or max(1, int(train_cfg.num_epochs * batches_per_epoch))


def prepare(config: ml_collections.ConfigDict, workdir: str) -> Setup:
    """Resolves and checks everything a run needs (model, mesh, data, identity) before loading weights."""
    train_cfg = config.train
    partitioner = Partitioner.from_config(config.partitioning)
    model_dir, model_cfg = resolve_model(config)
    checkpoints.check_identity(workdir, run_identity(config, model_cfg))
    partitioner.check_model(model_cfg.num_heads, model_cfg.num_kv_heads)
    partitioner.check_batch(train_cfg.batch_size, train_cfg.microbatches)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.check_matches_model(model_cfg.vocab_size)
    data, validation = load_data(train_cfg, resolve_mixture_dir(config, workdir), tokenizer, config.seed)
    return abstract_setup(config, model_dir, model_cfg, partitioner, data, validation,
                          total_steps(train_cfg, data.batches_per_epoch))


def abstract_setup(config: ml_collections.ConfigDict, model_dir: str, model_cfg: ModelConfig,
                   partitioner: Partitioner, data: train_data.TrainBatches | None,
                   validation: list, steps: int) -> Setup:
    """The Setup's optimizer, abstract state and shardings (no weights, no devices touched); with
    `data=None` it serves deviceless compiles of the train step (benchmarks/tpu_memory.py)."""
    train_cfg = config.train
    tx, schedule = optimizers.make_optimizer(train_cfg, steps)
    boxed = DecoderModel(model_cfg).abstract_params()
    param_specs = nn.get_partition_spec(boxed)
    abstract_params = nn.meta.unbox(boxed)
    param_shardings = partitioner.shardings_of(boxed)
    partitioner.check_divisible(abstract_params, param_shardings, "the model's parameters")
    trained_abs, frozen_abs = split_trainable(abstract_params, train_cfg.mode)
    trained_specs, _ = split_trainable(param_specs, train_cfg.mode)
    abstract_state = jax.eval_shape(lambda p: init_state(p, tx, jax.random.PRNGKey(0)), trained_abs)
    state_specs = state_logical_specs(abstract_state, trained_specs)
    state_shardings = partitioner.shardings_for_specs(state_specs)
    return Setup(config, model_dir, model_cfg, partitioner, data, validation, steps, tx, schedule,
                 param_shardings, state_shardings, abstract_state, frozen_abs)


def _batch_abstract(setup: Setup, length: int) -> Batch:
    rows = setup.config.train.batch_size
    sharding = setup.partitioner.batch_sharding(2)
    dtypes = {"tokens": jnp.int32, "positions": jnp.int32, "valid": jnp.bool_, "weights": jnp.float32}
    return {k: jax.ShapeDtypeStruct((rows, length), d, sharding=sharding) for k, d in dtypes.items()}


def _batch_shardings(setup: Setup) -> dict[str, Any]:
    return {k: setup.partitioner.batch_sharding(2) for k in ("tokens", "positions", "valid", "weights")}


def lower_train_steps(setup: Setup, lengths: Sequence[int]) -> dict[int, Any]:
    """The train step AOT-compiled for each sequence length, from abstract state (nothing allocated)."""
    model = DecoderModel(setup.model_cfg, deterministic=False)
    frozen_shardings = split_trainable(setup.param_shardings, setup.config.train.mode)[1]
    train_step = setup.partitioner.jit(
        build_train_step(model, setup.tx, setup.schedule, setup.config.train.microbatches,
                         DivergenceLimits.from_config(setup.config.train)),
        in_shardings=(setup.state_shardings, frozen_shardings, _batch_shardings(setup)),
        out_shardings=(setup.state_shardings, setup.partitioner.replicated()), donate_argnums=(0,))
    abstract_state = checkpoints.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
    frozen = checkpoints.abstract_with_shardings(setup.frozen_abstract, frozen_shardings)
    return {length: train_step.lower(abstract_state, frozen, _batch_abstract(setup, length)).compile()
            for length in lengths}


def compile_steps(setup: Setup) -> tuple[dict[int, Any], Any]:
    """AOT-compiles the train step for every bucket, prints its memory estimate, refuses what cannot fit."""
    compiled = lower_train_steps(setup, setup.data.bucket_lengths())
    longest = max(compiled)
    check_memory(compiled[longest].memory_analysis(), longest, setup.config.train.max_memory_fraction)
    frozen_shardings = split_trainable(setup.param_shardings, setup.config.train.mode)[1]
    replicated = setup.partitioner.replicated()
    eval_step = setup.partitioner.jit(
        build_eval_step(DecoderModel(setup.model_cfg, deterministic=True)),
        in_shardings=(setup.state_shardings.params, frozen_shardings, _batch_shardings(setup)),
        out_shardings=(replicated, replicated))
    return compiled, eval_step


def check_memory(analysis: Any, length: int, max_fraction: float) -> None:
    """Logs the compiled train step's per-device memory; refuses it above `train.max_memory_fraction`."""
    check_program(analysis, f"the train step for sequences of {length} tokens", (
        "Lower train.batch_size or the largest train.buckets, raise train.microbatches, set "
        "model.remat_policy='full', or shard more (fsdp)"), max_fraction)


# ---------------------------------------------------------------------------------------------
# Params and state
# ---------------------------------------------------------------------------------------------
def load_frozen_and_init(setup: Setup) -> tuple[dict, TrainState]:
    """Frozen base weights streamed onto their shardings, and a fresh state (LoRA init from the seed)."""
    base_shardings, _ = lora_lib.split_lora(setup.param_shardings)
    base = hf_io.load_params(setup.model_dir, setup.model_cfg.replace(lora=None), shardings=base_shardings)
    return frozen_and_init(setup, base)


def frozen_and_init(setup: Setup, base: dict) -> tuple[dict, TrainState]:
    """(frozen params, fresh state) from base weights already on their shardings: LoRA freezes them and
    initialises adapters from the seed; full fine-tuning trains them (benchmarks pass random bases)."""
    mode = setup.config.train.mode
    if mode == "lora":
        trained_shardings = setup.state_shardings.params
        init_adapters = jax.jit(
            lambda rng: lora_lib.split_lora(nn.meta.unbox(DecoderModel(setup.model_cfg).init(rng)))[1],
            out_shardings=trained_shardings)  # XLA drops the unused base init
        trained, frozen = init_adapters(jax.random.PRNGKey(setup.config.seed)), base
    else:
        trained, frozen = base, {}
    make_state = jax.jit(lambda p: init_state(p, setup.tx, jax.random.PRNGKey(setup.config.seed)),
                         out_shardings=setup.state_shardings)
    return frozen, make_state(trained)


def frozen_for_restore(setup: Setup) -> dict:
    """The frozen base weights of a resumed run (LoRA: reloaded from the model dir; full FT: none)."""
    if setup.config.train.mode != "lora":
        return {}
    base_shardings, _ = lora_lib.split_lora(setup.param_shardings)
    return hf_io.load_params(setup.model_dir, setup.model_cfg.replace(lora=None), shardings=base_shardings)


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------
class MetricsWriter:
    """metrics.jsonl + TensorBoard + console, written by process 0 only; resume drops rows past the restored step."""

    def __init__(self, workdir: str, start_step: int):
        self.enabled = jax.process_index() == 0
        self.file = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if not self.enabled:
            return
        if os.path.isfile(self.file):
            kept = [r for r in io_utils.read_jsonl(self.file) if r["step"] <= start_step] if start_step else []
            io_utils.atomic_write_jsonl(self.file, kept)
        from tensorboardX import SummaryWriter
        self.tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=start_step + 1)

    def write(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.file, "a") as f:
            f.write(json.dumps({"step": step, **values}, sort_keys=True) + "\n")
        for name, value in values.items():
            self.tb.add_scalar(name, value, step)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def evaluate(setup: Setup, eval_step: Any, state: TrainState, frozen: dict) -> float | None:
    """Mean NLL per weighted token on the validation split (None when there is none)."""
    if not setup.validation:
        return None
    cfg = setup.config.train
    rows = setup.partitioner.local_row_range(cfg.batch_size)
    nll, weight = 0.0, 0.0
    for local in train_data.eval_batches(setup.validation, batch_size=cfg.batch_size, buckets=cfg.buckets,
                                         rows=rows, max_batches=cfg.eval_batches):
        batch = setup.partitioner.shard_host_batch(local, cfg.batch_size)
        s, w = eval_step(state.params, frozen, batch)
        nll, weight = nll + float(s), weight + float(w)
    return nll / max(weight, 1.0)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
class _Preemption:
    """SIGTERM (TPU VM preemption, `kill`) sets a flag; the loop saves and exits at the next step."""

    def __init__(self):
        self.requested = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def agreed(self) -> bool:
        """True on every process once any process was signalled."""
        if jax.process_count() == 1:
            return self.requested
        return bool(multihost_utils.process_allgather(np.asarray(self.requested)).any())

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class RunResult:
    """How a `run` ended: final step, the last losses, and whether it was preempted."""

    step: int
    preempted: bool
    final_loss: float | None
    eval_loss: float | None
    state: TrainState
    frozen: dict
    setup: Setup


def run(config: ml_collections.ConfigDict, workdir: str, export_dir: str | None = None) -> RunResult:
    """Trains (or resumes) the run of `config` in `workdir`; exports an HF dir (+ adapter) when asked."""
    initialize_distributed(config.partitioning)
    with io_utils.workdir_lock(workdir, "launch.train"):
        return _run_locked(config, workdir, export_dir)


def _run_locked(config: ml_collections.ConfigDict, workdir: str, export_dir: str | None) -> RunResult:
    """`run` while holding the workdir's lock: setup and output checks, then resume or start the loop."""
    os.makedirs(workdir, exist_ok=True)
    setup = prepare(config, workdir)
    cfg = setup.config.train
    if export_dir:  # the export is the last thing a run writes: check its disk first
        io_utils.checked_on_primary(lambda: io_utils.check_writable(
            os.path.dirname(os.path.abspath(export_dir)), export_bytes(setup.model_cfg), what="export parent"),
            export_dir)
    log.info("mesh %s, %d steps of %d rows, %d train / %d validation sequences, mode %s",
             dict(setup.partitioner.mesh.shape), setup.total_steps, cfg.batch_size, len(setup.data.seqs),
             len(setup.validation), cfg.mode)
    ckpt = checkpoints.Checkpointer(workdir, max_to_keep=cfg.max_to_keep, async_save=cfg.async_checkpointing)
    try:
        latest = ckpt.latest_step()
        finished = latest is not None and latest >= setup.total_steps
        compiled, eval_step = ({}, None) if finished else compile_steps(setup)
        if latest is None:
            frozen, state = load_frozen_and_init(setup)
            position = 0
            if jax.process_index() == 0:
                io_utils.atomic_write_json(os.path.join(workdir, "config.json"), config.to_dict())
        else:
            frozen = frozen_for_restore(setup)
            target = checkpoints.abstract_with_shardings(setup.abstract_state, setup.state_shardings)
            state, data = ckpt.restore(latest, target)
            position = int(data["position"])
            log.info("resumed from step %d (data position %d)%s", latest, position,
                     "; the run is already complete" if finished else "")
        return _loop(setup, compiled, eval_step, ckpt, state, frozen, position, workdir, export_dir)
    finally:
        ckpt.close()


def _interval(value: int, total: int, fraction: float) -> int:
    return int(value) or max(1, math.ceil(fraction * total))


def _loop(setup: Setup, compiled: dict, eval_step: Any, ckpt: checkpoints.Checkpointer, state: TrainState,
          frozen: dict, position: int, workdir: str, export_dir: str | None) -> RunResult:
    cfg = setup.config.train
    start = int(jax.device_get(state.step))
    save_every = _interval(cfg.checkpoint_every, setup.total_steps, 0.2)
    eval_every = _interval(cfg.eval_every, setup.total_steps, 0.1)
    writer = MetricsWriter(workdir, start)
    preemption = _Preemption()
    peak = peak_flops_per_device(cfg) * jax.device_count()
    rows = setup.partitioner.local_row_range(cfg.batch_size)
    window = {"tokens": 0, "flops": 0.0, "time": 0.0, "steps": 0}
    loss = eval_loss = None
    step, t_start = start, time.perf_counter()
    if start == 0 and compiled:
        eval_loss = evaluate(setup, eval_step, state, frozen)
        if eval_loss is not None:
            writer.write(0, {"eval_loss": eval_loss})
            log.info("step 0: validation loss %.4f", eval_loss)
    try:
        while step < setup.total_steps:
            local = setup.data.batch_at(position, rows)
            length = local["tokens"].shape[1]
            batch = setup.partitioner.shard_host_batch(local, cfg.batch_size)
            t0 = time.perf_counter()
            state, metrics = compiled[length](state, frozen, batch)
            metrics = jax.device_get(metrics)
            window["time"] += time.perf_counter() - t0
            step, position = step + 1, position + 1
            if not metrics["healthy"]:
                ckpt.wait()
                raise _divergence(metrics, step, ckpt.latest_step(), workdir, cfg)
            loss = float(metrics["loss"])
            tokens = int(metrics["tokens"])
            window["tokens"] += tokens
            window["flops"] += tokens * train_flops_per_token(setup.model_cfg, length, cfg.mode)
            window["steps"] += 1
            if step % eval_every == 0 or step == setup.total_steps:
                eval_loss = evaluate(setup, eval_step, state, frozen)
                if eval_loss is not None:
                    writer.write(step, {"eval_loss": eval_loss})
                    log.info("step %d: validation loss %.4f", step, eval_loss)
            if step % cfg.log_every == 0 or step == setup.total_steps:
                _log_step(writer, step, setup.total_steps, metrics, window, peak, time.perf_counter() - t_start,
                          step - start)
                window = {"tokens": 0, "flops": 0.0, "time": 0.0, "steps": 0}
            if step % save_every == 0 or step == setup.total_steps:
                ckpt.save(step, state, {"position": position, "step": step})
            if preemption.agreed():
                if step % save_every and step != setup.total_steps:
                    ckpt.save(step, state, {"position": position, "step": step})
                ckpt.wait()
                log.warning("SIGTERM: saved step %d to %s/checkpoints; rerun the same command to resume", step, workdir)
                return RunResult(step, True, loss, eval_loss, state, frozen, setup)
        ckpt.wait()
        if export_dir:
            export(setup, state, frozen, export_dir)
        return RunResult(step, False, loss, eval_loss, state, frozen, setup)
    finally:
        preemption.restore()
        writer.close()


def _divergence(metrics: Mapping[str, Any], step: int, last_good: int | None, workdir: str,
                train_cfg: Any) -> DivergenceError:
    """The error that stops an unhealthy step: what went wrong, that nothing was applied, where the last
    good checkpoint is and what to change."""
    where = (f"The last good checkpoint is step {last_good} in {workdir}/checkpoints" if last_good is not None
             else f"No checkpoint was saved yet in {workdir}")
    if not metrics["finite"]:
        what, error = f"loss={metrics['loss']} grad_norm={metrics['grad_norm']} is not finite", NonFiniteError
    else:
        what, error = "diverged: " + ", ".join(DivergenceLimits.from_config(train_cfg).exceeded(metrics)), DivergenceError
    return error(f"step {step}: {what}; the update was not applied and training stopped. {where} (lower "
                 "train.learning_rate, check the data, or raise the train.divergence_* bound)")


def _log_step(writer: MetricsWriter, step: int, total: int, metrics: dict, window: dict, peak: float,
              elapsed: float, done: int) -> None:
    """One console line with progress and ETA, and the same numbers to metrics.jsonl / TensorBoard."""
    seconds = max(window["time"], 1e-9)
    values = {"loss": float(metrics["loss"]), "learning_rate": float(metrics["learning_rate"]),
              "grad_norm": float(metrics["grad_norm"]), "param_norm": float(metrics["param_norm"]),
              "tokens_per_s": window["tokens"] / seconds,
              "mfu": window["flops"] / seconds / peak, "step_time_s": seconds / max(window["steps"], 1)}
    writer.write(step, values)
    eta = elapsed / max(done, 1) * (total - step)
    log.info("step %d/%d (%.0f%%) loss %.4f lr %.3g grad_norm %.3f %.0f tok/s MFU %.1f%% eta %s", step, total,
             100 * step / total, values["loss"], values["learning_rate"], values["grad_norm"], values["tokens_per_s"],
             100 * values["mfu"], time.strftime("%H:%M:%S", time.gmtime(eta)))


def export_bytes(model_cfg: ModelConfig) -> int:
    """Bytes the merged export writes (every weight in param_dtype; the adapter is small beside it)."""
    return int(model_cfg.num_params() * BYTES[model_cfg.param_dtype])


def export(setup: Setup, state: TrainState, frozen: dict, export_dir: str) -> None:
    """export_dir/model: merged HF dir (transformers + our loader); export_dir/adapter: the LoRA adapter alone."""
    run_config = setup.config.to_dict()
    params = lora_lib.combine(frozen, state.params)
    checkpoints.export_merged(params, setup.model_cfg, os.path.join(export_dir, "model"),
                              tokenizer_dir=setup.model_dir, run_config=run_config)
    if setup.model_cfg.lora is not None:
        checkpoints.export_adapter(state.params, setup.model_cfg, os.path.join(export_dir, "adapter"), run_config)
    log.info("exported %s", export_dir)
