"""Publish a validated build, or record its failure; the published file is replaced
atomically and only then (see :mod:`jamrec.warehouse.store`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import duckdb

from jamrec import interrupts
from jamrec.build import records, sqlrunner
from jamrec.build.stages import (
    META_TABLE,
    Build,
    get_meta,
    meta_timings,
    raw_dir,
    release_build_lock,
)
from jamrec.config import get_settings
from jamrec.errors import WarehouseDamaged
from jamrec.log import log, stage
from jamrec.timing import Timing
from jamrec.warehouse import history, sqltext, timings
from jamrec.warehouse.store import copy_tables, first_line, one_row, retry_locked, storage_error


def publish(build: Build) -> dict:
    """Make the build the published warehouse, keeping the tables it does not rebuild.

    Model results (``model_runs``, ``metrics``, ...) and the ``builds`` history are
    copied from the currently published file, then the build file atomically replaces
    it. The build's ``timings`` rows go into the same file. Returns a summary: the warehouse
    path, the build id and published row counts.
    """
    start = time.perf_counter()
    store = build.store
    with stage("publish") as info:
        con = build.connect()
        try:
            meta = get_meta(con)
            con.execute(f"drop table {META_TABLE}")
            with store.lock(f"publish build {build.build_id}"):
                previous = None
                if store.exists():
                    store.check_readable()
                    retry_locked(
                        lambda: con.execute(
                            "attach $path as prev (read_only)", {"path": str(store.path)}
                        ),
                        store.path,
                        build.lock_timeout_s,
                    )
                    try:
                        previous = _published_build_id(con)
                        kept = kept_tables(_tables(con, "prev"), set(_tables(con)))
                        copy_tables(con, "prev", kept)
                    except duckdb.Error as exc:
                        raise WarehouseDamaged(store.path, first_line(exc)) from None
                    con.execute("detach prev")
                    info.update(kept_tables=len(kept))
                history.migrate(con)
                records.finish(
                    con,
                    build.build_id,
                    "published",
                    inputs=_inputs(meta),
                    stage_counts=meta.get("stage_counts"),
                    validation=meta.get("validation"),
                )
                rows = {
                    t: one_row(con, f"select count(*) from {sqltext.identifier(t)}")[0]
                    for t in _tables(con)
                }
                # Publishing is timed up to here: the checkpoint and the rename follow.
                done = Timing.since("publish", start, rows=sum(rows.values()))
                rows["timings"] = rows.get("timings", 0) + timings.insert(
                    con, [*meta_timings(meta), done], build.build_id
                )
                con.execute("checkpoint")
                con.close()
                store.replace_with(build.file, keep_version=previous)
            shutil.rmtree(raw_dir(build), ignore_errors=True)
        except BaseException:
            con.close()
            raise
    release_build_lock(build.build_id)
    log.info("build %s published: %s", build.build_id, store.path)
    return {"build_id": build.build_id, "warehouse": str(store.path), "rows": rows}


def _published_build_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """The build id published in the attached ``prev`` (what ``.versions/`` names it by)."""
    if "builds" not in _tables(con, "prev"):
        return None
    row = con.execute(
        "select build_id from prev.main.builds where status = 'published' "
        "order by started_at desc limit 1"
    ).fetchone()
    return row[0] if row else None


def kept_tables(published: list[str], built: set[str]) -> list[str]:
    """Tables of the published warehouse that a new build must carry over.

    Everything a build owns (``owner: build`` in ``sql/schema.yml``, and ``truth_*``) is
    replaced, or dropped when the new build has none (real data has no truth); the rest
    (``builds``, model results, anything else written beside the build) is kept.
    """
    schema = sqlrunner.load_schema(get_settings().sql_dir)
    owned = {t for t, spec in schema.items() if spec.get("owner") == "build"}
    return [
        t for t in published if t not in built and t not in owned and not t.startswith("truth_")
    ]


def _tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[str]:
    """Tables in ``database``'s main schema (default: the connection's own file)."""
    rows = con.execute(
        "select table_name from duckdb_tables() "
        "where database_name = coalesce($db, current_database()) and schema_name = 'main' "
        "order by 1",
        {"db": database},
    ).fetchall()
    return [t for (t,) in rows]


def _inputs(meta: dict) -> dict:
    inputs = {
        name: {k: v for k, v in info.items() if k != "notes"}
        for name, info in meta.get("timj", {}).items()
    }
    if "spotify" in meta:
        inputs["spotify"] = {k: v for k, v in meta["spotify"].items() if k != "notes"}
    for name, info in meta.get("truth", {}).items():
        if name != "ignored":  # unknown files, reported in stage_counts, never loaded
            inputs[name] = info
    return inputs


def fail_build(build: Build, error: BaseException) -> None:
    """Record a failed or interrupted build in ``builds``; clean up after it.

    The published tables are untouched. A build that failed on its data keeps its file
    as ``warehouse/.work/failed-build.duckdb`` for inspection (the latest failure only);
    an interrupted one (SIGINT, SIGTERM: status ``interrupted``) or one that could not
    write (disk full, read-only) leaves nothing behind.
    """
    with interrupts.deferred():
        _record_failure(build, error)


def _record_failure(build: Build, error: BaseException) -> None:
    interrupted = interrupts.is_interruption(error)
    if interrupted:
        status = "interrupted"
        message = f"interrupted by {interrupts.received() or 'SIGINT'}"
    else:
        status = "failed"
        message = str(error).strip() or type(error).__name__
    keep_file = not interrupted and storage_error(error) is None and not isinstance(error, OSError)
    meta: dict = {}
    try:
        con = duckdb.connect(str(build.file), read_only=True)
        try:
            meta = get_meta(con)
        finally:
            con.close()
    except (duckdb.Error, OSError):
        pass
    try:
        with build.store.update(f"record {status} build {build.build_id}") as con:
            records.finish(
                con,
                build.build_id,
                status,
                inputs=_inputs(meta) or None,
                stage_counts=meta.get("stage_counts"),
                validation=meta.get("validation"),
                error=message,
            )
            timings.insert(con, meta_timings(meta), build.build_id)
    except Exception as exc:
        log.error("could not record the %s build %s: %s", status, build.build_id, exc)
    finally:
        shutil.rmtree(raw_dir(build), ignore_errors=True)
        try:
            if keep_file and build.file.exists():
                os.replace(build.file, build.store.work_dir / "failed-build.duckdb")
            else:
                build.file.unlink(missing_ok=True)
            Path(str(build.file) + ".wal").unlink(missing_ok=True)
        except OSError as exc:
            log.error("could not remove %s: %s", build.file, exc)
        release_build_lock(build.build_id)
    log.error("build %s %s: %s", build.build_id, status, message)
