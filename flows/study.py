"""The ``study`` flow: the original study's experiments (:mod:`jamrec.operations.study`,
``jamrec study``) on the published build, one task per experiment, each writing its rows to
``study_results`` as it ends. Its runs (``purpose = 'study'``) are never promoted. It writes
the warehouse, so it holds the warehouse slot like every writer flow. As in the cold-start
flow, an experiment is one plain task (a retry would train its models again). At the end
the report is rewritten: its first model section, "The study, re-run", reads
``study_results``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import warehouse_slot, write_report
from jamrec.operations import study as study_ops

# An experiment's name as a type: Prefect offers the names as choices and refuses any
# other when a run is created (built from EXPERIMENTS: one list of names).
if TYPE_CHECKING:
    ExperimentName = str
else:
    ExperimentName = Literal[tuple(study_ops.EXPERIMENTS)]

prepare = task(name="study-prepare", cache_policy=NO_CACHE)(study_ops.prepare)
run_experiment = task(name="study-experiment", cache_policy=NO_CACHE)(study_ops.run_experiment)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


@flow(name="study")
def study(
    experiments: list[ExperimentName] | None = None,
    seed: int = 0,
    evaluation_seed: int | None = None,
    probe_users: int = 1000,
    epochs: dict[ExperimentName, int] | None = None,
    steps: dict[ExperimentName, int] | None = None,
    warehouse: Path | None = None,
    report: bool = True,
) -> dict:
    """The study's experiments, each a task; returns the study id and the rows written
    per experiment.

    Args:
        experiments: The experiments, in this order (default: negatives,
            batch_size, learning_rate, als_curves, audio_ablation, per_user).
        seed: The training seed of every model.
        evaluation_seed: Seeds every user sample, probe, bootstrap and permutation test
            (default: the evaluation_seed setting); never a model.
        probe_users: Validation users probed after every step of the curves.
        epochs: Training budget per experiment, e.g. {"negatives": 5}: negatives (MBCF
            epochs), audio_ablation (hybrid's and two_tower's), als_curves (ALS
            iterations); default each model's own.
        steps: Optimiser steps of the study's grids: batch_size (default 50),
            learning_rate (default 100).
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        report: Rewrite the report (reports/index.html) at the end.
    """
    names = study_ops.check_experiments(experiments)
    with warehouse_slot():
        ctx = prepare(
            warehouse, seed, evaluation_seed, probe_users=probe_users, epochs=epochs, steps=steps
        )
        done = [run_experiment.with_options(name=f"study-{name}")(name, ctx) for name in names]
        page = rewrite_report(warehouse) if report else None
    return {
        "study_id": ctx.study_id,
        "rows": {d.name: len(d.rows) for d in done},
        "report": page,
    }


if __name__ == "__main__":
    print(study())
