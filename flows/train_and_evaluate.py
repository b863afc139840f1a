"""The ``train-and-evaluate`` flow: train every model on the published warehouse,
evaluate it under every protocol, save it, record the results, promote, and refresh the
served recommendations when a champion changed.

Each task is one call of a :mod:`jamrec.operations` function, in the order of
:func:`jamrec.operations.pipeline.run_models` (``jamrec train`` runs the same). Tasks pass
the dataset in memory: no caching, no result persistence. A model that already has an
evaluated run on this build with the same config, seed, evaluation settings and code is
not retrained. ``protocol="temporal"`` trains on what happened before the build's time cut
and tests on what came after (those runs are compared, never promoted or served).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import writer
from jamrec.log import log
from jamrec.models.dataset import open_dataset
from jamrec.operations import comparison, pipeline, promotion, recommendations, runs
from jamrec.operations.compare import format_comparison, run_comparisons

load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
choose_models = task(name="choose-models", cache_policy=NO_CACHE)(pipeline.choose_models)
plan = task(name="plan-runs", cache_policy=NO_CACHE)(pipeline.plan)
train = task(name="train", cache_policy=NO_CACHE)(runs.train)
save = task(name="save-model", cache_policy=NO_CACHE)(runs.save)
evaluate = task(name="evaluate", cache_policy=NO_CACHE)(runs.evaluate)
record = writer("record-run")(runs.record)
promote = writer("promote")(promotion.promote_runs)
refresh_recommendations = writer("refresh-recommendations")(recommendations.refresh)
compare = writer("compare-models")(run_comparisons)


@task(name="comparison-artifact", cache_policy=NO_CACHE)
def comparison_artifact(warehouse: Path | None, purpose: str = "standard", paired=None) -> str:
    """Attach the models x protocols table (and the paired comparisons) to the flow run;
    return it as text."""
    text = comparison.comparison_text(warehouse, purpose=purpose)
    if paired:
        text += "\n\n" + "\n\n".join(format_comparison(c) for c in paired)
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
    refresh: bool = True,
    seeds: list[int] | None = None,
    protocol: str = "leave_k_out",
    evaluation_seed: int | None = None,
) -> dict:
    """Train, evaluate, record and promote ``models`` (default: baselines, item-kNN, ALS,
    MBCF, hybrid, two-tower, and the oracle on generated data); ``settings`` overrides
    configs, e.g. ``{"als": {"factors": 64}}`` (``device`` and ``threads`` there are runtime
    options); ``seeds`` trains each model once per training seed (default ``[seed]``);
    ``protocol`` is ``leave_k_out`` or ``temporal``; ``evaluation_seed`` seeds the
    evaluation (default: the ``evaluation_seed`` setting); ``tolerance`` is the promotion
    slack (:mod:`jamrec.operations.promotion`); ``refresh`` rewrites the served
    recommendations when a champion changed. Returns the new runs, the promoted ones and
    the comparison, with every pair of models compared."""
    data = load_dataset(warehouse, protocol)
    evaluation = pipeline.evaluation_settings(evaluation_seed, user_sample)
    new_runs = []
    seeds = pipeline.parse_seeds(seeds, seed)
    todo = plan(choose_models(models, data), data, seeds, settings, warehouse, evaluation)
    for position, (name, overrides, run_seed) in enumerate(todo, start=1):
        log.info("model %d of %d: %s (seed %d, %s)", position, len(todo), name, run_seed, protocol)
        run = train(name, data, run_seed, overrides, None, evaluation)
        save(run, data, warehouse)
        result = evaluate(run, data, evaluation)
        new_runs.append(record(run, result, warehouse))
    promoted, served = [], {}
    if protocol == "leave_k_out":
        decisions = promote(new_runs, data, warehouse, tolerance, evaluation)
        promoted = [d.challenger for d in decisions if d.promoted]
        served = refresh_recommendations(data, warehouse) if promoted and refresh else {}
    paired = (
        compare(pipeline.COMPARED[protocol], warehouse, data.build_id, evaluation.seed)
        if new_runs
        else []
    )
    return {
        "runs": new_runs,
        "promoted": promoted,
        "recommendations": served,
        "comparison": comparison_artifact(warehouse, runs.purpose_of(data), paired),
    }


if __name__ == "__main__":
    print(train_and_evaluate()["comparison"])
