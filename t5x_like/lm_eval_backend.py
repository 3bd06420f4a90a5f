"""lm-evaluation-harness backend over the JAX Engine: `--model t5x_like` (docs/evaluation.md).

  python -m launch.lm_eval --model t5x_like --model_args path=DIR,dtype=float32 --batch_size auto \
      --tasks arc_easy_local --include_path configs/lm_eval_tasks

An optional extra (requirements-lm-eval.txt): nothing else in t5x_like imports this module or lm_eval.
Request semantics are lm-eval's own, so the numbers match its `hf` backend request for request:
- `loglikelihood` is lm-eval's `TemplateLM.loglikelihood` (trailing context whitespace moved to the
  continuation, the joint text encoded and split, an empty context replaced by the prefix token),
  scored by the engine's packed scorer on those token ids; `loglikelihood_rolling` scores lm-eval's
  disjoint rolling windows (`utils.get_rolling_token_windows`, context length 1) the same way.
- `generate_until` reads `until` (plus the EOS text, as lm-eval's `handle_stop_sequences`),
  `max_gen_toks` (default 256) and `do_sample` / `temperature` through lm-eval's
  `normalize_gen_kwargs`; greedy unless sampling is asked for. The text is what HFLM returns: the
  generated tokens decoded alone without special tokens, cut at the first stop string.
Results come back in the order lm-eval gives the requests (the engine batches and sorts inside).
Model args: `path`, `dtype` (float32 | bfloat16), `mesh_shape` ("D,F,T" or [D,F,T]; default as the
inference CLIs), `max_length`; `--batch_size N` sets the engine's rows per batch (each row packs
several requests), `auto` its default. lm-eval's `--device` is not used: JAX's backend and the mesh
place the model. Single process (lm-eval's rank 0).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own backends: get_model imports them only into an empty registry)
from lm_eval import utils as lm_utils
from lm_eval.api.instance import Instance
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

from configs.base import get_partitioning_config
from t5x_like.decoding import GenerationRequest
from t5x_like.engine import load_in_dtype
from t5x_like.errors import UserError
from t5x_like.partitioning import inference_partitioner, parse_mesh_shape, rules_from_config

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16")
MAX_GEN_TOKS = 256  # lm-eval's default when a task sets no max_gen_toks (as HFLM)


class ModelArgError(UserError, ValueError):
    """A `--model_args` value the backend cannot use; the message names the argument."""


def mesh_shape_arg(value: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """The `mesh_shape` model arg ("1,-1,1", or [1,-1,1] as lm-eval's CLI parses it) as a shape; None: default."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return parse_mesh_shape(value, "mesh_shape")
    return parse_mesh_shape(",".join(str(v) for v in value), "mesh_shape")


def engine_rows(batch_size: int | str | None) -> int | None:
    """lm-eval's batch size as the engine's rows per batch: an integer, or None (the engine's default)
    for 'auto' / 'auto:N' / unset."""
    if batch_size is None or str(batch_size).startswith("auto"):
        return None
    try:
        rows = int(batch_size)
    except ValueError:
        rows = 0
    if rows < 1:
        raise ModelArgError(f"batch_size={batch_size!r}: give a positive integer (rows per batch) or 'auto'")
    return rows


@register_model("t5x_like")
class T5xLikeLM(TemplateLM):
    """lm-eval's LM interface on a t5x_like Engine (one model, one mesh)."""

    def __init__(self, path: str | None = None, dtype: str = "float32", mesh_shape: str | Sequence[int] | None = None,
                 max_length: int | None = None, batch_size: int | str | None = None,
                 max_batch_size: int | None = None, device: str | None = None):
        """Loads the HF directory `path` onto the mesh. `max_batch_size` and `device` are what lm-eval's
        CLI passes every backend; JAX places the model, so they are not used."""
        super().__init__()
        del max_batch_size, device
        if not path:
            raise ModelArgError("--model_args needs path=DIR (a Hugging Face model directory)")
        if dtype not in DTYPES:
            raise ModelArgError(f"dtype={dtype!r}: give one of {', '.join(DTYPES)}")
        partitioner = inference_partitioner(mesh_shape_arg(mesh_shape),
                                            rules_from_config(get_partitioning_config().rules))
        rows = engine_rows(batch_size)
        self.engine = load_in_dtype(path, dtype, partitioner, max_length=max_length or None,
                                    **({} if rows is None else {"batch_size": rows}))
        self.path, self.dtype = path, dtype
        log.info("t5x_like lm-eval backend: %s (%s) on %s, max_length %d", path, dtype, partitioner.describe(),
                 self.engine.max_length)

    # -- the tokenizer, as TemplateLM needs it --------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        """End of text: the tokenizer's EOS (HFLM's choice)."""
        return self.engine.tokenizer.eos_id

    @property
    def prefix_token_id(self) -> int:
        """What an empty context and the first rolling window condition on: BOS, else EOS (as HFLM)."""
        tokenizer = self.engine.tokenizer
        return tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.eos_id

    @property
    def max_length(self) -> int:
        """Longest window in tokens (the engine's; the model's max_position_embeddings unless set)."""
        return self.engine.max_length

    @property
    def max_gen_toks(self) -> int:
        return MAX_GEN_TOKS

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Token ids of `string`. As HFLM: BOS by the tokenizer's own default when `add_special_tokens`
        is None, but not in front of a text that already starts with the BOS text."""
        tokenizer = self.engine.tokenizer
        if add_special_tokens is None:
            bos_text = tokenizer.decode([tokenizer.bos_id]) if tokenizer.bos_id is not None else None
            add_special_tokens = tokenizer.add_bos and not (bos_text and string.startswith(bos_text))
        return tokenizer.encode(string, add_bos=add_special_tokens)

    # -- requests ---------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str] | None, list[int], list[int]]],
                              disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """(log-prob, is_greedy) of each (key, context ids, continuation ids), in input order; each
        answer goes to lm-eval's request cache under its (context, continuation) key."""
        results = self.engine.scorer.score_tokens([(ctx, cont) for _, ctx, cont in requests],
                                                  progress=not disable_tqdm)
        answers = [(r.logprob, r.is_greedy) for r in results]
        for (key, _, _), answer in zip(requests, answers):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return answers

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole text over lm-eval's disjoint windows of `max_length` tokens (the
        first conditioned on the prefix token), every window of every text scored in one pass."""
        owners, windows = [], []
        for index, (text,) in enumerate(req.args for req in requests):
            rolling = lm_utils.get_rolling_token_windows(token_list=self.tok_encode(text),
                                                         prefix_token=self.prefix_token_id,
                                                         max_seq_len=self.max_length, context_len=1)
            for window in map(lm_utils.make_disjoint_window, rolling):
                owners.append(index)
                windows.append((None, *window))
        totals = [0.0] * len(requests)
        for index, (logprob, _) in zip(owners, self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)):
            totals[index] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        """Continuations in request order; requests are grouped by temperature (one engine call each)."""
        eos_text = self.engine.tokenizer.decode([self.eot_token_id])
        by_temperature: dict[float, list[int]] = {}
        parsed = []
        for index, (context, gen_kwargs) in enumerate(req.args for req in requests):
            kwargs = dict(normalize_gen_kwargs(gen_kwargs, self.max_gen_toks))
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos_text)
            max_new = kwargs.pop("max_gen_toks")
            do_sample, temperature = kwargs.pop("do_sample", False), float(kwargs.pop("temperature", 0.0))
            temperature = temperature if do_sample else 0.0
            if kwargs:
                raise ModelArgError(f"generation kwargs {sorted(kwargs)} are not supported by the t5x_like backend "
                                    "(it takes until, max_gen_toks, do_sample and temperature)")
            parsed.append(GenerationRequest(context, max_new, tuple(until)))
            by_temperature.setdefault(temperature, []).append(index)
        texts: list[str] = [""] * len(requests)
        for temperature, indices in by_temperature.items():
            generations = self.engine.generate([parsed[i] for i in indices], temperature=temperature)
            for i, generation in zip(indices, generations):
                until = list(parsed[i].stop)
                text = self.engine.tokenizer.decode(generation.tokens, skip_special_tokens=True)
                texts[i] = postprocess_generated_text(text, until, None)
                self.cache_hook.add_partial("generate_until", requests[i].args, texts[i])
        return texts

    def get_model_info(self) -> dict[str, Any]:
        """Written into lm-eval's results config: the model, dtype, mesh and the engine's seconds, programs
        and scoring FLOPs executed (XLA's count, padding included: what a roofline of the run needs)."""
        stats = self.engine.scorer.stats
        return {"model_path": self.path, "dtype": self.dtype, "mesh": self.engine.partitioner.describe(),
                "engine_timing": self.engine.timing, "engine_compile_counts": self.engine.compile_counts,
                "engine_scoring_flops": stats["body_flops"] + stats["head_flops"]}
