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

Small writes (a run record, its metrics, a promotion) do not copy the whole file: when no
reader holds it, :meth:`Warehouse.update` writes *in place*, in one DuckDB transaction
under the writers' lock. DuckDB's write-ahead log is the journal: a writer killed before
its commit leaves nothing; killed after it, the committed rows are replayed from the WAL
by the next connection. When a reader holds the file, the update falls back to
copy-on-write, so readers are never disturbed. Builds are always written beside the file
and published by a rename; the file a build replaces is kept under ``.versions/`` (the
newest ``keep_versions``) for ``jamrec rollback``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import duckdb

from jamrec import files
from jamrec.errors import JamrecError, StorageError, WarehouseDamaged, WarehouseLockedError
from jamrec.log import log
from jamrec.warehouse import history, sqltext

T = TypeVar("T")

# duckdb-cli on PyPI (1.5.x) and other 1.x clients cannot read 2.x's default storage.
STORAGE_VERSION = "v1.5.0"

# `jamrec sql`: the warehouse and nothing else (DuckDB refuses the rest with a
# Permission Error); the configuration is locked so no query can loosen it.
SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}


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

    @property
    def versions_dir(self) -> Path:
        """Earlier published files, one per build replaced (``jamrec rollback``)."""
        return self.path.parent / ".versions"

    def exists(self) -> bool:
        """Whether a warehouse has been published at :attr:`path`."""
        return self.path.is_file()

    def check_readable(self) -> None:
        """Raise :class:`WarehouseDamaged` (naming rollback and ``etl --fresh``) when the
        published file cannot be read."""
        self._open_readonly().close()

    def check_writable(self, what: str) -> None:
        """Refuse at once, before any work, when the warehouse folder cannot be written."""
        files.check_writable(self.path.parent, what)

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

    def connect_sandboxed(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection that can read nothing but the warehouse (``jamrec sql``):
        no file reads or writes (``copy ... to``, ``read_text``), no extensions, no
        ``attach``, no ``set`` (:data:`SANDBOX`)."""
        self.connect_readonly().close()  # migrates an older warehouse first
        return self._open_readonly(config=SANDBOX)

    def _open_readonly(self, config: dict | None = None) -> duckdb.DuckDBPyConnection:
        con = retry_locked(
            lambda: duckdb.connect(str(self.path), read_only=True, config=config or {}),
            self.path,
            self.lock_timeout_s,
        )
        try:
            check_intact(con, self.path)
        except BaseException:
            con.close()
            raise
        return con

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
    def update(
        self, purpose: str, in_place: bool | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """Change the warehouse: yields a read-write connection; all or nothing.

        On a clean exit the change is published; on an exception nothing is. Creates an
        empty warehouse when none exists. The connection's history tables have the
        current shape (:func:`history.migrate`). ``in_place`` (default: when no reader
        holds the file) writes in one transaction in the published file itself;
        otherwise the file is copied, changed and renamed over the published one (free
        space is checked first: a copy needs as much as the warehouse).
        """
        with self.lock(purpose):
            con = self._open_in_place() if in_place is not False and self.exists() else None
            if con is None and in_place:
                raise JamrecError(f"{self.path}: a reader holds the file; cannot write in place")
            if con is not None:
                with _in_place(con, self.path):
                    yield con
                return
            with self._copy_on_write(purpose) as con:
                yield con

    def _open_in_place(self) -> duckdb.DuckDBPyConnection | None:
        """A read-write connection to the published file, or None when another process
        holds it (a reader: the update then copies, leaving the reader undisturbed)."""
        try:
            con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                return None
            raise _write_error(exc, self.path) from None
        except duckdb.ConnectionException:
            return None  # this process holds it read-only: copy, as for another reader
        except duckdb.Error as exc:
            raise WarehouseDamaged(self.path, first_line(exc)) from None
        try:
            check_intact(con, self.path)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _copy_on_write(self, purpose: str) -> Iterator[duckdb.DuckDBPyConnection]:
        target = self.new_file("update")
        try:
            if self.exists():
                # Opening read-only first proves no process holds the file read-write
                # (an unflushed WAL would make a byte copy inconsistent) and that it reads.
                self._open_readonly().close()
                size = self.path.stat().st_size
                files.check_free_space(self.work_dir, size, f"a copy of the warehouse ({purpose})")
                shutil.copyfile(self.path, target)
            con = connect_new(target)
        except OSError as exc:
            _remove(target)
            raise StorageError(files.describe_os_error(exc)) from None
        except duckdb.Error as exc:
            _remove(target)
            raise _write_error(exc, target) from None
        try:
            history.migrate(con)
            yield con
            con.execute("checkpoint")
            con.close()
            self.replace_with(target)
        except BaseException as exc:
            con.close()
            _remove(target)
            if isinstance(exc, duckdb.IOException | OSError):
                raise _write_error(exc, target) from None
            raise

    def replace_with(self, new_file: Path, keep_version: str | None = None) -> None:
        """Atomically make ``new_file`` the published warehouse (caller holds the lock).

        ``keep_version`` (the id of the build published now) keeps the file being
        replaced under :attr:`versions_dir` as ``<id>.duckdb`` (a hard link: no copy),
        then prunes to the newest ``keep_versions``.
        """
        with open(new_file, "rb+") as handle:
            os.fsync(handle.fileno())
        if keep_version and self.exists():
            self.keep_version(keep_version)
        os.replace(new_file, self.path)
        Path(str(new_file) + ".wal").unlink(missing_ok=True)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        if keep_version:
            self.prune_versions()

    def keep_version(self, name: str, force: bool = False) -> Path:
        """Keep the published file as ``.versions/<name>.duckdb`` (a hard link, or a copy
        where links are not possible); returns its path. Nothing is kept when
        ``keep_versions`` is 0, unless ``force``."""
        from jamrec.config import get_settings

        if get_settings().keep_versions <= 0 and not force:
            return self.versions_dir
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        target = self.versions_dir / f"{safe}.duckdb"
        tmp = files.temp_path(target)
        try:
            os.link(self.path, tmp)
        except OSError:
            shutil.copyfile(self.path, tmp)
        os.replace(tmp, target)
        return target

    def versions(self) -> list[Path]:
        """Kept versions, oldest first (named by build id, which sorts by start time)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(self.versions_dir.glob("*.duckdb"), key=lambda p: (p.stat().st_mtime, p.name))

    def prune_versions(self) -> list[Path]:
        """Remove all but the newest ``keep_versions`` kept versions."""
        from jamrec.config import get_settings

        keep = get_settings().keep_versions
        found = self.versions()
        stale = found[: max(0, len(found) - keep)]
        for path in stale:
            path.unlink(missing_ok=True)
        files.remove_dead_leftovers(self.versions_dir, ".*.tmp")
        return stale

    def _clean_work_dir(self) -> None:
        """Remove files left by writers that died (their PID no longer runs)."""
        for leftover in self.work_dir.glob("*.duckdb*"):
            parts = leftover.name.split("-")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            if pid is not None and pid != os.getpid() and not files.pid_alive(pid):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)


