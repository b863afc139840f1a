"""Model runs: train, evaluate, save, and record the results in the warehouse.

Each function is one step of ``jamrec train`` / ``jamrec evaluate`` and of the
``train-and-evaluate`` flow. Results land in ``model_runs``, ``metrics`` and
``training_curves`` (kept across warehouse rebuilds); models are saved under
``warehouse/models/<run_id>/`` in their library's own format, with the id maps of the
build they were trained on (``ids.npz``), so they can be re-read on a later build.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jamrec import builds
from jamrec.config import get_settings
from jamrec.data import Dataset
from jamrec.errors import JamrecError
from jamrec.log import log
from jamrec.models import create
from jamrec.models.base import Recommender, TrainData
from jamrec.models.base import load as load_model
from jamrec.warehouse import Warehouse, table_names

TABLES_DDL = {
    "model_runs": """
        create table if not exists model_runs (
            run_id varchar not null,
            build_id varchar not null,
            model varchar not null,
            config json,
            seed integer,
            data_snapshot json,
            started_at timestamptz,
            finished_at timestamptz,
            status varchar not null,
            timings json,
            model_path varchar,
            code_version varchar,
            is_champion boolean default false,
            promotion_note varchar,
            error varchar,
            purpose varchar default 'standard'
        )""",
    "metrics": """
        create table if not exists metrics (
            run_id varchar not null,
            protocol varchar not null,
            split varchar not null,
            metric varchar not null,
            k integer,
            value double,
            ci_low double,
            ci_high double,
            n_users integer
        )""",
    "training_curves": """
        create table if not exists training_curves (
            run_id varchar not null,
            step integer not null,
            loss double,
            val_ndcg_at_10 double,
            seconds double
        )""",
}


@dataclass
class TrainedRun:
    """A model trained in this process, with what its run row will record."""

    run_id: str
    model: Recommender
    build_id: str
    seed: int
    started_at: object
    curve: list[tuple[int, float | None, float | None, float]] = field(default_factory=list)
    purpose: str = "standard"  # or "cold_start": trained on a view without the withheld tracks
    timings: dict = field(default_factory=dict)
    data_snapshot: dict = field(default_factory=dict)
    model_path: str | None = None


def default_models(data: Dataset) -> list[str]:
    """The models a plain ``jamrec train`` trains: the study's three, the baselines, the
    two-tower hybrid, and the oracle when the warehouse holds the planted truth."""
    names = ["popularity", "random", "als", "mbcf", "hybrid", "two_tower"]
    return names + (["oracle"] if data.truth is not None else [])


def plan(
    names: list[str], data: Dataset, seed: int, settings: dict | None, warehouse: Path | None
) -> list[tuple[str, dict | None]]:
    """The models that need a new run: those without an evaluated run on this build with
    the same configuration, seed and code (logged as skipped otherwise)."""
    from jamrec.incremental import trained_already

    store = Warehouse(Path(warehouse or get_settings().warehouse), get_settings().lock_timeout_s)
    con = store.connect_readonly()
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


def new_run_id(model: str) -> str:
    """``als-20261126T180000-1a2b``: sortable by start time, unique."""
    return f"{model}-{builds.now():%Y%m%dT%H%M%S}-{os.urandom(2).hex()}"


def train(name: str, data: Dataset, seed: int = 0, config: dict | None = None) -> TrainedRun:
    """Fit model ``name`` on the dataset's train split, logging each epoch/iteration.

    Validation NDCG@10 is probed after each step on a fixed sample of val users.
    """
    from jamrec.evaluate import val_probe

    model = create(name, seed=seed, **(config or {}))
    run = TrainedRun(new_run_id(name), model, data.build_id, seed, builds.now())
    start = time.perf_counter()

    def on_step(step: int, loss: float | None, ndcg: float | None) -> None:
        elapsed = time.perf_counter() - start
        run.curve.append((step, loss, ndcg, elapsed))
        shown = [f"step {step}"]
        if loss is not None:
            shown.append(f"loss {loss:.4f}")
        if ndcg is not None:
            shown.append(f"val NDCG@10 {ndcg:.4f}")
        log.info("train %s: %s (%.1f s)", name, ", ".join(shown), elapsed)

    train_data = TrainData.from_dataset(data, probe=val_probe(data, seed=seed), on_step=on_step)
    model.fit(train_data)
    run.timings["fit_s"] = round(time.perf_counter() - start, 3)
    run.timings.update(getattr(model, "stats", {}) or {})
    run.data_snapshot = {
        "build_id": data.build_id,
        "inputs_fingerprint": data.inputs_fingerprint,
        "users": data.n_users,
        "tracks": data.n_tracks,
        "train_rows": int(data.train.nnz),
    }
    log.info("trained %s in %.1f s (run %s)", name, run.timings["fit_s"], run.run_id)
    return run


def save(run: TrainedRun, data: Dataset, warehouse: Path | None = None) -> Path:
    """Save the model under ``<warehouse folder>/models/<run_id>/`` with the build's id maps."""
    folder = models_dir(warehouse) / run.run_id
    run.model.save(folder)
    np.savez(folder / "ids.npz", users=data.users.astype(str), tracks=data.tracks.astype(str))
    run.model_path = str(folder)
    return folder


