"""Every config file under configs/ loads the way config_flags loads it and resolves.

Each file is parsed by ml_collections' own config-file flag parser (path, and `path:arg` for the
files whose get_config takes an argument), then checked by what it is: a model section (shapes
from its config.json fields), a data section (tasks, formats, mixture), a full experiment config
(all of those plus mesh vs the named hardware, every weight shardable, eval settings, tuned
formats), or a sweep (see tests/test_sweep.py).
"""
from __future__ import annotations

import functools
import glob
import importlib.util
import inspect
import os

import jax
import pytest

from t5x_like import estimates, partitioning, sweep, trainer
from t5x_like.evaluation import config as ev_config
from t5x_like.settings import get_setting
from t5x_like.data import mixtures, pipeline
from t5x_like.data import tasks as registry
from t5x_like.experiment import parse_list
from t5x_like.models import lora as lora_lib
from t5x_like import model_dirs
from t5x_like.models.config import ModelConfig
from t5x_like.models.llama import init_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The `:arg` values tried for every config file whose get_config takes an argument.
ARGS = {
    "configs/data/mixture.py": ["setup1", "setup7"],
    "configs/data/variants.py": ["setup3"],
    "configs/data/paper.py": ["setup3"],
    "configs/experiments/paper_setup.py": [f"setup{k}" for k in range(1, 8)] + ["default,mistral_7b",
                                                                               "setup2,llama2_13b"],
    "configs/experiments/paper_variants.py": ["unified", "corrupted", "noanswer", "relevance", "gp_ablation",
                                              "gp_ablation_setup5", "corrupted,mistral_7b"],
    "configs/experiments/paper_bigbench.py": ["llama2_13b"],
    "configs/sweeps/paper.py": ["main"],
}
NEEDS_ARG = {"configs/experiments/paper_variants.py"}  # no sensible default: loading it bare is an error
HELPERS = {"configs/experiments/paper_common.py",  # shared code, not a config
           "configs/lm_eval_tasks/local_data.py"}  # the offline lm-eval tasks' data loader


def config_files() -> list[str]:
    """Every config file under configs/ (relative to the repository root)."""
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "**", "*.py"), recursive=True))
    return [os.path.relpath(p, ROOT) for p in paths]


def load(spec: str, *overrides: str):
    """`--config=<spec> [--config.key=value ...]` parsed exactly as launch/*.py parse it."""
    return sweep.load_config(spec, overrides)


@functools.lru_cache(maxsize=None)
def abstract_params(model: ModelConfig):
    """Shapes and logical axes of every param (no memory: jax.eval_shape), cached per model config."""
    return jax.eval_shape(lambda: init_params(model, jax.random.key(0)))


