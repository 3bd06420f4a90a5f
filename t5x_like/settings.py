"""The registry of evaluation settings: the one place that says what each setting is (JAX-free).

A setting names a prepared test format, the model that answers it, the answer-extraction rule, its
role in the paper's analysis and the main setting it is a variant of:

  base_d              base model on the bare instruction (base_d format), base extraction
  gold_pipeline       base model continues gold examples + the item's Solution block
  samplegen_pipeline  base model continues the SampleGen-D response of the same item, cut after its
                      first "Answer Solution:" (read from that run's predictions/samplegen_d)
  flan_d              FLAN-tuned model on the flan format, tuned extraction
  samplegen_d         SampleGen-tuned model on the samplegen format, tuned extraction
  <variant format>    every other prepared test format (gold_pipeline_unified, flan_adv,
                      samplegen_bad_prompt_3, ...) as a variant of its format kind's main setting;
                      samplegen_pipeline_<style> continues samplegen_<style>

Role "tuned": an instruction-tuned model answers (the paper's FLAN-D / SampleGen-D and their
variants); role "base": the base model answers in context (Base-D, the pipelines). The evaluator,
experiment planning, the sweep and the analysis all read these fields; none decides them by name.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from t5x_like.data import format_specs
from t5x_like.errors import UserError

MODELS = ("base", "flan", "samplegen")  # who answers; the last two are the tuned models
TUNED_MODELS = MODELS[1:]
ROLES = ("tuned", "base")


class UnknownSettingError(UserError, ValueError):
    """A setting name the registry does not know."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one setting is evaluated and analysed."""

    name: str
    format: str  # prepared test-format directory
    model: str  # the model that answers: "base" | "flan" | "samplegen"
    extraction: str  # metrics.extract_answer mode: "base" | "tuned"
    main: str  # the main setting this one is, or is a variant of
    source: str | None = None  # a SampleGen Pipeline: the setting whose responses it continues
    source_model: str | None = None  # and the model that wrote them

    @property
    def role(self) -> str:
        """"tuned" when an instruction-tuned model answers, else "base" (in-context learning)."""
        return "base" if self.model == "base" else "tuned"

    @property
    def run_model(self) -> str:
        """The model whose evaluation run computes this setting: the answering model, or for a
        pipeline the tuned model whose responses it continues (so its results depend on that seed)."""
        return self.source_model or self.model

    @property
    def lettered(self) -> bool:
        """adv-style prompts letter their options; answers like "(b)" map back to option text."""
        return format_specs.FORMATS[self.format].bigbench_style == "adv"


MAIN_SETTINGS = {
    "base_d": Setting("base_d", "base_d", "base", "base", "base_d"),
    "gold_pipeline": Setting("gold_pipeline", "gold_pipeline", "base", "base", "gold_pipeline"),
    "samplegen_pipeline": Setting("samplegen_pipeline", "samplegen", "base", "base", "samplegen_pipeline",
                                  source="samplegen_d", source_model="samplegen"),
    "flan_d": Setting("flan_d", "flan", "flan", "tuned", "flan_d"),
    "samplegen_d": Setting("samplegen_d", "samplegen", "samplegen", "tuned", "samplegen_d"),
}
_MAIN_OF_FORMAT_KIND = {"base_d": "base_d", "gold_pipeline": "gold_pipeline", "flan": "flan_d",
                        "samplegen": "samplegen_d"}
_PIPELINE_PREFIX = "samplegen_pipeline_"


def _variant_settings() -> dict[str, Setting]:
    """Every other prepared test format as a variant of its kind's main setting, plus a pipeline over
    every SampleGen variant."""
    main_formats = {s.format for s in MAIN_SETTINGS.values()}
    out = {}
    for name, spec in format_specs.FORMATS.items():
        if format_specs.TEST not in spec.splits or name in main_formats:
            continue
        out[name] = dataclasses.replace(MAIN_SETTINGS[_MAIN_OF_FORMAT_KIND[spec.kind]], name=name, format=name)
        if spec.kind == "samplegen":
            pipe = _PIPELINE_PREFIX + name.removeprefix("samplegen_")
            out[pipe] = dataclasses.replace(MAIN_SETTINGS["samplegen_pipeline"], name=pipe, format=name, source=name)
    return out


SETTINGS = {**MAIN_SETTINGS, **_variant_settings()}


def get_setting(name: str) -> Setting:
    """The setting called `name`; UnknownSettingError listing the known names otherwise."""
    if name not in SETTINGS:
        raise UnknownSettingError(f"unknown setting {name!r}; known: {', '.join(MAIN_SETTINGS)} and the variants "
                                  f"{', '.join(sorted(set(SETTINGS) - set(MAIN_SETTINGS)))}")
    return SETTINGS[name]


def ordered_settings(names: Sequence[str]) -> list[Setting]:
    """The named settings, each SampleGen source before the pipeline that continues its responses."""
    chosen = [get_setting(n) for n in dict.fromkeys(names)]
    sources = [s for s in chosen if any(o.source == s.name for o in chosen)]
    return sources + [s for s in chosen if s not in sources]


def trained_model(format_name: str) -> str | None:
    """The tuned model ("flan" / "samplegen") that training on a prepared format produces, else None."""
    spec = format_specs.FORMATS.get(format_name)
    if spec is None or format_specs.TRAIN not in spec.splits or spec.kind not in TUNED_MODELS:
        return None
    return spec.kind
