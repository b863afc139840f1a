"""The ``train-and-evaluate`` flow: train every model on the published warehouse,
evaluate it under every protocol, save it, record the results, promote, serve the new
champions' recommendations (written with the promotion, in one warehouse write), and
compare every pair of models.

Each task is one call of a :mod:`jamrec.operations` function, in the order of
:func:`jamrec.operations.pipeline.run_models` (``jamrec train`` runs the same). Tasks pass
the dataset in memory: no caching, no result persistence. The flow holds the warehouse
slot, so two runs at once train one after the other, and a model that already has an
evaluated run on this build with the same config, seed, evaluation settings and code is
not retrained: two concurrent trainings of one model on one build give one run and one
decision. ``protocol="temporal"`` trains on what happened before the build's time cut and
tests on what came after (those runs are compared, never promoted or served). A run that
fails or is interrupted is recorded as such, its saved model removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

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
from jamrec.operations.compare import Comparison, format_comparison, run_comparisons

load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
choose_models = task(name="choose-models", cache_policy=NO_CACHE)(pipeline.choose_models)
plan = task(name="plan-runs", cache_policy=NO_CACHE)(pipeline.plan)
train = task(name="train", cache_policy=NO_CACHE)(runs.train)
evaluate = task(name="evaluate", cache_policy=NO_CACHE)(runs.evaluate)
record_unfinished = writer("record-unfinished-run")(runs.record_unfinished)
promote = writer("promote-and-serve")(promotion.promote_runs)
compare = writer("compare-models")(run_comparisons)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


@task(name="comparison-artifact", cache_policy=NO_CACHE)
def comparison_artifact(
    warehouse: Path | None, purpose: str = "standard", paired: list[Comparison] | None = None
) -> str:
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
    models: list[ModelName] | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    settings: dict[ModelName, dict[str, Any]] | None = None,
    tolerance: float = 0.0,
    refresh: bool = True,
    report: bool = True,
    seeds: list[int] | None = None,
    protocol: Literal["leave_k_out", "temporal"] = "leave_k_out",
    evaluation_seed: int | None = None,
) -> dict:
    """Train, evaluate, record and promote models on the published warehouse; serve the
    new champions; compare every pair of models; rewrite the report.

    Args:
        models: The models to train (default: popularity, random, item_knn, als, mbcf,
            hybrid, two_tower, and the oracle on generated data).
        seed: Seeds every random choice of the runs (the training seed).
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        user_sample: Users in the full_sample protocol (champions are chosen on it).
        settings: Per-model settings, e.g. {"als": {"factors": 64}}; device and threads
            there are runtime options.
        tolerance: How far below the champion's validation NDCG@10 a challenger may be
            and still be promoted (0: never a worse run), when it is not significantly
            worse.
        refresh: Write the promoted models' recommendations with the promotion.
        report: Rewrite the report (reports/index.html) at the end.
        seeds: Train each model once per training seed (default: [seed]); the best seed
            on validation challenges the champion.
        protocol: leave_k_out (the splits) or temporal (before/after the build's time cut;
            compared, never promoted or served).
        evaluation_seed: Seeds the user sample, the sampled-100 negatives and the
            bootstrap (default: the evaluation_seed setting); never a model.
    """
    with warehouse_slot():
        data = load_dataset(warehouse, protocol)
        evaluation = pipeline.evaluation_settings(evaluation_seed, user_sample)
        run_seeds = pipeline.parse_seeds(seeds, seed)
        todo = plan(choose_models(models, data), data, run_seeds, settings, warehouse, evaluation)
        new_runs: list[str] = []
        decisions: list[promotion.Decision] = []
        group: list[str] = []
        # The served lists are read off the evaluation's full ranking when they will serve.
        top_n = runs.SERVED_TOP_N if protocol == "leave_k_out" and refresh else 0
        steps = progress(todo, "model", name=lambda item: f"{item[0]} (seed {item[2]})")
        for position, (name, overrides, run_seed) in enumerate(steps, start=1):
            run = None
            try:
                run = train(name, data, run_seed, overrides, None, evaluation)
                save_task(runs.save, warehouse, name)(run, data, warehouse)
                result = evaluate(run, data, evaluation, top_n)
                run_id = record_task(runs.record, warehouse, name)(run, result, warehouse)
            except BaseException as exc:
                record_unfinished(run, name, exc, data.build_id, run_seed, warehouse)
                raise
            new_runs.append(run_id)
            group.append(run_id)
            if position == len(todo) or todo[position][0] != name:
                if protocol == "leave_k_out":
                    decisions += promote(
                        group, data, warehouse, tolerance, evaluation, serve=refresh, top_n=top_n
                    )
                group = []
        paired = (
            compare(pipeline.COMPARED[protocol], warehouse, data.build_id, evaluation.seed)
            if new_runs
            else []
        )
        text = comparison_artifact(warehouse, runs.purpose_of(data), paired)
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
