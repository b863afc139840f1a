"""Files written so that a crash, a full disk or a read-only folder never leaves a
half-written one behind, and says what went wrong in one line.

- :func:`write_atomic`: write a temporary file beside the target, ``fsync``, rename;
- :func:`replace_dir`: swap a freshly written folder in for an old one;
- :func:`check_writable` / :func:`check_free_space`: refuse *before* any work starts;
- :func:`describe_os_error`: ``FILE: cause`` for an :class:`OSError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from pathlib import Path

from jamrec.errors import StorageError

# Head room for metadata, a WAL and DuckDB's own bookkeeping on top of what a write needs.
SPACE_MARGIN = 1.10
SPACE_SLACK_BYTES = 16 << 20


def describe_os_error(exc: OSError, path: str | Path | None = None) -> str:
    """``FILE: cause`` for an :class:`OSError` (``cause`` says what to do when it can)."""
    where = path or exc.filename or "a file"
    return f"{where}: {os_error_cause(exc)}"


def os_error_cause(exc: OSError) -> str:
    """What went wrong, in words (no file name)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left on the device"
    elif exc.errno == errno.EFBIG:
        cause = "file too large (a file-size limit was reached)"
    elif exc.errno == errno.EROFS:
        cause = "the file system is read-only"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        cause = "permission denied"
    elif exc.errno == errno.ELOOP:
        cause = "too many levels of symbolic links (a symlink loop)"
    else:
        cause = exc.strerror or str(exc)
    return cause


def temp_path(target: Path) -> Path:
    """A temporary name beside ``target`` (same folder, so a rename is atomic); the
    writer's PID is in it, so leftovers of dead writers can be told apart."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


def write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` all or nothing: a reader (or a later run) sees the old
    file or the new one, never a truncated one. Raises :class:`StorageError` on failure,
    with the partial file removed."""
    target = Path(target)
    tmp = temp_path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(describe_os_error(exc, target)) from None


def replace_dir(staging: Path, target: Path) -> None:
    """Make the finished folder ``staging`` the folder ``target`` (two renames; a crash
    between them leaves no ``target``, never a half-written one)."""
    old = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def pid_of(name: str) -> int | None:
    """The writer PID in a name made by :func:`temp_path` (``.x.<pid>-<hex>.tmp``)."""
    stem = name.rsplit(".", 2)
    for part in stem:
        head = part.split("-", 1)[0]
        if head.isdigit() and "-" in part:
            return int(head)
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a PID we may not signal runs too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_leftovers(folder: Path, pattern: str) -> list[Path]:
    """Remove ``folder``'s entries matching ``pattern`` whose writer PID no longer runs."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for leftover in folder.glob(pattern):
        pid = pid_of(leftover.name)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()
        removed.append(leftover)
    return removed


def check_writable(folder: Path, what: str) -> None:
    """Refuse early when ``folder`` cannot be written (read-only file system, no
    permission): one line naming the folder and ``what`` needed it. Tries a real file
    (permission bits alone do not tell: root ignores them, a read-only mount does not)."""
    folder = Path(folder)
    probe_dir = folder
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    probe = probe_dir / f".jamrec-write-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    try:
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise StorageError(
            f"{describe_os_error(exc, probe_dir)}; {what} needs to write there "
            "(nothing was changed)"
        ) from None


def check_free_space(folder: Path, need_bytes: int, what: str) -> None:
    """Refuse before writing when ``folder``'s file system has less than ``need_bytes``
    (plus a margin) free; the message says how much the write needs and how much is free."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    need = int(need_bytes * SPACE_MARGIN) + SPACE_SLACK_BYTES
    free = shutil.disk_usage(folder).free
    if free < need:
        raise StorageError(
            f"{folder}: not enough free space for {what}: it needs about {_mb(need)} "
            f"and {_mb(free)} is free; free some space (or move the warehouse) and try again"
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n >= 1e6 else f"{n / 1e3:,.0f} kB"
