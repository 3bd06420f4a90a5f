"""t5x_like: a JAX/Flax reproduction of "The Inherent Limits of Pretrained LLMs"."""
