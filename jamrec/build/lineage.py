"""Lineage: which tables each table is made from, as the SQL itself says.

The graph comes from :func:`jamrec.build.sqlrunner.discover` (the tables each ``sql/`` file
reads, from DuckDB's parser: real table references, never words inside string literals
or comments), plus where the raw tables come from (the input files) and what the model
jobs read. ``jamrec lineage`` prints it; the flows declare the same edges to Prefect as
asset materializations (:func:`asset_key`), so its UI and event feed show
raw files -> staging -> intermediate -> marts -> models -> metrics.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from jamrec.build import ingest, sqlrunner

LAYERS = ("raw", "staging", "intermediate", "mart")
# What every model job reads from the published warehouse (jamrec.models.dataset).
MODEL_INPUTS = ("splits", "negatives", "tracks")
# Where each raw table comes from (jamrec.build.stages writes them from these files).
RAW_FILES = {
    "raw_jams": "jams.tsv",
    "raw_likes": "likes.tsv",
    "raw_followers": "followers.tsv",
    "raw_tracks": "the Spotify features file",
    "raw_tracks_lines": "the Spotify features file",
    "raw_tracks_unreadable": "the Spotify features file",
}


@dataclass(frozen=True)
class Node:
    """One table of the build: its layer, the tables it reads, whether it is published."""

    name: str
    layer: str
    reads: tuple[str, ...]
    published: bool

    def line(self, width: int) -> str:
        """``  stg_jams          <- raw_jams``."""
        source = ", ".join(self.reads) or RAW_FILES.get(self.name, "an input file")
        mark = "" if self.published or self.layer == "raw" else "  (working table)"
        return f"  {self.name:<{width}} <- {source}{mark}"


def layer(table: str) -> str:
    """``raw``, ``staging``, ``intermediate`` or ``mart``, from the table's prefix."""
    for prefix, name in (("raw_", "raw"), ("stg_", "staging"), ("int_", "intermediate")):
        if table.startswith(prefix):
            return name
    return "mart"


def graph(sql_dir: Path) -> dict[str, Node]:
    """Every table of the build, raw inputs included, keyed by name, in dependency order."""
    models = sqlrunner.order(sqlrunner.discover(sql_dir))
    published = set(sqlrunner.load_schema(sql_dir))
    nodes: dict[str, Node] = {}
    raw = sorted({t for m in models for t in m.reads if t not in {x.name for x in models}})
    for table in raw:
        nodes[table] = Node(table, layer(table), (), False)
    for model in models:
        nodes[model.name] = Node(
            model.name, layer(model.name), tuple(sorted(model.reads)), model.name in published
        )
    return nodes


def upstream(nodes: dict[str, Node], table: str) -> list[str]:
    """Every table ``table`` is made from, nearest first (breadth-first)."""
    seen: list[str] = []
    frontier = list(nodes[table].reads)
    while frontier:
        name = frontier.pop(0)
        if name not in seen:
            seen.append(name)
            frontier += nodes[name].reads if name in nodes else []
    return seen


def render_text(nodes: dict[str, Node], table: str | None = None) -> str:
    """The graph by layer, each table with what it reads; or one table's upstream tree."""
    if table is not None:
        return _tree(nodes, table)
    width = max(len(n) for n in nodes)
    lines = ["SQL layers of a build (from the tables each file in sql/ reads):"]
    for name in LAYERS:
        members = [n for n in nodes.values() if n.layer == name]
        if members:
            lines.append(f"\n{name}:" if name != "mart" else "\nmarts (published):")
            lines += [n.line(width) for n in members]
    lines.append("\nmodels <- " + ", ".join(MODEL_INPUTS) + "; metrics <- models")
    return "\n".join(lines)


def _tree(nodes: dict[str, Node], table: str, depth: int = 0, seen: set | None = None) -> str:
    seen = set() if seen is None else seen
    node = nodes[table]
    line = "  " * depth + ("<- " if depth else "") + f"{table} ({node.layer})"
    if not node.reads and node.layer == "raw":
        line += f" <- {RAW_FILES.get(table, 'an input file')}"
    if table in seen:
        return line + " ..."
    seen.add(table)
    return "\n".join([line, *(_tree(nodes, dep, depth + 1, seen) for dep in node.reads)])


def render_dot(nodes: dict[str, Node]) -> str:
    """The graph in Graphviz's DOT language (``jamrec lineage --format dot | dot -Tsvg``)."""
    lines = ["digraph jamrec {", "  rankdir=LR;"]
    for name in LAYERS:
        members = " ".join(f'"{n.name}";' for n in nodes.values() if n.layer == name)
        lines.append(f"  subgraph cluster_{name} {{ label={name}; {members} }}")
    for node in nodes.values():
        lines += [f'  "{dep}" -> "{node.name}";' for dep in node.reads]
    lines.append("}")
    return "\n".join(lines)


def render_json(nodes: dict[str, Node]) -> str:
    """``{table: {"layer", "reads", "published"}}`` as JSON."""
    return json.dumps(
        {
            n.name: {"layer": n.layer, "reads": list(n.reads), "published": n.published}
            for n in nodes.values()
        },
        indent=2,
    )


def _uri_path(path: Path) -> str:
    """An absolute path as Prefect accepts it in an asset key (no spaces, quotes, ...)."""
    return re.sub(r"[^A-Za-z0-9._/+=@:,~-]", "_", str(Path(path).resolve()).lstrip("/"))


def asset_key(warehouse: Path, table: str) -> str:
    """``duckdb://<warehouse file>/<table>``: a table of the warehouse, as a Prefect asset."""
    return f"duckdb://{_uri_path(warehouse)}/{table}"


def file_asset_key(path: Path) -> str:
    """``file://<path>``: an input file, as a Prefect asset."""
    return f"file://{_uri_path(path)}"


def model_asset_key(warehouse: Path, model: str) -> str:
    """``jamrec://<warehouse file>/models/<model>``: a model's saved artefacts (the latest
    run's, see the materialization's metadata), as a Prefect asset."""
    return f"jamrec://{_uri_path(warehouse)}/models/{model}"


def input_files(timj: Path, spotify: Path) -> dict[str, Path]:
    """Raw table -> the input file it is read from (a zip for a zipped dump)."""
    sources = ingest.locate_timj(timj)
    return {
        raw: Path(spotify) if raw.startswith("raw_tracks") else sources[RAW_FILES[raw]].path
        for raw in RAW_FILES
    }


@dataclass(frozen=True)
class Materialization:
    """One asset a build made, and the assets it was made from."""

    table: str
    key: str
    upstream: tuple[str, ...]


def build_materializations(
    warehouse: Path, timj: Path, spotify: Path, sql_dir: Path
) -> list[Materialization]:
    """What a published build materialized, in dependency order: each raw table from its
    file, each SQL table from the tables it reads (working tables included: they are the
    staging and intermediate layers of the graph)."""
    files = input_files(timj, spotify)
    out = []
    upstream: tuple[str, ...]
    for node in graph(sql_dir).values():
        if node.layer == "raw":
            upstream = (file_asset_key(files[node.name]),) if node.name in files else ()
        else:
            upstream = tuple(asset_key(warehouse, t) for t in node.reads)
        out.append(Materialization(node.name, asset_key(warehouse, node.name), upstream))
    return out
