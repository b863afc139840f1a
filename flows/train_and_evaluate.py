"""The ``train-and-evaluate`` flow: train every model on the published warehouse,
evaluate it under every protocol, save it, record the results, promote, and serve the new
champions' recommendations (written with the promotion, in one warehouse write).

Each task is one call of a :mod:`jamrec.operations` function, in the order of
:func:`jamrec.operations.pipeline.run_models` (``jamrec train`` runs the same). Tasks pass
the dataset in memory: no caching, no result persistence. The flow holds the warehouse
slot, so two runs at once train one after the other, and a model that already has an
evaluated run on this build with the same config, seed and code is not retrained: two
concurrent trainings of one model on one build give one run and one decision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._assets import record_task, save_task
from flows._retry import warehouse_slot, write_report, writer
from jamrec.log import progress
from jamrec.models import ModelName
from jamrec.models.dataset import open_dataset
from jamrec.operations import comparison, pipeline, promotion, runs

load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
choose_models = task(name="choose-models", cache_policy=NO_CACHE)(pipeline.choose_models)
plan = task(name="plan-runs", cache_policy=NO_CACHE)(pipeline.plan)
train = task(name="train", cache_policy=NO_CACHE)(runs.train)
evaluate = task(name="evaluate", cache_policy=NO_CACHE)(runs.evaluate)
promote = writer("promote-and-serve")(promotion.promote_runs)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


@task(name="comparison-artifact", cache_policy=NO_CACHE)
def comparison_artifact(warehouse: Path | None) -> str:
    """Attach the models x protocols table to the flow run; return it as text."""
    text = comparison.comparison_text(warehouse)
    create_markdown_artifact(
        key="model-comparison", markdown=f"```\n{text}\n```", description="Model comparison"
    )
    return text


@flow(name="train-and-evaluate")
def train_and_evaluate(
    models: list[ModelName] | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    settings: dict[ModelName, dict[str, Any]] | None = None,
    tolerance: float = 0.0,
    refresh: bool = True,
    report: bool = True,
) -> dict:
    """Train, evaluate, record and promote models on the published warehouse; serve the
    new champions; rewrite the report.

    Args:
        models: The models to train (default: popularity, random, als, mbcf, hybrid,
            two_tower, and the oracle on generated data).
        seed: Seeds every random choice of the runs.
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        user_sample: Users in the full_sample protocol (champions are chosen on it).
        settings: Per-model settings, e.g. {"als": {"factors": 64}}; device and threads
            there are runtime options.
        tolerance: How far below the champion's validation NDCG@10 a challenger may be
            and still be promoted (0: never a worse run).
        refresh: Write the promoted models' recommendations with the promotion.
        report: Rewrite the report (reports/index.html) at the end.
    """
    with warehouse_slot():
        data = load_dataset(warehouse)
        new_runs = []
        todo = plan(choose_models(models, data), data, seed, settings, warehouse)
        for name, overrides in progress(todo, "model", name=lambda item: item[0]):
            run = train(name, data, seed, overrides)
            save_task(runs.save, warehouse, name)(run, data, warehouse)
            result = evaluate(run, data, seed, user_sample)
            new_runs.append(record_task(runs.record, warehouse, name)(run, result, warehouse))
        decisions = promote(new_runs, data, warehouse, tolerance, seed, user_sample, refresh)
        text = comparison_artifact(warehouse)
        page = rewrite_report(warehouse) if report else None
    return {
        "runs": new_runs,
        "promoted": [d.challenger for d in decisions if d.promoted],
        "recommendations": {
            d.model: d.recommendations for d in decisions if d.recommendations is not None
        },
        "comparison": text,
        "report": page,
    }


if __name__ == "__main__":
    print(train_and_evaluate()["comparison"])
