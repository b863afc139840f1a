"""Lineage as Prefect assets: what each flow materializes, and from what.

The edges come from :mod:`jamrec.build.lineage` (the SQL's own table references): every
table of a published build is an asset (``duckdb://<warehouse>/<table>``) materialized
from the tables it reads, the raw tables from the input files (``file://...``); a model
(``jamrec://<warehouse>/models/<model>``) from the tables it trains on; ``metrics`` and
``model_runs`` from the model. Prefect records each as an asset materialization event
with its upstream assets (the event feed, and the asset graph where the UI draws one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from prefect import Task
from prefect.assets import add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from flows._retry import BACKOFF, locked
from jamrec.build import lineage
from jamrec.config import get_settings
from jamrec.warehouse.store import warehouse_at

P = ParamSpec("P")
R = TypeVar("R")


def _published(key: str, table: str, build_id: str, rows: int | None) -> str:
    """A materialized table: its build and row count as the materialization's metadata."""
    add_asset_metadata(key, {"table": table, "build_id": build_id, "rows": rows})
    return key


def declare_build(
    warehouse: Path | None, timj: Path, spotify: Path, build_id: str, rows: dict[str, int]
) -> int:
    """One materialization per table of the published build, with its upstream tables
    (working tables included: they are the staging and intermediate layers); returns how
    many were declared."""
    path = warehouse_at(warehouse).path
    futures = []
    for item in lineage.build_materializations(path, timj, spotify, get_settings().sql_dir):
        task = materialize(
            item.key,
            asset_deps=list(item.upstream),
            by="duckdb",
            name=f"asset-{item.table}",
            cache_policy=NO_CACHE,
        )(_published)
        futures.append(task.submit(item.key, item.table, build_id, rows.get(item.table)))
    wait(futures)
    return len(futures)


def save_task(save_fn: Callable[P, R], warehouse: Path | None, model: str) -> Task[P, R]:
    """``save_fn`` (``runs.save``) as the materialization of ``model``'s artefacts, from
    the tables models train on."""
    path = warehouse_at(warehouse).path
    return materialize(
        lineage.model_asset_key(path, model),
        asset_deps=[lineage.asset_key(path, t) for t in lineage.MODEL_INPUTS],
        by="jamrec",
        name="save-model",
        cache_policy=NO_CACHE,
    )(save_fn)


def record_task(record_fn: Callable[P, R], warehouse: Path | None, model: str) -> Task[P, R]:
    """``record_fn`` (``runs.record``) as the materialization of ``metrics`` and
    ``model_runs`` from ``model``'s artefacts; retried while the warehouse is held."""
    path = warehouse_at(warehouse).path
    return materialize(
        lineage.asset_key(path, "metrics"),
        lineage.asset_key(path, "model_runs"),
        asset_deps=[lineage.model_asset_key(path, model)],
        by="jamrec",
        name="record-run",
        cache_policy=NO_CACHE,
        retries=3,
        retry_delay_seconds=BACKOFF,
        retry_condition_fn=locked,
    )(record_fn)
