"""The ``train-and-evaluate`` flow: train every model on the published warehouse,
evaluate it under every protocol, save it and record the results.

Each task is one call of a :mod:`jamrec.runs` function (``jamrec train`` runs the same).
Tasks pass the dataset in memory: no caching, no result persistence. A model that already
has an evaluated run on this build with the same config, seed and code is not retrained.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import writer
from jamrec import promotion, runs
from jamrec.data import open_dataset

load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
plan = task(name="plan-runs", cache_policy=NO_CACHE)(runs.plan)
train = task(name="train", cache_policy=NO_CACHE)(runs.train)
save = task(name="save-model", cache_policy=NO_CACHE)(runs.save)
evaluate = task(name="evaluate", cache_policy=NO_CACHE)(runs.evaluate)
record = writer("record-run")(runs.record)


promote = writer("promote")(promotion.promote_runs)


@task(name="comparison-artifact", cache_policy=NO_CACHE)
def comparison_artifact(warehouse: Path | None) -> str:
    """Attach the models x protocols table to the flow run; return it as text."""
    text = runs.comparison_text(warehouse)
    create_markdown_artifact(
        key="model-comparison", markdown=f"```\n{text}\n```", description="Model comparison"
    )
    return text


@flow(name="train-and-evaluate")
def train_and_evaluate(
    models: list[str] | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    settings: dict[str, dict] | None = None,
    tolerance: float = 0.0,
) -> dict:
    """Train, evaluate, record and promote ``models`` (default: baselines, ALS, MBCF,
    hybrid, and the oracle on generated data); ``settings`` overrides configs, e.g.
    ``{"als": {"factors": 64}}``; ``tolerance`` is the promotion slack (see
    :mod:`jamrec.promotion`). Returns the new runs, the promoted ones and the comparison."""
    data = load_dataset(warehouse)
    new_runs = []
    for name, overrides in plan(
        models or runs.default_models(data), data, seed, settings, warehouse
    ):
        run = train(name, data, seed, overrides)
        save(run, data, warehouse)
        result = evaluate(run, data, seed, user_sample)
        new_runs.append(record(run, result, warehouse))
    decisions = promote(new_runs, data, warehouse, tolerance, seed, user_sample)
    return {
        "runs": new_runs,
        "promoted": [d.challenger for d in decisions if d.promoted],
        "comparison": comparison_artifact(warehouse),
    }


if __name__ == "__main__":
    print(train_and_evaluate()["comparison"])
