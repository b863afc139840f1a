"""Champion/challenger: which run of each model serves, and why.

A new run (the challenger) is compared with its model's champion on the validation split,
user by user (``user_metrics``, NDCG@10 under ``full_sample``, which every model has; both
runs evaluated with one evaluation seed, so on the same users): the mean paired
difference, its bootstrap 95% interval and a two-sided paired permutation test
(:mod:`jamrec.evaluation.significance`). The challenger is promoted when it is **not
significantly worse** (not: p < alpha with a negative difference) **and at least as good
within the tolerance** (difference >= -``tolerance``, default 0); ``promotions.note`` says
which condition decided. When the champion was trained on an older build, its saved model
is first re-scored on the new build's validation split (:class:`jamrec.operations.remap.
Remapped`: users and tracks it does not know get its fallback), with the same evaluation
settings. Runs recorded before per-user results existed are compared by their means (the
note says so). With several training seeds of one model, only the seed with the best
validation NDCG@10 challenges (a choice on validation). A failed or unevaluated run never
replaces a champion. Every decision is a row in ``promotions``; ``model_runs.is_champion``
and ``promotion_note`` show the outcome.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np

from jamrec.errors import JamrecError
from jamrec.evaluation.protocols import EvaluationSettings, bootstrap_code
from jamrec.evaluation.significance import ALPHA, N_PERMUTATIONS, PairedResult, compare_paired
from jamrec.log import log
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.operations.remap import Remapped, saved_model
from jamrec.provenance import now
from jamrec.timing import Timing
from jamrec.warehouse import timings
from jamrec.warehouse.history import SELECTION
from jamrec.warehouse.store import Warehouse, model_path, warehouse_at

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa

    # What _serve computes before the write: (rows, counts, models, generated_at).
    Served = tuple[pa.Table | None, dict[str, int], set[str], datetime]


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
    paired: PairedResult | None = None  # challenger minus champion, per validation user
    # Rows of `recommendations` written with the decision (None: the lists were not
    # refreshed; `pending` then says what to run).
    recommendations: int | None = None
    pending: str | None = None


def selection_value(con: duckdb.DuckDBPyConnection, run_id: str) -> float | None:
    """A run's champion-selection score (validation NDCG@10), None when it has none."""
    row = con.execute(
        "select val_ndcg_at_10 from run_selection where run_id = $r", {"r": run_id}
    ).fetchone()
    return None if row is None else float(row[0])


