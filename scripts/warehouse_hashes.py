"""Content hashes of a warehouse: every table a build publishes, and the metrics of the
latest evaluated run of each model. Two builds (or two versions of the code) whose
hashes agree published the same rows and measured the same numbers.

    .venv/bin/python scripts/warehouse_hashes.py warehouse/jamrec.duckdb

Run ids and timestamps are left out (they differ run to run); metrics are keyed by the
model's name. Order-independent: rows are hashed in sorted order.
"""

from __future__ import annotations

import hashlib
import sys

import duckdb

HISTORY = {  # jamrec's own tables (some only in later versions): left out
    "builds", "model_runs", "metrics", "training_curves", "promotions", "recommendations",
    "sweeps", "coldstart_tracks", "user_metrics", "comparisons", "timings", "alerts",
    "study_results", "schema_migrations",
}  # fmt: skip


def table_hash(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    quoted = '"' + table.replace('"', '""') + '"'  # a catalog name, escaped as an identifier
    rows = con.execute(f"select * from {quoted}").fetchall()
    lines = sorted(repr(r) for r in rows)
    return len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def metrics_hash(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    rows = con.execute(
        """
        with latest as (
            select model, arg_max(run_id, started_at) as run_id from model_runs
            where status = 'evaluated' and coalesce(purpose, 'standard') = 'standard'
            group by model
        )
        select l.model, m.protocol, m.split, m.metric, m.k, m.value, m.ci_low, m.ci_high,
            m.n_users
        from latest l join metrics m using (run_id)
        """
    ).fetchall()
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row[0], []).append(repr(row[1:]))
    return {
        model: (len(v), hashlib.sha256("\n".join(sorted(v)).encode()).hexdigest()[:16])
        for model, v in sorted(out.items())
    }


def main(path: str) -> None:
    con = duckdb.connect(path, read_only=True)
    tables = [
        t
        for (t,) in con.execute(
            "select table_name from duckdb_tables() where schema_name = 'main' "
            "and database_name = current_database() order by 1"
        ).fetchall()
    ]
    for table in tables:
        if table not in HISTORY:
            n, digest = table_hash(con, table)
            print(f"table   {table:<34} {n:>10,} rows  {digest}")
    if "metrics" in tables:
        for model, (n, digest) in metrics_hash(con).items():
            print(f"metrics {model:<34} {n:>10,} rows  {digest}")


if __name__ == "__main__":
    main(sys.argv[1])
