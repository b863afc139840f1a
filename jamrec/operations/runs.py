"""Model runs: train, save, evaluate, and record the results in the warehouse.

Each function is one step of ``jamrec train`` and of the ``train-and-evaluate`` flow
(:mod:`jamrec.operations.pipeline` chains them). Results land in ``model_runs``,
``metrics``, ``user_metrics`` (the per-user results behind every metrics row) and
``training_curves`` (history tables, kept across rebuilds); models are
saved under ``warehouse/models/<run_id>/`` in their library's own format, with the id maps
of the build they were trained on (``ids.npz``), so they can be re-read on a later build.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from jamrec.errors import JamrecError
from jamrec.evaluation.protocols import (
    EvaluationResult,
    EvaluationSettings,
    MetricRow,
    PerUser,
    TopLists,
)
from jamrec.files import pid_alive
from jamrec.log import log
from jamrec.models import create, load
from jamrec.models.base import FoldsIn, Recommender, Runtime, TrainData, check_no_leak
from jamrec.models.dataset import Dataset
from jamrec.models.early_stopping import PROBE_USERS, StopOutcome
from jamrec.provenance import code_version, new_id, now
from jamrec.timing import Timing
from jamrec.warehouse import history, timings
from jamrec.warehouse.store import warehouse_at


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
    # Its stages so far (train, save, evaluate), written to `timings` with the run's row.
    stages: list[Timing] = field(default_factory=list)
    stopping: StopOutcome | None = None  # iterative models: the step kept and why it ended


def new_run_id(model: str) -> str:
    """``als-20261126T180000-1a2b``: sortable by start time, unique."""
    return new_id(model)


def purpose_of(data: Dataset) -> str:
    """The ``model_runs.purpose`` of a run trained on ``data``: ``standard`` (leave-k-out)
    or ``temporal``."""
    return "temporal" if data.protocol == "temporal" else "standard"


def train(
    name: str,
    data: Dataset,
    seed: int = 0,
    config: dict | None = None,
    runtime: Runtime | dict | None = None,
    evaluation: EvaluationSettings | None = None,
    curve: bool = True,
) -> TrainedRun:
    """Fit model ``name`` on the dataset's train split, logging each epoch/iteration.

    ``seed`` is the training seed; ``config`` overrides the model's hyperparameters;
    ``runtime`` says how it runs (device, threads: recorded in the run's timings, not its
    config). Validation NDCG@10 is probed after each step (:func:`training_probe`); the
    test split is never probed. ``curve=False`` leaves the probe out where only early
    stopping needs it (a run whose training curve nobody reads, e.g. the study's
    ablation: for the hybrid, which scores every pair through its MLP, the curve's
    probes cost twice its training on the small dump). The data the model was fitted on
    is checked for held-out pairs (:func:`jamrec.models.base.check_no_leak`).
    """
    model = create(name, runtime=runtime, seed=seed, **(config or {}))
    run = TrainedRun(new_run_id(name), model, data.build_id, seed, now(), purpose=purpose_of(data))
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

    probe = training_probe(model, data, evaluation, curve)
    train_data = TrainData.from_dataset(data, probe=probe, on_step=on_step)
    model.fit(train_data)
    check_no_leak(model.seen, data)
    run.stopping = model.stopping
    run.timings["fit_s"] = round(time.perf_counter() - start, 3)
    run.stages.append(Timing.since("train", start, rows=data.train.nnz, model=name))
    run.timings.update(getattr(model, "stats", {}) or {})
    run.timings["runtime"] = model.runtime.model_dump()
    run.data_snapshot = {
        "build_id": data.build_id,
        "inputs_fingerprint": data.inputs_fingerprint,
        "users": data.n_users,
        "tracks": data.n_tracks,
        "train_rows": int(data.train.nnz),
    }
    kept = ""
    if run.stopping is not None:
        kept = (
            f", kept step {run.stopping.best_step} of {run.stopping.stopped_step} "
            f"({run.stopping.stop_reason})"
        )
    log.info("trained %s in %.1f s%s (run %s)", name, run.timings["fit_s"], kept, run.run_id)
    return run


def training_probe(
    model: Recommender,
    data: Dataset,
    evaluation: EvaluationSettings | None = None,
    curve: bool = True,
) -> Callable[[Recommender], np.ndarray] | None:
    """The validation probe ``model`` trains with (:func:`.protocols.val_probe`).

    With early stopping on, it decides when training ends: per-user NDCG@10 of the
    model's ``probe_users`` val users (:data:`jamrec.models.early_stopping.PROBE_USERS`),
    drawn with its *training* seed, so it is a training decision, never the evaluation's.
    Otherwise it only draws the training curve: a probe of
    :data:`.protocols.CURVE_PROBE_USERS` (1,000) val users drawn with the evaluation seed,
    so curves of different training seeds share their users; ``curve=False``: no probe
    (None), the curve then records the loss alone."""
    from jamrec.evaluation.protocols import CURVE_PROBE_USERS, val_probe

    config = model.config
    if getattr(config, "early_stopping", False):
        n_users = getattr(config, "probe_users", PROBE_USERS)
        return val_probe(data, n_users=n_users, seed=config.seed)
    if not curve:
        return None
    return val_probe(
        data, n_users=CURVE_PROBE_USERS, seed=(evaluation or EvaluationSettings()).seed
    )


def models_dir(warehouse: Path | None = None) -> Path:
    """Where the models of the warehouse at ``warehouse`` are saved: ``models/`` beside it."""
    return warehouse_at(warehouse).path.parent / "models"


def save(run: TrainedRun, data: Dataset, warehouse: Path | None = None) -> Path:
    """Save the model under ``<warehouse folder>/models/<run_id>/`` with the build's id maps."""
    start = time.perf_counter()
    folder = models_dir(warehouse) / run.run_id
    folder.mkdir(parents=True, exist_ok=True)
    # Until the run is recorded, the folder says which process writes it, and always which
    # warehouse it belongs to: warehouses side by side share models/ (see clean_orphans).
    (folder / OWNER_MARK).write_text(warehouse_at(warehouse).path.name)
    (folder / WRITER_MARK).write_text(str(os.getpid()))
    run.model.save(folder)
    np.savez(folder / "ids.npz", users=data.users.astype(str), tracks=data.tracks.astype(str))
    # Stored relative to the warehouse's folder: a copied warehouse serves its own models.
    run.model_path = str(Path("models") / run.run_id)
    run.stages.append(Timing.since("save", start, model=run.model.name))
    return folder


