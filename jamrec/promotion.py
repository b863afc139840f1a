"""Champion/challenger: which run of each model serves, and why.

A new run (the challenger) replaces its model's champion only if its validation NDCG@10
(protocol ``full_sample``, which every model has) is at least the champion's measured on
the same build, minus ``tolerance`` (default 0: never a worse run). When the champion was
trained on an older build, its saved model is first re-scored on the new build's
validation split (:class:`Remapped`: users and tracks it does not know get its fallback).
A failed or unevaluated run never replaces a champion. Every decision is a row in
``promotions``; ``model_runs.is_champion`` and ``promotion_note`` show the outcome.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jamrec import builds
from jamrec.config import get_settings
from jamrec.data import Dataset
from jamrec.errors import JamrecError
from jamrec.log import log
from jamrec.models.base import Recommender, TrainData
from jamrec.models.base import load as load_model
from jamrec.warehouse import Warehouse, table_names

PROMOTIONS_DDL = """
create table if not exists promotions (
    decided_at timestamptz not null,
    model varchar not null,
    build_id varchar,
    challenger_run_id varchar,
    challenger_val_ndcg_at_10 double,
    champion_run_id varchar,
    champion_val_ndcg_at_10 double,
    champion_rescored boolean,
    promoted boolean not null,
    note varchar
)"""

SELECTION = ("full_sample", "val", "ndcg", 10)  # protocol, split, metric, k


@dataclass
class Decision:
    """The outcome of one challenger against its model's champion."""

    model: str
    build_id: str
    challenger: str
    challenger_value: float | None
    champion: str | None
    champion_value: float | None
    rescored: bool
    promoted: bool
    note: str


