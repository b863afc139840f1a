"""Publish a validated build, or record its failure; the published file is replaced
atomically and only then (see :mod:`jamrec.warehouse.store`)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from jamrec.build import records, sqlrunner
from jamrec.build.stages import META_TABLE, Build, get_meta, raw_dir, release_build_lock
from jamrec.config import get_settings
from jamrec.log import log, stage
from jamrec.warehouse import history
from jamrec.warehouse.store import copy_tables, one_row, retry_locked


def publish(build: Build) -> dict:
    """Make the build the published warehouse, keeping the tables it does not rebuild.

    Model results (``model_runs``, ``metrics``, ...) and the ``builds`` history are
    copied from the currently published file, then the build file atomically replaces
    it. Returns a summary: the warehouse path, the build id and published row counts.
    """
    store = build.store
    with stage("publish") as info:
        con = build.connect()
        try:
            meta = get_meta(con)
            con.execute(f"drop table {META_TABLE}")
            with store.lock(f"publish build {build.build_id}"):
                if store.exists():
                    retry_locked(
                        lambda: con.execute(
                            f"attach {sqlrunner.quote(str(store.path))} as prev (read_only)"
                        ),
                        store.path,
                        build.lock_timeout_s,
                    )
                    kept = kept_tables(_tables(con, "prev"), set(_tables(con)))
                    copy_tables(con, "prev", kept)
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
                rows = {t: one_row(con, f"select count(*) from {t}")[0] for t in _tables(con)}
                con.execute("checkpoint")
                con.close()
                store.replace_with(build.file)
            shutil.rmtree(raw_dir(build), ignore_errors=True)
        except BaseException:
            con.close()
            raise
    release_build_lock(build.build_id)
    log.info("build %s published: %s", build.build_id, store.path)
    return {"build_id": build.build_id, "warehouse": str(store.path), "rows": rows}


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
        inputs[name] = info
    return inputs


def fail_build(build: Build, error: BaseException) -> None:
    """Record a failed build in ``builds`` and keep its file for inspection.

    The published tables are untouched. The failed build's file is kept as
    ``warehouse/.work/failed-build.duckdb`` (the latest failure only).
    """
    message = str(error).strip() or type(error).__name__
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
        with build.store.update(f"record failed build {build.build_id}") as con:
            records.finish(
                con,
                build.build_id,
                "failed",
                inputs=_inputs(meta) or None,
                stage_counts=meta.get("stage_counts"),
                validation=meta.get("validation"),
                error=message,
            )
        shutil.rmtree(raw_dir(build), ignore_errors=True)
        if build.file.exists():
            os.replace(build.file, build.store.work_dir / "failed-build.duckdb")
            Path(str(build.file) + ".wal").unlink(missing_ok=True)
    except Exception as exc:
        log.error("could not record the failure of build %s: %s", build.build_id, exc)
    finally:
        release_build_lock(build.build_id)
    log.error("build %s failed: %s", build.build_id, message)
