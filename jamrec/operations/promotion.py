"""Champion/challenger: which run of each model serves, and why.

A new run (the challenger) replaces its model's champion only if its validation NDCG@10
(the ``run_selection`` view: protocol ``full_sample``, which every model has) is at least
the champion's measured on the same build, minus ``tolerance`` (default 0: never a worse
run). When the champion was trained on an older build, its saved model is first re-scored
on the new build's validation split (:class:`jamrec.operations.remap.Remapped`: users and
tracks it does not know get its fallback). A failed or unevaluated run never replaces a
champion. Every decision is a row in ``promotions``; ``model_runs.is_champion`` and
``promotion_note`` show the outcome.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from jamrec.errors import JamrecError
from jamrec.log import log
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.operations.remap import Remapped, saved_model
from jamrec.provenance import now
from jamrec.warehouse.history import SELECTION
from jamrec.warehouse.store import model_path, warehouse_at


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


def selection_value(con, run_id: str) -> float | None:
    """A run's champion-selection score (validation NDCG@10), None when it has none."""
    row = con.execute(
        "select val_ndcg_at_10 from run_selection where run_id = $r", {"r": run_id}
    ).fetchone()
    return None if row is None else float(row[0])


def rescore(
    champion_id: str, path: str | None, data: Dataset, seed: int, user_sample: int
) -> float | None:
    """The selection score of a champion trained on another build, re-scored on ``data``
    (None, with a warning, when its saved model cannot be read)."""
    from jamrec.evaluation.protocols import evaluate

    protocol, split, _, _ = SELECTION
    try:
        inner, users, tracks = saved_model(path)
        result = evaluate(
            Remapped(inner, users, tracks, data),
            data,
            splits=(split,),
            protocols=(protocol,),
            seed=seed,
            user_sample=user_sample,
            n_boot=100,
        )
    except JamrecError as exc:
        log.warning("champion %s cannot be re-scored: %s", champion_id, exc)
        return None
    return result.value(*SELECTION)


def decide(
    con,
    challenger_id: str,
    data: Dataset,
    tolerance: float = 0.0,
    seed: int = 0,
    user_sample: int = 5000,
) -> Decision:
    """Challenger vs champion for one run (read-only: :func:`apply` writes the outcome)."""
    run = con.execute(
        "select model, build_id, status, purpose from model_runs where run_id = $r",
        {"r": challenger_id},
    ).fetchone()
    if run is None:
        raise JamrecError(f"no run {challenger_id!r}")
    model, build_id, status, purpose = run
    champion = con.execute(
        "select run_id, build_id, model_path from champions where model = $m and run_id <> $r",
        {"m": model, "r": challenger_id},
    ).fetchone()
    champion_id = champion[0] if champion else None
    value = selection_value(con, challenger_id) if status == "evaluated" else None

    def outcome(champion_value, rescored, promoted, note) -> Decision:
        return Decision(
            model, build_id, challenger_id, value, champion_id, champion_value, rescored,
            promoted, note,
        )  # fmt: skip

    if value is None:
        if purpose != "standard":
            status = f"{status}, {purpose} study"
        return outcome(
            None, False, False, f"run {challenger_id} has no validation result ({status}): "
            "not promoted"
        )  # fmt: skip
    if champion is None:
        return outcome(
            None, False, True, f"first evaluated run of {model}: val NDCG@10 {value:.4f}"
        )
    _, champion_build, stored_path = champion
    champion_path = str(model_path(con, stored_path)) if stored_path else None
    rescored = champion_build != build_id
    if rescored:
        champion_value = rescore(champion_id, champion_path, data, seed, user_sample)
        rescored = champion_value is not None
    else:
        champion_value = selection_value(con, champion_id)
    where = f" re-scored on {build_id}" if rescored else ""
    if champion_value is None or value >= champion_value - tolerance:
        against = (
            "no comparable champion value"
            if champion_value is None
            else f"champion {champion_id} {champion_value:.4f}{where}"
        )
        note = f"promoted: val NDCG@10 {value:.4f} >= {against}"
        if tolerance:
            note += f" (tolerance {tolerance})"
        return outcome(champion_value, rescored, True, note)
    note = (
        f"not promoted: val NDCG@10 {value:.4f} < champion {champion_id} "
        f"{champion_value:.4f}{where}"
    )
    return outcome(champion_value, rescored, False, note)