def models_dir(warehouse: Path | None = None) -> Path:
    """Where the models of the warehouse at ``warehouse`` are saved: ``models/`` beside it."""
    return Path(warehouse or get_settings().warehouse).parent / "models"


def evaluate(run: TrainedRun, data: Dataset, seed: int = 0, user_sample: int = 5000):
    """Every applicable protocol on val and test (see :mod:`jamrec.evaluate`)."""
    from jamrec import evaluate as evaluation
    from jamrec.beyond import beyond_accuracy

    start = time.perf_counter()
    result = evaluation.evaluate(run.model, data, seed=seed, user_sample=user_sample)
    run.timings["evaluate_s"] = round(time.perf_counter() - start, 3)
    run.timings["evaluate"] = result.timings
    start = time.perf_counter()
    result.rows += beyond_accuracy(run.model, data, k=10, n_users=user_sample, seed=seed)
    run.timings["beyond_accuracy_s"] = round(time.perf_counter() - start, 3)
    if run.model.name in FOLDS_IN:
        from jamrec.foldin import fold_in_agreement

        start = time.perf_counter()
        result.rows += list(fold_in_agreement(run.model, data, seed=seed).values())
        run.timings["fold_in_s"] = round(time.perf_counter() - start, 3)
    return result


FOLDS_IN = ("als", "two_tower")  # models that score a new listener from a few tracks


def record(run: TrainedRun, result, warehouse: Path | None = None) -> str:
    """Write the run, its metrics and its training curve to the warehouse (one write)."""
    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    with store.update(f"record run {run.run_id}") as con:
        ensure_tables(con)
        con.execute(
            """
            insert into model_runs (run_id, build_id, model, config, seed, data_snapshot,
                started_at, finished_at, status, timings, model_path, code_version, purpose)
            values ($run, $build, $model, $config, $seed, $snapshot, $started, $finished,
                $status, $timings, $path, $code, $purpose)
            """,
            {
                "run": run.run_id,
                "build": run.build_id,
                "model": run.model.name,
                "config": json.dumps(run.model.config.model_dump(), sort_keys=True),
                "seed": run.seed,
                "snapshot": json.dumps(run.data_snapshot, sort_keys=True),
                "started": run.started_at,
                "finished": builds.now(),
                "status": "evaluated" if result is not None else "trained",
                "timings": json.dumps(run.timings, sort_keys=True, default=float),
                "path": run.model_path,
                "code": builds.code_version(),
                "purpose": run.purpose,
            },
        )
        if run.curve:
            con.executemany(
                "insert into training_curves values (?, ?, ?, ?, ?)",
                [(run.run_id, s, loss, ndcg, secs) for s, loss, ndcg, secs in run.curve],
            )
        if result is not None:
            con.executemany(
                "insert into metrics values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run.run_id, *row) for row in result.rows],
            )
    log.info("recorded run %s in %s", run.run_id, store.path)
    return run.run_id


