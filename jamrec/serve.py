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
    """One row of a recommendation list (``reason``: with ``explain=True``)."""

    rank: int
    track_id: str
    artist: str
    title: str
    score: float
    reason: str | None = None


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
    standard = "coalesce(r.purpose, 'standard') = 'standard'" if "purpose" in columns else "true"
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
            and {standard}
            and ($model is null or r.model = $model)
            and ($model is not null or r.model not in ('oracle', 'random'))
            and ({champion} or r.build_id in (select build_id from published))
        order by {champion} desc, val.value desc nulls last, r.started_at desc
        """,
        {"model": model},
    ).fetchall()
    usable = [row for row in rows if Path(row[2]).exists()]
    if not usable:
        which = f"model {model!r}" if model else "any model"
        gone = f" ({len(rows)} whose saved models are gone)" if rows else ""
        raise JamrecError(f"no trained run of {which} to serve{gone}; run `jamrec train`")
    return usable[0][0], usable[0][1], usable[0][2]


def recommend(
    user_id: str | None = None,
    k: int = 10,
    model: str | None = None,
    warehouse: Path | None = None,
    tracks: list[str] | None = None,
    explain: bool = False,
) -> tuple[list[Recommendation], str]:
    """Top-``k`` tracks for ``user_id``, or for a new listener given by a few ``tracks``
    (track ids), and a one-line note saying where they come from.

    A user the model does not know gets the most popular tracks of the train split, and a
    note that says so. New listeners are folded in without retraining (ALS's user
    recalculation, the two-tower user side; other models fall back to popularity). The
    listener's own tracks are never recommended back. ``explain`` adds a short reason to
    each row (the listener's most similar tracks, the audio features that stand out).
    """
    from jamrec.foldin import fold_in
    from jamrec.models.base import load as load_model
    from jamrec.models.base import tie_rank, top_k

    settings = get_settings()
    store = Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
    con = store.connect_readonly()
    try:
        if tracks and model is None:
            model = _fold_in_model(con)
        run_id, name, path = pick_run(con, model)
        if not path or not Path(path).exists():
            raise JamrecError(f"run {run_id}: its saved model is gone ({path})")
        fitted = load_model(Path(path))
        ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
        users, catalogue = ids["users"], ids["tracks"]
        popular = dict(
            con.execute(
                "select track_id, count(*) from splits where split = 'train' group by 1"
            ).fetchall()
        )
        popularity = np.array([popular.get(t, 0) for t in catalogue], dtype=np.float32)
        if tracks:
            listener = np.searchsorted(catalogue, tracks)
            known = [
                int(i) for i, t in zip(listener, tracks) if i < len(catalogue) and catalogue[i] == t
            ]
            if not known:
                raise JamrecError(
                    f"none of the {len(tracks)} tracks is in the catalogue the model knows"
                )
            scores = fold_in(fitted, np.array(known), popularity=popularity)
            seen = set(tracks)
            note = (
                f"new listener with {len(known)} known track(s) of {len(tracks)}, folded in by "
                f"{name} (run {run_id})"
            )
            listener_ref = np.array(known)
        else:
            seen = {
                t
                for (t,) in con.execute(
                    "select track_id from splits where user_id = $u", {"u": user_id}
                ).fetchall()
            }
            position = int(np.searchsorted(users, user_id))
            if position < len(users) and users[position] == user_id:
                scores = fitted.score(np.array([position]))[0]
                note = f"{name} (run {run_id})"
                listener_ref = position
            else:
                scores = popularity.copy()
                note = (
                    f"user {user_id} has no interactions the model knows: "
                    "showing the most popular tracks instead"
                )
                listener_ref = None
        scores = scores.astype(np.float32).copy()
        if seen:
            scores[np.isin(catalogue, list(seen))] = -np.inf
        n = len(catalogue)
        best, best_scores = top_k(scores[None, :], np.arange(n), min(k, n), tie_rank(n))
        chosen = [int(i) for i in best[0] if i >= 0]
        meta = {
            row[0]: row[1:]
            for row in con.execute(
                "select track_id, array_to_string(artists, ', '), name from tracks "
                "where track_id in (select unnest($ids))",
                {"ids": [str(catalogue[i]) for i in chosen]},
            ).fetchall()
        }
        reasons = _reasons(fitted, path, listener_ref, chosen, con) if explain else {}
    finally:
        con.close()
    out = []
    for rank, (i, score) in enumerate(zip(chosen, best_scores[0]), start=1):
        artist, title = meta.get(str(catalogue[i]), ("?", "?"))
        out.append(
            Recommendation(rank, str(catalogue[i]), artist, title, float(score), reasons.get(i))
        )
    return out, note


def _fold_in_model(con) -> str:
    """The model new listeners are folded in with: the better champion of two_tower and ALS."""
    from jamrec.runs import FOLDS_IN

    for candidate in ("two_tower", "als"):
        try:
            pick_run(con, candidate)
            return candidate
        except JamrecError:
            continue
    raise JamrecError(
        f"folding in a new listener needs a trained {' or '.join(FOLDS_IN)} model: "
        "run `jamrec train --models two_tower,als`"
    )


def _reasons(model, path: str, listener, chosen: list[int], con) -> dict[int, str]:
    """A short reason per recommended track (needs the model's own build to be published)."""
    from jamrec.data import load_dataset
    from jamrec.explain import Explainer

    if listener is None:
        return {}
    data = load_dataset(con)
    ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
    if len(ids["tracks"]) != data.n_tracks or not np.array_equal(
        ids["tracks"], data.tracks.astype(str)
    ):
        return {i: "(no explanation: the model was trained on another build)" for i in chosen}
    names = np.array([f"{a} - {t}" for a, t in _names(con, data.tracks)], dtype=object)
    explainer = Explainer(model, data, names)
    return {i: explainer(listener, i).text for i in chosen}


def _names(con, tracks: np.ndarray) -> list[tuple[str, str]]:
    rows = dict(
        (row[0], row[1:])
        for row in con.execute(
            "select track_id, array_to_string(artists, ', '), name from tracks"
        ).fetchall()
    )
    return [rows.get(str(t), ("?", "?")) for t in tracks]
