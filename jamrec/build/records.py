"""The build's rows in ``builds``: one per warehouse build, failed ones included.

A build's row is written when it starts (status ``running``), and updated when it is
published (``published``) or fails (``failed``). A build whose process died leaves
``running`` behind; the next build marks it ``abandoned``. The table itself is declared in
:mod:`jamrec.warehouse.history`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from datetime import datetime

import duckdb

from jamrec.provenance import code_version, git_commit, now


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
    note: str | None = None,
) -> None:
    """Close a build's row with its final status and whatever it measured."""
    con.execute(
        """
        update builds set
            status = $status,
            finished_at = $t,
            inputs = coalesce($inputs, inputs),
            inputs_fingerprint = coalesce($fingerprint, inputs_fingerprint),
            stage_counts = coalesce($counts, stage_counts),
            validation = coalesce($validation, validation),
            error = $error,
            note = coalesce($note, note)
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
            "note": note,
            "id": build_id,
        },
    )