def ensure_tables(con) -> None:
    """Create the model tables if this warehouse has none yet, with their comments."""
    from jamrec import sqlrunner

    for ddl in TABLES_DDL.values():
        con.execute(ddl)
    con.execute(
        "alter table model_runs add column if not exists purpose varchar default 'standard'"
    )
    schema = sqlrunner.load_schema(get_settings().sql_dir)
    sqlrunner.apply_comments(con, {t: schema[t] for t in TABLES_DDL if t in schema})


def load_run(run_id: str, warehouse: Path | None = None) -> tuple[Recommender, dict]:
    """A saved model and its ``model_runs`` row."""
    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    con = store.connect_readonly()
    try:
        if "model_runs" not in table_names(con):
            raise JamrecError(f"no runs in {store.path} yet; train some with `jamrec train`")
        found = con.execute("select * from model_runs where run_id = $id", {"id": run_id}).fetchdf()
    finally:
        con.close()
    if found.empty:
        raise JamrecError(f"no run {run_id!r} in {store.path}; see `jamrec runs`")
    row = found.iloc[0].to_dict()
    if not row.get("model_path") or not Path(row["model_path"]).exists():
        raise JamrecError(f"run {run_id}: its saved model is gone ({row.get('model_path')})")
    return load_model(Path(row["model_path"])), row


def record_evaluation(run_id: str, result, timings: dict, warehouse: Path | None = None) -> None:
    """Add an evaluation of an already recorded run (``jamrec evaluate``)."""
    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    with store.update(f"record evaluation of {run_id}") as con:
        ensure_tables(con)
        con.execute("delete from metrics where run_id = $id", {"id": run_id})
        con.executemany(
            "insert into metrics values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(run_id, *row) for row in result.rows],
        )
        con.execute(
            "update model_runs set status = 'evaluated', "
            "timings = json_merge_patch(coalesce(timings, '{}'), $t) where run_id = $id",
            {"t": json.dumps(timings, default=float), "id": run_id},
        )


COMPARISON_COLUMNS = (
    ("full", "hr", 10, "full HR@10"),
    ("full", "ndcg", 10, "full NDCG@10"),
    ("full", "mrr", None, "full MRR"),
    ("full_sample", "ndcg", 10, "sample NDCG@10"),
    ("sampled_100", "hr", 10, "sampled-100 HR@10"),
    ("sampled_100", "ndcg", 10, "sampled-100 NDCG@10"),
)


def comparison(con, split: str = "test", build_id: str | None = None) -> list[dict]:
    """The latest evaluated run of each model on a build (default: the published one),
    with the headline metrics of every protocol: one dict per model, best first."""
    if build_id is None:
        row = con.execute(
            "select build_id from builds where status = 'published' "
            "order by started_at desc limit 1"
        ).fetchone()
        if row is None:
            return []
        build_id = row[0]
    if not {"model_runs", "metrics"} <= table_names(con):
        return []
    rows = con.execute(
        """
        with latest as (
            select model, arg_max(run_id, started_at) as run_id
            from model_runs
            where build_id = $build and status = 'evaluated'
                and coalesce(purpose, 'standard') = 'standard'
            group by model
        )
        select latest.model, latest.run_id, m.protocol, m.metric, m.k, m.value, m.n_users
        from latest join metrics m using (run_id)
        where m.split = $split
        """,
        {"build": build_id, "split": split},
    ).fetchall()
    table: dict[str, dict] = {}
    for model, run_id, protocol, metric, k, value, n_users in rows:
        entry = table.setdefault(model, {"model": model, "run_id": run_id})
        entry[(protocol, metric, k)] = value
        entry[f"n_users_{protocol}"] = n_users
    ordered = sorted(
        table.values(),
        key=lambda e: -(e.get(("full_sample", "ndcg", 10)) or 0.0),
    )
    return ordered


