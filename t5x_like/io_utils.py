"""Atomic file writes, jsonl helpers and run provenance shared by every stage.

A stage never leaves a half-written file that looks complete: everything is written to a
temporary name in the same directory and renamed into place. In a multi-process run (every
process runs the same program on one shared workdir) exactly one process writes: the atomic
writers do nothing on the others, and `barrier` makes every process wait until a write is visible
before anyone reads it.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any, Iterable, Iterator

from absl import logging

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


def all_processes_ok(ok: bool) -> bool:
    """True when `ok` holds on every process of a multi-process run (just `ok` in a single process)."""
    jax = _distributed_jax()
    if jax is None or jax.process_count() == 1:
        return ok
    import numpy as np
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


# ----------------------------------------------------------------------------- temp names

_HOST = socket.gethostname().split(".")[0].replace("-", "_") or "host"


def _temp_prefix(path: str) -> str:
    """`.<name>.<host>-<pid>.` : the prefix of every temp file / directory written for `path`, so a
    later run can tell a dead writer's leftovers (`sweep_stale_temps`) from a live one's."""
    return f".{os.path.basename(os.path.normpath(path))}.{_HOST}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temps(path: str) -> list[str]:
    """Removes the temp files / directories of `path` left by writers on this host that are no longer
    running (a killed conversion's preallocated shards, say); returns what it removed."""
    parent, name = os.path.split(os.path.abspath(os.path.normpath(path)))
    head = f".{name}.{_HOST}-"
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.listdir(parent):
            pid = entry[len(head):].split(".", 1)[0] if entry.startswith(head) and entry.endswith(".tmp") else ""
            if pid.isdigit() and not _pid_alive(int(pid)):
                stale = os.path.join(parent, entry)
                shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
                removed.append(stale)
    if removed:
        logging.info("removed %d leftover temp path(s) of %s from killed runs", len(removed), path)
    return removed


def make_temp_dir(path: str) -> str:
    """A new temp directory beside `path` (after sweeping dead writers' leftovers), default permissions."""
    parent = os.path.dirname(os.path.abspath(os.path.normpath(path)))
    os.makedirs(parent, exist_ok=True)
    sweep_stale_temps(path)
    tmp = tempfile.mkdtemp(dir=parent, prefix=_temp_prefix(path), suffix=".tmp")
    set_default_mode(tmp)
    return tmp


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` via a temp file in the same directory + os.replace (mode as open() gives);
    only the primary process writes (see the module docstring)."""
    if not is_primary():
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        set_default_mode(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno is not None and not error.filename:
            raise OSError(error.errno, error.strerror, path) from error  # say which file did not fit
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
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise MalformedFileError(f"{path}:{number}: not UTF-8 (byte {raw[e.start]:#04x} at column "
                                         f"{e.start + 1}); re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as e:
                raise MalformedFileError(f"{path}:{number}: malformed JSON line ({e.msg})") from e


def read_json(path: str) -> Any:
    """A UTF-8 JSON file; one that does not parse raises naming the file, line and column."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:
        raise MalformedFileError(f"{path}: not UTF-8 ({e.reason} at byte {e.start}); re-encode it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise MalformedFileError(f"{path}:{e.lineno}:{e.colno}: malformed JSON ({e.msg})") from None


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
    elsewhere the temp directory is discarded). Leftovers of killed earlier attempts are swept first."""
    tmp = make_temp_dir(path)
    try:
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


class OutputNotWritableError(UserError, OSError):
    """An output directory cannot be created or written, or lacks the space the stage will need."""


def check_writable(directory: str, need_bytes: int = 0, *, what: str = "output directory") -> None:
    """Before long work: `directory` exists or can be created, a file can be written in it, and (when
    `need_bytes` is known) its file system has that much free space; else one line saying what to fix."""
    directory = os.path.abspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(os.path.join(directory, "probe")),
                                     suffix=".tmp")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise OutputNotWritableError(f"{what} {directory} is not writable ({error.strerror or error}); "
                                     "fix its permissions or choose another path") from None
    free = shutil.disk_usage(directory).free
    if need_bytes and free < need_bytes:
        raise OutputNotWritableError(
            f"{what} {directory} has {free / 2**30:.2f} GiB free but this stage writes about "
            f"{need_bytes / 2**30:.2f} GiB; free space or choose another path")


# ----------------------------------------------------------------------------- workdir locks

class WorkdirBusyError(UserError):
    """Another live process holds the workdir's lock."""


def lock_path(directory: str) -> str:
    """`<parent>/.<name>.lock`: beside the directory, so replacing the directory as a whole keeps it."""
    parent, name = os.path.split(os.path.abspath(os.path.normpath(directory)))
    return os.path.join(parent, f".{name}.lock")


def _holder(path: str) -> dict[str, Any]:
    """Who wrote the lock file (host, pid, program, since); {} when unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def checked_on_primary(check: Callable[[], Any], what: str) -> Any:
    """Runs `check` on the primary process; a UserError it raises is raised on every process of a
    multi-process run (the others name `what` and point to process 0), so none waits in a collective."""
    result, error = None, None
    if is_primary():
        try:
            result = check()
        except UserError as e:
            error = e
    if not all_processes_ok(error is None):
        raise error or UserError(f"{what}: process 0 refused it (see its message)")
    return result


def _acquire_lock(directory: str, program: str) -> Any:
    """The open, flock-ed lock file of `directory` (after checking that its parent, where the lock
    lives, is writable), or WorkdirBusyError naming the live holder."""
    path = lock_path(directory)
    check_writable(os.path.dirname(path), what=f"parent of {directory}")
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(path)
        handle.close()
        raise WorkdirBusyError(
            f"{directory} is in use by {holder.get('program', 'another process')} (pid {holder.get('pid', '?')} "
            f"on {holder.get('host', '?')} since {holder.get('since', '?')}); wait for it to finish, or "
            "use another workdir") from None
    handle.seek(0)
    handle.truncate()
    json.dump({"host": socket.gethostname(), "pid": os.getpid(), "program": program,
               "since": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
    handle.flush()
    return handle


@contextlib.contextmanager
def workdir_lock(directory: str, program: str) -> Iterator[None]:
    """Holds an exclusive advisory lock (flock) on `directory` for the block: a second process on the
    same workdir is refused in one line naming the holder. The kernel drops the lock when its holder
    dies, so a lock file left by a killed run is taken over, not obeyed. In a multi-process run the
    primary process locks for all, and every process agrees on the outcome."""
    handle = checked_on_primary(lambda: _acquire_lock(directory, program), directory)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()  # releases the flock; the file stays (its content is only informative)


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
