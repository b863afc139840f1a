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
from jamrec.warehouse.store import warehouse_at


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
    # Rows of `recommendations` written with the decision (None: the lists were not
    # refreshed; `pending` then says what to run).
    recommendations: int | None = None
    pending: str | None = None


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
    _, champion_build, champion_path = champion
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
    serve: bool = True,
    top_n: int = 20,
) -> list[Decision]:
    """Decide and record each challenger in ``run_ids``; with ``serve``, the promoted
    models' ``recommendations`` rows are recomputed first and written in the same
    warehouse write as the decisions, so the served lists always follow the champions.

    ``data`` (the published build) is read when not given.
    """
    if not run_ids:
        return []
    store = warehouse_at(warehouse)
    if data is None:
        data = open_dataset(store.path)
    con = store.connect_readonly()
    try:
        decisions = [decide(con, r, data, tolerance, seed, user_sample) for r in run_ids]
    finally:
        con.close()
    promoted = {d.model: d.challenger for d in decisions if d.promoted}
    served = _serve(promoted, data, store, top_n) if serve and promoted else None
    with store.update("record promotions") as con:
        for decision in decisions:
            apply(con, decision)
            log.info("%s: %s", decision.model, decision.note)
        _record_served(con, decisions, served, serve)
    return decisions


def _serve(promoted: dict[str, str], data: Dataset, store, top_n: int):
    """(rows, counts, models, generated_at) of the lists the new champions serve, computed
    before the write; None (with a warning) when they cannot be computed."""
    from jamrec.models import model_class
    from jamrec.operations import recommendations

    # Reference points (random, the oracle) are never served: nothing to compute for them.
    promoted = {m: r for m, r in promoted.items() if not model_class(m).reference}
    if not promoted:
        return None, {}, set(), now()
    con = store.connect_readonly()
    try:
        champions = recommendations.champions(con, promoted)
    finally:
        con.close()
    models = recommendations.affected(champions, set(promoted))
    generated_at = now()
    try:
        rows, counts = recommendations.compute(data, champions, top_n, only=models)
    except JamrecError as exc:
        log.warning("recommendations of %s not refreshed: %s", ", ".join(sorted(models)), exc)
        return None
    return rows, counts, models, generated_at


def _record_served(con, decisions: list[Decision], served, serve: bool) -> None:
    """Write the served lists with the decisions, or mark the promoted ones pending."""
    from jamrec.operations import recommendations

    promoted = [d for d in decisions if d.promoted]
    if served is None:
        if promoted:
            names = ", ".join(sorted({d.model for d in promoted}))
            pending = recommendations.PENDING.format(models=names)
            for decision in promoted:
                decision.pending = pending
            log.warning("%s", pending)
        return
    rows, counts, models, generated_at = served
    if not models:
        return
    recommendations.write(con, rows, models, generated_at)
    for decision in promoted:
        if decision.model in models:
            decision.recommendations = counts.get(decision.model, 0)
    log.info(
        "recommendations refreshed with the promotion: %s",
        ", ".join(f"{m} {counts.get(m, 0):,} rows" for m in sorted(models)),
    )


def promote_by_hand(
    run_id: str,
    note: str,
    warehouse: Path | None = None,
    serve: bool = True,
    top_n: int = 20,
) -> Decision:
    """Make ``run_id`` its model's champion (promotion or rollback), with a note; with
    ``serve``, its ``recommendations`` rows are recomputed and written in the same
    warehouse write (else, or when they cannot be computed, ``Decision.pending`` says
    which command refreshes them)."""
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        row = con.execute(
            "select model, build_id, status, model_path from model_runs where run_id = $r",
            {"r": run_id},
        ).fetchone()
        if row is None:
            raise JamrecError(f"no run {run_id!r}; see `jamrec runs`")
        model, build_id, status, path = row
        if status == "failed" or not path or not Path(path).exists():
            raise JamrecError(f"run {run_id} cannot serve: status {status}, saved model {path}")
    finally:
        con.close()
    served = _serve({model: run_id}, open_dataset(store.path), store, top_n) if serve else None
    with store.update(f"promote {run_id} by hand") as con:
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
        _record_served(con, [decision], served, serve)
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
