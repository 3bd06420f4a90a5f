"""Which weights answer each model role (base, flan, samplegen): an HF dir, a merged export or a PEFT
adapter over the base model; one Engine per role on the run's mesh."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections
from absl import logging

from t5x_like import checkpoints
from t5x_like.engine import Engine
from t5x_like.evaluation.config import EvalConfigError, EvalOptions
from t5x_like.evaluation.store import Unit
from t5x_like.partitioning import Partitioner
from t5x_like.settings import Setting


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Where a role's weights come from: an HF dir, or a PEFT adapter dir over the base model."""

    role: str
    path: str
    adapter_over: str | None = None  # base HF dir when `path` is an adapter


def tuned_model_spec(role: str, path: str, base_dir: Callable[[], str]) -> ModelSpec:
    """A tuned model given as a merged HF dir (config.json) or a LoRA adapter dir (adapter_config.json)."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return ModelSpec(role, os.path.abspath(path))
    if os.path.isfile(os.path.join(path, checkpoints.ADAPTER_CONFIG)):
        return ModelSpec(role, os.path.abspath(path), adapter_over=base_dir())
    raise EvalConfigError(f"--config.eval.{role}_model={path!r}: neither an HF model dir (config.json) nor a "
                          f"LoRA adapter dir (adapter_config.json); point it at the training export "
                          f"(<export_dir>/model or <export_dir>/adapter)")


class Engines:
    """One Engine per model role on the run's mesh, loaded on first use (a finished run loads nothing).

    Every role loads with the model section's numerics (dtype, param_dtype, remat, attention impl);
    with `max_memory_fraction`, each engine's largest programs are compiled and checked first.
    """

    def __init__(self, specs: Mapping[str, ModelSpec], *, model_section: ml_collections.ConfigDict,
                 partitioner: Partitioner, options: Mapping[str, Any], max_new_tokens: Mapping[str, int | None],
                 max_memory_fraction: float | None, preloaded: Mapping[str, Engine] | None = None):
        self.specs, self.model_section, self.partitioner = dict(specs), model_section, partitioner
        self.options, self.max_new_tokens, self.max_memory_fraction = dict(options), dict(max_new_tokens), max_memory_fraction
        self._engines: dict[str, Engine] = dict(preloaded or {})

    def get(self, role: str) -> Engine:
        if role not in self._engines:
            from t5x_like import model_dirs

            spec = self.specs[role]
            model_dir = spec.adapter_over or spec.path
            engine = Engine.load(model_dir, model_dirs.model_config(self.model_section, model_dir), self.partitioner,
                                 adapter_dir=spec.path if spec.adapter_over else None, progress=False,
                                 **self.options)
            if self.max_memory_fraction is not None:
                engine.check_memory(self.max_new_tokens.get(role), self.max_memory_fraction)
            self._engines[role] = engine
            logging.info("loaded the %s model from %s", role, spec.path)
        return self._engines[role]


def model_specs(config: ml_collections.ConfigDict, settings: Sequence[Setting], needs_model: set[str]
                ) -> dict[str, ModelSpec]:
    """The model of every role that has work; a tuned role without a model is an error."""
    from t5x_like import model_dirs

    base_dir: list[str] = []

    def resolve_base() -> str:
        if not base_dir:
            base_dir.append(model_dirs.resolve_model_dir(config.model))
        return base_dir[0]

    specs = {}
    for role in sorted(needs_model):
        if role == "base":
            specs[role] = ModelSpec("base", resolve_base())
            continue
        path = config.eval.get(f"{role}_model", "")
        if not path:
            users = [s.name for s in settings if s.model == role]
            raise EvalConfigError(f"settings {users} need the {role}-tuned model; set --config.eval.{role}_model="
                                  f"<export_dir>/model (merged HF dir) or <export_dir>/adapter")
        specs[role] = tuned_model_spec(role, path, resolve_base)
    return specs


def role_max_new_tokens(units: Sequence[Unit], opts: EvalOptions) -> dict[str, int | None]:
    """Per model role, the most new tokens its settings generate (None in loglik mode: scoring only)."""
    if opts.mode != "generate":
        return {}
    out: dict[str, int | None] = {}
    for unit in units:
        role = unit.setting.model
        out[role] = max(out.get(role) or 0, opts.max_new_tokens(unit.setting))
    return out


def adapter_label(config: ml_collections.ConfigDict, setting: Setting) -> str:
    """The tuned model a setting used ("" for base-model settings), as given in the config."""
    return "" if setting.model == "base" else config.eval.get(f"{setting.model}_model", "")
