"""The ``sweep`` flow: tune a model with a seeded grid or random search.

Trials fan out as concurrent Prefect tasks; each receives the data and returns its
validation score, never touching the warehouse; the flow alone writes. The task runner
is a parameter: ``local`` (threads in this process, the default) or ``dask`` with
``dask_address`` pointing at a Dask scheduler (``tcp://HOST:8786``; without an address a
local cluster is started on loopback).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._assets import record_task, save_task
from flows._retry import warehouse_slot, write_report, writer
from jamrec.log import setup_cli_logging
from jamrec.models import MODELS, ModelName
from jamrec.models.dataset import Dataset, open_dataset  # Dataset: the subflow's parameter type
from jamrec.operations import pipeline, runs, sweep

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner


load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
try_config = task(name="try-config", cache_policy=NO_CACHE)(sweep.try_config)
train = task(name="train-chosen", cache_policy=NO_CACHE)(runs.train)
evaluate = task(name="evaluate-chosen", cache_policy=NO_CACHE)(runs.evaluate)
record_sweep = writer("record-sweep")(sweep.record)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


def _task_runner(runner: str, dask_address: str | None) -> TaskRunner[Any]:
    if runner == "local":
        return ThreadPoolTaskRunner(max_workers=2)
    if runner == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(
            cluster_kwargs={"n_workers": 2, "threads_per_worker": 1, "host": "127.0.0.1"}
        )
    raise ValueError(f"runner must be 'local' or 'dask', not {runner!r}")


@flow(name="sweep-trials")
def _trials(
    model: str,
    configs: list[dict],
    data: Dataset,
    seed: int,
    user_sample: int,
    evaluation_seed: int,
) -> list[sweep.Trial]:
    futures = [
        try_config.submit(model, config, data, seed, user_sample, evaluation_seed)
        for config in configs
    ]
    return [f.result() for f in futures]


@flow(name="sweep")
def sweep_flow(
    model: ModelName = "als",
    grid: dict[str, list[Any]] | None = None,
    n_random: int | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    runner: Literal["local", "dask"] = "local",
    dask_address: str | None = None,
    report: bool = True,
    evaluation_seed: int | None = None,
) -> dict:
    """Tune a model: try every configuration of a grid (or some drawn at random), choose
    by validation NDCG@10, then train, test and record the chosen one.

    Args:
        model: The model to tune.
        grid: Settings to try, e.g. {"factors": [20, 40], "alpha": [10.0, 40.0]}
            (default: jamrec's default grid for als, mbcf and item_knn).
        n_random: Try only this many configurations, drawn with the seed.
        seed: Seeds the draw and every run.
        warehouse: The DuckDB file (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        user_sample: Users in the full_sample protocol the trials are scored on.
        evaluation_seed: Seeds the evaluation of every trial and of the chosen run
            (default: the evaluation_seed setting); never the training seed.
        runner: Where trials run: local (threads in this process) or dask.
        dask_address: A Dask scheduler, tcp://HOST:8786 (dask without it: a local cluster
            on 127.0.0.1).
        report: Rewrite the report (reports/index.html) at the end.
    """
    with warehouse_slot():
        data = load_dataset(warehouse)
        evaluation = pipeline.evaluation_settings(evaluation_seed, user_sample)
        configs = sweep.configurations(sweep.grid_for(model, grid), n_random, seed)
        trials = _trials.with_options(task_runner=_task_runner(runner, dask_address))(
            model, configs, data, seed, user_sample, evaluation.seed
        )
        chosen = sweep.choose(trials)
        run = train(model, data, seed, chosen.config, None, evaluation)
        save_task(runs.save, warehouse, model)(run, data, warehouse)
        result = evaluate(run, data, evaluation)
        run_id = record_task(runs.record, warehouse, model)(run, result, warehouse)
        sweep_id = sweep.new_sweep_id(model)
        record_sweep(sweep_id, model, data.build_id, trials, chosen, run_id, warehouse)
        if report:
            rewrite_report(warehouse)
    return {
        "sweep_id": sweep_id,
        "chosen": chosen.config,
        "val_ndcg_at_10": chosen.val_ndcg_at_10,
        "run_id": run_id,
        "trials": len(trials),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m flows.sweep [--model als] [--n-random N] ...``: the flow in local mode."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m flows.sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", default="als", choices=sorted(MODELS))
    parser.add_argument("--grid", type=json.loads, default=None, help="JSON: {setting: [values]}")
    parser.add_argument("--n-random", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--user-sample", type=int, default=5000)
    parser.add_argument("--runner", choices=["local", "dask"], default="local")
    parser.add_argument("--dask-address", default=None)
    parser.add_argument("--warehouse", type=Path, default=None)
    args = parser.parse_args(argv)
    setup_cli_logging()
    outcome = sweep_flow(
        model=args.model,
        grid=args.grid,
        n_random=args.n_random,
        seed=args.seed,
        warehouse=args.warehouse,
        user_sample=args.user_sample,
        runner=args.runner,
        dask_address=args.dask_address,
    )
    print(json.dumps(outcome, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
