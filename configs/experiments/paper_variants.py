"""The paper's prompt-engineering variants, each a small experiment over the default mixture.

--config=configs/experiments/paper_variants.py:<variant>[,<model>]   (model: paper_common.MODELS)
  unified      SampleGen tuned with neutral field names (Input 1, Input 2, ...); unified Gold Pipeline
  corrupted    SampleGen tuned on example blocks with their fields removed (answers kept)
  noanswer     SampleGen tuned with the Solution's answer left empty
  relevance    SampleGen tuned with in-context examples from another cluster's task
  gp_ablation  Gold Pipeline whose examples come from the SampleGen mixture (base model only);
               gp_ablation_setupN takes them from setup N's mixture
The SampleGen variants are evaluated as SampleGen-D and the SampleGen Pipeline over the standard
SampleGen test prompts, beside Base-D and the (unified) Gold Pipeline of the same base model.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.experiments import paper_common  # noqa: E402

TRAINED = ("unified", "corrupted", "noanswer", "relevance")
VARIANTS = TRAINED + ("gp_ablation",)


def get_config(arg: str = ""):
    variant, model = paper_common.parse_arg(arg, "")
    ablation_setup = "default"
    if variant.startswith("gp_ablation_"):
        variant, ablation_setup = "gp_ablation", variant.removeprefix("gp_ablation_")
    if variant not in VARIANTS:
        raise ValueError(f"paper_variants.py needs a variant argument, got {arg!r}: "
                         f"--config=configs/experiments/paper_variants.py:<variant>[,<model>] with variant in "
                         f"{', '.join(VARIANTS)} or gp_ablation_setupN")
    config = paper_common.paper(model)
    config.experiment = f"paper_{model}_{variant}" + ("" if ablation_setup == "default" else f"_{ablation_setup}")
    if variant in TRAINED:
        tuned = f"samplegen_{variant}"
        gold = "gold_pipeline_unified" if variant == "unified" else "gold_pipeline"
        config.data.formats = f"{tuned},samplegen,{gold},base_d"
        config.tuning.formats = tuned
        config.eval.settings = f"base_d,{gold},samplegen_d,samplegen_pipeline"
    else:
        config.data.formats = "gold_pipeline,gold_pipeline_ablation,base_d"
        config.data.mixture = ""  # nothing is tuned; the ablation mixture is built from data.ablation_setup
        config.data.ablation_setup = ablation_setup
        config.data.tasks = paper_common.data_tasks(ablation_setup)
        config.tuning.formats = ""
        config.eval.settings = "base_d,gold_pipeline,gold_pipeline_ablation"
    return config
