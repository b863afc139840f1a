"""Fault injection shared by tests/test_reliability.py and benchmarks/reliability.py: run
the real ``jamrec`` command in a subprocess under a file-size limit, as another user (a
read-only folder for root), or with a signal at a chosen log line; compare warehouses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

RUNNER = """
import resource, sys
limit = int(sys.argv[1])
if limit > 0:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from jamrec.cli import main
sys.exit(main(sys.argv[2:]))
"""


def env_for(warehouse: Path, **extra: str) -> dict:
    """The environment of a jamrec subprocess writing ``warehouse``."""
    return {
        **os.environ,
        "JAMREC_WAREHOUSE": str(warehouse),
        "JAMREC_LOCK_TIMEOUT_S": "3",
        "OPENBLAS_NUM_THREADS": "1",
        **extra,
    }


def jamrec(
    args: list[str],
    warehouse: Path,
    fsize: int = 0,
    user: int | None = None,
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess:
    """Run ``jamrec ARGS`` in a subprocess (under a file-size limit of ``fsize`` bytes,
    as ``user``); returns the completed process (text stdout/stderr)."""
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(fsize), *args],
        env=env_for(warehouse, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        user=user,
        cwd=Path(__file__).resolve().parents[1],
    )


def signal_at(
    args: list[str], warehouse: Path, marker: str, sig: int, timeout: float = 300, **env: str
) -> tuple[int, str, bool]:
    """Run ``jamrec ARGS``, send ``sig`` when a stderr line contains ``marker``; returns
    (exit status, stderr, whether the marker was seen)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jamrec", *args],
        env=env_for(warehouse, **env),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = False
    lines = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    for line in proc.stderr:
        lines.append(line)
        if not seen and marker in line:
            proc.send_signal(sig)
            seen = True
        if time.monotonic() > deadline:
            proc.kill()
            break
    proc.wait(timeout=timeout)
    return proc.returncode, "".join(lines), seen


def kill_after(args: list[str], warehouse: Path, seconds: float) -> int:
    """Run ``jamrec ARGS`` and SIGKILL it after ``seconds`` (or let it end); its status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "jamrec", *args],
        env=env_for(warehouse),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    return proc.returncode


def error_lines(stderr: str) -> list[str]:
    """The ``jamrec: error:`` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("jamrec: error:")]


def digests(path: Path, skip: tuple[str, ...] = ("builds", "timings")) -> dict[str, str]:
    """An md5 per table of the warehouse at ``path`` (history tables in ``skip`` left out:
    by default those a failed or interrupted build writes, its row and its stages' times)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from duckdb_tables() where database_name = current_database()"
            ).fetchall()
            if t not in skip
        ]
        return {
            t: con.execute(
                f"select md5(coalesce(string_agg(r, '|' order by r), '')) "
                f'from (select x::varchar as r from "{t}" as x)'
            ).fetchall()[0][0]
            for t in tables
        }
    finally:
        con.close()


def debris(folder: Path) -> list[Path]:
    """Temporary files a failed or killed writer could leave under ``folder``."""
    found = []
    for path in folder.rglob("*"):
        name = path.name
        temporary = name.endswith((".tmp", ".raw", ".old")) or name.startswith(".data_docs")
        if temporary or name.startswith(("update-", "build-", "rollback-")):
            found.append(path)
    return found


def published_build(path: Path) -> str | None:
    """The published build id of the warehouse at ``path``."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute("select build_id from published_build").fetchall()
        return rows[0][0] if rows else None
    finally:
        con.close()


def statuses(path: Path) -> list[str]:
    """``builds.status`` in start order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [
            s for (s,) in con.execute("select status from builds order by started_at").fetchall()
        ]
    finally:
        con.close()


@contextmanager
def read_only_folder(folder: Path):
    """``folder`` made read-only for the duration: a read-only bind mount as root (root
    ignores permission bits), ``chmod 555`` otherwise. Skips when neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount as root here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(folder)], check=True, capture_output=True
        )
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)
