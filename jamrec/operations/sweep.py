"""Tuning sweeps: a seeded grid or random search over a model's settings.

Each configuration is trained on the train split and scored on validation only
(NDCG@10, ``full_sample``); the best is then evaluated on test under every protocol and
recorded as an ordinary run. Test is never looked at to choose. The functions that run a
configuration take their data and return results: only the caller writes to the
warehouse (so they can run on any worker, e.g. a Dask cluster).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jamrec.errors import JamrecError
from jamrec.log import log, progress
from jamrec.models.dataset import Dataset
from jamrec.provenance import new_id, now
from jamrec.warehouse import history
from jamrec.warehouse.store import warehouse_at

# jamrec's default sweep grids, for ALS, MBCF and item-kNN (other models need a grid): ALS
# factors, regularisation and alpha; MBCF learning rate, batch size and negatives per
# positive. They are jamrec's tuning ranges, not the study's: the study's own grids (batch
# size and learning rate over optimiser steps) are experiments of `jamrec study`
# (jamrec/operations/study.py, STUDY_GRIDS).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "als": {"factors": [20, 40, 80], "regularization": [0.01, 0.1], "alpha": [10.0, 40.0]},
    "mbcf": {"lr": [1e-3, 3e-3], "batch_size": [1024, 4096], "negatives_per_positive": [0, 2, 4]},
    # Dacrema et al.'s ranges for ItemKNN CF, coarsely: neighbours and shrinkage.
    "item_knn": {"neighbours": [20, 50, 100, 200], "shrinkage": [0.0, 10.0, 100.0, 500.0]},
}


@dataclass
class Trial:
    """One configuration's outcome (no model attached: cheap to ship between workers)."""

    config: dict
    val_ndcg_at_10: float
    seconds: float


def grid_for(model: str, grid: dict[str, list] | None = None) -> dict[str, list]:
    """``grid``, or the default sweep of ``model`` (:data:`DEFAULT_GRIDS`); a clear error
    for a model that has none."""
    if grid:
        return grid
    if model not in DEFAULT_GRIDS:
        raise JamrecError(
            f"no default grid for {model!r} (defaults: {', '.join(sorted(DEFAULT_GRIDS))}); "
            "give one (--grid, or the flow's grid parameter)"
        )
    return DEFAULT_GRIDS[model]


def configurations(grid: dict[str, list], n_random: int | None = None, seed: int = 0) -> list[dict]:
    """Every combination of ``grid`` (sorted keys), or ``n_random`` of them drawn with ``seed``."""
    keys = sorted(grid)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    if n_random is not None and n_random < len(combos):
        picks = np.random.default_rng(seed).choice(len(combos), size=n_random, replace=False)
        combos = [combos[i] for i in sorted(picks)]
    return combos


def try_config(
    model: str,
    config: dict,
    data: Dataset,
    seed: int = 0,
    user_sample: int = 5000,
    evaluation_seed: int = 0,
) -> Trial:
    """Train one configuration (training ``seed``) and score it on validation (NDCG@10,
    ``full_sample``, users drawn with ``evaluation_seed``: the same for every trial).

    The trial trains with the validation probe of :func:`runs.train` (its early stopping
    decides on it), so the chosen configuration, trained again as a run, is the same model.
    """
    from jamrec.evaluation.protocols import evaluate
    from jamrec.models import create
    from jamrec.models.base import TrainData
    from jamrec.operations import runs

    start = time.perf_counter()
    untrained = create(model, seed=seed, **config)
    probe = runs.training_probe(untrained, data)
    fitted = untrained.fit(TrainData.from_dataset(data, probe=probe))
    result = evaluate(
        fitted,
        data,
        splits=("val",),
        protocols=("full_sample",),
        seed=evaluation_seed,
        user_sample=user_sample,
        n_boot=100,
    )
    value = result.value("full_sample", "val", "ndcg", 10)
    seconds = time.perf_counter() - start
    log.info("sweep %s %s: val NDCG@10 %.4f (%.1f s)", model, config, value, seconds)
    return Trial(config, float(value), round(seconds, 2))


def choose(trials: list[Trial]) -> Trial:
    """The trial with the best validation NDCG@10 (ties: the first in grid order)."""
    return max(trials, key=lambda t: (t.val_ndcg_at_10, -trials.index(t)))


def new_sweep_id(model: str) -> str:
    """``sweep-als-20261126T190000-1a2b``."""
    return new_id(f"sweep-{model}")


def record(
    sweep_id: str,
    model: str,
    build_id: str,
    trials: list[Trial],
    chosen: Trial,
    run_id: str | None,
    warehouse: Path | None = None,
) -> None:
    """Write every trial to ``sweeps`` (one warehouse write), marking the chosen one."""
    with warehouse_at(warehouse).update(f"record {sweep_id}") as con:
        con.executemany(
            history.insert_sql("sweeps"),
            [
                (
                    sweep_id,
                    model,
                    build_id,
                    json.dumps(t.config, sort_keys=True),
                    t.val_ndcg_at_10,
                    t is chosen,
                    run_id if t is chosen else None,
                    t.seconds,
                    now(),
                )
                for t in trials
            ],
        )


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did: the sweep, the trials, the chosen one and its run."""

    sweep_id: str
    model: str
    trials: list[Trial]
    chosen: Trial
    run_id: str


def run_sweep(
    model: str = "als",
    grid: dict[str, list] | None = None,
    n_random: int | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    evaluation_seed: int | None = None,
) -> SweepOutcome:
    """``jamrec sweep`` without Prefect: every configuration of ``grid`` (default: the
    default grid of ``model``, :data:`DEFAULT_GRIDS`) or ``n_random`` of them, one after
    the other; the best on validation NDCG@10 is trained, tested and recorded as a run,
    every trial in ``sweeps``. Every trial and the chosen run are evaluated with one
    evaluation seed (default: the ``evaluation_seed`` setting), never the training seed.
    The ``sweep`` flow runs the same functions as tasks, with the
    trials concurrent (threads or a Dask cluster)."""
    from jamrec.models import check_names
    from jamrec.models.dataset import open_dataset
    from jamrec.operations import runs
    from jamrec.operations.pipeline import evaluation_settings

    check_names([model])
    grid = grid_for(model, grid)
    data = open_dataset(warehouse)
    evaluation = evaluation_settings(evaluation_seed, user_sample)
    configs = configurations(grid, n_random, seed)
    trials = [
        try_config(model, config, data, seed, user_sample, evaluation.seed)
        for config in progress(configs, f"sweep {model}, configuration", name=str)
    ]
    chosen = choose(trials)
    log.info("sweep %s: chose %s (val NDCG@10 %.4f)", model, chosen.config, chosen.val_ndcg_at_10)
    run = runs.train(model, data, seed, chosen.config, None, evaluation)
    runs.save(run, data, warehouse)
    run_id = runs.record(run, runs.evaluate(run, data, evaluation), warehouse)
    sweep_id = new_sweep_id(model)
    record(sweep_id, model, data.build_id, trials, chosen, run_id, warehouse)
    return SweepOutcome(sweep_id, model, trials, chosen, run_id)