def warehouse_folder(con: duckdb.DuckDBPyConnection) -> Path:
    """The folder of the warehouse ``con`` reads or writes (for a copy being written in
    ``.work/``, the published file's folder)."""
    ((path,),) = con.execute(
        "select path from duckdb_databases() where database_name = current_database()"
    ).fetchall()
    folder = Path(path).resolve().parent
    return folder.parent if folder.name == ".work" else folder


def model_path(con: duckdb.DuckDBPyConnection, stored: str | None) -> Path | None:
    """Where a run's saved model is: ``model_runs.model_path`` is relative to the
    warehouse's folder (so a copied or moved warehouse serves its own models); older runs
    stored absolute paths, which are used as they are."""
    if not stored:
        return None
    path = Path(stored)
    return path if path.is_absolute() else warehouse_folder(con) / path


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Tables in the connection's own database (not attached ones, not temporary)."""
    rows = con.execute(
        "select table_name from duckdb_tables() "
        "where database_name = current_database() and schema_name = 'main'"
    ).fetchall()
    return {t for (t,) in rows}


def connect_new(path: Path, options: dict | None = None) -> duckdb.DuckDBPyConnection:
    """A read-write connection to a file jamrec owns, in the 1.x-readable storage format
    (``options``: further DuckDB settings, passed as configuration, never as SQL)."""
    config = {"storage_compatibility_version": STORAGE_VERSION, **(options or {})}
    return duckdb.connect(str(path), config=config)


