"""The ``recommendations`` table: top-N per user from each champion, served by one query.

Refreshed after promotion. Dot-product champions rank every candidate track for every
user; a champion that needs a network pass per pair (the hybrid) re-ranks the top 200 of
the best dot-product champion other than popularity (docs/operations.md, "Served
recommendations"). A user's own positives are never recommended back. Champions trained
on an older build are read through :class:`jamrec.operations.remap.Remapped`.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from jamrec.evaluation.blockpass import block_pass
from jamrec.evaluation.protocols import _on_candidates, _track_ids
from jamrec.log import log
from jamrec.models import model_class
from jamrec.models.base import Recommender, tie_rank
from jamrec.models.dataset import Dataset
from jamrec.operations.remap import Remapped, saved_model
from jamrec.operations.runs import POOL, RERANK_DEPTH, load_top_lists, save_pool
from jamrec.provenance import now
from jamrec.warehouse.store import model_path, warehouse_at

BATCH = 1024


Champion = tuple[str, str, str, str | None]  # (model, run_id, build_id, model_path)


def champions(
    con: duckdb.DuckDBPyConnection, promoted: dict[str, str] | None = None
) -> list[Champion]:
    """(model, run_id, build_id, model_path) of every serving champion, best first:
    reference points (random, the oracle) are reported, never served. ``promoted``
    (``{model: run_id}``) gives the champions as they will be once those runs are promoted
    (the lists are computed before the decisions and the rows are written together)."""

    rows = {
        model: (model, run_id, build_id, path, value)
        for model, run_id, build_id, path, value in con.execute(
            "select model, run_id, build_id, model_path, val_ndcg_at_10 from champions"
        ).fetchall()
    }
    for model, run_id in (promoted or {}).items():
        row = con.execute(
            "select r.model, r.run_id, r.build_id, r.model_path, s.val_ndcg_at_10 "
            "from model_runs r left join run_selection s using (run_id) where r.run_id = $r",
            {"r": run_id},
        ).fetchone()
        if row is not None:
            rows[model] = row
    ordered = sorted(rows.values(), key=lambda r: (r[4] is None, -(r[4] or 0.0), r[0]))
    # model paths are stored relative to the warehouse folder
    return [
        (model, run_id, build_id, str(model_path(con, path)) if path else None)
        for model, run_id, build_id, path, _ in ordered
        if not model_class(model).reference
    ]


def _model_for(data: Dataset, build_id: str, path: str | None) -> Recommender:
    model, users, tracks = saved_model(path)
    if build_id == data.build_id:
        return model
    return Remapped(model, users, tracks, data)


def top_n_for_all(
    model: Recommender, data: Dataset, n: int, pool: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, n) track indexes and scores: each user's best unseen candidates.

    ``pool`` (n_users, depth) restricts each user's ranking to those tracks (re-ranking);
    otherwise every candidate track is ranked.
    """
    tie = tie_rank(data.n_tracks)
    candidates = np.flatnonzero(data.candidates)
    candidates = candidates[np.argsort(tie[candidates], kind="stable")]  # columns in tie order
    column = np.full(data.n_tracks, -1, np.int64)  # track -> its column among the candidates
    column[candidates] = np.arange(len(candidates))
    ids = np.full((data.n_users, n), -1, np.int64)
    scores = np.full((data.n_users, n), -np.inf, np.float32)
    if pool is None:
        # (n_users, C): each user's positives among the candidates, never listed
        seen_columns = _on_candidates(data.positives(), column, len(candidates))
        nothing = sp.csr_matrix((data.n_users, len(candidates)), dtype=np.int8)
        # one block reused batch after batch, the candidates' side prepared once, each
        # block read once with the positives masked as they are met (block_pass)
        scorer = model.block_scorer(candidates)
        buffer = np.empty((min(BATCH, data.n_users), len(candidates)), np.float32)
    for start in range(0, data.n_users, BATCH):
        users = np.arange(start, min(start + BATCH, data.n_users))
        if pool is None:
            block = scorer(users, buffer[: len(users)])
            read = block_pass(block, nothing[users], seen_columns[users], ranks=False, k=n)
            best, best_scores = _track_ids(read.list_cols, candidates), read.list_scores
        else:
            assert pool is not None  # no scorer: re-ranking the pool
            best, best_scores = _rerank(model, users, pool[users], n, tie)
        ids[users, : best.shape[1]] = best
        scores[users, : best.shape[1]] = best_scores
    return ids, scores


