"""Recommendations for one listener, from a saved model (``jamrec recommend``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.warehouse import Warehouse, table_names


@dataclass
class Recommendation:
    """One row of a recommendation list."""

    rank: int
    track_id: str
    artist: str
    title: str
    score: float


def pick_run(con, model: str | None) -> tuple[str, str, str]:
    """(run_id, model, model_path) serving ``model``: its champion, else its latest run on
    the published build. Without a model: the champion with the best validation NDCG@10
    (the oracle and random aside)."""
    if "model_runs" not in table_names(con):
        raise JamrecError("no trained models yet: run `jamrec train` first")
    columns = {
        c
        for (c,) in con.execute(
            "select column_name from duckdb_columns() where table_name = 'model_runs'"
        ).fetchall()
    }
    champion = "coalesce(r.is_champion, false)" if "is_champion" in columns else "false"
    rows = con.execute(
        f"""
        with published as (
            select build_id from builds where status = 'published'
            order by started_at desc limit 1
        ),
        val as (
            select run_id, value from metrics
            where split = 'val' and metric = 'ndcg' and k = 10 and protocol = 'full_sample'
        )
        select r.run_id, r.model, r.model_path
        from model_runs r left join val using (run_id)
        where r.status in ('trained', 'evaluated') and r.model_path is not null
            and ($model is null or r.model = $model)
            and ($model is not null or r.model not in ('oracle', 'random'))
            and ({champion} or r.build_id in (select build_id from published))
        order by {champion} desc, val.value desc nulls last, r.started_at desc
        limit 1
        """,
        {"model": model},
    ).fetchall()
    if not rows:
        which = f"model {model!r}" if model else "any model"
        raise JamrecError(f"no trained run of {which} to serve; run `jamrec train`")
    return rows[0][0], rows[0][1], rows[0][2]


def recommend(
    user_id: str, k: int = 10, model: str | None = None, warehouse: Path | None = None
) -> tuple[list[Recommendation], str]:
    """Top-``k`` tracks for ``user_id`` and a one-line note saying where they come from.

    A user the model does not know gets the most popular tracks of the train split, and a
    note that says so; the user's own train tracks are never recommended back.
    """
    from jamrec.models.base import load as load_model
    from jamrec.models.base import tie_rank, top_k

    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    con = store.connect_readonly()
    try:
        run_id, name, path = pick_run(con, model)
        if not path or not Path(path).exists():
            raise JamrecError(f"run {run_id}: its saved model is gone ({path})")
        fitted = load_model(Path(path))
        ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
        users, tracks = ids["users"], ids["tracks"]
        seen = {
            t
            for (t,) in con.execute(
                "select track_id from splits where user_id = $u and split = 'train'",
                {"u": user_id},
            ).fetchall()
        }
        position = np.searchsorted(users, user_id)
        known = position < len(users) and users[position] == user_id
        if known:
            scores = fitted.score(np.array([position]))[0]
            note = f"{name} (run {run_id})"
        else:
            popular = dict(
                con.execute(
                    "select track_id, count(*) from splits where split = 'train' group by 1"
                ).fetchall()
            )
            scores = np.array([popular.get(t, 0) for t in tracks], dtype=np.float32)
            note = (
                f"user {user_id} has no interactions the model knows: "
                "showing the most popular tracks instead"
            )
        scores = scores.astype(np.float32).copy()
        if seen:
            scores[np.isin(tracks, list(seen))] = -np.inf
        n = len(tracks)
        best, best_scores = top_k(scores[None, :], np.arange(n), min(k, n), tie_rank(n))
        chosen = [int(i) for i in best[0] if i >= 0]
        meta = dict(
            (row[0], row[1:])
            for row in con.execute(
                "select track_id, array_to_string(artists, ', '), name from tracks "
                "where track_id in (select unnest($ids))",
                {"ids": [str(tracks[i]) for i in chosen]},
            ).fetchall()
        )
    finally:
        con.close()
    out = []
    for rank, (i, score) in enumerate(zip(chosen, best_scores[0]), start=1):
        artist, title = meta.get(str(tracks[i]), ("?", "?"))
        out.append(Recommendation(rank, str(tracks[i]), artist, title, float(score)))
    return out, note
