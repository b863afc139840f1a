"""``jamrec rollback``: put an earlier published version of the warehouse back.

Every build that publishes keeps the file it replaces under ``warehouse/.versions/``
(``<build id>.duckdb``, the newest ``keep_versions``, default 2). Rolling back republishes
one of them (default: the newest whose build is not the published one) with the
*current* history tables carried over, so no run, metric or build record is lost; only
the data tables go back. In ``builds`` the published builds newer than the one restored
become ``rolled_back``, the restored one ``published`` again, and the rollback itself is
a row with status ``rollback`` saying what replaced what. The file replaced is kept as a
version too, so a rollback can be undone with another.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb

from jamrec import files
from jamrec.errors import JamrecError, StorageError, WarehouseDamaged
from jamrec.log import log
from jamrec.provenance import new_build_id, now
from jamrec.warehouse import history
from jamrec.warehouse.store import (
    Warehouse,
    check_intact,
    connect_new,
    copy_tables,
    first_line,
    one_row,
    table_names,
    warehouse_at,
)


@dataclass(frozen=True)
class Version:
    """A kept published file: its path and the build whose tables it publishes."""

    path: Path
    build_id: str | None
    size: int


def list_versions(warehouse: Path | None = None) -> list[Version]:
    """The kept versions, oldest first, with the build each publishes (None: unreadable)."""
    store = warehouse_at(warehouse)
    return [Version(p, _build_of(p), p.stat().st_size) for p in store.versions()]


def rollback(build_id: str | None = None, warehouse: Path | None = None) -> dict:
    """Republish the kept version of ``build_id`` (default: the newest version whose
    build is not the published one); returns what was done (``build_id``, ``replaced``,
    ``version``)."""
    store = warehouse_at(warehouse)
    store.check_writable("jamrec rollback")
    with store.lock(f"rollback to {build_id or 'the previous version'}"):
        current = _current_build(store)
        version = _choose(store, build_id, current)
        target = store.new_file("rollback")
        try:
            files.check_free_space(store.work_dir, version.size, "a copy of the kept version")
            shutil.copyfile(version.path, target)
            _restore(store, target, version, current)
            store.replace_with(target, keep_version=current or "unreadable")
        except OSError as exc:
            raise StorageError(files.describe_os_error(exc)) from None
        finally:
            target.unlink(missing_ok=True)
            Path(str(target) + ".wal").unlink(missing_ok=True)
    log.info("rolled back to build %s (from %s)", version.build_id, version.path)
    return {"build_id": version.build_id, "replaced": current, "version": str(version.path)}


def _current_build(store: Warehouse) -> str | None:
    """The published build id, or None when there is no readable published file."""
    if not store.exists():
        return None
    try:
        con = store._open_readonly()
    except WarehouseDamaged as exc:
        log.warning("%s", exc)
        return None
    try:
        row = con.execute("select build_id from published_build").fetchone()
        return row[0] if row else None
    except duckdb.Error:
        return None
    finally:
        con.close()


def _choose(store: Warehouse, build_id: str | None, current: str | None) -> Version:
    versions = [Version(p, _build_of(p), p.stat().st_size) for p in store.versions()]
    readable = [v for v in versions if v.build_id is not None]
    if build_id is not None:
        found = [v for v in readable if v.build_id == build_id]
        if not found:
            kept = ", ".join(v.build_id for v in readable if v.build_id is not None) or "none"
            raise JamrecError(
                f"no kept version of build {build_id!r} in {store.versions_dir} (kept: {kept})"
            )
        return found[-1]
    found = [v for v in readable if v.build_id != current]
    if not found:
        raise JamrecError(
            f"{store.versions_dir}: no earlier version to roll back to (each build keeps the "
            "one it replaces; rebuild with `jamrec etl`)"
        )
    return found[-1]


def _build_of(path: Path) -> str | None:
    """The build a kept file publishes (None when it cannot be read)."""
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        check_intact(con, path)
        row = con.execute(
            "select build_id from builds where status in ('published', 'rolled_back') "
            "order by (status = 'published') desc, started_at desc limit 1"
        ).fetchone()
        return row[0] if row else None
    except (duckdb.Error, JamrecError):
        return None
    finally:
        con.close()


def _restore(store: Warehouse, target: Path, version: Version, current: str | None) -> None:
    """In ``target`` (a copy of the version): the current history tables, and the
    ``builds`` rows that say what happened."""
    con = connect_new(target)
    try:
        if current is not None:
            con.execute("attach $path as cur (read_only)", {"path": str(store.path)})
            have = {
                t
                for (t,) in con.execute(
                    "select table_name from duckdb_tables() where database_name = 'cur'"
                ).fetchall()
            }
            copy_tables(con, "cur", sorted(have & set(history.TABLES)))
            con.execute("detach cur")
        history.migrate(con)
        started = one_row(
            con, "select started_at from builds where build_id = $b", {"b": version.build_id}
        )[0]
        t = now()
        con.execute(
            "update builds set status = 'rolled_back', note = coalesce(note || '; ', '') || $n "
            "where status = 'published' and started_at > $s",
            {"n": f"rolled back to {version.build_id} at {t:%Y-%m-%d %H:%M:%S} UTC", "s": started},
        )
        con.execute(
            "update builds set status = 'published' where build_id = $b", {"b": version.build_id}
        )
        con.execute(
            "insert into builds (build_id, started_at, finished_at, status, note, parameters) "
            "values ($id, $t, $t, 'rollback', $note, $p)",
            {
                "id": new_build_id(),
                "t": t,
                "note": f"republished build {version.build_id} from {version.path.name}"
                + (f", replacing {current}" if current else ""),
                "p": json.dumps({"restored": version.build_id, "replaced": current}),
            },
        )
        missing = {"builds"} - table_names(con)
        if missing:
            raise JamrecError(f"{version.path}: not a jamrec warehouse (no builds table)")
        con.execute("checkpoint")
    except duckdb.Error as exc:
        raise JamrecError(f"{version.path}: cannot restore it: {first_line(exc)}") from None
    finally:
        con.close()
