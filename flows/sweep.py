"""The ``sweep`` flow: tune a model with a seeded grid or random search.

Trials fan out as concurrent Prefect tasks; each receives the data and returns its
validation score, never touching the warehouse; the flow alone writes. The task runner
is a parameter: ``local`` (threads in this process, the default) or ``dask`` with
``dask_address`` pointing at a Dask scheduler (``tcp://HOST:8786``; without an address a
local cluster is started on loopback).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import writer
from jamrec.models.dataset import open_dataset
from jamrec.operations import pipeline, runs, sweep

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner


load_dataset = task(name="load-dataset", cache_policy=NO_CACHE)(open_dataset)
try_config = task(name="try-config", cache_policy=NO_CACHE)(sweep.try_config)
train = task(name="train-chosen", cache_policy=NO_CACHE)(runs.train)
save = task(name="save-model", cache_policy=NO_CACHE)(runs.save)
evaluate = task(name="evaluate-chosen", cache_policy=NO_CACHE)(runs.evaluate)
record_run = writer("record-run")(runs.record)
record_sweep = writer("record-sweep")(sweep.record)


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
    model: str, configs: list[dict], data, seed: int, user_sample: int, evaluation_seed: int
) -> list:
    futures = [
        try_config.submit(model, config, data, seed, user_sample, evaluation_seed)
        for config in configs
    ]
    return [f.result() for f in futures]


@flow(name="sweep")
def sweep_flow(
    model: str = "als",
    grid: dict[str, list] | None = None,
    n_random: int | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    runner: str = "local",
    dask_address: str | None = None,
) -> dict:
    """Try every configuration of ``grid`` (default: :data:`jamrec.operations.sweep.DEFAULT_GRIDS`,
    which has grids for ``als`` and ``mbcf`` only), or ``n_random`` of them; choose by
    validation NDCG@10; test and record the chosen one (not promoted)."""
    data = load_dataset(warehouse)
    evaluation = pipeline.evaluation_settings(None, user_sample)
    configs = sweep.configurations(grid or sweep.default_grid(model), n_random, seed)
    trials = _trials.with_options(task_runner=_task_runner(runner, dask_address))(
        model, configs, data, seed, user_sample, evaluation.seed
    )
    chosen = sweep.choose(trials)
    run = train(model, data, seed, chosen.config, None, evaluation)
    save(run, data, warehouse)
    run_id = record_run(run, evaluate(run, data, evaluation), warehouse)
    sweep_id = sweep.new_sweep_id(model)
    record_sweep(sweep_id, model, data.build_id, trials, chosen, run_id, warehouse)
    return {
        "sweep_id": sweep_id,
        "chosen": chosen.config,
        "val_ndcg_at_10": chosen.val_ndcg_at_10,
        "run_id": run_id,
        "trials": len(trials),
    }