def comparison_text(warehouse: Path | None = None) -> str:
    """The comparison table of the published warehouse, and where it is stored."""
    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    con = store.connect_readonly()
    try:
        table = format_comparison(comparison(con))
    finally:
        con.close()
    return (
        f"{table}\n\nstored in {store.path}: tables model_runs, metrics (with 95% bootstrap "
        'intervals), training_curves; e.g. jamrec sql "select * from metrics where k = 10"'
    )


def format_comparison(entries: list[dict], split: str = "test") -> str:
    """A plain-text table of :func:`comparison` (models x protocols)."""
    if not entries:
        return "no evaluated runs on this build yet (run `jamrec train` and `jamrec evaluate`)"
    header = f"{'model':<12}" + "".join(f"{label:>21}" for *_, label in COMPARISON_COLUMNS)
    lines = [f"{split} split: mean over evaluated users", header, "-" * len(header)]
    for entry in entries:
        cells = []
        for protocol, metric, k, _ in COMPARISON_COLUMNS:
            value = entry.get((protocol, metric, k))
            cells.append(f"{value:>21.4f}" if value is not None else f"{'-':>21}")
        lines.append(f"{entry['model']:<12}" + "".join(cells))
    users = {
        p: next((e[f"n_users_{p}"] for e in entries if f"n_users_{p}" in e), None)
        for p in ("full", "full_sample", "sampled_100")
    }
    lines.append(
        "full: every candidate track for every evaluated user "
        f"({users['full'] or '-'} users; the hybrid MLP is not full-ranked for all); "
        f"sample: the same on a seeded sample of {users['full_sample'] or '-'} users, every "
        "model; sampled-100: each held-out track among 100 sampled (random HR@10 ~ 0.099)"
    )
    return "\n".join(lines)


COLD_START_MODELS = (
    "two_tower",
    "feature_knn",
    "spotify_popularity",
    "popularity",
    "hybrid",
    "mbcf",
    "random",
)


def cold_start_study(
    data: Dataset,
    names: list[str] | None = None,
    share: float = 0.1,
    seed: int = 0,
    settings: dict | None = None,
    warehouse: Path | None = None,
) -> list[str]:
    """The cold-start protocol: withhold a seeded share of the tracks with interactions,
    train each model without them, rank them; record the withheld tracks
    (``coldstart_tracks``) and every run (``purpose = 'cold_start'``, metrics under the
    ``cold_start`` and ``cold_start_catalogue`` protocols, split ``cold``)."""
    from jamrec import coldstart

    names = list(names or COLD_START_MODELS) + (["oracle"] if data.truth is not None else [])
    cold = coldstart.withhold(data, share=share, seed=seed)
    log.info(
        "cold start: %d of %d tracks with interactions withheld (seed %d), %d users evaluated",
        len(cold.tracks),
        int(coldstart.interacted(data).sum()),
        seed,
        len(cold.users),
    )
    settings_store = Warehouse(
        Path(warehouse or get_settings().warehouse), get_settings().lock_timeout_s
    )
    with settings_store.update("record cold-start tracks") as con:
        con.execute(coldstart.COLDSTART_TRACKS_DDL)
        con.execute("delete from coldstart_tracks where build_id = $b", {"b": data.build_id})
        con.executemany(
            "insert into coldstart_tracks values (?, ?, ?, ?)", coldstart.withheld_rows(cold)
        )
    recorded = []
    for name in names:
        run = train(name, cold.train_view, seed, (settings or {}).get(name))
        run.purpose = "cold_start"
        run.build_id = data.build_id
        run.data_snapshot["withheld_tracks"] = len(cold.tracks)
        run.data_snapshot["withheld_share"] = share
        start = time.perf_counter()
        rows = coldstart.evaluate_cold_start(run.model, cold, seed=seed)
        run.timings["evaluate_s"] = round(time.perf_counter() - start, 3)
        result = evaluation_result(name, seed, rows)
        recorded.append(record(run, result, warehouse))
    return recorded


def evaluation_result(model: str, seed: int, rows: list):
    """Wrap metric rows from a study protocol as an :class:`EvaluationResult`."""
    from jamrec.evaluate import EvaluationResult

    result = EvaluationResult(model=model, seed=seed)
    result.rows = list(rows)
    return result