def takes_arg(path: str) -> bool:
    """Whether the file's get_config has a parameter (an `:arg` suffix)."""
    spec = importlib.util.spec_from_file_location("_probe", os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return bool(inspect.signature(module.get_config).parameters)


def specs() -> list[str]:
    """Every `path` and `path:arg` to load."""
    out = []
    for path in config_files():
        if path in HELPERS:
            continue
        if path not in NEEDS_ARG:
            out.append(path)
        out += [f"{path}:{arg}" for arg in ARGS.get(path, [])]
    return out


def test_every_parametrised_config_is_tried_with_an_argument():
    parametrised = {p for p in config_files() if p not in HELPERS and takes_arg(p)}
    assert parametrised - set(ARGS) == set(), "add :arg values for these files to ARGS"
    assert set(ARGS) <= set(config_files())


def test_helpers_are_not_configs():
    for path in HELPERS:
        spec = importlib.util.spec_from_file_location("_probe", os.path.join(ROOT, path))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert not hasattr(module, "get_config")


def check_model_section(m) -> ModelConfig:
    """The section's shapes (from its config.json fields) and numerics build a valid ModelConfig."""
    config = model_dirs.model_config(m)
    assert config.num_params() > 0
    assert config.num_heads % config.num_kv_heads == 0
    return config


def check_data_section(d) -> None:
    """Tasks exist in the registry, formats are known, the mixture setup exists."""
    names = pipeline.parse_names(d.tasks)
    if names != ["all"]:
        for name in names:
            registry.get_task(name)
        assert len(names) == len(set(names)), "a task is listed twice"
    for fmt in pipeline.parse_names(d.formats):
        assert fmt in pipeline.FORMATS, f"unknown data format {fmt}"
    if d.mixture:
        mixtures.mixture_tasks(d.mixture)
    mixtures.mixture_tasks(d.ablation_setup)
    assert 0 < d.validation_fraction < 1 and d.num_test > 0


def check_mesh(config, model: ModelConfig) -> None:
    """The mesh fills the named hardware, splits the batch and every weight (incl. LoRA) evenly."""
    _, devices = estimates.parse_hardware(config.hardware)
    shape = partitioning.resolve_mesh_shape(tuple(config.partitioning.mesh_shape), devices)
    mesh = jax.sharding.AbstractMesh(shape, partitioning.MESH_AXES)
    partitioner = partitioning.Partitioner(mesh, partitioning.rules_from_config(config.partitioning.rules))
    partitioner.check_model(model.num_heads, model.num_kv_heads)
    t = config.train
    partitioner.check_batch(t.batch_size // t.microbatches)
    abstract = abstract_params(model.replace(lora=trainer.lora_config(t)))
    shardings = partitioner.shardings_of(abstract)
    partitioner.check_divisible(abstract, shardings, "params")
    _, adapters = lora_lib.split_lora(abstract)
    assert jax.tree.leaves(adapters), "train.lora.targets matched no projection"


def check_experiment(config) -> None:
    """Every section of a full experiment config resolves against the code it drives."""
    model = check_model_section(config.model)
    check_data_section(config.data)
    check_mesh(config, model)
    formats = pipeline.parse_names(config.data.formats)
    tuned = pipeline.parse_names(config.tuning.formats)
    for fmt in tuned:  # a tuned model trains on the <format>_<setup> mixture of a train-split format
        assert fmt in formats and pipeline.TRAIN in pipeline.FORMATS[fmt].splits, fmt
        assert config.data.mixture, "tuning needs a mixture (data.mixture)"
    kinds = {pipeline.FORMATS[f].kind for f in tuned}
    for name in parse_list(config.eval.settings):
        setting = get_setting(name)
        assert setting.format in formats, f"setting {name} reads format {setting.format}, not prepared"
        assert setting.model == "base" or setting.model in kinds, f"setting {name} needs a {setting.model} model"
    if config.eval.tasks != "all":
        prepared = set(pipeline.parse_names(config.data.tasks))
        for name in parse_list(config.eval.tasks):
            registry.get_task(name)
            assert config.data.tasks == "all" or name in prepared, f"eval task {name} is not prepared"
    mixtures.mixture_tasks(config.eval.setup)
    assert config.eval.mode in ev_config.MODES
    for seed in parse_list(config.tuning.seeds):
        int(seed)


@pytest.mark.parametrize("spec", specs())
def test_config_loads_and_resolves(spec):
    config = load(spec)
    if spec == "configs/base.py":  # the template every experiment starts from: it names no model source
        with pytest.raises(model_dirs.ModelSourceError, match="config.model.random holds no config.json fields"):
            model_dirs.model_config(config.model)
        check_data_section(config.data)
        partitioning.rules_from_config(config.partitioning.rules)
    elif "model" in config and "data" in config:
        check_experiment(config)
    elif "random" in config:
        check_model_section(config)
    elif "formats" in config:
        check_data_section(config)
    elif "grid" in config:
        runs = sweep.expand(config, "/nonexistent/sweep")  # loads every run's experiment config
        assert len(runs) == len({r.name for r in runs}) > 0
    else:
        pytest.fail(f"{spec}: not a model, data, experiment or sweep config: keys {sorted(config)}")


def test_overrides_apply_on_top_of_a_paper_config():
    config = load("configs/experiments/paper_setup.py:setup4,mistral_7b", "tuning.seeds=1234", "hardware=h100-8")
    assert (config.tuning.seeds, config.hardware, config.data.mixture) == ("1234", "h100-8", "setup4")
    check_experiment(config)


def test_paper_main_study_hyperparameters():
    c = load("configs/experiments/paper_mistral_7b.py")
    t = c.train
    assert (t.lora.rank, t.lora.alpha, t.lora.dropout, tuple(t.lora.targets)) == (64, 16.0, 0.1, ("q_proj", "v_proj"))
    assert (t.learning_rate, t.batch_size, max(t.buckets), t.num_epochs) == (5e-5, 2, 4096, 1.0)
    # the mixture's train split is exactly the original's 20,000 rows
    mixed = mixtures.build_mixture({"a": list(range(30000)), "b": list(range(500))}, seed=0,
                                   size=c.data.mixture_size, validation_fraction=c.data.validation_fraction)
    assert len(mixed.train) == 20000
    assert (c.data.num_test, c.eval.max_new_tokens_tuned, c.eval.max_new_tokens_base) == (2500, 1024, 250)
    assert c.tuning.seeds == "42,1234,10203" and c.tuning.formats == "flan,samplegen"
    assert (c.model.dtype, c.model.name) == ("bfloat16", "mistral_7b")
    tests = parse_list(c.eval.tasks)
    assert len(tests) == 37 + 8 + 1 and set(registry.TEST_TASKS) <= set(tests)
    assert set(mixtures.mixture_tasks("default")) <= set(pipeline.parse_names(c.data.tasks))


@pytest.mark.parametrize("model", ["llama2_7b", "llama2_13b", "mistral_7b", "llama2_70b"])
def test_paper_training_fits_the_named_hardware(model):
    c = load(f"configs/experiments/paper_{model}.py")
    hw, devices = estimates.parse_hardware(c.hardware)
    data, fsdp, tensor = partitioning.resolve_mesh_shape(tuple(c.partitioning.mesh_shape), devices)
    shape = estimates.TrainShape(c.train.batch_size, max(c.train.buckets), data, fsdp, tensor, True,
                                 c.model.remat_policy != "none")
    model = model_dirs.model_config(c.model).replace(lora=trainer.lora_config(c.train))
    assert estimates.estimate_training(model, shape, hw).fits


def test_variant_without_argument_is_a_clear_error():
    with pytest.raises(sweep.SweepError, match="needs a variant argument"):
        load("configs/experiments/paper_variants.py")
    with pytest.raises(sweep.SweepError, match="unknown model"):
        load("configs/experiments/paper_setup.py:setup1,gpt2")
    with pytest.raises(sweep.SweepError, match="unknown mixture setup"):
        load("configs/experiments/paper_setup.py:setup9")


def test_paper_data_config_is_the_experiments_data_section():
    assert load("configs/data/paper.py:setup5").to_dict() == load("configs/experiments/paper_setup.py:setup5").data.to_dict()


def _dry_run_specs() -> list:
    """Every paper experiment spec (the SampleGen training variants included)."""
    return [spec for spec in specs() if spec.startswith("configs/experiments/paper_")]


@pytest.mark.parametrize("spec", _dry_run_specs())
def test_paper_dry_run_plans_every_stage(spec, tmp_path):
    from t5x_like import experiment

    config = load(spec)
    text = experiment.dry_run(config, str(tmp_path), None)
    runs = experiment.tuned_runs(config) if config.tuning.formats else []
    assert f"hardware {config.hardware}" in text and "fits" in text and "DOES NOT FIT" not in text
    assert text.count("would run") == 3 + 2 * len(runs)  # prepare, evaluate_base, analyze + per tuned run
