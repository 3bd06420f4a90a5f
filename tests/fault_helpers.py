"""Shared by the fault tests: CLIs run as a user runs them, small or read-only file systems, one-line checks."""
from __future__ import annotations

import contextlib
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def run_cli(module: str, *args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m <module> args...` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def assert_one_line_error(proc: subprocess.CompletedProcess, program: str, *needles: str, code: int | None = None) -> str:
    """The run failed (with `code` if given) and ended in one `<program>: error:` line holding every
    needle, with no traceback; returns that line."""
    assert proc.returncode != 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{program}: error: "), proc.stderr[-2000:]
    for needle in needles:
        assert needle in last, (needle, last)
    return last


def _mount(path: pathlib.Path, options: str) -> None:
    """Mounts a tmpfs at `path`, or skips the test saying why it cannot."""
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {proc.stderr.strip()}")


@contextlib.contextmanager
def small_fs(path: pathlib.Path, size: str = "64k", fill: bool = True) -> Iterator[pathlib.Path]:
    """A tmpfs of `size` at `path` (a real full disk when `fill`: a file takes all its blocks)."""
    _mount(path, f"size={size}")
    try:
        if fill:
            with contextlib.suppress(OSError), open(path / "filler", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * 4096)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_dir(path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A directory no process can write into: a read-only tmpfs as root (root ignores permissions),
    mode 0555 otherwise."""
    if os.geteuid() == 0:
        _mount(path, "ro,size=64k")
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    else:
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
