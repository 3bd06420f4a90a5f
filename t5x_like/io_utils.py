"""Atomic file writes, jsonl helpers and run provenance shared by every stage.

A stage never leaves a half-written file that looks complete: everything is written to a
temporary name in the same directory and renamed into place. In a multi-process run (every
process runs the same program on one shared workdir) exactly one process writes: the atomic
writers do nothing on the others, and `barrier` makes every process wait until a write is visible
before anyone reads it.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from typing import Any, Iterable, Iterator

from t5x_like.errors import UserError


def _distributed_jax() -> Any:
    """The jax module when this process is part of a jax.distributed run, else None (no JAX import here)."""
    jax = sys.modules.get("jax")
    return jax if jax is not None and jax.distributed.is_initialized() else None


def is_primary() -> bool:
    """True in the process that writes shared files: process 0 of a multi-process run, or the only one."""
    jax = _distributed_jax()
    return jax is None or jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process of a multi-process run waits here until all arrive (a no-op in a single process)."""
    jax = _distributed_jax()
    if jax is not None and jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temp file in the same directory + os.replace (mode as open() gives);
    only the primary process writes (see the module docstring)."""
    if not is_primary():
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to `path` atomically (see atomic_write_bytes)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj: Any) -> None:
    """Pretty, key-sorted JSON (byte-identical for equal objects), written atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def atomic_write_jsonl(path: str, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, keys sorted, written atomically."""
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


class MalformedFileError(UserError, ValueError):
    """A file that does not parse; the message names the file and line."""


def iter_jsonl(path: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) of each non-blank line; a malformed line raises naming the file and line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise MalformedFileError(f"{path}:{number}: malformed JSON line ({e.msg})") from e


def read_jsonl(path: str) -> list[dict[str, Any]]:
    """All rows of a jsonl file (blank lines skipped); a malformed line raises naming the file and line number."""
    return [row for _, row in iter_jsonl(path)]


def changed_keys(stored: Mapping[str, Any], current: Mapping[str, Any], keys: Iterable[str] | None = None
                 ) -> list[str]:
    """The keys (all, or `keys`) whose JSON values differ between a stored identity and the current
    one: the one comparison behind every workdir guard (training, evaluation, experiment)."""
    same = lambda a, b: json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    return [k for k in (sorted(set(stored) | set(current)) if keys is None else keys)
            if not same(stored.get(k), current.get(k))]


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yields a temp directory beside `path`; on success it replaces `path` as a whole (primary process only:
    elsewhere the temp directory is discarded)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        set_default_mode(tmp)
        yield tmp
        if not is_primary():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        replace_directory(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_directory(src: str, dst: str) -> None:
    """Moves the finished `src` to `dst`; an existing `dst` is moved aside first and deleted only once
    `src` is in place (put back if that move fails), so `dst` is never lost."""
    if not os.path.exists(dst):
        os.replace(src, dst)
        return
    old = f"{os.path.normpath(dst)}.old-{os.getpid()}"
    os.replace(dst, old)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(old, dst)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_default_mode(path: str) -> None:
    """The permissions mkdir / open would give `path` under the user's umask (mkstemp / mkdtemp make
    0600 / 0700 files; outputs are meant to be shared)."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


def default_cache_root() -> str:
    """Where converted and random models are cached: `$T5X_LIKE_CACHE`, else ~/.cache/t5x_like."""
    return os.environ.get("T5X_LIKE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "t5x_like")


def git_commit() -> str:
    """The repository's HEAD commit ('' when not in a git checkout)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(**extra: Any) -> dict[str, Any]:
    """Versions, git commit, host and devices: what is needed to reproduce a stage's output."""
    import importlib.metadata as md

    import jax

    versions = {}
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "transformers", "tokenizers",
                    "datasets", "numpy", "scipy", "pandas"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[package] = md.version(package)
    return {
        "git_commit": git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": versions,
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
        **extra,
    }
