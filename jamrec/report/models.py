"""The model half of the report: runs, metrics, curves and champions, read with SQL.

"Compared runs" are the latest evaluated run of each model on one build (the published
one), as in :func:`jamrec.operations.comparison.comparison`; only standard runs
(``purpose``), never the cold-start study's, unless asked for by purpose. The history tables
and views are those of :mod:`jamrec.warehouse.history` (the warehouse is migrated to them
when it is opened).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import duckdb

from jamrec.report.data import rows
from jamrec.warehouse.store import one_row

BASELINES = {
    "random": "baseline",
    "popularity": "baseline",
    "item_knn": "baseline",
    "user_knn": "baseline",
    "oracle": "upper bound",
}
PROTOCOL_ORDER = ("full", "full_sample", "sampled_100", "temporal", "temporal_sample")
PURPOSES = ("standard", "cold_start", "temporal")


def has_runs(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``model_runs`` holds at least one row."""
    return one_row(con, "select count(*) from model_runs")[0] > 0


def _purpose(con: duckdb.DuckDBPyConnection, purpose: str = "standard") -> str:
    """A ``model_runs`` filter on ``purpose`` (one of :data:`PURPOSES`, never input)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r}; known: {PURPOSES}")
    return f"purpose = '{purpose}'"


def compared_runs(
    con: duckdb.DuckDBPyConnection, build_id: str, purpose: str = "standard"
) -> list[dict]:
    """The latest evaluated run of each model on ``build_id``, with its timings, by model.

    ``purpose``: ``"standard"`` (the comparison) or ``"cold_start"`` (the cold-start study).
    """
    return rows(
        con,
        f"""
        select model, arg_max(run_id, started_at) as run_id,
            strftime(max(started_at) at time zone 'UTC', '%Y-%m-%d %H:%M UTC') as started,
            arg_max(json_extract(timings, '$.fit_s')::double, started_at) as fit_s,
            arg_max(json_extract(timings, '$.evaluate_s')::double, started_at) as evaluate_s,
            arg_max(config::varchar, started_at) as config,
            count(*) as n_runs
        from model_runs
        where build_id = $b and status = 'evaluated' and {_purpose(con, purpose)}
        group by model order by model
        """,
        {"b": build_id},
    )


# Settings that matter only when early stopping is on; left out of a run's settings
# otherwise, so the settings column stays short.
STOPPING = ("patience", "min_gain", "probe_users")


def settings_text(config: str | dict | None) -> str:
    """``alpha=40, factors=40``: a run's settings (``model_runs.config``), sorted by name,
    floats in their shortest form; the early-stopping settings only when it is on."""
    found = json.loads(config) if isinstance(config, str) else dict(config or {})
    if not found.get("early_stopping", True):
        found = {k: v for k, v in found.items() if k not in STOPPING}
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(found.items())
    )


def run_counts(con: duckdb.DuckDBPyConnection, build_id: str | None) -> dict:
    """Standard runs by status on ``build_id`` and on other builds (to say why nothing is
    compared)."""
    found = con.execute(
        "select build_id is not distinct from $b as here, status, count(*) "
        f"from model_runs where {_purpose(con)} group by all",
        {"b": build_id},
    ).fetchall()
    return {(here, status): n for here, status, n in found}


def metric_table(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> list[dict]:
    """Every metrics row of ``run_ids``: run_id, protocol, split, metric, k, value, CI, users."""
    if not run_ids:
        return []
    return rows(
        con,
        "select run_id, protocol, split, metric, k, value, ci_low, ci_high, n_users "
        "from metrics where list_contains($ids, run_id) order by all",
        {"ids": run_ids},
    )


def curves(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> list[dict]:
    """Training-curve points of ``run_ids`` (run_id, step, loss, val_ndcg_at_10), by step."""
    if not run_ids:
        return []
    return rows(
        con,
        "select run_id, step, loss, val_ndcg_at_10 from training_curves "
        "where list_contains($ids, run_id) order by run_id, step",
        {"ids": run_ids},
    )


@dataclass
class Champions:
    """Champion tracking.

    ``current``: one row per model with a champion; ``history``: every standard run with
    its selection value (val NDCG@10, full_sample), oldest first; ``decisions``: the
    ``promotions`` rows, newest first.
    """

    current: list[dict]
    history: list[dict]
    decisions: list[dict]


def champions(con: duckdb.DuckDBPyConnection, decisions_limit: int = 30) -> Champions:
    """Current champions and their history over runs (see :class:`Champions`)."""
    history = rows(
        con,
        f"""
        select model, run_id, build_id, status, is_champion, promotion_note as note,
            strftime(promoted_at at time zone 'UTC', '%Y-%m-%d %H:%M UTC') as promoted_at,
            sel.val_ndcg_at_10 as value,
            strftime(started_at at time zone 'UTC', '%Y-%m-%d %H:%M UTC') as started
        from model_runs left join run_selection sel using (run_id)
        where {_purpose(con)}
        order by model, started_at, run_id
        """,
    )
    current = [r for r in history if r["is_champion"]]
    decisions = rows(
        con,
        "select strftime(decided_at at time zone 'UTC', '%Y-%m-%d %H:%M UTC') as decided, "
        "model, challenger_run_id, challenger_val_ndcg_at_10, champion_run_id, "
        "champion_val_ndcg_at_10, promoted, note "
        "from promotions order by decided_at desc, model limit $n",
        {"n": int(decisions_limit)},
    )
    return Champions(current, history, decisions)


def model_order(metrics: list[dict], runs: list[dict]) -> list[str]:
    """Models best first by test NDCG@10 (full_sample, which every model has), then name."""
    by_run = {r["run_id"]: r["model"] for r in runs}
    score = {
        by_run[m["run_id"]]: m["value"]
        for m in metrics
        if (m["protocol"], m["split"], m["metric"], m["k"]) == ("full_sample", "test", "ndcg", 10)
    }
    return sorted(by_run.values(), key=lambda model: (-(score.get(model) or 0.0), model))


def latest_comparisons(con: duckdb.DuckDBPyConnection, build_id: str) -> list[dict]:
    """The pairs of the latest comparison of each protocol, split, metric and cutoff on
    ``build_id`` (``comparisons``), in the comparison's order (better models first)."""
    return rows(
        con,
        """
        select protocol, split, metric, k, model_a, model_b, n_users, mean_a, mean_b,
            difference, ci_low, ci_high, p_value, p_holm, significant, wilcoxon_p, n_pairs,
            seeds_a, seeds_b, seed_sd_a, seed_sd_b, evaluation_seed, n_boot, n_permutations,
            alpha
        from comparisons
        where build_id = $b
        qualify dense_rank() over (partition by protocol, split, metric, k
            order by compared_at desc, comparison_id desc) = 1
        order by protocol, split, metric, k, mean_a desc, model_a, mean_b desc, model_b
        """,
        {"b": build_id},
    )


