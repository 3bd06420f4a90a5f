"""The prompt-engineering variants of the default mixture and the Gold-Pipeline ablations.

SampleGen training variants (unified, corrupted, no-answer, relevance) with their mixtures, and the
unified / mixture-example (setup given as the config argument) Gold Pipeline test sets:
--config=configs/data/variants.py[:setup1].
"""
from configs.data import default


def get_config(ablation_setup: str = "default"):
    c = default.get_config()
    c.formats = ("samplegen_unified,samplegen_corrupted,samplegen_noanswer,samplegen_relevance,"
                 "gold_pipeline_unified,gold_pipeline_ablation")
    c.ablation_setup = ablation_setup
    return c
