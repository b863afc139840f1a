"""``jamrec train`` without Prefect: every step of the ``train-and-evaluate`` flow in order,
as :func:`jamrec.build.pipeline.run_build` is of ``build-warehouse``.

plan (skip models that already have an evaluated run with the same build, config, seed
and code) -> per model: train, save, evaluate, record -> promote (champion/challenger) ->
refresh the served ``recommendations`` when a champion changed. The flow runs the same
functions as tasks; the CLI calls :func:`run_models`. Also the other multi-step jobs the
CLI and flows share: evaluating runs trained without evaluation, and the cold-start study.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from jamrec.errors import JamrecError
from jamrec.evaluation import coldstart
from jamrec.evaluation.protocols import evaluate as evaluate_protocols
from jamrec.log import log, progress
from jamrec.models import COLD_START_MODELS, check_names, create, default_models
from jamrec.models.base import Runtime
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.operations import runs
from jamrec.operations.comparison import comparison_text
from jamrec.provenance import code_version
from jamrec.warehouse.store import warehouse_at


@dataclass
class ModelsOutcome:
    """What :func:`run_models` did: the new runs, the promoted ones, the served lists."""

    runs: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    recommendations: dict[str, int] = field(default_factory=dict)
    comparison: str = ""
    pending: str | None = None  # what to run when the served lists could not be refreshed


def choose_models(names: list[str] | None, data: Dataset) -> list[str]:
    """``names`` checked (default: :func:`jamrec.models.default_models`)."""
    names = list(names) if names else default_models(data.truth is not None)
    check_names(names)
    if "oracle" in names and data.truth is None:
        raise JamrecError("the oracle needs generated data (the warehouse has no truth_ tables)")
    return names


def trained_already(con, model: str, build_id: str, config: dict, seed: int) -> str | None:
    """An evaluated run of ``model`` on ``build_id`` with this config, seed and code, if any."""
    rows = con.execute(
        "select run_id, config from model_runs where model = $m and build_id = $b "
        "and seed = $s and code_version = $c and status = 'evaluated' "
        "and purpose = 'standard' order by started_at desc",
        {"m": model, "b": build_id, "s": seed, "c": code_version()},
    ).fetchall()
    for run_id, stored in rows:
        if json.loads(stored) == config:
            return run_id
    return None


def plan(
    names: list[str], data: Dataset, seed: int, settings: dict | None, warehouse: Path | None
) -> list[tuple[str, dict | None]]:
    """The models that need a new run: those without an evaluated run on this build with
    the same configuration, seed and code (logged as skipped otherwise)."""
    con = warehouse_at(warehouse).connect_readonly()
    todo = []
    try:
        for name in names:
            overrides = (settings or {}).get(name)
            config = create(name, seed=seed, **(overrides or {})).config.model_dump()
            existing = trained_already(con, name, data.build_id, config, seed)
            if existing:
                log.info(
                    "%s: run %s already has this build, config, seed and code: skipped",
                    name,
                    existing,
                )
            else:
                todo.append((name, overrides))
    finally:
        con.close()
    return todo


def run_models(
    names: list[str] | None = None,
    seed: int = 0,
    warehouse: Path | None = None,
    user_sample: int = 5000,
    settings: dict[str, dict] | None = None,
    runtime: Runtime | dict | None = None,
    tolerance: float = 0.0,
    evaluate: bool = True,
    top_n: int = 20,
    skip_trained: bool = False,
) -> ModelsOutcome:
    """Train, save, evaluate, record and promote ``names`` (module docstring).

    ``settings`` overrides configs per model (``{"als": {"factors": 64}}``); ``runtime``
    (device, threads) applies to every model. ``evaluate=False`` only trains and saves
    (``jamrec evaluate`` later; nothing is promoted). ``skip_trained`` leaves out models
    that already have an evaluated run with this build, config, seed and code (the flows'
    incremental retraining); by default every model asked for is trained.
    """
    from jamrec.operations.promotion import promote_runs

    data = open_dataset(warehouse)
    outcome = ModelsOutcome()
    chosen = choose_models(names, data)
    todo = (
        plan(chosen, data, seed, settings, warehouse)
        if skip_trained
        else [(name, (settings or {}).get(name)) for name in chosen]
    )
    for name, overrides in progress(todo, "model", name=lambda item: item[0]):
        run = runs.train(name, data, seed, overrides, runtime)
        runs.save(run, data, warehouse)
        result = runs.evaluate(run, data, seed, user_sample) if evaluate else None
        outcome.runs.append(runs.record(run, result, warehouse))
    if evaluate and outcome.runs:
        decisions = promote_runs(
            outcome.runs, data, warehouse, tolerance, seed, user_sample, top_n=top_n
        )
        outcome.promoted = [d.challenger for d in decisions if d.promoted]
        outcome.recommendations = {
            d.model: d.recommendations for d in decisions if d.recommendations is not None
        }
        outcome.pending = next((d.pending for d in decisions if d.pending), None)
    outcome.comparison = comparison_text(warehouse)
    return outcome


def runs_to_evaluate(data: Dataset, warehouse: Path | None = None) -> list[str]:
    """Runs on the published build that were trained without evaluation, oldest first."""
    con = warehouse_at(warehouse).connect_readonly()
    try:
        rows = con.execute(
            "select run_id from model_runs where status = 'trained' and build_id = $b "
            "order by started_at",
            {"b": data.build_id},
        ).fetchall()
    finally:
        con.close()
    return [r for (r,) in rows]


def evaluate_runs(
    run_ids: list[str] | None = None,
    seed: int = 0,
    user_sample: int = 5000,
    warehouse: Path | None = None,
) -> list[str]:
    """Evaluate saved runs (default: every run on the published build without metrics)
    and record the results; returns the runs evaluated."""
    data = open_dataset(warehouse)
    run_ids = list(run_ids or runs_to_evaluate(data, warehouse))
    for run_id in run_ids:
        model, row = runs.load_run(run_id, warehouse)
        if row["build_id"] != data.build_id:
            raise JamrecError(
                f"run {run_id} was trained on build {row['build_id']}, not the published "
                f"{data.build_id}; retrain it with `jamrec train --models {row['model']}`"
            )
        start = time.perf_counter()
        result = evaluate_protocols(model, data, seed=seed, user_sample=user_sample)
        timings = {"evaluate_s": round(time.perf_counter() - start, 3), "evaluate": result.timings}
        runs.record_evaluation(run_id, result, timings, warehouse)
    return run_ids


def cold_start_study(
    names: list[str] | None = None,
    share: float = 0.1,
    seed: int = 0,
    settings: dict | None = None,
    warehouse: Path | None = None,
    runtime: Runtime | dict | None = None,
) -> list[str]:
    """The cold-start protocol: withhold a seeded share of the tracks with interactions,
    train each model without them, rank them; record the withheld tracks
    (``coldstart_tracks``) and every run (``purpose = 'cold_start'``, metrics under the
    ``cold_start`` and ``cold_start_catalogue`` protocols, split ``cold``)."""
    data = open_dataset(warehouse)
    names = list(names or COLD_START_MODELS) + (["oracle"] if data.truth is not None else [])
    check_names(names)
    cold = coldstart.withhold(data, share=share, seed=seed)
    log.info(
        "cold start: %d of %d tracks with interactions withheld (seed %d), %d users evaluated",
        len(cold.tracks),
        len(coldstart.interacted(data)),
        seed,
        len(cold.users),
    )
    with warehouse_at(warehouse).update("record cold-start tracks") as con:
        con.execute("delete from coldstart_tracks where build_id = $b", {"b": data.build_id})
        con.executemany(
            "insert into coldstart_tracks (build_id, seed, share, track_id) values (?, ?, ?, ?)",
            coldstart.withheld_rows(cold),
        )
    recorded = []
    for name in progress(names, "cold start, model"):
        run = runs.train(name, cold.train_view, seed, (settings or {}).get(name), runtime)
        run.purpose = "cold_start"
        run.build_id = data.build_id
        run.data_snapshot["withheld_tracks"] = len(cold.tracks)
        run.data_snapshot["withheld_share"] = share
        start = time.perf_counter()
        rows = coldstart.evaluate_cold_start(run.model, cold, seed=seed)
        run.timings["evaluate_s"] = round(time.perf_counter() - start, 3)
        recorded.append(runs.record(run, runs.evaluation_result(name, seed, rows), warehouse))
    return recorded


def cold_start_results(run_ids: list[str], warehouse: Path | None = None) -> list[tuple]:
    """``(model, protocol, value, ci_low, ci_high, n_users)`` of NDCG@10 for these
    cold-start runs, best first within each protocol."""
    con = warehouse_at(warehouse).connect_readonly()
    try:
        return con.execute(
            "select r.model, m.protocol, m.value, m.ci_low, m.ci_high, m.n_users "
            "from metrics m join model_runs r using (run_id) "
            "where m.run_id in (select unnest($ids)) and m.metric = 'ndcg' and m.k = 10 "
            "order by m.protocol, m.value desc",
            {"ids": run_ids},
        ).fetchall()
    finally:
        con.close()
