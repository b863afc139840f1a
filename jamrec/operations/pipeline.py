"""``jamrec train`` without Prefect: every step of the ``train-and-evaluate`` flow in order,
as :func:`jamrec.build.pipeline.run_build` is of ``build-warehouse``.

plan (skip models that already have an evaluated run with the same build, config, seed,
evaluation settings and code) -> per model and training seed: train, save, evaluate,
record -> promote (champion/challenger) -> refresh the served ``recommendations`` when a
champion changed -> compare every pair of models (``comparisons``). The flow runs the same
functions as tasks; the CLI calls :func:`run_models`. Also the other multi-step jobs the
CLI and flows share: evaluating runs trained without evaluation, and the cold-start study.

Two seeds never mix: a run's training seed (``--seed``/``--seeds``) seeds the model, the
evaluation seed (:class:`jamrec.evaluation.protocols.EvaluationSettings`, default from
the ``evaluation_seed`` setting) the evaluation. The split protocol says which splits
train and test: ``leave_k_out`` (``splits``) or ``temporal`` (``splits_temporal``;
temporal runs are compared with each other, never promoted or served).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from jamrec import interrupts, timing
from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.evaluation import coldstart
from jamrec.evaluation.protocols import EvaluationSettings
from jamrec.files import check_writable
from jamrec.log import log, progress
from jamrec.models import COLD_START_MODELS, check_names, create, default_models
from jamrec.models.base import Runtime
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.operations import runs
from jamrec.operations.compare import format_comparison, run_comparisons
from jamrec.operations.comparison import comparison_text
from jamrec.provenance import code_version
from jamrec.warehouse.store import warehouse_at

# What every train-and-evaluate run compares afterwards: NDCG@10 on test, under the
# protocol every model has, under the full ranking, and under sampled_100 (the study's
# likely set-up, for the report's verdict on its ranking of the models); temporal runs:
# their two.
COMPARED = {
    "leave_k_out": [
        ("full_sample", "test", "ndcg", 10),
        ("full", "test", "ndcg", 10),
        ("sampled_100", "test", "ndcg", 10),
    ],
    "temporal": [("temporal_sample", "test", "ndcg", 10), ("temporal", "test", "ndcg", 10)],
}


@dataclass
class ModelsOutcome:
    """What :func:`run_models` did: the new runs, the promoted ones, the served lists."""

    runs: list[str] = field(default_factory=list)
    promoted: list[str] = field(default_factory=list)
    recommendations: dict[str, int] = field(default_factory=dict)
    comparison: str = ""
    paired: str = ""  # the paired comparison of every pair of models (plain text)
    pending: str | None = None  # what to run when the served lists could not be refreshed


def evaluation_settings(
    evaluation_seed: int | None = None, user_sample: int = 5000, n_boot: int = 1000
) -> EvaluationSettings:
    """The evaluation settings of a job: ``evaluation_seed`` defaults to the configured
    ``evaluation_seed`` setting (``JAMREC_EVALUATION_SEED``, 0)."""
    if evaluation_seed is None:
        evaluation_seed = get_settings().evaluation_seed
    return EvaluationSettings(evaluation_seed, user_sample, n_boot)


def choose_models(names: list[str] | None, data: Dataset) -> list[str]:
    """``names`` checked (default: :func:`jamrec.models.default_models`)."""
    names = list(names) if names else default_models(data.truth is not None)
    check_names(names)
    if "oracle" in names and data.truth is None:
        raise JamrecError("the oracle needs generated data (the warehouse has no truth_ tables)")
    return names


def trained_already(
    con: duckdb.DuckDBPyConnection,
    model: str,
    build_id: str,
    config: dict,
    seed: int,
    settings: EvaluationSettings | None = None,
    purpose: str = "standard",
) -> str | None:
    """An evaluated run of ``model`` on ``build_id`` with this config, training seed,
    evaluation settings, purpose and code, if any."""
    settings = settings or EvaluationSettings()
    rows = con.execute(
        "select run_id, config from model_runs where model = $m and build_id = $b "
        "and seed = $s and code_version = $c and status = 'evaluated' "
        "and purpose = $purpose and evaluation_seed = $e and user_sample = $n "
        "and n_boot = $boot order by started_at desc",
        {
            "m": model,
            "b": build_id,
            "s": seed,
            "c": code_version(),
            "purpose": purpose,
            "e": settings.seed,
            "n": settings.user_sample,
            "boot": settings.n_boot,
        },
    ).fetchall()
    for run_id, stored in rows:
        if json.loads(stored) == config:
            return run_id
    return None


def plan(
    names: list[str],
    data: Dataset,
    seeds: int | list[int],
    settings: dict | None,
    warehouse: Path | None,
    evaluation: EvaluationSettings | None = None,
) -> list[tuple[str, dict | None, int]]:
    """``(model, overrides, seed)`` for each model and training seed that needs a new run:
    those without an evaluated run on this build with the same configuration, seed,
    evaluation settings and code (logged as skipped otherwise)."""
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    con = warehouse_at(warehouse).connect_readonly()
    todo = []
    try:
        for name in names:
            overrides = (settings or {}).get(name)
            for seed in seeds:
                config = create(name, seed=seed, **(overrides or {})).config.model_dump()
                existing = trained_already(
                    con, name, data.build_id, config, seed, evaluation, runs.purpose_of(data)
                )
                if existing:
                    log.info(
                        "%s seed %d: run %s already has this build, config, seed, evaluation "
                        "settings and code: skipped",
                        name,
                        seed,
                        existing,
                    )
                else:
                    todo.append((name, overrides, seed))
    finally:
        con.close()
    return todo


def parse_seeds(seeds: int | str | list[int] | None, default: int = 0) -> list[int]:
    """Training seeds from ``0,1,2`` (or a list, or one int); duplicates kept out, order kept."""
    if seeds is None:
        return [default]
    if isinstance(seeds, int):
        return [seeds]
    if isinstance(seeds, str):
        try:
            values = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise JamrecError(f"--seeds {seeds!r}: expected integers, e.g. 0,1,2") from None
    else:
        values = [int(s) for s in seeds]
    if not values:
        raise JamrecError("give at least one training seed, e.g. --seeds 0,1,2")
    return list(dict.fromkeys(values))


def compare_after_training(
    data: Dataset, warehouse: Path | None, evaluation: EvaluationSettings
) -> str:
    """Record the paired comparisons of every model on this build (test NDCG@10, the
    protocols of :data:`COMPARED`); the first one as text."""
    done = run_comparisons(COMPARED[data.protocol], warehouse, data.build_id, evaluation.seed)
    return format_comparison(done[0]) if done else ""


@timing.job_of("jamrec train")
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
    seeds: list[int] | str | None = None,
    protocol: str = "leave_k_out",
    evaluation_seed: int | None = None,
    n_boot: int = 1000,
    serve: bool = True,
) -> ModelsOutcome:
    """Train, save, evaluate, record and promote ``names`` (module docstring).

    ``seeds`` (``[0, 1, 2]`` or ``"0,1,2"``; default ``[seed]``) trains each model once
    per training seed; ``protocol``
    chooses the splits (``leave_k_out`` or ``temporal``; temporal runs are neither promoted
    nor served). ``evaluation_seed``, ``user_sample`` and ``n_boot`` are the evaluation
    settings (:func:`evaluation_settings`). ``settings`` overrides configs per model
    (``{"als": {"factors": 64}}``); ``runtime`` (device, threads) applies to every model.
    ``evaluate=False`` only trains and saves (``jamrec evaluate`` later; nothing is
    promoted). ``skip_trained`` leaves out models that already have an evaluated run with
    this build, config, seed, evaluation settings and code (the flows' incremental
    retraining); by default every model asked for is trained. ``serve=False`` records the
    promotions without recomputing the served ``recommendations`` (they are then reported
    as pending, with the command that refreshes them).
    """
    from jamrec.operations.promotion import promote_runs

    store = warehouse_at(warehouse)
    # Refuse a read-only folder before any training, not after it.
    store.check_writable("jamrec train")
    check_writable(runs.models_dir(warehouse), "jamrec train (its saved models)")
    runs.clean_orphans(warehouse)
    data = open_dataset(warehouse, protocol)
    evaluation = evaluation_settings(evaluation_seed, user_sample, n_boot)
    seeds = parse_seeds(seeds, seed)
    outcome = ModelsOutcome()
    chosen = choose_models(names, data)
    todo = (
        plan(chosen, data, seeds, settings, warehouse, evaluation)
        if skip_trained
        else [(name, (settings or {}).get(name), s) for name in chosen for s in seeds]
    )
    promote = evaluate and protocol == "leave_k_out"
    group: list[str] = []  # the runs of one model (one per training seed)
    steps = progress(todo, "model", name=lambda item: f"{item[0]} (seed {item[2]}, {protocol})")
    for position, (name, overrides, run_seed) in enumerate(steps, start=1):
        run_id = _one_run(
            name,
            overrides,
            data,
            run_seed,
            runtime,
            evaluate,
            evaluation,
            warehouse,
            top_n if promote and serve else 0,
        )
        outcome.runs.append(run_id)
        group.append(run_id)
        last_of_model = position == len(todo) or todo[position][0] != name
        if promote and last_of_model:
            # Decided (and the new champion's lists served, in the same write) as soon as
            # a model's seeds are done, its best seed challenging: an interruption later
            # leaves every recorded model decided.
            decisions = promote_runs(
                group, data, warehouse, tolerance, evaluation, serve=serve, top_n=top_n
            )
            outcome.promoted += [d.challenger for d in decisions if d.promoted]
            outcome.recommendations.update(
                {d.model: d.recommendations for d in decisions if d.recommendations is not None}
            )
            outcome.pending = next((d.pending for d in decisions if d.pending), outcome.pending)
        if last_of_model:
            group = []
    if evaluate and outcome.runs:
        outcome.paired = compare_after_training(data, warehouse, evaluation)
    outcome.comparison = comparison_text(warehouse, purpose=runs.purpose_of(data))
    return outcome


def _one_run(
    name: str,
    overrides: dict | None,
    data: Dataset,
    seed: int,
    runtime: Runtime | dict | None,
    evaluate: bool,
    evaluation: EvaluationSettings,
    warehouse: Path | None,
    top_n: int = 0,
) -> str:
    """Train, save, evaluate and record one run. A run that fails or is interrupted
    (SIGINT, SIGTERM) at any point is recorded as ``failed`` / ``interrupted`` with its
    saved model removed, then the error goes on. ``top_n``: the evaluation also keeps the
    lists a promotion would serve (:func:`runs.evaluate`)."""
    run = None
    try:
        run = runs.train(name, data, seed, overrides, runtime, evaluation)
        runs.save(run, data, warehouse)
        result = runs.evaluate(run, data, evaluation, top_n) if evaluate else None
        return runs.record(run, result, warehouse)
    except BaseException as exc:
        with interrupts.deferred():
            try:
                runs.record_unfinished(run, name, exc, data.build_id, seed, warehouse)
            except Exception as problem:
                log.error("could not record the unfinished run of %s: %s", name, problem)
        if interrupts.is_interruption(exc):
            raise interrupts.as_interrupted(exc) from None
        raise


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
    evaluation_seed: int | None = None,
    user_sample: int = 5000,
    warehouse: Path | None = None,
    n_boot: int = 1000,
) -> list[str]:
    """Evaluate saved runs (default: every run on the published build without metrics)
    with the evaluation settings (:func:`evaluation_settings`) and record the results;
    returns the runs evaluated."""
    warehouse_at(warehouse).check_writable("jamrec evaluate")
    settings = evaluation_settings(evaluation_seed, user_sample, n_boot)
    datasets: dict[str, Dataset] = {}
    run_ids = list(run_ids or runs_to_evaluate(open_dataset(warehouse), warehouse))
    for run_id in run_ids:
        model, row = runs.load_run(run_id, warehouse)
        protocol = "temporal" if row.get("purpose") == "temporal" else "leave_k_out"
        if protocol not in datasets:
            datasets[protocol] = open_dataset(warehouse, protocol)
        data = datasets[protocol]
        if row["build_id"] != data.build_id:
            raise JamrecError(
                f"run {run_id} was trained on build {row['build_id']}, not the published "
                f"{data.build_id}; retrain it with `jamrec train --models {row['model']}`"
            )
        # the same evaluation as a fresh run's: protocols, beyond-accuracy, fold-in
        timings: dict[str, Any] = {}
        result = runs.evaluate_model(model, data, settings, timings)
        runs.record_evaluation(run_id, result, timings, warehouse)
    return run_ids


@timing.job_of("jamrec coldstart")
def cold_start_study(
    names: list[str] | None = None,
    share: float = 0.1,
    seed: int = 0,
    settings: dict | None = None,
    warehouse: Path | None = None,
    runtime: Runtime | dict | None = None,
    evaluation_seed: int | None = None,
) -> list[str]:
    """The cold-start protocol: withhold a seeded share of the tracks with interactions
    (``seed``: which tracks, and the models' training seed), train each model without
    them, rank them (with the evaluation seed); record the withheld tracks
    (``coldstart_tracks``) and every run (``purpose = 'cold_start'``, metrics and per-user
    results under the ``cold_start`` and ``cold_start_catalogue`` protocols, split
    ``cold``)."""
    warehouse_at(warehouse).check_writable("jamrec coldstart")
    evaluation = evaluation_settings(evaluation_seed)
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
        run = runs.train(
            name, cold.train_view, seed, (settings or {}).get(name), runtime, evaluation
        )
        run.purpose = "cold_start"
        run.build_id = data.build_id
        run.data_snapshot["withheld_tracks"] = len(cold.tracks)
        run.data_snapshot["withheld_share"] = share
        start = time.perf_counter()
        per_user: list = []
        rows = coldstart.evaluate_cold_start(
            run.model, cold, seed=evaluation.seed, n_boot=evaluation.n_boot, per_user=per_user
        )
        run.timings["evaluate_s"] = round(time.perf_counter() - start, 3)
        users = sum(len(block.users) for block in per_user)
        run.stages.append(timing.Timing.since("evaluate", start, rows=users, model=name))
        result = runs.evaluation_result(name, rows, evaluation)
        result.per_user = per_user
        recorded.append(runs.record(run, result, warehouse))
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
