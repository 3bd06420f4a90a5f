"""Every prepared format directory the data pipeline can write: its prompt kind, splits and variant
switches (JAX-free and light: the settings registry and the analysis read it)."""
from __future__ import annotations

import dataclasses

from t5x_like.data import formats as prompt_formats

TRAIN = "train"
TEST = "test"


@dataclasses.dataclass(frozen=True)
class FormatSpec:
    """One output format directory: its base prompt format, splits and variant switches."""

    name: str
    kind: str  # "flan", "samplegen", "gold_pipeline" or "base_d"
    splits: tuple[str, ...]
    unified: bool = False
    corrupted: bool = False
    show_answer: bool = True
    relevance: bool = False  # in-context examples from another cluster of the same category
    ablation: bool = False  # in-context examples from a training mixture (GP ablation)
    bigbench_style: str = "closed"
    bigbench_only: bool = False  # a BIG-bench prompt-style variant: skipped for other tasks

    def needs_pool(self, split: str) -> bool:
        """Whether rows of `split` draw in-context examples from the task's own example pool."""
        if self.ablation or self.relevance:
            return False
        return self.kind == "gold_pipeline" or (self.kind == "samplegen" and split == TRAIN)


def _format_specs() -> dict[str, FormatSpec]:
    """Every format directory this pipeline can write, by name."""
    specs = [
        FormatSpec("flan", "flan", (TRAIN, TEST)),
        FormatSpec("samplegen", "samplegen", (TRAIN, TEST)),
        FormatSpec("gold_pipeline", "gold_pipeline", (TEST,)),
        FormatSpec("base_d", "base_d", (TEST,)),
        FormatSpec("samplegen_unified", "samplegen", (TRAIN,), unified=True),
        FormatSpec("samplegen_corrupted", "samplegen", (TRAIN,), corrupted=True),
        FormatSpec("samplegen_noanswer", "samplegen", (TRAIN,), show_answer=False),
        FormatSpec("samplegen_relevance", "samplegen", (TRAIN,), relevance=True),
        FormatSpec("gold_pipeline_unified", "gold_pipeline", (TEST,), unified=True),
        FormatSpec("gold_pipeline_ablation", "gold_pipeline", (TEST,), ablation=True),
    ]
    for style in prompt_formats.BIGBENCH_STYLES[1:]:
        for kind in ("flan", "samplegen", "base_d"):
            specs.append(FormatSpec(f"{kind}_{style}", kind, (TEST,), bigbench_style=style, bigbench_only=True))
    return {spec.name: spec for spec in specs}


FORMATS = _format_specs()
