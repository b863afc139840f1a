"""The ``cold-start`` flow: the cold-start study (:func:`jamrec.operations.pipeline.
cold_start_study`, ``jamrec coldstart``): withhold a seeded share of the tracks with
interactions, train each model without them, rank them; record the runs (never champions).
It writes the warehouse, so it holds the warehouse slot like every writer flow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import warehouse_slot, write_report
from jamrec.models import ModelName
from jamrec.operations import pipeline

study = task(name="cold-start-study", cache_policy=NO_CACHE)(pipeline.cold_start_study)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


@flow(name="cold-start")
def cold_start(
    models: list[ModelName] | None = None,
    share: float = 0.1,
    seed: int = 0,
    settings: dict[ModelName, dict[str, Any]] | None = None,
    warehouse: Path | None = None,
    report: bool = True,
    evaluation_seed: int | None = None,
) -> list[str]:
    """The cold-start study: rank tracks withheld, with all their interactions, from
    training; returns the recorded runs.

    Args:
        models: The models to study (default: two_tower, feature_knn, spotify_popularity,
            popularity, hybrid, mbcf, random, and the oracle on generated data).
        share: Share of the tracks with interactions that is withheld.
        seed: Seeds the draw and every run.
        settings: Per-model settings, e.g. {"two_tower": {"epochs": 5}}.
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        report: Rewrite the report (reports/index.html) at the end.
        evaluation_seed: Seeds the evaluation's bootstrap (default: the evaluation_seed
            setting); never a model.
    """
    with warehouse_slot():
        run_ids = study(models, share, seed, settings, warehouse, None, evaluation_seed)
        if report:
            rewrite_report(warehouse)
    return run_ids


if __name__ == "__main__":
    print(cold_start())
