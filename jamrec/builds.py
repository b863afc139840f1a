"""The ``builds`` table: one row per warehouse build, failed ones included.

A build's row is written when it starts (status ``running``), and updated when it is
published (``published``) or fails (``failed``). A build whose process died leaves
``running`` behind; the next build marks it ``abandoned``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import duckdb

import jamrec
from jamrec.config import PROJECT_ROOT

BUILDS_DDL = """
create table if not exists builds (
    build_id varchar not null,
    started_at timestamptz not null,
    finished_at timestamptz,
    status varchar not null,
    inputs_fingerprint varchar,
    inputs json,
    code_version varchar,
    git_commit varchar,
    parameters json,
    stage_counts json,
    validation json,
    error varchar,
    note varchar,
    pid integer,
    host varchar,
    duckdb_version varchar
)
"""


def now() -> datetime:
    """The current time in UTC (all warehouse timestamps are UTC)."""
    return datetime.now(UTC)


def new_build_id() -> str:
    """``b20261126T170102-3fa9c1``: sortable by start time, unique across processes."""
    return f"b{now():%Y%m%dT%H%M%S}-{os.urandom(3).hex()}"


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


def inputs_fingerprint(inputs: dict[str, dict]) -> str:
    """One hash over every input file's content hash, in a fixed order."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        digest.update(f"{name}:{inputs[name]['sha256']}\n".encode())
    return digest.hexdigest()


def register(
    con: duckdb.DuckDBPyConnection, build_id: str, started_at: datetime, parameters: dict
) -> None:
    """Insert the ``running`` row for a new build; mark other ``running`` rows abandoned.

    Only one build runs at a time (the caller holds the build lock), so any other
    ``running`` row belongs to a process that died before it could finish.
    """
    con.execute(BUILDS_DDL)
    con.execute("alter table builds add column if not exists note varchar")
    con.execute(
        "update builds set status = 'abandoned', finished_at = coalesce(finished_at, $t), "
        "error = coalesce(error, 'the build process ended without finishing (killed?)') "
        "where status = 'running'",
        {"t": started_at},
    )
    con.execute(
        """
        insert into builds (build_id, started_at, status, code_version, git_commit, parameters,
                            pid, host, duckdb_version)
        values ($id, $t, 'running', $code, $git, $params, $pid, $host, $duckdb)
        """,
        {
            "id": build_id,
            "t": started_at,
            "code": code_version(),
            "git": git_commit(),
            "params": json.dumps(parameters, sort_keys=True),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "duckdb": duckdb.__version__,
        },
    )


def finish(
    con: duckdb.DuckDBPyConnection,
    build_id: str,
    status: str,
    *,
    inputs: dict | None = None,
    stage_counts: dict | None = None,
    validation: dict | None = None,
    error: str | None = None,
) -> None:
    """Close a build's row with its final status and whatever it measured."""
    con.execute(BUILDS_DDL)
    con.execute(
        """
        update builds set
            status = $status,
            finished_at = $t,
            inputs = coalesce($inputs, inputs),
            inputs_fingerprint = coalesce($fingerprint, inputs_fingerprint),
            stage_counts = coalesce($counts, stage_counts),
            validation = coalesce($validation, validation),
            error = $error
        where build_id = $id
        """,
        {
            "status": status,
            "t": now(),
            "inputs": json.dumps(inputs, sort_keys=True) if inputs else None,
            "fingerprint": inputs_fingerprint(inputs) if inputs else None,
            "counts": json.dumps(stage_counts, sort_keys=True) if stage_counts else None,
            "validation": json.dumps(validation, sort_keys=True) if validation else None,
            "error": error,
            "id": build_id,
        },
    )


def relative(path: Path) -> str:
    """A path as shown in the warehouse: relative to the working directory when inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