def selection_per_user(
    con: duckdb.DuckDBPyConnection, run_id: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(user ids, values)`` behind a run's selection score (sorted by user), or None
    when the run has no per-user results (recorded before they existed)."""
    protocol, split, _, _ = SELECTION
    got = con.execute(
        "select user_id, ndcg_at_10 from user_metrics where run_id = $r and protocol = $p "
        "and split = $s order by user_id",
        {"r": run_id, "p": protocol, "s": split},
    ).fetchnumpy()
    if not len(got["user_id"]):
        return None
    return np.asarray(got["user_id"], dtype=object), np.asarray(got["ndcg_at_10"], np.float64)


def rescore(
    champion_id: str, path: str | None, data: Dataset, settings: EvaluationSettings
) -> tuple[float | None, tuple[np.ndarray, np.ndarray] | None]:
    """The selection score of a champion trained on another build, re-scored on ``data``,
    and its per-user values (None, with a warning, when its saved model cannot be read)."""
    from jamrec.evaluation.protocols import evaluate

    protocol, split, _, _ = SELECTION
    try:
        inner, users, tracks = saved_model(path)
        result = evaluate(
            Remapped(inner, users, tracks, data),
            data,
            splits=(split,),
            protocols=(protocol,),
            seed=settings.seed,
            user_sample=settings.user_sample,
            n_boot=100,
        )
    except JamrecError as exc:
        log.warning("champion %s cannot be re-scored: %s", champion_id, exc)
        return None, None
    (block,) = result.per_user
    if block.user_ids is None:
        raise ValueError(f"{block.protocol}/{block.split}: per-user results without user ids")
    values = block.metrics.values[:, block.metrics.columns.index(("ndcg", 10))]
    return result.value(*SELECTION), (block.user_ids.astype(object), values)


def paired_difference(
    challenger: tuple[np.ndarray, np.ndarray],
    champion: tuple[np.ndarray, np.ndarray],
    settings: EvaluationSettings,
    n_permutations: int = N_PERMUTATIONS,
) -> PairedResult:
    """Challenger minus champion over the validation users both were measured on."""
    protocol, split, _, _ = SELECTION
    _, ia, ib = np.intersect1d(challenger[0], champion[0], return_indices=True)
    return compare_paired(
        challenger[1][ia],
        champion[1][ib],
        n_boot=settings.n_boot,
        n_permutations=n_permutations,
        seed=bootstrap_code(settings.seed, protocol, split),
    )


def gate(paired: PairedResult, tolerance: float = 0.0, alpha: float = ALPHA) -> tuple[bool, str]:
    """Promote when not significantly worse and at least as good within ``tolerance``;
    ``(promoted, why)``."""
    worse = paired.p_value < alpha and paired.difference < 0
    close = paired.difference >= -tolerance
    stats = (
        f"difference {paired.difference:+.4f} [{paired.ci_low:+.4f}, {paired.ci_high:+.4f}] "
        f"on {paired.n_users:,} paired users, p = {paired.p_value:.4f}"
    )
    within = f"at least as good within tolerance {tolerance}"
    if worse:
        return False, f"significantly worse ({stats} < {alpha})"
    if not close:
        return False, f"not significantly worse but not {within} ({stats})"
    return True, f"not significantly worse and {within} ({stats})"


def decide(
    con: duckdb.DuckDBPyConnection,
    challenger_id: str,
    data: Dataset,
    tolerance: float = 0.0,
    settings: EvaluationSettings | None = None,
    alpha: float = ALPHA,
) -> Decision:
    """Challenger vs champion for one run (read-only: :func:`apply` writes the outcome)."""
    settings = settings or EvaluationSettings()
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

    def outcome(
        champion_value: float | None,
        rescored: bool,
        promoted: bool,
        note: str,
        paired: PairedResult | None = None,
    ) -> Decision:
        return Decision(
            model, build_id, challenger_id, value, champion_id, champion_value, rescored,
            promoted, note, paired,
        )  # fmt: skip

    if value is None or purpose != "standard":
        if purpose != "standard":
            status = f"{status}, {purpose} run"
        return outcome(
            None, False, False, f"run {challenger_id} has no validation result ({status}): "
            "not promoted"
        )  # fmt: skip
    if champion is None:
        return outcome(
            None, False, True, f"first evaluated run of {model}: val NDCG@10 {value:.4f}"
        )
    champion_id, champion_build, stored_path = champion
    champion_path = str(model_path(con, stored_path)) if stored_path else None
    rescored = champion_build != build_id
    if rescored:
        champion_value, champion_users = rescore(champion_id, champion_path, data, settings)
        rescored = champion_value is not None
    else:
        champion_value = selection_value(con, champion_id)
        champion_users = selection_per_user(con, champion_id)
    where = f" re-scored on {build_id}" if rescored else ""
    against = f"champion {champion_id}{where}"
    if champion_value is None:
        return outcome(None, False, True, f"promoted: val NDCG@10 {value:.4f}, no comparable "
                       f"value of {against}")  # fmt: skip
    challenger_users = selection_per_user(con, challenger_id)
    if challenger_users is not None and champion_users is not None:
        paired = paired_difference(challenger_users, champion_users, settings)
        if paired.n_users:
            promoted, why = gate(paired, tolerance, alpha)
            verdict = "promoted" if promoted else "not promoted"
            note = f"{verdict}: val NDCG@10 {value:.4f} vs {against} {champion_value:.4f}: {why}"
            return outcome(champion_value, rescored, promoted, note, paired)
    # No per-user results on one side (runs recorded before they existed): the means.
    promoted = value >= champion_value - tolerance
    sign = ">=" if promoted else "<"
    note = (
        f"{'promoted' if promoted else 'not promoted'}: val NDCG@10 {value:.4f} {sign} "
        f"{against} {champion_value:.4f} (tolerance {tolerance}; no per-user results: means "
        "compared)"
    )
    return outcome(champion_value, rescored, promoted, note)


def _build_changed(
    con: duckdb.DuckDBPyConnection, run_id: str, trained_on: str, published: str | None
) -> Decision:
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


def apply(con: duckdb.DuckDBPyConnection, decision: Decision) -> None:
    """Record a decision: the promotions row, and the champion flags when promoted."""
    paired = decision.paired
    con.execute(
        "insert into promotions (decided_at, model, build_id, challenger_run_id, "
        "challenger_val_ndcg_at_10, champion_run_id, champion_val_ndcg_at_10, "
        "champion_rescored, promoted, note, val_difference, difference_ci_low, "
        "difference_ci_high, p_value, n_users_paired) values ($t, $m, $b, $c, $cv, $h, $hv, "
        "$r, $p, $n, $d, $dl, $dh, $pv, $nu)",
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
            "d": paired.difference if paired else None,
            "dl": paired.ci_low if paired else None,
            "dh": paired.ci_high if paired else None,
            "pv": paired.p_value if paired else None,
            "nu": paired.n_users if paired else None,
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


def challengers(
    con: duckdb.DuckDBPyConnection, run_ids: list[str]
) -> tuple[list[str], list[Decision]]:
    """The runs that challenge (per model, the best validation NDCG@10 among ``run_ids``:
    several training seeds give one challenger), and a not-promoted decision for the rest."""
    best: dict[str, tuple[float, str]] = {}
    info = {}
    for run_id in run_ids:
        row = con.execute(
            "select model, build_id, seed from model_runs where run_id = $r", {"r": run_id}
        ).fetchone()
        if row is None:
            raise JamrecError(f"no run {run_id!r}")
        value = selection_value(con, run_id)
        info[run_id] = (*row, value)
        key = value if value is not None else float("-inf")
        if row[0] not in best or key > best[row[0]][0]:
            best[row[0]] = (key, run_id)
    chosen = {run_id for _, run_id in best.values()}
    others = []
    for run_id in run_ids:
        if run_id in chosen:
            continue
        model, build_id, seed, value = info[run_id]
        winner = best[model][1]
        shown = f"{value:.4f}" if value is not None else "none"
        note = (
            f"not promoted: seed {seed} (val NDCG@10 {shown}) was not the best of the seeds "
            f"trained together; {winner} (seed {info[winner][2]}) challenged"
        )
        others.append(Decision(model, build_id, run_id, value, None, None, False, False, note))
    return [r for r in run_ids if r in chosen], others


def promote_runs(
    run_ids: list[str],
    data: Dataset | None = None,
    warehouse: Path | None = None,
    tolerance: float = 0.0,
    settings: EvaluationSettings | None = None,
    alpha: float = ALPHA,
    serve: bool = True,
    top_n: int = 20,
) -> list[Decision]:
    """Decide and record each challenger in ``run_ids``; with ``serve``, the promoted
    models' ``recommendations`` rows are recomputed first and written in the same
    warehouse write as the decisions, so the served lists always follow the champions.

    ``data`` (the published build) is read when not given; ``settings`` are the
    evaluation settings a champion from an older build is re-scored with. The decision's
    time is a ``promote`` row in ``timings``, written with it.
    """
    if not run_ids:
        return []
    start = time.perf_counter()
    store = warehouse_at(warehouse)
    if data is None:
        data = open_dataset(store.path)
    todo: list[str] = list(run_ids)
    con = store.connect_readonly()
    try:
        published = con.execute("select build_id from published_build").fetchall()
        now_published = published[0][0] if published else None
        if now_published != data.build_id:
            # The warehouse was rebuilt while these runs trained: their scores are on a
            # build that no longer serves, so none may replace a champion.
            decisions = [_build_changed(con, r, data.build_id, now_published) for r in run_ids]
        else:
            todo, decisions = challengers(con, run_ids)
            decisions += [decide(con, r, data, tolerance, settings, alpha) for r in todo]
    finally:
        con.close()
    promoted = {d.model: d.challenger for d in decisions if d.promoted}
    served = _serve(promoted, data, store, top_n) if serve and promoted else None
    with store.update("record promotions") as con:
        for decision in decisions:
            apply(con, decision)
            log.info("%s: %s", decision.model, decision.note)
        _record_served(con, decisions, served, serve)
        # Keyed by the one run that challenged, when there was one.
        challenger = todo[0] if len(todo) == 1 else None
        timings.insert(con, [_timing(decisions, start)], data.build_id, challenger)
    return decisions


def _timing(decisions: list[Decision], start: float) -> Timing:
    """The ``promote`` stage: its model when the decisions are one model's (as when
    training promotes each model's seeds together), the recommendations it served."""
    models = {d.model for d in decisions}
    served = [d.recommendations for d in decisions if d.recommendations is not None]
    model = models.pop() if len(models) == 1 else None
    return Timing.since("promote", start, rows=sum(served) if served else None, model=model)


def _serve(promoted: dict[str, str], data: Dataset, store: Warehouse, top_n: int) -> Served | None:
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


def _record_served(
    con: duckdb.DuckDBPyConnection, decisions: list[Decision], served: Served | None, serve: bool
) -> None:
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
    store.check_writable("jamrec promote")
    con = store.connect_readonly()
    try:
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
            None if previous is None else previous[0],
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
