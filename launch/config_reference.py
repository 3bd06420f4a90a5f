r"""Write the config reference (every key of configs/base.py, its default and meaning) as Markdown.

python -m launch.config_reference --output=docs/configs.md
tests/test_config_reference.py fails when docs/configs.md is not what this writes.
"""
import os
import sys

from absl import app
from absl import flags

from t5x_like import config_reference
from t5x_like import io_utils

_OUTPUT = flags.DEFINE_string("output", "docs/configs.md", "Markdown file to write ('-' = stdout).")


def main(argv: list[str]) -> None:
    del argv
    sys.path.insert(0, config_reference.ROOT)
    from configs import base  # noqa: PLC0415 (configs is importable from the repository root)

    text = config_reference.markdown(base.get_config())
    if _OUTPUT.value == "-":
        print(text)
    else:
        io_utils.atomic_write_text(os.path.abspath(_OUTPUT.value), text)


if __name__ == "__main__":
    app.run(main)