@contextmanager
def _in_place(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[None]:
    """One transaction in the published file: committed (and checkpointed) on a clean
    exit, rolled back on any exception, the connection closed either way."""
    try:
        con.execute("begin transaction")
        history.migrate(con)
        yield
        con.execute("commit")
        con.execute("checkpoint")
    except BaseException as exc:
        try:
            con.execute("rollback")
        except duckdb.Error:
            pass  # nothing was begun, or DuckDB already rolled back
        if isinstance(exc, duckdb.IOException | OSError):
            raise _write_error(exc, path) from None
        raise
    finally:
        con.close()


# A DuckDB file starts with three 4 KiB headers, then its blocks.
_HEADER_BYTES = 3 * 4096


def check_intact(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Raise :class:`WarehouseDamaged` when the file behind ``con`` cannot be trusted: its
    catalog does not read, or it is shorter than the blocks it says it uses (a copy or a
    write cut short). Cheap: reads the catalog and the file size only."""
    try:
        history.version(con)
        ((block_size, used_blocks),) = con.execute(
            "select block_size, used_blocks from pragma_database_size() "
            "where database_name = current_database()"
        ).fetchall()
    except duckdb.Error as exc:
        raise WarehouseDamaged(path, first_line(exc)) from None
    # Free blocks at the end may have been cut off by DuckDB itself; used ones may not.
    expected = _HEADER_BYTES + int(block_size) * int(used_blocks)
    size = Path(path).stat().st_size
    if size < expected:
        raise WarehouseDamaged(
            path, f"truncated: {size:,} bytes, its blocks need {expected:,}"
        )


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (DuckDB adds context lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_WRITE_FAILURES = (
    ("no space left", "no space left on the device"),
    ("file too large", "file too large (a file-size limit was reached)"),
    ("read-only file system", "the file system is read-only"),
    ("permission denied", "permission denied"),
)


def storage_error(exc: BaseException) -> StorageError | None:
    """A :class:`StorageError` naming the file and the cause when a DuckDB error is a
    failed write (disk full, file-size limit, read-only file system); None otherwise."""
    if isinstance(exc, StorageError):
        return exc
    text = str(exc)
    lowered = text.lower()
    for needle, cause in _WRITE_FAILURES:
        if needle in lowered:
            quoted = re.search(r'file "([^"]+)"', text)
            where = quoted.group(1) if quoted else "the warehouse"
            return StorageError(f"{where}: {cause}; nothing was published")
    return None


def _write_error(exc: BaseException, path: Path) -> JamrecError:
    """One line for a failed write: the file and the cause (disk full, read-only, ...)."""
    if isinstance(exc, OSError):
        return StorageError(files.describe_os_error(exc, path))
    text = first_line(exc)
    lowered = text.lower()
    for needle, cause in _WRITE_FAILURES:
        if needle in lowered:
            return StorageError(f"{path}: {cause} ({text})")
    return JamrecError(f"{path}: {text}")


def _remove(path: Path) -> None:
    """Remove a partial file and its WAL (a failed write leaves nothing behind)."""
    for leftover in (path, Path(str(path) + ".wal")):
        try:
            leftover.unlink(missing_ok=True)
        except OSError:
            pass


def retry_locked(open_fn: Callable[[], T], path: Path, timeout_s: float) -> T:
    """Call ``open_fn`` until DuckDB stops reporting a conflicting lock on ``path``.

    Any other DuckDB error means the file cannot be read: :class:`WarehouseDamaged`
    (or a plain error when the file is not there at all)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    announced = False
    while True:
        try:
            return open_fn()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise _unreadable(exc, path) from None
            holder = str(exc).split("Conflicting lock is held in", 1)[-1].strip().rstrip(".")
        except duckdb.ConnectionException as exc:
            if "different configuration" not in str(exc):
                raise _unreadable(exc, path) from None
            # This process writes the file in place right now (another thread): wait.
            holder = f"this process (PID {os.getpid()}), writing in place"
        except duckdb.Error as exc:
            raise _unreadable(exc, path) from None
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


def _unreadable(exc: BaseException, path: Path) -> JamrecError:
    if not Path(path).exists():
        return JamrecError(f"{path}: {first_line(exc)}")
    return WarehouseDamaged(path, first_line(exc))


def _read_holder(handle: TextIO) -> str:
    try:
        handle.seek(0)
        return handle.read().strip() or "unknown process"
    except OSError:
        return "unknown process"


def one_row(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """The row of a query that always returns one: an aggregate without ``group by`` (a
    ``count(*)``), or a lookup of something the caller knows is there.

    Not for a query that reads a Python variable by name: DuckDB looks for it in the frame
    that calls ``execute``, which is this one.
    """
    row = con.execute(sql, params).fetchone()
    assert row is not None, f"no row from {sql!r}"
    return row


def copy_tables(con: duckdb.DuckDBPyConnection, source_alias: str, tables: list[str]) -> None:
    """Copy ``tables`` from the attached database ``source_alias`` into ``con``'s main
    schema, with their definitions (constraints) and comments.

    Names come from the source's catalog, so each is checked to be a plain identifier
    and quoted (:mod:`jamrec.warehouse.sqltext`); comments are re-applied as literals."""
    alias = sqltext.identifier(source_alias, what="database alias")
    for table in tables:
        name = sqltext.identifier(table, what="table")
        ddl, comment = one_row(
            con,
            "select sql, comment from duckdb_tables() "
            "where database_name = $db and table_name = $t",
            {"db": source_alias, "t": table},
        )
        con.execute(f"drop table if exists main.{name}")
        # The catalog's canonical DDL of that (checked) table: one create statement.
        if not ddl.lower().startswith("create table") or ";" in ddl.rstrip().rstrip(";"):
            raise JamrecError(f"{source_alias}.{table}: unexpected table definition")
        con.execute(ddl)
        con.execute(f"insert into main.{name} select * from {alias}.main.{name}")
        if comment:
            con.execute(f"comment on table main.{name} is {sqltext.literal(comment)}")
        for column, column_comment in con.execute(
            "select column_name, comment from duckdb_columns() "
            "where database_name = $db and table_name = $t and comment is not null",
            {"db": source_alias, "t": table},
        ).fetchall():
            col = sqltext.identifier(column, what="column")
            con.execute(
                f"comment on column main.{name}.{col} is {sqltext.literal(column_comment)}"
            )


def warehouse_at(path: Path | None = None) -> Warehouse:
    """The warehouse at ``path``, or the configured one (``$JAMREC_WAREHOUSE``)."""
    from jamrec.config import get_settings

    settings = get_settings()
    return Warehouse(Path(path or settings.warehouse), settings.lock_timeout_s)