def _rerank(
    model: Recommender, users: np.ndarray, pool: np.ndarray, n: int, tie: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(len(users), n) ids and scores: each user's ``pool`` row (track indexes, -1 pads)
    re-ranked by ``model``, every pair of the batch scored in one ``score_pairs`` call.
    The order is :func:`top_k`'s (score, then tie rank; NaN after every number), pads
    after everything; ``-inf`` scores come back as id -1."""
    valid = pool >= 0
    values = np.full(pool.shape, -np.inf, np.float32)
    rows, cols = np.nonzero(valid)
    values[rows, cols] = model.score_pairs(users[rows], pool[rows, cols])
    nan = np.isnan(values)
    ties = np.where(valid, tie[np.maximum(pool, 0)], 0)
    # lexsort: the last key is the primary one
    order = np.lexsort((ties, -np.where(nan, 0, values), nan, ~valid), axis=-1)[:, :n]
    best = np.take_along_axis(pool, order, axis=1)
    best_scores = np.take_along_axis(values, order, axis=1)
    best[np.isneginf(best_scores) | ~np.take_along_axis(valid, order, axis=1)] = -1
    return best, best_scores


def compute(
    data: Dataset, champions: list[Champion], top_n: int = 20, only: set[str] | None = None
) -> tuple[pa.Table | None, dict[str, int]]:
    """The top-``top_n`` lists of ``champions`` (best first), as rows of the
    ``recommendations`` table without ``generated_at``; ``only`` limits the rows to some
    models (the best dot-product champion is still scored when a re-ranker needs its pool).
    Returns the rows (None when there are none) and the row count per model."""
    parts, counts, pools = [], {}, None
    # Dot-product champions first (best first): the best of them is the re-rankers' pool.
    champions = [c for c in champions if not _pairwise(c[0])] + [
        c for c in champions if _pairwise(c[0])
    ]
    todo = [c for c in champions if only is None or c[0] in only]
    rerankers = any(_pairwise(c[0]) for c in todo)
    passed_source = False  # whether the best dot-product champion has been met
    for model_name, run_id, build_id, path in champions:
        wanted = only is None or model_name in only
        # The best dot-product champion (popularity aside) is the re-rankers' pool.
        pool_source = not passed_source and model_name != "popularity"
        pool_source = pool_source and not _pairwise(model_name)
        passed_source = passed_source or pool_source
        feeds = pool_source and rerankers
        if not wanted and not feeds:
            continue
        position = todo.index((model_name, run_id, build_id, path)) + 1 if wanted else 0
        if wanted:
            log.info("recommendations %d of %d: %s", position, len(todo), model_name)
        start = time.perf_counter()
        # Kept by the run's evaluation from its full ranking (or by an earlier promotion,
        # the pool): no second scoring pass.
        saved = _saved_lists(data, build_id, path, top_n) if wanted else None
        if feeds:
            pools = _saved_pool(data, build_id, path)
            if pools is not None:
                log.info("recommendations: the re-rankers' pool from %s, kept", model_name)
        if (saved is not None or not wanted) and (pools is not None or not feeds):
            if saved is not None:
                parts.append(_rows(data, run_id, model_name, *saved))
                counts[model_name] = parts[-1].num_rows
                log.info(
                    "recommendations %s (run %s): %s rows, kept by its evaluation",
                    model_name,
                    run_id,
                    f"{counts[model_name]:,}",
                )
            continue
        model = _model_for(data, build_id, path)
        if model.pairwise:
            if pools is None:
                log.warning("no dot-product champion to re-rank for %s: skipped", model_name)
                continue
            ids, scores = top_n_for_all(model, data, top_n, pool=pools)
        else:
            deep = pool_source and pools is None  # the pool comes off this pass
            ids, scores = top_n_for_all(model, data, RERANK_DEPTH if deep else top_n)
            if deep:
                _keep_pool(data, build_id, path, ids)
                pools = ids  # the best dot-product champion feeds the re-rankers
            ids, scores = ids[:, :top_n], scores[:, :top_n]
        if not wanted:
            continue
        parts.append(_rows(data, run_id, model_name, ids, scores))
        counts[model_name] = parts[-1].num_rows
        log.info(
            "recommendations %s (run %s): %s rows in %.1f s",
            model_name,
            run_id,
            f"{counts[model_name]:,}",
            time.perf_counter() - start,
        )
    return (pa.concat_tables(parts) if parts else None), counts


def _saved_lists(
    data: Dataset, build_id: str, path: str | None, n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """A run's lists as its evaluation kept them (:func:`runs.load_top_lists`), cut to
    ``n``: only on the build it was trained and evaluated on, and only when they are at
    least ``n`` long; else None (the lists are computed)."""
    if path is None or build_id != data.build_id:
        return None
    lists = load_top_lists(Path(path))
    if lists is None or lists.ids.shape != (data.n_users, lists.ids.shape[1]):
        return None
    if lists.ids.shape[1] < n:
        return None
    return lists.ids[:, :n], lists.scores[:, :n]


def _saved_pool(data: Dataset, build_id: str, path: str | None) -> np.ndarray | None:
    """The re-rankers' pool saved beside a run's model on its own build: by its evaluation
    (:func:`runs.save_top_lists`) or by an earlier promotion (:func:`_keep_pool`); else
    None."""
    if path is None or build_id != data.build_id or not (Path(path) / POOL).exists():
        return None
    ids = np.load(Path(path) / POOL)
    if ids.shape != (data.n_users, RERANK_DEPTH):
        return None
    return ids.astype(np.int64)


def _keep_pool(data: Dataset, build_id: str, path: str | None, ids: np.ndarray) -> None:
    """Save a champion's ``RERANK_DEPTH``-deep lists (track indexes) beside its model for
    the next re-ranker's promotion on the same build; a folder that cannot take them only
    costs that promotion the scoring pass."""
    if path is None or build_id != data.build_id or ids.shape[1] != RERANK_DEPTH:
        return
    try:
        save_pool(Path(path), ids)
    except OSError as exc:
        log.warning("could not keep the re-ranking pool beside the model: %s", exc)


def _rows(
    data: Dataset, run_id: str, model_name: str, ids: np.ndarray, scores: np.ndarray
) -> pa.Table:
    """``(n_users, n)`` lists as ``recommendations`` rows (without ``generated_at``)."""
    rows, cols = np.nonzero(ids >= 0)
    return pa.table(
        {
            "run_id": pa.array([run_id] * len(rows), pa.string()),
            "model": pa.array([model_name] * len(rows), pa.string()),
            "user_id": pa.array(data.users[rows].astype(str), pa.string()),
            "rank": pa.array(cols + 1, pa.int32()),
            "track_id": pa.array(data.tracks[ids[rows, cols]].astype(str), pa.string()),
            "score": pa.array(scores[rows, cols], pa.float32()),
        }
    )


def _pairwise(name: str) -> bool:

    return bool(model_class(name).pairwise)


def affected(champions: list[Champion], promoted: set[str]) -> set[str]:
    """The models whose lists change when ``promoted`` get new champions: those models,
    and the re-rankers when the best dot-product champion (their pool) is among them."""
    pool_source = next(
        (c[0] for c in champions if not _pairwise(c[0]) and c[0] != "popularity"), None
    )
    changed = set(promoted)
    if pool_source in promoted:
        changed |= {c[0] for c in champions if _pairwise(c[0])}
    return changed


def write(
    con: duckdb.DuckDBPyConnection,
    rows: pa.Table | None,
    models: set[str] | None,
    generated_at: datetime,
) -> None:
    """Replace the served lists of ``models`` (all when None) by ``rows``, inside the
    caller's warehouse write (one transaction with the decision that changed them)."""
    if models is None:
        con.execute("delete from recommendations")
    else:
        con.execute(
            "delete from recommendations where model in (select unnest($m))", {"m": sorted(models)}
        )
    if rows is not None:
        new_rows = rows  # noqa: F841 - read by DuckDB
        con.execute(
            "insert into recommendations select run_id, model, user_id, rank, track_id, "
            "score, $t from new_rows",
            {"t": generated_at},
        )


def refresh(data: Dataset, warehouse: Path | None = None, top_n: int = 20) -> dict[str, int]:
    """Recompute the top-``top_n`` of every champion and replace the table (one write)."""
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        serving = champions(con)
    finally:
        con.close()
    generated_at = now()
    rows, counts = compute(data, serving, top_n)
    with store.update("refresh recommendations") as con:
        write(con, rows, None, generated_at)
    return counts


def refresh_published(warehouse: Path | None = None, top_n: int = 20) -> dict[str, int]:
    """:func:`refresh` on the published build (``jamrec refresh-recommendations``)."""
    from jamrec.models.dataset import open_dataset

    return refresh(open_dataset(warehouse), warehouse, top_n)


PENDING = (
    "the recommendations table still holds the previous champion's lists for {models}: "
    "run `jamrec refresh-recommendations` to refresh them"
)
