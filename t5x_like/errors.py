"""The error policy: which exceptions a user acts on from one line, and the CLIs' one way to print them.

A `UserError` names the config key, flag or file to fix (bad config values, missing or corrupt
files, meshes or programs that do not fit, NaN losses); the project's own error types derive from
it. A missing file (`FileNotFoundError`, which names the path) counts too. Anything else is a bug
and keeps its traceback, a stray `ValueError` from deep inside a stage included.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserError(Exception):
    """An error whose message says what to fix; CLIs print it as one line."""


USER_ERRORS = (UserError, FileNotFoundError)


@contextlib.contextmanager
def one_line_errors(program: str) -> Iterator[None]:
    """Turns a user error inside the block into `SystemExit("<program>: error: <message>")`."""
    try:
        yield
    except USER_ERRORS as error:
        raise SystemExit(f"{program}: error: {error}") from None
