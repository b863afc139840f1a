"""Ad-hoc, read-only SQL against the published warehouse (``jamrec sql``), in a sandbox.

The connection is read-only and sandboxed (:data:`jamrec.warehouse.store.SANDBOX`): a
query can read the warehouse's tables and nothing else. ``copy ... to``, reading other
files (``read_text``, ``read_csv``), ``install``/``load``, ``attach`` and ``set`` are
refused with one line. To export a result on purpose, redirect the output:
``jamrec sql --format csv "select ..." > file.csv``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TextIO

import duckdb

from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.warehouse import sqltext
from jamrec.warehouse.store import Warehouse, one_row


# A reject's reason without its details, for counting by reason: the parenthesised detail
# goes, and so does the value of a range reject ('danceability 1.7 outside 0..1' ->
# 'danceability outside 0..1'). A fixed SQL expression over the column ``reason``.
REJECT_REASON = (
    r"regexp_replace(regexp_replace(reason, ' \(.*\)$', ''), '^(\S+) \S+ outside ', "
    r"'\1 outside ')"
)

REFUSAL = (
    "jamrec sql is read-only and sandboxed: it reads the warehouse's tables and nothing "
    "else (no copy ... to, no other files, no install/load, no attach, no set); to export "
    'a result, redirect it: jamrec sql --format csv "select ..." > file.csv'
)


def _open(path: Path | None) -> duckdb.DuckDBPyConnection:
    settings = get_settings()
    return Warehouse(path or settings.warehouse, settings.lock_timeout_s).connect_sandboxed()


def _refused(exc: duckdb.Error) -> bool:
    """Whether DuckDB refused a statement because of the sandbox (not a bad query)."""
    text = str(exc)
    return isinstance(exc, duckdb.PermissionException) or any(
        needle in text
        for needle in (
            "configuration has been locked",
            "attached in read-only mode",
            "in read-only mode",
            "disabled by configuration",
            "disabled through configuration",
        )
    )


def run(path: Path | None, sql: str, fmt: str, max_rows: int, out: TextIO) -> None:
    """Run ``sql`` read-only and print the result as a table, CSV or JSON lines."""
    con = _open(path)
    try:
        try:
            relation = con.sql(sql)
        except duckdb.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if _refused(exc):
                raise JamrecError(f"{REFUSAL} ({first})") from None
            raise JamrecError(f"query failed: {str(exc).strip()}") from None
        if relation is None:
            return
        if fmt == "table":
            out.write(relation.__str__() if max_rows <= 0 else _render(relation, max_rows))
            return
        columns = relation.columns
        rows = relation.fetchall()
        if fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        else:
            for row in rows:
                out.write(json.dumps(dict(zip(columns, row)), default=str) + "\n")
    finally:
        con.close()


def _render(relation: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        relation.show(max_rows=max_rows, max_width=160)
    return buffer.getvalue()


def describe(path: Path | None, out: TextIO) -> None:
    """List every table with its comment and row count, then its columns and comments."""
    con = _open(path)
    try:
        tables = con.execute(
            "select table_name, comment, estimated_size from duckdb_tables() "
            "where database_name = current_database() and schema_name = 'main' order by table_name"
        ).fetchall()
        for table, comment, _ in tables:
            if not sqltext.is_plain(table):
                continue  # not one of jamrec's tables
            n = one_row(con, f"select count(*) from {sqltext.identifier(table)}")[0]
            out.write(f"{table}  ({n:,} rows)\n")
            if comment:
                out.write(f"  {comment}\n")
            for column, dtype, col_comment in con.execute(
                "select column_name, data_type, comment from duckdb_columns() "
                "where database_name = current_database() and schema_name = 'main' "
                "and table_name = $t "
                "order by column_index",
                {"t": table},
            ).fetchall():
                out.write(f"    {column:<22} {dtype:<26} {col_comment or ''}\n")
            out.write("\n")
    finally:
        con.close()
