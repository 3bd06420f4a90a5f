"""The error policy: which exceptions a user acts on from one line, and the CLIs' one way to print them.

A `UserError` names the config key, flag or file to fix (bad config values, missing or corrupt
files, meshes or programs that do not fit, NaN losses); the project's own error types derive from
it. A missing file (`FileNotFoundError`, which names the path) counts too, and so does an
`OSError` of the machine rather than the code (full disk, read-only or forbidden path). Anything
else is a bug and keeps its traceback, a stray `ValueError` from deep inside a stage included.
Every CLI runs through `run_app`, which adds the same one-line treatment to config-flag typos.
"""
from __future__ import annotations

import contextlib
import errno
import re
import sys
from collections.abc import Callable, Iterator, Sequence

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped early on purpose (SIGTERM); rerunning the command resumes

_FIXES = {  # errno -> what the user does about it
    errno.ENOSPC: "free disk space or choose another output directory, then rerun",
    errno.EDQUOT: "free quota or choose another output directory, then rerun",
    errno.EROFS: "the file system is read-only; choose a writable output directory",
    errno.EACCES: "fix the permissions or choose another path",
    errno.EPERM: "fix the permissions or choose another path",
    errno.ENOTDIR: "a path component is a file, not a directory; fix the path",
    errno.EISDIR: "the path is a directory; give a file path",
    errno.ENAMETOOLONG: "shorten the path",
}


class UserError(Exception):
    """An error whose message says what to fix; CLIs print it as one line and exit `exit_code`."""

    exit_code = 1


class PreemptedError(UserError):
    """The run stopped at a signal after saving its state; the same command resumes it."""

    exit_code = PREEMPTED_EXIT


USER_ERRORS = (UserError, FileNotFoundError)


def environment_error_message(error: Exception) -> str | None:
    """One line for an OSError the machine caused (disk full, read-only, permissions), else None."""
    fix = _FIXES.get(error.errno) if isinstance(error, OSError) else None
    if fix is None and "No space left on device" in str(error):  # writers that only say it in text
        fix = _FIXES[errno.ENOSPC]  # (safetensors' SafetensorError, numpy's short-write OSError)
    if fix is None:
        return None
    where = getattr(error, "filename", None)
    reason = getattr(error, "strerror", None) or str(error)
    return f"{where + ': ' if where else ''}{reason} ({fix})"


@contextlib.contextmanager
def one_line_errors(program: str) -> Iterator[None]:
    """Turns a user error inside the block into one stderr line `<program>: error: <message>` and
    `SystemExit` with the error's exit status (1 unless it says otherwise, e.g. PREEMPTED_EXIT)."""
    try:
        yield
    except USER_ERRORS as error:
        _exit(program, str(error), getattr(error, "exit_code", 1))
    except Exception as error:  # noqa: BLE001 (re-raised unless the machine, not the code, caused it)
        message = environment_error_message(error)
        if message is None:
            raise
        _exit(program, message, 1)


def _exit(program: str, message: str, code: int) -> None:
    """Prints the one line and leaves with `code` (SystemExit(message) for the plain status 1)."""
    line = f"{program}: error: {message}"
    if code == 1:
        raise SystemExit(line) from None
    print(line, file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def config_override_message(argv: Sequence[str], error: KeyError) -> str:
    """'--config.trian.num_steps=3: no config key 'trian' (did you mean ...)' for an unknown key."""
    text = str(error.args[0]) if error.args else str(error)
    key = re.match(r"'([^']*)'", text)
    name = key.group(1) if key else text
    culprit = next((a.split("=", 1)[0] for a in argv[1:] if a.startswith("--") and "." in a
                    and f".{name}" in a.split("=", 1)[0]), None)
    hint = re.search(r"[Dd]id you mean[^?]*\??", text)
    return (f"{culprit or 'a --config override'}: no config key {name!r}"
            f"{' (' + hint.group(0) + ')' if hint else ''}; see docs/configs.md for the keys")


def run_app(main: Callable[[list[str]], None], program: str) -> None:
    """`absl.app.run(main)` whose flag parsing reports a config-override typo as one line."""
    from absl import app

    def parse(argv: list[str]) -> list[str]:
        try:
            return app.parse_flags_with_usage(argv)
        except KeyError as error:
            _exit(program, config_override_message(argv, error), 2)

    app.run(main, flags_parser=parse)