def _build_changed(con, run_id: str, trained_on: str, published: str | None) -> Decision:
    """The decision for a run whose build is no longer the published one: not promoted."""
    row = con.execute("select model from model_runs where run_id = $r", {"r": run_id}).fetchall()
    model = row[0][0] if row else "?"
    note = (
        f"not promoted: the published build changed from {trained_on} to {published} while "
        f"run {run_id} trained; retrain on the new build (`jamrec train --models {model}`)"
    )
    log.warning("%s: %s", model, note)
    return Decision(
        model, trained_on, run_id, selection_value(con, run_id), None, None, False, False, note
    )


def apply(con, decision: Decision) -> None:
    """Record a decision: the promotions row, and the champion flags when promoted."""
    con.execute(
        "insert into promotions (decided_at, model, build_id, challenger_run_id, "
        "challenger_val_ndcg_at_10, champion_run_id, champion_val_ndcg_at_10, "
        "champion_rescored, promoted, note) values ($t, $m, $b, $c, $cv, $h, $hv, $r, $p, $n)",
        {
            "t": now(),
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
            {"t": now(), "n": decision.note, "r": decision.challenger},
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
    store = warehouse_at(warehouse)
    if data is None and run_ids:
        data = open_dataset(store.path)
    con = store.connect_readonly()
    try:
        published = con.execute("select build_id from published_build").fetchall()
        now_published = published[0][0] if published else None
        if data is not None and now_published != data.build_id:
            # The warehouse was rebuilt while these runs trained: their scores are on a
            # build that no longer serves, so none may replace a champion.
            decisions = [_build_changed(con, r, data.build_id, now_published) for r in run_ids]
        else:
            decisions = [decide(con, r, data, tolerance, seed, user_sample) for r in run_ids]
    finally:
        con.close()
    with store.update("record promotions") as con:
        for decision in decisions:
            apply(con, decision)
            log.info("%s: %s", decision.model, decision.note)
    return decisions


def promote_by_hand(run_id: str, note: str, warehouse: Path | None = None) -> Decision:
    """Make ``run_id`` its model's champion (promotion or rollback), with a note."""
    warehouse_at(warehouse).check_writable("jamrec promote")
    with warehouse_at(warehouse).update(f"promote {run_id} by hand") as con:
        row = con.execute(
            "select model, build_id, status, model_path from model_runs where run_id = $r",
            {"r": run_id},
        ).fetchone()
        if row is None:
            raise JamrecError(f"no run {run_id!r}; see `jamrec runs`")
        model, build_id, status, stored = row
        path = model_path(con, stored)
        if status in ("failed", "interrupted") or path is None or not path.exists():
            raise JamrecError(f"run {run_id} cannot serve: status {status}, saved model {path}")
        previous = con.execute(
            "select run_id from champions where model = $m", {"m": model}
        ).fetchone()
        decision = Decision(
            model,
            build_id,
            run_id,
            selection_value(con, run_id),
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
    con = warehouse_at(warehouse).connect_readonly()
    try:
        rows = con.execute(
            """
            select r.run_id, r.model, r.build_id, r.status, r.is_champion,
                r.promotion_note as note, s.val_ndcg_at_10
            from model_runs r left join run_selection s using (run_id)
            where $model is null or r.model = $model
            order by r.started_at desc limit $limit
            """,
            {"model": model, "limit": limit},
        ).fetchall()
    finally:
        con.close()
    keys = ("run_id", "model", "build_id", "status", "is_champion", "note", "val_ndcg_at_10")
    return [dict(zip(keys, row)) for row in rows]


def prune(keep: int = 3, warehouse: Path | None = None) -> list[str]:
    """Delete saved models beyond the ``keep`` newest per model; never a champion's."""
    with warehouse_at(warehouse).update("prune saved models") as con:
        rows = con.execute(
            """
            select run_id, model_path from (
                select run_id, model_path, is_champion,
                    row_number() over (partition by model order by started_at desc) as newest
                from model_runs where model_path is not null
            ) where newest > $keep and not is_champion
            """,
            {"keep": keep},
        ).fetchall()
        for run_id, stored in rows:
            path = model_path(con, stored)
            if path is not None:
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