def seed_spread(
    con: duckdb.DuckDBPyConnection, build_id: str, purpose: str = "standard"
) -> list[dict]:
    """Per model and protocol: test NDCG@10 of the latest run of each training seed
    (same evaluation seed as the latest run), its mean, standard deviation and range."""
    return rows(
        con,
        f"""
        with latest as (
            select model, seed, arg_max(run_id, started_at) as run_id,
                arg_max(evaluation_seed, started_at) as evaluation_seed
            from model_runs
            where build_id = $b and status = 'evaluated' and {_purpose(con, purpose)}
            group by model, seed
        ),
        current as (
            select * from latest
            qualify evaluation_seed is not distinct from
                arg_max(evaluation_seed, run_id) over (partition by model)
        )
        select c.model, m.protocol, count(*) as n_seeds,
            list(c.seed order by c.seed) as seeds, avg(m.value) as mean,
            stddev_samp(m.value) as sd, min(m.value) as low, max(m.value) as high,
            avg(m.ci_high - m.ci_low) as mean_ci_width
        from current c join metrics m using (run_id)
        where m.split = 'test' and m.metric = 'ndcg' and m.k = 10
            and m.protocol in ('full', 'full_sample', 'temporal', 'temporal_sample')
        group by c.model, m.protocol
        order by m.protocol, mean desc, c.model
        """,
        {"b": build_id},
    )


def withheld(con: duckdb.DuckDBPyConnection, build_id: str | None) -> dict | None:
    """The cold-start draw on ``build_id`` (tracks, share, seed), or None when there is none."""
    found = rows(
        con,
        "select count(*) as tracks, max(share) as share, max(seed) as seed "
        "from coldstart_tracks where build_id = $b",
        {"b": build_id},
    )[0]
    return found if found["tracks"] else None


def sweeps(con: duckdb.DuckDBPyConnection, limit: int = 4) -> list[dict]:
    """Every trial of the latest ``limit`` sweeps, newest sweep first, best trial first; the
    chosen trial carries its run's test NDCG@10 (``full_sample``) when it was recorded."""
    test = (
        "left join (select run_id, value, ci_low, ci_high from metrics where protocol = "
        "'full_sample' and split = 'test' and metric = 'ndcg' and k = 10) t "
        "on s.chosen and t.run_id = s.run_id"
    )
    return rows(
        con,
        f"""
        with recent as (
            select sweep_id, max(finished_at) as finished from sweeps
            group by sweep_id order by finished desc nulls last, sweep_id desc
            limit {int(limit)}
        )
        select s.sweep_id, s.model, s.build_id, s.config::varchar as config,
            s.val_ndcg_at_10, s.chosen, s.run_id, s.seconds,
            strftime(r.finished at time zone 'UTC', '%Y-%m-%d %H:%M UTC') as finished,
            t.value as test_ndcg, t.ci_low as test_low, t.ci_high as test_high
        from sweeps s join recent r using (sweep_id) {test}
        order by r.finished desc nulls last, s.sweep_id desc,
            s.val_ndcg_at_10 desc nulls last, s.config::varchar
        """,
    )


def study_rows(con: duckdb.DuckDBPyConnection, build_id: str | None) -> list[dict]:
    """``study_results`` rows of the latest ``jamrec study`` of each experiment on
    ``build_id`` (experiments may run apart, ``--experiments``), ``settings`` parsed."""
    if build_id is None:
        return []
    found = rows(
        con,
        """
        select experiment, variant, model, run_id, protocol, split, metric, k, step, value,
            ci_low, ci_high, n_users, settings::varchar as settings, study_id
        from study_results
        where build_id = $b
        qualify dense_rank() over (partition by experiment
            order by created_at desc, study_id desc) = 1
        order by experiment, variant, model, protocol, split, metric, k nulls first,
            step nulls first
        """,
        {"b": build_id},
    )
    for row in found:
        row["settings"] = json.loads(row["settings"]) if row["settings"] else {}
    return found


def study_builds(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Builds that have ``study_results`` rows, newest study first."""
    return [
        b
        for (b,) in con.execute(
            "select build_id from study_results group by build_id "
            "order by max(created_at) desc, build_id"
        ).fetchall()
    ]
