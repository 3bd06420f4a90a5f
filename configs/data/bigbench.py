"""BIG-bench test tasks in every prompt style: closed, the complexity ladder bad_prompt_1..6, adv."""
from configs.data import default
from t5x_like.data import formats
from t5x_like.data import tasks


def get_config():
    c = default.get_config()
    c.tasks = ",".join(tasks.BIGBENCH_TEST_TASKS)
    kinds = ("flan", "samplegen", "base_d")
    styled = [f"{kind}_{style}" for style in formats.BIGBENCH_STYLES[1:] for kind in kinds]
    c.formats = ",".join(["flan", "samplegen", "gold_pipeline", "base_d", *styled])
    c.mixture = ""
    c.carve_example_pool = True  # offline BIG-bench data has one split: carve the gold examples
    return c
