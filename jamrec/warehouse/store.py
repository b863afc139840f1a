"""The published DuckDB file, and the only ways jamrec changes it.

Readers (``jamrec sql``, an analyst's ``duckdb -readonly``, model jobs reading data)
open the published file read-only. jamrec never opens it read-write: every change is
copy-on-write. A writer takes ``<file>.lock`` (an advisory ``flock``), writes a new file
beside the published one, and atomically renames it over the published path. So:

- a reader holding the file open keeps reading the old, complete version, undisturbed;
- a writer that fails or is killed (even by SIGKILL) leaves the published file as it was
  (its half-written file is removed on the next write);
- writers queue on the lock, and give up with a clear message after ``lock_timeout_s``.

A process holding the file *read-write* (``duckdb warehouse/jamrec.duckdb`` without
``-readonly``) blocks readers and writers alike; jamrec waits, then names that process.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from jamrec.errors import JamrecError, WarehouseLockedError
from jamrec.log import log
from jamrec.warehouse import history

# duckdb-cli on PyPI (1.5.x) and other 1.x clients cannot read 2.x's default storage.
STORAGE_VERSION = "v1.5.0"


class Warehouse:
    """A warehouse file at ``path`` (default ``warehouse/jamrec.duckdb``)."""

    def __init__(self, path: Path, lock_timeout_s: float = 60.0):
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s

    @property
    def lock_path(self) -> Path:
        """The writers' lock file, beside the warehouse."""
        return self.path.with_name(self.path.name + ".lock")

    @property
    def work_dir(self) -> Path:
        """Where new versions and builds are written before they are published."""
        return self.path.parent / ".work"

    def exists(self) -> bool:
        """Whether a warehouse has been published at :attr:`path`."""
        return self.path.is_file()

    def connect_readonly(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the published file (retries while it is locked).

        Its history tables have the current shape (:mod:`jamrec.warehouse.history`): a
        warehouse written by an older jamrec is migrated first, copy-on-write.
        """
        if not self.exists():
            raise JamrecError(
                f"{self.path}: no warehouse here yet; build one with `jamrec etl` (or `make demo`)"
            )
        con = self._open_readonly()
        if history.is_current(con):
            return con
        con.close()
        with self.update("migrate the history tables"):
            pass
        return self._open_readonly()

    def _open_readonly(self) -> duckdb.DuckDBPyConnection:
        return retry_locked(
            lambda: duckdb.connect(str(self.path), read_only=True), self.path, self.lock_timeout_s
        )

    @contextmanager
    def lock(self, purpose: str) -> Iterator[None]:
        """Hold the writers' lock; wait up to ``lock_timeout_s`` with a log line saying why."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as handle:
            deadline = time.monotonic() + self.lock_timeout_s
            announced = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _read_holder(handle)
                    if time.monotonic() >= deadline:
                        raise WarehouseLockedError(
                            f"{self.lock_path}: another jamrec writer ({holder}) held the warehouse"
                            " "
                            f"for more than {self.lock_timeout_s:.0f} s; try again when it finishes"
                        ) from None
                    if not announced:
                        log.info(
                            "waiting for the warehouse lock %s held by %s", self.lock_path, holder
                        )
                        announced = True
                    time.sleep(0.2)
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}: {purpose}")
            handle.flush()
            try:
                yield
            finally:
                handle.seek(0)
                handle.truncate()
                fcntl.flock(handle, fcntl.LOCK_UN)

    def new_file(self, stem: str) -> Path:
        """A fresh path in :attr:`work_dir` for a file that may later be published."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._clean_work_dir()
        return self.work_dir / f"{stem}-{os.getpid()}-{uuid.uuid4().hex[:8]}.duckdb"

    @contextmanager
    def update(self, purpose: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """Change the warehouse copy-on-write: yields a read-write connection to a copy.

        On a clean exit the copy replaces the published file atomically; on an
        exception nothing is published. Creates an empty warehouse when none exists. The
        connection's history tables have the current shape (:func:`history.migrate`).
        """
        with self.lock(purpose):
            target = self.new_file("update")
            if self.exists():
                # Opening read-only first proves no process holds the file read-write
                # (an unflushed WAL would make a byte copy inconsistent).
                retry_locked(
                    lambda: duckdb.connect(str(self.path), read_only=True).close(),
                    self.path,
                    self.lock_timeout_s,
                )
                shutil.copyfile(self.path, target)
            con = connect_new(target)
            try:
                history.migrate(con)
                yield con
                con.execute("checkpoint")
                con.close()
                self.replace_with(target)
            except BaseException:
                con.close()
                target.unlink(missing_ok=True)
                raise

    def replace_with(self, new_file: Path) -> None:
        """Atomically make ``new_file`` the published warehouse (caller holds the lock)."""
        with open(new_file, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(new_file, self.path)
        Path(str(new_file) + ".wal").unlink(missing_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _clean_work_dir(self) -> None:
        """Remove files left by writers that died (their PID no longer runs)."""
        for leftover in self.work_dir.glob("*.duckdb*"):
            parts = leftover.name.split("-")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            if pid is not None and pid != os.getpid() and not _pid_alive(pid):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables in the connection's own database (not attached ones, not temporary)."""
    rows = con.execute(
        "select table_name from duckdb_tables() "
        "where database_name = current_database() and schema_name = 'main'"
    ).fetchall()
    return {t for (t,) in rows}


