"""Recommendations for one listener, from a saved model (``jamrec recommend``).

A known user is scored by the serving run's model; a listener given by a few tracks is
folded in (models with the :class:`jamrec.models.base.FoldsIn` capability; others fall
back to popularity); a user the model does not know gets the most popular tracks, and a
note saying so. The listener's own tracks are never recommended back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from jamrec.errors import JamrecError
from jamrec.models import MODELS, folds_in, load, model_class
from jamrec.models.base import Recommender, tie_rank, top_k
from jamrec.warehouse.store import model_path, warehouse_at


@dataclass
class Recommendation:
    """One row of a recommendation list (``reason``: with ``explain=True``)."""

    rank: int
    track_id: str
    artist: str
    title: str
    score: float
    reason: str | None = None


@dataclass
class Served:
    """The run that serves a request, its saved model and the id maps it was trained with."""

    run_id: str
    model_name: str
    path: str
    model: Recommender
    users: np.ndarray  # (n_users,) str, sorted: the model's user index -> user id
    catalogue: np.ndarray  # (n_tracks,) str, sorted: the model's track index -> track id


def pick_run(
    con: duckdb.DuckDBPyConnection, model: str | None, among: list[str] | None = None
) -> tuple[str, str, str]:
    """(run_id, model, model_path) serving ``model``: its champion, else its latest run on
    the published build. Without a model: the champion with the best validation NDCG@10
    among ``among`` (default: every model that is not a reference point)."""
    if model is not None:
        model_class(model)  # an unknown name is one clear error
    names = [model] if model else (among or [n for n in MODELS if not model_class(n).reference])
    rows = con.execute(
        """
        select r.run_id, r.model, r.model_path
        from model_runs r left join run_selection s using (run_id)
        where r.status in ('trained', 'evaluated') and r.model_path is not null
            and r.purpose = 'standard'
            and r.model in (select unnest($names))
            and (r.is_champion or r.build_id in (select build_id from published_build))
        order by r.is_champion desc, s.val_ndcg_at_10 desc nulls last, r.started_at desc
        """,
        {"names": names},
    ).fetchall()
    rows = [(run_id, name, model_path(con, path)) for run_id, name, path in rows]
    usable = [row for row in rows if row[2] is not None and row[2].exists()]
    if not usable:
        which = f"model {model!r}" if model else "any model"
        gone = f" ({len(rows)} whose saved models are gone)" if rows else ""
        raise JamrecError(f"no trained run of {which} to serve{gone}; run `jamrec train`")
    return usable[0]


def _served(con: duckdb.DuckDBPyConnection, model: str | None, new_listener: bool) -> Served:
    if new_listener and model is None:
        among = [n for n in MODELS if folds_in(n)]
        try:
            run_id, name, path = pick_run(con, None, among)
        except JamrecError:
            raise JamrecError(
                f"folding in a new listener needs a trained {' or '.join(among)} model: "
                f"run `jamrec train --models {','.join(among)}`"
            ) from None
    else:
        run_id, name, path = pick_run(con, model)
    ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
    return Served(run_id, name, str(path), load(Path(path)), ids["users"], ids["tracks"])


def _train_popularity(con: duckdb.DuckDBPyConnection, catalogue: np.ndarray) -> np.ndarray:
    """(n_tracks,) float32 train interactions per track of the served catalogue."""
    counts = dict(
        con.execute(
            "select track_id, count(*) from splits where split = 'train' group by 1"
        ).fetchall()
    )
    return np.array([counts.get(t, 0) for t in catalogue], dtype=np.float32)


def _listener_scores(
    con: duckdb.DuckDBPyConnection, served: Served, user_id: str | None, tracks: list[str] | None
) -> tuple[np.ndarray, set[str], int | np.ndarray | None, str]:
    """``(scores (n_tracks,), seen track ids, listener, note)`` for a user or new listener.

    ``listener`` is what explanations need: a user index, track indexes, or None.
    """
    from jamrec.evaluation.foldin import fold_in

    popularity = _train_popularity(con, served.catalogue)
    label = f"{served.model_name} (run {served.run_id})"
    if tracks:
        at = np.searchsorted(served.catalogue, tracks)
        known = np.array(
            [int(i) for i, t in zip(at, tracks) if i < len(served.catalogue)
             and served.catalogue[i] == t],
            dtype=np.int64,
        )  # fmt: skip
        if not len(known):
            raise JamrecError(
                f"none of the {len(tracks)} tracks is in the catalogue the model knows"
            )
        note = (
            f"new listener with {len(known)} known track(s) of {len(tracks)}, folded in by {label}"
        )
        return fold_in(served.model, known, popularity=popularity), set(tracks), known, note
    if user_id is None:
        raise JamrecError("recommend needs a user id or a new listener's tracks")
    seen = {
        t
        for (t,) in con.execute(
            "select track_id from splits where user_id = $u", {"u": user_id}
        ).fetchall()
    }
    position = int(np.searchsorted(served.users, user_id))
    if position < len(served.users) and served.users[position] == user_id:
        return served.model.score(np.array([position]))[0], seen, position, label
    note = (
        f"user {user_id} has no interactions the model knows: "
        "showing the most popular tracks instead"
    )
    return popularity.copy(), seen, None, note


def recommend(
    user_id: str | None = None,
    k: int = 10,
    model: str | None = None,
    warehouse: Path | None = None,
    tracks: list[str] | None = None,
    explain: bool = False,
) -> tuple[list[Recommendation], str]:
    """Top-``k`` tracks for ``user_id``, or for a new listener given by a few ``tracks``
    (track ids), and a one-line note saying where they come from (module docstring).
    ``explain`` adds a short reason to each row (the listener's most similar tracks, the
    audio features that stand out)."""
    con = warehouse_at(warehouse).connect_readonly()
    try:
        served = _served(con, model, new_listener=bool(tracks))
        scores, seen, listener, note = _listener_scores(con, served, user_id, tracks)
        scores = scores.astype(np.float32).copy()
        if seen:
            scores[np.isin(served.catalogue, list(seen))] = -np.inf
        n = len(served.catalogue)
        best, best_scores = top_k(scores[None, :], np.arange(n), min(k, n), tie_rank(n))
        chosen = [int(i) for i in best[0] if i >= 0]
        meta = _track_names(con, [str(served.catalogue[i]) for i in chosen])
        reasons = _reasons(served, listener, chosen, con) if explain else {}
    finally:
        con.close()
    out = []
    for rank, (i, score) in enumerate(zip(chosen, best_scores[0]), start=1):
        artist, title = meta.get(str(served.catalogue[i]), ("?", "?"))
        out.append(
            Recommendation(
                rank, str(served.catalogue[i]), artist, title, float(score), reasons.get(i)
            )
        )
    return out, note


def _track_names(
    con: duckdb.DuckDBPyConnection, track_ids: list[str] | None
) -> dict[str, tuple[str, str]]:
    """``{track_id: (artists, name)}`` for these tracks (None: every track)."""
    return {
        row[0]: row[1:]
        for row in con.execute(
            "select track_id, array_to_string(artists, ', '), name from tracks "
            "where $ids is null or track_id in (select unnest($ids))",
            {"ids": track_ids},
        ).fetchall()
    }


def _reasons(
    served: Served,
    listener: int | np.ndarray | None,
    chosen: list[int],
    con: duckdb.DuckDBPyConnection,
) -> dict[int, str]:
    """A short reason per recommended track (needs the model's own build to be published)."""
    from jamrec.models.dataset import load_dataset
    from jamrec.operations.explain import Explainer

    if listener is None:
        return {}
    data = load_dataset(con)
    if len(served.catalogue) != data.n_tracks or not np.array_equal(
        served.catalogue, data.tracks.astype(str)
    ):
        return {i: "(no explanation: the model was trained on another build)" for i in chosen}
    names_by_id = _track_names(con, None)
    names = np.array(
        [" - ".join(names_by_id.get(str(t), ("?", "?"))) for t in data.tracks], dtype=object
    )
    return {i: Explainer(served.model, data, names)(listener, i).text for i in chosen}
