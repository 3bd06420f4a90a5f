"""The default data config for the offline task bundle (../shared/data/tasks, or $T5X_LIKE_DATA_DIR).

Several offline tasks have only an evaluation split, so the Gold Pipeline's in-context examples are
carved out of it (seeded, disjoint from the test items, recorded in the manifest).
"""
from configs.data import default


def get_config():
    c = default.get_config()
    c.carve_example_pool = True
    return c