def connect_new(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-write connection to a file jamrec owns, in the 1.x-readable storage format."""
    return duckdb.connect(str(path), config={"storage_compatibility_version": STORAGE_VERSION})


def retry_locked(open_fn, path: Path, timeout_s: float):
    """Call ``open_fn`` until DuckDB stops reporting a conflicting lock on ``path``."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    announced = False
    while True:
        try:
            return open_fn()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise JamrecError(f"{path}: {str(exc).splitlines()[0]}") from None
            holder = str(exc).split("Conflicting lock is held in", 1)[-1].strip().rstrip(".")
            if time.monotonic() >= deadline:
                raise WarehouseLockedError(
                    f"{path} is held read-write by another process ({holder}) for more than "
                    f"{timeout_s:.0f} s; close it, or open it with `duckdb -readonly`"
                ) from None
            if not announced:
                log.info("waiting for %s: held read-write by %s", path, holder)
                announced = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _read_holder(handle) -> str:
    try:
        handle.seek(0)
        return handle.read().strip() or "unknown process"
    except OSError:
        return "unknown process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def copy_tables(con: duckdb.DuckDBPyConnection, source_alias: str, tables: list[str]) -> None:
    """Copy ``tables`` from the attached database ``source_alias`` into ``con``'s main
    schema, with their definitions (constraints) and comments."""
    for table in tables:
        ddl, comment = con.execute(
            "select sql, comment from duckdb_tables() "
            "where database_name = $db and table_name = $t",
            {"db": source_alias, "t": table},
        ).fetchone()
        con.execute(f"drop table if exists main.{table}")
        con.execute(ddl)
        con.execute(f"insert into main.{table} select * from {source_alias}.main.{table}")
        if comment:
            con.execute(f"comment on table main.{table} is {_quote(comment)}")
        for column, column_comment in con.execute(
            "select column_name, comment from duckdb_columns() "
            "where database_name = $db and table_name = $t and comment is not null",
            {"db": source_alias, "t": table},
        ).fetchall():
            con.execute(f"comment on column main.{table}.{column} is {_quote(column_comment)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def warehouse_at(path: Path | None = None) -> Warehouse:
    """The warehouse at ``path``, or the configured one (``$JAMREC_WAREHOUSE``)."""
    from jamrec.config import get_settings

    settings = get_settings()
    return Warehouse(Path(path or settings.warehouse), settings.lock_timeout_s)
