"""The ``timings`` rows: written inside the write that records a build or a run (or, for
a job's own stages, by :func:`record`), read back by the demo (the table is declared in
:mod:`jamrec.warehouse.history`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import duckdb

from jamrec.timing import Timing
from jamrec.warehouse import history
from jamrec.warehouse.store import warehouse_at


def insert(
    con: duckdb.DuckDBPyConnection,
    timings: Sequence[Timing],
    build_id: str,
    run_id: str | None = None,
) -> int:
    """Append ``timings`` under ``build_id`` (and ``run_id`` for a run's stages) in the
    caller's write; returns the rows written."""
    if not timings:
        return 0
    con.executemany(
        history.insert_sql("timings"),
        [
            (
                t.recorded_at,
                build_id,
                run_id,
                t.flow,
                t.stage,
                t.model,
                t.seconds,
                t.peak_rss_gb,
                t.rows,
            )
            for t in timings
        ],
    )
    return len(timings)


def record(timings: Sequence[Timing], build_id: str, warehouse: Path | None = None) -> None:
    """A job's own stages (the demo's generate, report, total) under ``build_id``: a small
    write of its own (in place, unless a reader holds the file)."""
    with warehouse_at(warehouse).update("record timings") as con:
        insert(con, timings, build_id)


def read(
    con: duckdb.DuckDBPyConnection, build_ids: Sequence[str], since: datetime | None = None
) -> list[Timing]:
    """The stages recorded under ``build_ids`` (ended at or after ``since``), in the order
    they ended; a job's ``total`` last."""
    rows = con.execute(
        "select stage, seconds, peak_rss_gb, recorded_at, rows, model, flow from timings "
        "where build_id in (select unnest($builds)) "
        "and ($since is null or recorded_at >= $since) "
        "order by stage = 'total', recorded_at, stage",
        {"builds": list(dict.fromkeys(build_ids)), "since": since},
    ).fetchall()
    return [Timing(*row) for row in rows]


def of_builds(
    build_ids: Sequence[str], since: datetime | None = None, warehouse: Path | None = None
) -> list[Timing]:
    """:func:`read` on the published warehouse (read-only)."""
    con = warehouse_at(warehouse).connect_readonly()
    try:
        return read(con, build_ids, since)
    finally:
        con.close()
