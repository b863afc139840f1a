"""The ``retrain`` flow: the whole chain, on a weekly schedule.

check the inputs -> (re)build, validate and publish the warehouse when something changed
-> train and evaluate -> promote (champion/challenger) -> refresh recommendations ->
prune old saved models -> regenerate the report (attached, with the metrics table, as
Prefect artifacts). Only one build or retrain runs at a
time: the flow holds the ``jamrec-warehouse`` global concurrency limit (created by
``make service``; a second run waits for the slot). A failed run says which step failed
and why in its state message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import State, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import warehouse_slot, writer
from flows.build_warehouse import build_warehouse
from flows.train_and_evaluate import train_and_evaluate
from jamrec import report
from jamrec.build import incremental
from jamrec.config import BuildParams
from jamrec.models import ModelName
from jamrec.models.dataset import open_dataset
from jamrec.operations import promotion, recommendations

check_inputs = task(name="check-inputs", cache_policy=NO_CACHE)(incremental.build_decision)
record_skipped = writer("record-skipped-build")(incremental.record_skipped)
load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
refresh_recommendations = writer("refresh-recommendations")(recommendations.refresh)
build_report = task(name="report", cache_policy=NO_CACHE)(report.build_report)


@task(name="report-artifacts", cache_policy=NO_CACHE)
def report_artifacts(warehouse: Path | None, path: Path) -> None:
    """Attach the metrics table and the report's path to the flow run."""
    create_markdown_artifact(
        key="retrain-summary",
        markdown=report.report_markdown_summary(warehouse, report=path),
        description="Models and champions after this retrain",
    )


prune = writer("prune-models")(promotion.prune)


@flow(name="retrain")
def retrain(
    timj: Path = Path("data/small"),
    spotify: Path = Path("data/small/tracks.csv"),
    warehouse: Path | None = None,
    seed: int = 0,
    n_negatives: int = 10,
    k_test: int = 1,
    k_val: int = 1,
    models: list[ModelName] | None = None,
    settings: dict[ModelName, dict[str, Any]] | None = None,
    user_sample: int = 5000,
    tolerance: float = 0.0,
    keep_models: int = 3,
    top_n: int = 20,
) -> dict[str, Any] | State:
    """Rebuild when the inputs, parameters or code changed; retrain, promote and serve.

    Args:
        timj: The TIMJ dump: its folder (holding ``archive/``) or its zip.
        spotify: A Kaggle Spotify audio-features CSV (any of the five variants).
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        seed: Seeds the build (negatives, splits) and every random choice of the runs.
        n_negatives: At most this many sampled negatives per user (the study: 10).
        k_test: Positives held out per user for test.
        k_val: Positives held out per user for validation.
        models: The models to train (default: every default model, and the oracle on
            generated data).
        settings: Per-model settings, e.g. {"mbcf": {"epochs": 30}}.
        user_sample: Users in the full_sample protocol (champions are chosen on it).
        tolerance: How far below the champion's validation NDCG@10 a challenger may be
            and still be promoted (0: never a worse run).
        keep_models: Saved models kept per model (champions are always kept).
        top_n: Recommendations per user and champion.
    """
    params = BuildParams(seed=seed, n_negatives=n_negatives, k_test=k_test, k_val=k_val)
    step = "wait for the warehouse"
    with warehouse_slot():
        try:
            step = "check inputs"
            decision = check_inputs(timj, spotify, warehouse, params)
            if decision["rebuild"]:
                step = "build warehouse"
                build_warehouse(
                    timj, spotify, warehouse, seed, n_negatives, k_test, k_val, report=False
                )
            else:
                record_skipped(decision, warehouse)
            step = "train, evaluate and promote"
            # A new build changes the users and tracks every list is about: refresh every
            # champion's lists once, after the promotions; otherwise the promotions write
            # the promoted models' lists themselves.
            trained = train_and_evaluate(
                models,
                seed,
                warehouse,
                user_sample,
                settings,
                tolerance,
                refresh=not decision["rebuild"],
                report=False,
            )
            served = trained["recommendations"]
            if decision["rebuild"]:
                step = "refresh recommendations"
                served = refresh_recommendations(load_dataset(warehouse), warehouse, top_n)
            step = "prune saved models"
            prune(keep_models, warehouse)
            step = "report"
            page = build_report(warehouse)
            report_artifacts(warehouse, page)
        except Exception as exc:  # the state message must say which step failed
            return Failed(message=f"retrain failed at step '{step}': {exc}")
    return {
        "rebuilt": decision["rebuild"],
        "build_reason": decision["reason"],
        "new_runs": trained["runs"],
        "promoted": trained["promoted"],
        "recommendations": served,
        "comparison": trained["comparison"],
        "report": str(page),
    }


if __name__ == "__main__":
    retrain()
