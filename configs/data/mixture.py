"""Training mixtures of one setup in both formats: --config=configs/data/mixture.py:setup3.

The setups' task lists are in t5x_like/data/mixtures.py (SETUPS) and docs/data.md.
"""
from configs.data import default


def get_config(setup: str = "default"):
    c = default.get_config()
    c.formats = "flan,samplegen"
    c.mixture = setup
    return c
