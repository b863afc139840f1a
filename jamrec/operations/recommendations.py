"""The ``recommendations`` table: top-N per user from each champion, served by one query.

Refreshed after promotion. Dot-product champions rank every candidate track for every
user; a champion that needs a network pass per pair (the hybrid) re-ranks the top 200 of
the best dot-product champion other than popularity (docs/operations.md, "Served
recommendations"). A user's own positives are never recommended back. Champions trained
on an older build are read through :class:`jamrec.operations.remap.Remapped`.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from jamrec.log import log
from jamrec.models import model_class
from jamrec.models.base import Recommender, tie_rank, top_k
from jamrec.models.dataset import Dataset
from jamrec.operations.remap import Remapped, saved_model
from jamrec.provenance import now
from jamrec.warehouse.store import model_path, warehouse_at

RERANK_DEPTH = 200
BATCH = 1024


def _champions(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    """(model, run_id, build_id, model_path) of every serving champion, best first:
    reference points (random, the oracle) are reported, never served."""
    rows = con.execute(
        "select model, run_id, build_id, model_path from champions "
        "order by val_ndcg_at_10 desc nulls last"
    ).fetchall()
    return [
        (model, run_id, build_id, str(model_path(con, path)) if path else None)
        for model, run_id, build_id, path in rows
        if not model_class(model).reference
    ]


def _model_for(data: Dataset, build_id: str, path: str) -> Recommender:
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
    candidates = np.flatnonzero(data.candidates)
    positives = data.positives()
    tie = tie_rank(data.n_tracks)
    ids = np.full((data.n_users, n), -1, np.int64)
    scores = np.full((data.n_users, n), -np.inf, np.float32)
    for start in range(0, data.n_users, BATCH if pool is None else 64):
        users = np.arange(start, min(start + (BATCH if pool is None else 64), data.n_users))
        if pool is None:
            block = model.score(users, candidates).astype(np.float32, copy=True)
            seen = positives[users][:, candidates].toarray() > 0
            block[seen] = -np.inf
            best, best_scores = top_k(block, candidates, min(n, len(candidates)), tie[candidates])
        else:
            best = np.full((len(users), n), -1, np.int64)
            best_scores = np.full((len(users), n), -np.inf, np.float32)
            for row, user in enumerate(users):
                items = pool[user][pool[user] >= 0]
                if not len(items):
                    continue
                row_scores = model.score(np.array([user]), items).astype(np.float32)
                b, s = top_k(row_scores, items, min(n, len(items)), tie[items])
                best[row, : b.shape[1]], best_scores[row, : b.shape[1]] = b[0], s[0]
        ids[users, : best.shape[1]] = best
        scores[users, : best.shape[1]] = best_scores
    return ids, scores


def refresh(data: Dataset, warehouse: Path | None = None, top_n: int = 20) -> dict[str, int]:
    """Recompute the top-``top_n`` of every champion and replace the table (one write)."""
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        champions = _champions(con)
    finally:
        con.close()
    generated_at = now()
    parts, counts, pools = [], {}, None
    # dot-product champions first (best first): the best of them feeds the re-rankers
    champions.sort(key=lambda c: model_class(c[0]).pairwise)
    for model_name, run_id, build_id, path in champions:
        start = time.perf_counter()
        model = _model_for(data, build_id, path)
        if model.pairwise:
            if pools is None:
                log.warning("no dot-product champion to re-rank for %s: skipped", model_name)
                continue
            ids, scores = top_n_for_all(model, data, top_n, pool=pools)
        else:
            depth = RERANK_DEPTH if pools is None else top_n
            ids, scores = top_n_for_all(model, data, depth)
            if pools is None and model_name != "popularity":
                pools = ids  # the best dot-product champion feeds the re-rankers
            ids, scores = ids[:, :top_n], scores[:, :top_n]
        rows, cols = np.nonzero(ids >= 0)
        parts.append(
            pa.table(
                {
                    "run_id": pa.array([run_id] * len(rows), pa.string()),
                    "model": pa.array([model_name] * len(rows), pa.string()),
                    "user_id": pa.array(data.users[rows].astype(str), pa.string()),
                    "rank": pa.array(cols + 1, pa.int32()),
                    "track_id": pa.array(data.tracks[ids[rows, cols]].astype(str), pa.string()),
                    "score": pa.array(scores[rows, cols], pa.float32()),
                }
            )
        )
        counts[model_name] = len(rows)
        log.info(
            "recommendations %s (run %s): %s rows in %.1f s",
            model_name,
            run_id,
            f"{len(rows):,}",
            time.perf_counter() - start,
        )
    new_rows = pa.concat_tables(parts) if parts else None  # noqa: F841 - read by DuckDB
    with store.update("refresh recommendations") as con:
        con.execute("delete from recommendations")
        if parts:
            con.execute(
                "insert into recommendations select run_id, model, user_id, rank, track_id, "
                "score, $t from new_rows",
                {"t": generated_at},
            )
    return counts
