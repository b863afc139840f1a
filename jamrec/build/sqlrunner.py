"""Run the SQL transforms in ``sql/``: one table per file, in dependency order.

Each ``sql/<name>.sql`` holds one ``select``; the runner wraps it in
``create or replace table <name> as ...`` so a table's name can never drift from its
file. Dependencies are the tables a file reads, found by DuckDB's own parser
(:func:`references`: table references, not words in strings or comments, CTE names
aside), so adding a file needs no registry. Files starting with ``_`` (macros) run first.
``sql/schema.yml`` describes the published tables and their columns; the runner turns
those descriptions into table and column comments.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from jamrec.errors import JamrecError
from jamrec.log import log, progress
from jamrec.warehouse import sqltext
from jamrec.warehouse.store import one_row, storage_error


@dataclass(frozen=True)
class Model:
    """One SQL file: the table it builds, its ``select``, the tables it reads
    (``reads``: models and raw inputs) and, of those, the models (``deps``)."""

    name: str
    path: Path
    sql: str
    deps: frozenset[str]
    reads: frozenset[str] = frozenset()


def references(sql: str, path: Path | None = None) -> frozenset[str]:
    """The tables a ``select`` reads, from DuckDB's parse tree (nothing is bound or run):
    real table references only, lower-cased, without the query's own CTE names."""
    with duckdb.connect() as con:
        tree = json.loads(con.execute("select json_serialize_sql($s)", {"s": sql}).fetchall()[0][0])
    if tree.get("error"):
        raise JamrecError(f"{path or 'sql'}: {tree.get('error_message', 'does not parse')}")
    tables: set[str] = set()
    ctes: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "BASE_TABLE" and "table_name" in node:
                tables.add(node["table_name"].lower())
            for entry in (node.get("cte_map") or {}).get("map", []):
                ctes.add(entry["key"].lower())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(tree)
    return frozenset(tables - ctes)


def discover(sql_dir: Path) -> dict[str, Model]:
    """All models in ``sql_dir`` (``_*.sql`` excluded), keyed by table name."""
    texts = {
        p.stem: p.read_text() for p in sorted(sql_dir.glob("*.sql")) if not p.stem.startswith("_")
    }
    models = {}
    for name, text in texts.items():
        path = sql_dir / f"{name}.sql"
        if not sqltext.is_plain(name):  # the file name becomes the table name
            raise JamrecError(f"{path}: a model's file name must be a plain SQL name")
        sql = text.strip().rstrip(";")
        reads = references(sql, path)
        deps = frozenset(t for t in reads if t in texts and t != name)
        models[name] = Model(name, path, sql, deps, reads)
    return models


def order(models: dict[str, Model]) -> list[Model]:
    """Models sorted so that each comes after the models it reads (ties by name)."""
    done: list[Model] = []
    seen: set[str] = set()
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        if name in visiting:
            raise JamrecError(f"sql/{name}.sql: dependency cycle through {sorted(visiting)}")
        visiting.add(name)
        for dep in sorted(models[name].deps):
            visit(dep)
        visiting.discard(name)
        seen.add(name)
        done.append(models[name])

    for name in sorted(models):
        visit(name)
    return done


def run_macros(con: duckdb.DuckDBPyConnection, sql_dir: Path) -> None:
    """Execute every ``sql/_*.sql`` file (temporary macros used by the models)."""
    for path in sorted(sql_dir.glob("_*.sql")):
        con.execute(path.read_text())


def run_models(
    con: duckdb.DuckDBPyConnection,
    sql_dir: Path,
    variables: dict[str, object],
    published: set[str] | None = None,
) -> dict[str, int]:
    """Build every model table; return its row count.

    ``variables`` become DuckDB variables the SQL reads with ``getvariable('name')``
    (seed, sample sizes, ...). Models not in ``published`` are working tables: they are
    built as temporary tables (in memory, never written to the file) and dropped as soon
    as the last model that reads them is built. ``published=None`` keeps everything.
    """
    for key, value in variables.items():
        con.execute(f"set variable {sqltext.identifier(key)} = $value", {"value": value})
    run_macros(con, sql_dir)
    models = order(discover(sql_dir))
    last_use = {m.name: i for i, m in enumerate(models)}
    for i, model in enumerate(models):
        for dep in model.deps:
            last_use[dep] = max(last_use[dep], i)
    counts = {}
    for i, model in enumerate(progress(models, "sql", name=lambda m: m.name)):
        start = time.perf_counter()
        temporary = published is not None and model.name not in published
        kind = "temp table" if temporary else "table"
        try:
            con.execute(f"create or replace {kind} {model.name} as\n{model.sql}")
        except duckdb.Error as exc:
            written = storage_error(exc)
            if written is not None:
                raise written from None
            raise JamrecError(f"{model.path}: {str(exc).splitlines()[0]}") from exc
        counts[model.name] = one_row(con, f"select count(*) from {model.name}")[0]
        log.info(
            "sql %s: %.1f s  rows=%s%s",
            model.name,
            time.perf_counter() - start,
            f"{counts[model.name]:,}",
            " (working table)" if temporary else "",
        )
        for done in models[: i + 1]:
            if published is not None and done.name not in published and last_use[done.name] == i:
                con.execute(f"drop table if exists temp.{done.name}")
    return counts


def load_schema(sql_dir: Path) -> dict[str, dict]:
    """``sql/schema.yml``: ``{table: {"description": str, "columns": {col: str}, ...}}``."""
    return yaml.safe_load((sql_dir / "schema.yml").read_text())["tables"]


def apply_comments(con: duckdb.DuckDBPyConnection, schema: dict[str, dict]) -> None:
    """``comment on`` every described table and column that exists in ``con``."""
    existing = {
        (t, c)
        for t, c in con.execute(
            "select table_name, column_name from duckdb_columns() "
            "where database_name = current_database() and schema_name = 'main'"
        ).fetchall()
    }
    tables = {t for t, _ in existing}
    for table, spec in schema.items():
        if table not in tables:
            continue
        con.execute(f"comment on table {table} is {quote(spec['description'].strip())}")
        for column, text in spec.get("columns", {}).items():
            if (table, column) in existing:
                con.execute(f"comment on column {table}.{column} is {quote(text.strip())}")


def quote(text: str) -> str:
    """A SQL string literal for jamrec's own ``text`` (``sql/schema.yml``; statements such
    as ``comment on`` take no parameters): :func:`jamrec.warehouse.sqltext.literal`."""
    return sqltext.literal(text)


def run_model(
    con: duckdb.DuckDBPyConnection, sql_dir: Path, name: str, variables: dict[str, object]
) -> int:
    """Build one model table from tables already in ``con`` (for tests and debugging)."""
    for key, value in variables.items():
        con.execute(f"set variable {sqltext.identifier(key)} = $value", {"value": value})
    run_macros(con, sql_dir)
    model = discover(sql_dir)[name]
    con.execute(f"create or replace table {model.name} as\n{model.sql}")
    return one_row(con, f"select count(*) from {model.name}")[0]