class Remapped(Recommender):
    """A saved model scored in another build's id spaces.

    ``inner`` was trained on a build whose users and tracks are ``inner_users`` and
    ``inner_tracks``; scores come back in ``data``'s indexes. A user the model does not
    know gets its fallback: the new build's train popularity. A track it does not know
    ranks below every track it knows (for that user).
    """

    def __init__(
        self, inner: Recommender, inner_users: np.ndarray, inner_tracks: np.ndarray, data: Dataset
    ):
        super().__init__(inner.config)
        self.name = f"{inner.name} (re-scored)"
        self.pairwise = inner.pairwise
        self.inner = inner
        self.n_users, self.n_tracks = data.n_users, data.n_tracks
        self.user_map = _positions(inner_users, data.users)
        self.track_map = _positions(inner_tracks, data.tracks)
        self.popularity = np.asarray(data.train.getnnz(axis=0), dtype=np.float32)
        self.seen = data.train

    def _fit(self, data: TrainData) -> None:
        raise JamrecError("a re-scored champion is not trained again")

    def score(self, users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        users = np.atleast_1d(np.asarray(users, dtype=np.int64))
        items = np.arange(self.n_tracks) if items is None else np.asarray(items, dtype=np.int64)
        out = np.broadcast_to(self.popularity[items], (len(users), len(items))).astype(np.float32)
        inner_users = self.user_map[users]
        inner_items = self.track_map[items]
        known_rows = np.flatnonzero(inner_users >= 0)
        known_cols = np.flatnonzero(inner_items >= 0)
        if len(known_rows) and len(known_cols):
            block = self.inner.score(inner_users[known_rows], inner_items[known_cols])
            floor = block.min(axis=1, keepdims=True) - 1.0
            out[known_rows] = floor
            out[np.ix_(known_rows, known_cols)] = block
        return out


def _positions(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """For each id in ``wanted``, its index in the sorted array ``known``, or -1."""
    known = np.asarray(known).astype(str)
    wanted = np.asarray(wanted).astype(str)
    pos = np.searchsorted(known, wanted)
    pos = np.minimum(pos, max(len(known) - 1, 0))
    hit = len(known) > 0 and True
    found = (known[pos] == wanted) if hit else np.zeros(len(wanted), bool)
    return np.where(found, pos, -1).astype(np.int64)


def saved_model(path: str | None) -> tuple[Recommender, np.ndarray, np.ndarray]:
    """A run's saved model and the user/track ids of the build it was trained on."""
    if not path or not Path(path).exists():
        raise JamrecError(f"the saved model {path} is gone (pruned or moved)")
    ids = np.load(Path(path) / "ids.npz", allow_pickle=False)
    return load_model(Path(path)), ids["users"], ids["tracks"]


def _value(con, run_id: str) -> float | None:
    protocol, split, metric, k = SELECTION
    row = con.execute(
        "select value from metrics where run_id = $r and protocol = $p and split = $s "
        "and metric = $m and k = $k",
        {"r": run_id, "p": protocol, "s": split, "m": metric, "k": k},
    ).fetchone()
    return None if row is None else float(row[0])


def decide(
    con,
    challenger_id: str,
    data: Dataset,
    tolerance: float = 0.0,
    seed: int = 0,
    user_sample: int = 5000,
) -> Decision:
    """Challenger vs champion for one run (read-only: :func:`apply` writes the outcome)."""
    from jamrec.evaluate import evaluate

    run = con.execute(
        "select model, build_id, status, coalesce(purpose, 'standard') from model_runs "
        "where run_id = $r",
        {"r": challenger_id},
    ).fetchone()
    if run is None:
        raise JamrecError(f"no run {challenger_id!r}")
    model, build_id, status, purpose = run
    if purpose != "standard":
        status = f"{status}, {purpose} study"
    champion = con.execute(
        "select run_id, build_id, model_path from model_runs "
        "where model = $m and is_champion and run_id <> $r",
        {"m": model, "r": challenger_id},
    ).fetchone()
    value = _value(con, challenger_id) if status == "evaluated" else None
    if value is None:
        return Decision(
            model,
            build_id,
            challenger_id,
            None,
            champion and champion[0],
            None,
            False,
            False,
            f"run {challenger_id} has no validation result ({status}): not promoted",
        )
    if champion is None:
        return Decision(
            model,
            build_id,
            challenger_id,
            value,
            None,
            None,
            False,
            True,
            f"first evaluated run of {model}: val NDCG@10 {value:.4f}",
        )
    champion_id, champion_build, champion_path = champion
    rescored = champion_build != build_id
    if rescored:
        try:
            inner, users, tracks = saved_model(champion_path)
            result = evaluate(
                Remapped(inner, users, tracks, data),
                data,
                splits=("val",),
                protocols=("full_sample",),
                seed=seed,
                user_sample=user_sample,
                n_boot=100,
            )
            champion_value = result.value(*SELECTION)
        except JamrecError as exc:
            champion_value, rescored = None, False
            log.warning("champion %s of %s cannot be re-scored: %s", champion_id, model, exc)
    else:
        champion_value = _value(con, champion_id)
    if champion_value is None or value >= champion_value - tolerance:
        against = (
            "no comparable champion value"
            if champion_value is None
            else (
                f"champion {champion_id} {champion_value:.4f}"
                + (f" re-scored on {build_id}" if rescored else "")
            )
        )
        note = f"promoted: val NDCG@10 {value:.4f} >= {against}"
        if tolerance:
            note += f" (tolerance {tolerance})"
        return Decision(
            model, build_id, challenger_id, value, champion_id, champion_value, rescored, True, note
        )
    note = (
        f"not promoted: val NDCG@10 {value:.4f} < champion {champion_id} {champion_value:.4f}"
        + (f" re-scored on {build_id}" if rescored else "")
    )
    return Decision(
        model, build_id, challenger_id, value, champion_id, champion_value, rescored, False, note
    )


def apply(con, decision: Decision) -> None:
    """Record a decision: the promotions row, and the champion flags when promoted."""
    con.execute(PROMOTIONS_DDL)
    con.execute(
        "insert into promotions values ($t, $m, $b, $c, $cv, $h, $hv, $r, $p, $n)",
        {
            "t": builds.now(),
            "m": decision.model,
            "b": decision.build_id,
            "c": decision.challenger,
            "cv": decision.challenger_value,
            "h": decision.champion,
            "hv": decision.champion_value,
            "r": decision.rescored,
            "p": decision.promoted,
            "n": decision.note,
        },
    )
    if decision.promoted:
        con.execute(
            "update model_runs set is_champion = false, promotion_note = "
            "coalesce(promotion_note || '; ', '') || 'replaced by ' || $new "
            "where model = $m and is_champion and run_id <> $new",
            {"m": decision.model, "new": decision.challenger},
        )
        con.execute(
            "update model_runs set is_champion = true, promoted_at = $t, promotion_note = $n "
            "where run_id = $r",
            {"t": builds.now(), "n": decision.note, "r": decision.challenger},
        )
    else:
        con.execute(
            "update model_runs set promotion_note = $n where run_id = $r",
            {"n": decision.note, "r": decision.challenger},
        )


def promote_runs(
    run_ids: list[str],
    data: Dataset | None = None,
    warehouse: Path | None = None,
    tolerance: float = 0.0,
    seed: int = 0,
    user_sample: int = 5000,
) -> list[Decision]:
    """Decide and record each challenger in ``run_ids`` (one warehouse write).

    ``data`` (the published build) is read when not given.
    """
    store = _store(warehouse)
    if data is None and run_ids:
        from jamrec.data import open_dataset

        data = open_dataset(store.path)
    con = store.connect_readonly()
    try:
        decisions = [decide(con, r, data, tolerance, seed, user_sample) for r in run_ids]
    finally:
        con.close()
    with store.update("record promotions") as con:
        ensure_columns(con)
        for decision in decisions:
            apply(con, decision)
            log.info("%s: %s", decision.model, decision.note)
    return decisions


def promote_by_hand(run_id: str, note: str, warehouse: Path | None = None) -> Decision:
    """Make ``run_id`` its model's champion (promotion or rollback), with a note."""
    store = _store(warehouse)
    with store.update(f"promote {run_id} by hand") as con:
        ensure_columns(con)
        row = con.execute(
            "select model, build_id, status, model_path from model_runs where run_id = $r",
            {"r": run_id},
        ).fetchone()
        if row is None:
            raise JamrecError(f"no run {run_id!r}; see `jamrec runs`")
        model, build_id, status, path = row
        if status == "failed" or not path or not Path(path).exists():
            raise JamrecError(f"run {run_id} cannot serve: status {status}, saved model {path}")
        previous = con.execute(
            "select run_id from model_runs where model = $m and is_champion", {"m": model}
        ).fetchone()
        decision = Decision(
            model,
            build_id,
            run_id,
            _value(con, run_id),
            previous and previous[0],
            None,
            False,
            True,
            f"promoted by hand: {note}",
        )
        apply(con, decision)
    return decision


def list_runs(
    warehouse: Path | None = None, model: str | None = None, limit: int = 30
) -> list[dict]:
    """The newest runs (of ``model``), with validation NDCG@10 and champion flags."""
    con = _store(warehouse).connect_readonly()
    try:
        if "model_runs" not in table_names(con):
            return []
        champion = "is_champion" in {
            c
            for (c,) in con.execute(
                "select column_name from duckdb_columns() where table_name = 'model_runs'"
            ).fetchall()
        }
        protocol, split, metric, k = SELECTION
        rows = con.execute(
            f"""
            select r.run_id, r.model, r.build_id, r.status,
                {"coalesce(r.is_champion, false)" if champion else "false"} as is_champion,
                {"r.promotion_note" if champion else "null"} as note, m.value
            from model_runs r left join metrics m on m.run_id = r.run_id and m.protocol = $p
                and m.split = $s and m.metric = $m and m.k = $k
            where $model is null or r.model = $model
            order by r.started_at desc limit $limit
            """,
            {"p": protocol, "s": split, "m": metric, "k": k, "model": model, "limit": limit},
        ).fetchall()
    finally:
        con.close()
    keys = ("run_id", "model", "build_id", "status", "is_champion", "note", "val_ndcg_at_10")
    return [dict(zip(keys, row)) for row in rows]


def ensure_columns(con) -> None:
    """The champion columns of ``model_runs`` and the ``promotions`` table."""
    from jamrec.runs import ensure_tables

    ensure_tables(con)
    con.execute("alter table model_runs add column if not exists promoted_at timestamptz")
    con.execute(PROMOTIONS_DDL)


def prune(keep: int = 3, warehouse: Path | None = None) -> list[str]:
    """Delete saved models beyond the ``keep`` newest per model; never a champion's."""
    store = _store(warehouse)
    with store.update("prune saved models") as con:
        if "model_runs" not in table_names(con):
            return []
        rows = con.execute(
            """
            select run_id, model_path from (
                select run_id, model_path, is_champion,
                    row_number() over (partition by model order by started_at desc) as newest
                from model_runs where model_path is not null
            ) where newest > $keep and not coalesce(is_champion, false)
            """,
            {"keep": keep},
        ).fetchall()
        for run_id, path in rows:
            shutil.rmtree(path, ignore_errors=True)
            con.execute(
                "update model_runs set model_path = null, "
                "promotion_note = coalesce(promotion_note || '; ', '') || 'saved model pruned' "
                "where run_id = $r",
                {"r": run_id},
            )
    if rows:
        log.info(
            "pruned %d saved models (kept the %d newest per model and the champions)",
            len(rows),
            keep,
        )
    return [r for r, _ in rows]


def _store(warehouse: Path | None) -> Warehouse:
    settings = get_settings()
    return Warehouse(Path(warehouse or settings.warehouse), settings.lock_timeout_s)