WRITER_MARK = ".writer-pid"
OWNER_MARK = ".warehouse"  # the file name of the warehouse whose run this folder holds


def clean_orphans(warehouse: Path | None = None) -> list[str]:
    """Remove saved-model folders that no run row refers to and whose writer died (a
    ``train`` killed between saving and recording); returns the run ids removed.

    Only this warehouse's folders: two warehouses in one folder (a copy beside the
    original, a benchmark's working copy) share ``models/``, and a run recorded in the
    other one is not an orphan. A folder says whose it is (``OWNER_MARK``, the warehouse's
    file name); one saved before that mark existed is removed only when it still carries
    a dead writer's mark (an unfinished save), never when it was recorded somewhere."""
    folder = models_dir(warehouse)
    if not folder.is_dir():
        return []
    store = warehouse_at(warehouse)
    if not store.exists():
        return []
    con = store.connect_readonly()
    try:
        known = {r for (r,) in con.execute("select run_id from model_runs").fetchall()}
    finally:
        con.close()
    removed = []
    for path in folder.iterdir():
        if not path.is_dir() or path.name in known:
            continue
        try:
            owner: str | None = (path / OWNER_MARK).read_text().strip()
        except OSError:
            owner = None
        if owner is not None and owner != store.path.name:
            continue  # another warehouse's model
        if owner is None and not (path / WRITER_MARK).exists():
            continue  # saved before owners were marked, and recorded: whose is unknown
        mark = path / WRITER_MARK
        try:
            pid = int(mark.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid_alive(pid) and pid != os.getpid():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    if removed:
        log.warning(
            "removed %d saved models of runs that were never recorded: %s",
            len(removed),
            ", ".join(sorted(removed)),
        )
    return removed


def record_unfinished(
    run: TrainedRun | None,
    name: str,
    error: BaseException,
    build_id: str,
    seed: int,
    warehouse: Path | None = None,
) -> str:
    """Record a run that did not finish (``interrupted`` or ``failed``) and remove its
    saved model, so nothing half-made is left or served; returns its run id."""
    from jamrec import interrupts

    status = "interrupted" if interrupts.is_interruption(error) else "failed"
    message = (
        f"interrupted by {interrupts.received() or 'SIGINT'}"
        if status == "interrupted"
        else (str(error).strip() or type(error).__name__)
    )
    run_id = run.run_id if run is not None else new_run_id(name)
    shutil.rmtree(models_dir(warehouse) / run_id, ignore_errors=True)
    with warehouse_at(warehouse).update(f"record {status} run {run_id}") as con:
        if run is not None:  # the stages it finished
            timings.insert(con, run.stages, build_id, run_id)
        con.execute("delete from model_runs where run_id = $r", {"r": run_id})
        con.execute(
            "insert into model_runs (run_id, build_id, model, seed, started_at, finished_at, "
            "status, error, code_version, purpose) "
            "values ($r, $b, $m, $s, $t0, $t, $status, $e, $c, $p)",
            {
                "r": run_id,
                "b": build_id,
                "m": name,
                "s": seed,
                "t0": run.started_at if run is not None else now(),
                "t": now(),
                "status": status,
                "e": message,
                "c": code_version(),
                "p": run.purpose if run is not None else "standard",
            },
        )
    log.warning("run %s of %s %s: %s", run_id, name, status, message)
    return run_id


def evaluate(
    run: TrainedRun, data: Dataset, settings: EvaluationSettings | None = None, top_n: int = 0
) -> EvaluationResult:
    """Every applicable protocol (:mod:`jamrec.evaluation.protocols`) with the evaluation
    ``settings`` (never the run's training seed): val and test, beyond-accuracy, and
    fold-in agreement for models that fold listeners in; the test split only for a temporal
    dataset (it has no val). The seconds go to ``run.timings`` and, as the ``evaluate``
    stage, to ``run.stages``. ``top_n``: also keep every user's top-``top_n`` list off the
    full ranking's score blocks (:class:`jamrec.evaluation.protocols.TopLists`), which
    :func:`record` saves beside the model for serving; none for a reference point
    (random, the oracle), which is never served. A model that can feed the re-rankers
    (:func:`feeds_rerankers`) keeps its lists :data:`RERANK_DEPTH` deep: the re-rankers'
    pool, should it become the best dot-product champion, comes off the same pass."""
    begun = time.perf_counter()
    top_n = 0 if run.model.reference else top_n
    if top_n and feeds_rerankers(run.model):
        # The same pass keeps the re-rankers' pool: serving needs no scoring pass of its own.
        top_n = max(top_n, RERANK_DEPTH)
    result = evaluate_model(run.model, data, settings, run.timings, top_n)
    if data.protocol == "temporal":
        run.data_snapshot["n_cold_items"] = result.n_cold_items
    return _evaluated(run, result, begun)


def evaluate_model(
    model: Recommender,
    data: Dataset,
    settings: EvaluationSettings | None = None,
    timings: dict[str, Any] | None = None,
    top_n: int = 0,
) -> EvaluationResult:
    """:func:`evaluate` of a model (a fresh one or one loaded from a saved run, as
    ``jamrec evaluate`` does); the seconds of each part go to ``timings``."""
    from jamrec.evaluation import protocols
    from jamrec.evaluation.beyond import beyond_accuracy

    settings = settings or EvaluationSettings()
    timings = timings if timings is not None else {}
    temporal = data.protocol == "temporal"
    start = time.perf_counter()
    result = protocols.evaluate(
        model,
        data,
        splits=("test",) if temporal else ("val", "test"),
        seed=settings.seed,
        user_sample=settings.user_sample,
        n_boot=settings.n_boot,
        top_n=top_n,
        beyond_k=0 if temporal else BEYOND_K,
    )
    timings["evaluate_s"] = round(time.perf_counter() - start, 3)
    timings["evaluate"] = result.timings
    if temporal:
        return result
    start = time.perf_counter()
    result.rows += beyond_accuracy(
        model,
        data,
        k=BEYOND_K,
        n_users=settings.user_sample,
        seed=settings.seed,
        n_boot=settings.n_boot,
        lists=result.beyond_lists,
    )
    timings["beyond_accuracy_s"] = round(time.perf_counter() - start, 3)
    if isinstance(model, FoldsIn):
        from jamrec.evaluation.foldin import fold_in_agreement

        start = time.perf_counter()
        result.rows += list(fold_in_agreement(model, data, seed=settings.seed).values())
        timings["fold_in_s"] = round(time.perf_counter() - start, 3)
    return result


def _evaluated(run: TrainedRun, result: EvaluationResult, start: float) -> EvaluationResult:
    """Time the whole evaluation (every protocol) as the run's ``evaluate`` stage."""
    users = sum(len(block.users) for block in result.per_user)
    done = Timing.since("evaluate", start, rows=users, model=run.model.name)
    run.stages.append(done)
    log.info(
        "evaluated %s in %.1f s: %s per-user results, %d metrics",
        run.model.name,
        done.seconds,
        f"{users:,}",
        len(result.rows),
    )
    return result


def record(run: TrainedRun, result: EvaluationResult | None, warehouse: Path | None = None) -> str:
    """Write the run, its metrics, its training curve and its stages' timings to the
    warehouse (one write)."""
    start = time.perf_counter()
    store = warehouse_at(warehouse)
    if result is not None and result.top_lists is not None and run.model_path:
        # Beside the model, before its row: a run is never recorded without its files.
        save_top_lists(store.path.parent / run.model_path, result.top_lists)
    with store.update(f"record run {run.run_id}") as con:
        con.execute(
            """
            insert into model_runs (run_id, build_id, model, config, seed, data_snapshot,
                started_at, finished_at, status, timings, model_path, code_version, purpose,
                evaluation_seed, user_sample, n_boot, best_step, stopped_step, stop_reason)
            values ($run, $build, $model, $config, $seed, $snapshot, $started, $finished,
                $status, $timings, $path, $code, $purpose, $eval_seed, $user_sample, $n_boot,
                $best_step, $stopped_step, $stop_reason)
            """,
            {
                "run": run.run_id,
                "build": run.build_id,
                "model": run.model.name,
                "config": json.dumps(run.model.config.model_dump(), sort_keys=True),
                "seed": run.seed,
                "snapshot": json.dumps(run.data_snapshot, sort_keys=True),
                "started": run.started_at,
                "finished": now(),
                "status": "evaluated" if result is not None else "trained",
                "timings": json.dumps(run.timings, sort_keys=True, default=float),
                "path": run.model_path,
                "code": code_version(),
                "purpose": run.purpose,
                **_settings_params(result),
                "best_step": run.stopping.best_step if run.stopping else None,
                "stopped_step": run.stopping.stopped_step if run.stopping else None,
                "stop_reason": run.stopping.stop_reason if run.stopping else None,
            },
        )
        written = 1 + len(run.curve)
        if run.curve:
            con.executemany(
                history.insert_sql("training_curves"),
                [(run.run_id, s, loss, ndcg, secs) for s, loss, ndcg, secs in run.curve],
            )
        if result is not None:
            written += _insert_metrics(con, run.run_id, result)
        # Recording is timed up to its last row: the commit follows.
        done = Timing.since("record", start, rows=written, model=run.model.name)
        timings.insert(con, [*run.stages, done], run.build_id, run.run_id)
    if run.model_path:
        (store.path.parent / run.model_path / WRITER_MARK).unlink(missing_ok=True)
    log.info("recorded run %s in %s", run.run_id, store.path)
    return run.run_id


BEYOND_K = 10  # the list length beyond-accuracy measures
SERVED_TOP_N = 20  # the served lists' length (recommendations), kept by the evaluation
RERANK_DEPTH = 200  # the re-rankers' pool: the best dot-product champion's lists, this deep

TOP_LISTS = "top_lists.npz"  # in a saved run's folder: its served lists on its own build
POOL = "rerank_pool.npy"  # in a saved run's folder: its RERANK_DEPTH-deep lists (ids)


def feeds_rerankers(model: Recommender) -> bool:
    """Whether ``model``'s lists can be the re-rankers' pool: a model that ranks every
    candidate (not pairwise), neither a reference point nor popularity (its pool would be
    the same 200 tracks for everyone)."""
    return not (model.pairwise or model.reference or model.name == "popularity")


def save_top_lists(folder: Path, lists: TopLists) -> None:
    """Save a run's :class:`TopLists` in its model folder: the first
    :data:`SERVED_TOP_N` of each list as the served lists and, when the lists are
    :data:`RERANK_DEPTH` deep, their ids as the re-rankers' pool (:func:`save_pool`).
    Each file is written whole, then renamed."""
    part = folder / (TOP_LISTS + ".part")
    served = slice(0, min(SERVED_TOP_N, lists.ids.shape[1]))
    with part.open("wb") as out:
        np.savez(out, ids=lists.ids[:, served].astype(np.int32), scores=lists.scores[:, served])
    part.replace(folder / TOP_LISTS)
    if lists.ids.shape[1] >= RERANK_DEPTH:
        save_pool(folder, lists.ids[:, :RERANK_DEPTH])


def save_pool(folder: Path, ids: np.ndarray) -> None:
    """Save ``RERANK_DEPTH``-deep lists (track indexes, -1 pads) as the re-rankers' pool
    beside a run's model, written whole, then renamed."""
    part = folder / (POOL + ".part")
    try:
        with part.open("wb") as out:
            np.save(out, ids.astype(np.int32))
        part.replace(folder / POOL)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def load_top_lists(folder: Path) -> TopLists | None:
    """The lists :func:`save_top_lists` wrote in ``folder``, or None when it has none."""
    path = folder / TOP_LISTS
    if not path.exists():
        return None
    with np.load(path) as saved:
        return TopLists(saved["ids"].astype(np.int64), saved["scores"])


def _settings_params(result: EvaluationResult | None) -> dict:
    settings = result.settings if result is not None else None
    return {
        "eval_seed": settings.seed if settings else None,
        "user_sample": settings.user_sample if settings else None,
        "n_boot": settings.n_boot if settings else None,
    }


def _insert_metrics(con: duckdb.DuckDBPyConnection, run_id: str, result: EvaluationResult) -> int:
    """The metrics rows (with the evaluation settings) and the per-user results; returns
    the rows written."""
    s = result.settings
    con.executemany(
        history.insert_sql("metrics"),
        [(run_id, *row, s.seed, s.user_sample, s.n_boot) for row in result.rows],
    )
    return len(result.rows) + insert_user_metrics(con, run_id, result.per_user)


USER_METRIC_COLUMNS = {  # user_metrics column -> per-user metric column (metric, k)
    "hr_at_5": ("hr", 5),
    "hr_at_10": ("hr", 10),
    "hr_at_20": ("hr", 20),
    "ndcg_at_5": ("ndcg", 5),
    "ndcg_at_10": ("ndcg", 10),
    "ndcg_at_20": ("ndcg", 20),
    "rr": ("mrr", None),
}


def user_metrics_table(run_id: str, per_user: list[PerUser]) -> pa.Table:
    """The ``user_metrics`` rows of one run as an Arrow table (columns in table order)."""
    parts = []
    for block in per_user:
        n = len(block.users)
        if block.user_ids is None:
            raise ValueError(f"{block.protocol}/{block.split}: per-user results without user ids")
        columns = {
            "run_id": pa.array(np.full(n, run_id, dtype=object), pa.string()),
            "protocol": pa.array(np.full(n, block.protocol, dtype=object), pa.string()),
            "split": pa.array(np.full(n, block.split, dtype=object), pa.string()),
            "user_id": pa.array(block.user_ids.astype(object), pa.string()),
            "n_relevant": pa.array(block.n_relevant.astype(np.int32)),
        }
        for name, key in USER_METRIC_COLUMNS.items():
            columns[name] = pa.array(block.metrics.values[:, block.metrics.columns.index(key)])
        columns["rank"] = pa.array(block.best_rank.astype(np.int32))
        parts.append(pa.table(columns))
    names = history.TABLES["user_metrics"].column_names()
    if not parts:
        return pa.table({name: pa.array([], pa.string()) for name in names}).select(names)
    return pa.concat_tables(parts).select(names)


def insert_user_metrics(
    con: duckdb.DuckDBPyConnection, run_id: str, per_user: list[PerUser]
) -> int:
    """Append one run's per-user results to ``user_metrics``; returns the rows written."""
    table = user_metrics_table(run_id, per_user)
    if not table.num_rows:
        return 0
    columns = ", ".join(history.TABLES["user_metrics"].column_names())
    con.register("_new_user_metrics", table)
    try:
        con.execute(f"insert into user_metrics ({columns}) select * from _new_user_metrics")
    finally:
        con.unregister("_new_user_metrics")
    return table.num_rows


def load_run(run_id: str, warehouse: Path | None = None) -> tuple[Recommender, dict]:
    """A saved model and its ``model_runs`` row."""
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        found = con.execute("select * from model_runs where run_id = $id", {"id": run_id}).fetchdf()
    finally:
        con.close()
    if found.empty:
        raise JamrecError(f"no run {run_id!r} in {store.path}; see `jamrec runs`")
    row = found.iloc[0].to_dict()
    path = store.path.parent / row["model_path"] if row.get("model_path") else None
    if path is None or not path.exists():
        raise JamrecError(f"run {run_id}: its saved model is gone ({row.get('model_path')})")
    return load(path), row


def record_evaluation(
    run_id: str, result: EvaluationResult, timings: dict, warehouse: Path | None = None
) -> None:
    """Add an evaluation of an already recorded run (``jamrec evaluate``)."""
    with warehouse_at(warehouse).update(f"record evaluation of {run_id}") as con:
        con.execute("delete from metrics where run_id = $id", {"id": run_id})
        con.execute("delete from user_metrics where run_id = $id", {"id": run_id})
        _insert_metrics(con, run_id, result)
        con.execute(
            "update model_runs set status = 'evaluated', "
            "timings = json_merge_patch(coalesce(timings, '{}'), $t), "
            "evaluation_seed = $eval_seed, user_sample = $user_sample, n_boot = $n_boot "
            "where run_id = $id",
            {"t": json.dumps(timings, default=float), "id": run_id, **_settings_params(result)},
        )


def evaluation_result(
    model: str, rows: list[MetricRow], settings: EvaluationSettings | None = None
) -> EvaluationResult:
    """Wrap metric rows from a study protocol as an :class:`EvaluationResult`."""
    settings = settings or EvaluationSettings()
    result = EvaluationResult(model=model, seed=settings.seed, settings=settings)
    result.rows = list(rows)
    return result
