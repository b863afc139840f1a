"""Where a result comes from: the clock, ids, and the version of the code that made it.

Every warehouse timestamp is UTC (:func:`now`); build and run ids sort by start time;
:func:`code_version` names the code that shaped a table or a model, with or without git.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import jamrec
from jamrec.config import PROJECT_ROOT


def now() -> datetime:
    """The current time in UTC (all warehouse timestamps are UTC)."""
    return datetime.now(UTC)


def new_build_id() -> str:
    """``b20261126T170102-3fa9c1``: sortable by start time, unique across processes."""
    return f"b{now():%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"


def new_id(prefix: str) -> str:
    """``<prefix>-20261126T180000-1a2b``: sortable by start time, unique."""
    return f"{prefix}-{now():%Y%m%dT%H%M%S}-{os.urandom(2).hex()}"


@lru_cache(maxsize=1)
def code_version() -> str:
    """``0.1.0+src.<12 hex>``: the package version and a hash of every source that shapes
    the warehouse (``jamrec/**/*.py``, ``sql/*``, ``expectations/*``). Two checkouts
    with the same code have the same code version, with or without git."""
    digest = hashlib.sha256()
    for folder, pattern in (("jamrec", "**/*.py"), ("sql", "*"), ("expectations", "**/*")):
        for path in sorted((PROJECT_ROOT / folder).glob(pattern)):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    return f"{jamrec.__version__}+src.{digest.hexdigest()[:12]}"


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The checkout's commit (``-dirty`` when it has changes), or None outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def relative(path: Path) -> str:
    """A path as shown in the warehouse: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
