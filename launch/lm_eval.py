"""lm-evaluation-harness's own CLI with the t5x_like backend registered (`--model t5x_like`).

  python -m launch.lm_eval --model t5x_like --model_args path=DIR,dtype=float32 --batch_size auto \
      --tasks arc_easy_local,piqa_local --include_path configs/lm_eval_tasks [any other lm_eval flag]

Every argument is lm_eval's (`lm_eval run --help`; not absl flags). Plain `lm_eval --model t5x_like`
cannot find the backend (lm-eval discovers no plugins): importing t5x_like.lm_eval_backend here
registers it. Errors the user fixes (model args, missing model or data) print as one line.
"""
from __future__ import annotations

from lm_eval.__main__ import cli_evaluate

import t5x_like.lm_eval_backend  # noqa: F401  (registers --model t5x_like)
from t5x_like.errors import one_line_errors


def main() -> None:
    """Runs lm-eval's CLI on sys.argv."""
    with one_line_errors("lm_eval"):
        cli_evaluate()


if __name__ == "__main__":
    main()
