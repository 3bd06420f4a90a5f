"""BIG-bench prompt complexity: the eight BIG-bench tasks + GSM8K in every prompt style.

--config=configs/experiments/paper_bigbench.py[:<model>]   (model: paper_common.MODELS; default llama2_7b)
Tunes FLAN and SampleGen on the default mixture (seeds 42, 1234, 10203) like the main study, then
evaluates the closed style (the main settings), the complexity ladder bad_prompt_1 .. bad_prompt_6
and the adversarial lettered style (adv) in Base-D, FLAN-D, SampleGen-D and the SampleGen Pipeline.
The styles are in t5x_like/data/formats.py (BIGBENCH_LADDER) and docs/data.md.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:  # config_flags loads this file by path; make `configs` importable
    sys.path.insert(0, _ROOT)

from configs.experiments import paper_common  # noqa: E402
from t5x_like.data import formats  # noqa: E402
from t5x_like.data import mixtures  # noqa: E402
from t5x_like.data import tasks as registry  # noqa: E402

STYLES = formats.BIGBENCH_STYLES[1:]  # closed is the main format


def get_config(arg: str = ""):
    model = paper_common.check_model(arg or paper_common.DEFAULT_MODEL)
    config = paper_common.paper(model)
    config.experiment = f"paper_{model}_bigbench"
    test_tasks = registry.BIGBENCH_TEST_TASKS + registry.OTHER_TEST_TASKS
    config.data.tasks = ",".join(mixtures.mixture_tasks("default") + list(test_tasks))
    styled = [f"{kind}_{style}" for style in STYLES for kind in ("base_d", "flan", "samplegen")]
    config.data.formats = ",".join(["flan", "samplegen", "gold_pipeline", "base_d", *styled])
    settings = [paper_common.MAIN_SETTINGS]
    for style in STYLES:
        settings += [f"base_d_{style}", f"flan_{style}", f"samplegen_{style}", f"samplegen_pipeline_{style}"]
    config.eval.settings = ",".join(settings)
    config.eval.tasks = ",".join(test_tasks)
    return config
