"""Paired comparisons of models (``jamrec compare``): is a gap between two models real?

For one build, protocol, split and metric, each model is represented by its latest
evaluated run of every training seed (all evaluated with one evaluation seed, so on the
same users); a user's value is the mean over those seeds. Every pair of models is compared
on the users both were evaluated on (:mod:`jamrec.evaluation.significance`): the mean
difference with a paired bootstrap 95% interval, a paired permutation test and a Wilcoxon
signed-rank test, with Holm's correction across all pairs (one family per comparison).
Beside the per-user intervals, each model's spread across training seeds (the standard
deviation of its per-seed means) shows the other source of noise. Rows go to the
``comparisons`` history table; :func:`format_comparison` prints them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from jamrec.config import get_settings
from jamrec.errors import JamrecError
from jamrec.evaluation.protocols import PROTOCOLS, TEMPORAL_PROTOCOLS, bootstrap_code
from jamrec.evaluation.significance import (
    ALPHA,
    N_PERMUTATIONS,
    bootstrap_intervals,
    compare_paired,
    holm,
)
from jamrec.log import log
from jamrec.provenance import new_id, now
from jamrec.timing import Timing
from jamrec.warehouse import history, timings
from jamrec.warehouse.store import warehouse_at

COMPARABLE = (*PROTOCOLS, *TEMPORAL_PROTOCOLS)
# (metric, k) -> user_metrics column: the only identifiers formatted into the queries.
COLUMNS = {
    ("hr", 5): "hr_at_5",
    ("hr", 10): "hr_at_10",
    ("hr", 20): "hr_at_20",
    ("ndcg", 5): "ndcg_at_5",
    ("ndcg", 10): "ndcg_at_10",
    ("ndcg", 20): "ndcg_at_20",
    ("mrr", None): "rr",
}
LABELS = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}


def purpose_of(protocol: str) -> str:
    """The runs a protocol compares: ``temporal`` runs for the temporal protocols, else
    the standard (leave-k-out) runs."""
    return "temporal" if protocol in TEMPORAL_PROTOCOLS else "standard"


def metric_label(metric: str, k: int | None) -> str:
    """``NDCG@10``, ``MRR``."""
    return f"{LABELS[metric]}@{k}" if k is not None else LABELS[metric]


@dataclass
class ModelSeeds:
    """One model in a comparison: its runs (latest per training seed) and their users.

    ``users`` (n,) sorted user ids evaluated in every one of the runs; ``values`` (n,) the
    per-user metric averaged over the runs; ``seed_means`` each run's own mean (its
    ``metrics`` row).
    """

    model: str
    runs: list[str]
    seeds: list[int]
    seed_means: list[float]
    users: np.ndarray
    values: np.ndarray
    mean: float = float("nan")
    ci_low: float = float("nan")
    ci_high: float = float("nan")

    @property
    def seed_sd(self) -> float | None:
        """Sample standard deviation of the per-seed means (None with one seed)."""
        if len(self.seed_means) < 2:
            return None
        return float(np.std(self.seed_means, ddof=1))


@dataclass
class Pair:
    """One row of ``comparisons``: model_a (the better mean) against model_b."""

    model_a: str
    model_b: str
    n_users: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    wilcoxon_p: float
    p_holm: float = float("nan")
    significant: bool = False


@dataclass
class Comparison:
    """Every pair of models on one build, protocol, split and metric (one Holm family)."""

    comparison_id: str
    build_id: str
    protocol: str
    split: str
    metric: str
    k: int | None
    evaluation_seed: int
    n_boot: int
    n_permutations: int
    alpha: float
    models: list[ModelSeeds] = field(default_factory=list)
    pairs: list[Pair] = field(default_factory=list)


def check_request(protocol: str, split: str, metric: str, k: int | None) -> int | None:
    """Validate what to compare (one clear line if not); returns the cutoff (None for MRR)."""
    if protocol not in COMPARABLE:
        raise JamrecError(f"cannot compare under {protocol!r}; known: {', '.join(COMPARABLE)}")
    if split not in ("val", "test"):
        raise JamrecError(f"split must be val or test, not {split!r}")
    k = None if metric == "mrr" else k
    if (metric, k) not in COLUMNS:
        known = ", ".join(metric_label(m, c) for m, c in COLUMNS)
        raise JamrecError(f"no per-user values for {metric}@{k}; known: {known}")
    return k


def _runs(
    con: duckdb.DuckDBPyConnection, build_id: str, purpose: str, evaluation_seed: int
) -> dict[str, list[tuple]]:
    """``{model: [(seed, run_id), ...]}``: the latest evaluated run of each training seed."""
    found = con.execute(
        """
        select model, seed, arg_max(run_id, started_at) as run_id
        from model_runs
        where build_id = $b and status = 'evaluated' and purpose = $p
            and evaluation_seed = $e
        group by model, seed order by model, seed
        """,
        {"b": build_id, "p": purpose, "e": evaluation_seed},
    ).fetchall()
    runs: dict[str, list[tuple]] = {}
    for model, seed, run_id in found:
        runs.setdefault(model, []).append((seed, run_id))
    return runs


def _model_seeds(
    con: duckdb.DuckDBPyConnection,
    model: str,
    runs: list[tuple],
    protocol: str,
    split: str,
    column: str,
    metric: str,
    k: int | None,
) -> ModelSeeds | None:
    """A model's seed-averaged per-user values (None when its runs have none here)."""
    run_ids = [r for _, r in runs]
    got = con.execute(
        f"""
        select user_id, avg({column}) as value
        from user_metrics
        where list_contains($runs, run_id) and protocol = $p and split = $s
        group by user_id having count(*) = $n
        order by user_id
        """,
        {"runs": run_ids, "p": protocol, "s": split, "n": len(run_ids)},
    ).fetchnumpy()
    if not len(got["user_id"]):
        return None
    means = dict(
        con.execute(
            "select run_id, value from metrics where list_contains($runs, run_id) "
            "and protocol = $p and split = $s and metric = $m and k is not distinct from $k",
            {"runs": run_ids, "p": protocol, "s": split, "m": metric, "k": k},
        ).fetchall()
    )
    return ModelSeeds(
        model,
        run_ids,
        [int(s) for s, _ in runs],
        [float(means[r]) for r in run_ids if r in means],
        np.asarray(got["user_id"], dtype=object),
        np.asarray(got["value"], dtype=np.float64),
    )


def compare_models(
    con: duckdb.DuckDBPyConnection,
    build_id: str | None = None,
    protocol: str = "full_sample",
    split: str = "test",
    metric: str = "ndcg",
    k: int | None = 10,
    evaluation_seed: int | None = None,
    models: list[str] | None = None,
    n_boot: int = 1000,
    n_permutations: int = N_PERMUTATIONS,
    alpha: float = ALPHA,
) -> Comparison:
    """Every pair of models on ``build_id`` (default: the published build); see the module
    docstring. ``con`` is any connection to the warehouse (read-only is enough).
    ``evaluation_seed`` defaults to the configured one; runs evaluated with another seed
    are left out (they were measured on other users)."""
    k = check_request(protocol, split, metric, k)
    column = COLUMNS[(metric, k)]
    if evaluation_seed is None:
        evaluation_seed = get_settings().evaluation_seed
    if build_id is None:
        row = con.execute("select build_id from published_build").fetchone()
        if row is None:
            raise JamrecError("the warehouse has no published build; run `jamrec etl` first")
        build_id = row[0]
    comparison = Comparison(
        new_id("cmp"),
        build_id,
        protocol,
        split,
        metric,
        k,
        evaluation_seed,
        n_boot,
        n_permutations,
        alpha,
    )
    code = bootstrap_code(evaluation_seed, protocol, split)
    for model, runs in _runs(con, build_id, purpose_of(protocol), evaluation_seed).items():
        if models and model not in models:
            continue
        entry = _model_seeds(con, model, runs, protocol, split, column, metric, k)
        if entry is None:
            continue
        entry.mean = float(entry.values.mean())
        comparison.models.append(entry)
    # Every model's interval in one bootstrap: the resamples each would draw alone.
    intervals = bootstrap_intervals([m.values for m in comparison.models], n_boot, code)
    for entry, (low, high) in zip(comparison.models, intervals, strict=True):
        entry.ci_low, entry.ci_high = low, high
    comparison.models.sort(key=lambda m: (-m.mean, m.model))
    _pairs(comparison, code)
    return comparison


def _pairs(comparison: Comparison, code: list[int]) -> None:
    entries = comparison.models
    pairs = [(a, b) for i, a in enumerate(entries) for b in entries[i + 1 :]]
    aligned = []
    for a, b in pairs:
        _, ia, ib = np.intersect1d(a.users, b.users, return_indices=True)
        aligned.append((a.values[ia], b.values[ib]))
    # The pairs' bootstraps together: the same resamples each would draw alone.
    intervals = bootstrap_intervals([x - y for x, y in aligned], comparison.n_boot, code)
    for (a, b), (x, y), interval in zip(pairs, aligned, intervals, strict=True):
        result = compare_paired(
            x, y, comparison.n_boot, comparison.n_permutations, code, interval=interval
        )
        comparison.pairs.append(Pair(a.model, b.model, *result))
    adjusted = holm([p.p_value for p in comparison.pairs])
    for pair, p_holm in zip(comparison.pairs, adjusted):
        pair.p_holm = float(p_holm)
        pair.significant = bool(np.isfinite(p_holm) and p_holm < comparison.alpha)


def record_comparison(con: duckdb.DuckDBPyConnection, comparison: Comparison) -> int:
    """Write a comparison's pairs to ``comparisons`` (a writable connection); returns rows."""
    by_model = {m.model: m for m in comparison.models}
    stamp = now()
    rows = []
    for p in comparison.pairs:
        a, b = by_model[p.model_a], by_model[p.model_b]
        values = {
            "comparison_id": comparison.comparison_id,
            "compared_at": stamp,
            "build_id": comparison.build_id,
            "protocol": comparison.protocol,
            "split": comparison.split,
            "metric": comparison.metric,
            "k": comparison.k,
            "model_a": p.model_a,
            "model_b": p.model_b,
            "runs_a": json.dumps(a.runs),
            "runs_b": json.dumps(b.runs),
            "n_users": p.n_users,
            "mean_a": p.mean_a,
            "mean_b": p.mean_b,
            "difference": p.difference,
            "ci_low": p.ci_low,
            "ci_high": p.ci_high,
            "p_value": p.p_value,
            "p_holm": p.p_holm,
            "significant": p.significant,
            "wilcoxon_p": p.wilcoxon_p,
            "seeds_a": len(a.seeds),
            "seed_sd_a": a.seed_sd,
            "seeds_b": len(b.seeds),
            "seed_sd_b": b.seed_sd,
            "n_pairs": len(comparison.pairs),
            "alpha": comparison.alpha,
            "evaluation_seed": comparison.evaluation_seed,
            "n_boot": comparison.n_boot,
            "n_permutations": comparison.n_permutations,
        }
        rows.append([values[c] for c in history.TABLES["comparisons"].column_names()])
    if rows:
        con.executemany(history.insert_sql("comparisons"), rows)
    return len(rows)


def run_comparisons(
    requests: Sequence[tuple[str, str, str, int | None]],
    warehouse: Path | None = None,
    build_id: str | None = None,
    evaluation_seed: int | None = None,
    n_permutations: int = N_PERMUTATIONS,
    record: bool = True,
    models: list[str] | None = None,
) -> list[Comparison]:
    """Compare every pair of models (or of ``models``) for each ``(protocol, split,
    metric, k)`` request and record the pairs, with the time it took (a ``compare`` row in
    ``timings``), in one warehouse write."""
    start = time.perf_counter()
    store = warehouse_at(warehouse)
    con = store.connect_readonly()
    try:
        done = [
            compare_models(
                con,
                build_id,
                protocol,
                split,
                metric,
                k,
                evaluation_seed,
                models,
                n_permutations=n_permutations,
            )
            for protocol, split, metric, k in requests
        ]
    finally:
        con.close()
    if record and any(c.pairs for c in done):
        with store.update("record comparisons") as con:
            pairs = 0
            for comparison in done:
                n = record_comparison(con, comparison)
                pairs += n
                if n:
                    log.info(
                        "compared %d models (%d pairs) under %s/%s %s",
                        len(comparison.models),
                        n,
                        comparison.protocol,
                        comparison.split,
                        metric_label(comparison.metric, comparison.k),
                    )
            timings.insert(con, [Timing.since("compare", start, rows=pairs)], done[0].build_id)
    return done


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, fmt)


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def format_comparison(comparison: Comparison) -> str:
    """Plain text: each model's mean with its interval over users and its spread across
    training seeds, then every pair with the paired difference and tests."""
    label = metric_label(comparison.metric, comparison.k)
    head = (
        f"{comparison.split} split, {comparison.protocol}, {label}: build "
        f"{comparison.build_id}, evaluation seed {comparison.evaluation_seed}"
    )
    if len(comparison.models) < 2:
        found = ", ".join(m.model for m in comparison.models) or "none"
        return (
            f"{head}\nnothing to compare: fewer than two models have per-user results here "
            f"({found}); run `jamrec train`"
        )
    lines = [
        head,
        f"{'model':<20}{'seeds':>6}{'mean':>9}  {'95% CI over users':<19}"
        f"{'sd across seeds':>16}  {'range across seeds':<18}",
    ]
    for m in comparison.models:
        ci = f"[{m.ci_low:.4f}, {m.ci_high:.4f}]"
        spread = (
            f"[{min(m.seed_means):.4f}, {max(m.seed_means):.4f}]" if len(m.seed_means) > 1 else "-"
        )
        lines.append(
            f"{m.model:<20}{len(m.seeds):>6}{m.mean:>9.4f}  {ci:<19}"
            f"{_num(m.seed_sd):>16}  {spread:<18}"
        )
    n = len(comparison.pairs)
    lines += [
        "",
        f"pairs: a - b over the users both were evaluated on; 95% paired bootstrap interval "
        f"({comparison.n_boot} resamples); paired permutation p ({comparison.n_permutations} "
        f"sign flips), Holm-adjusted over {n} pairs; * = significant at {comparison.alpha}",
        f"{'a':<16}{'b':<16}{'users':>8}{'a - b':>10}  {'95% CI':<19}"
        f"{'p':>8}{'p (Holm)':>10}{'Wilcoxon p':>12}",
    ]
    for p in comparison.pairs:
        mark = "*" if p.significant else " "
        ci = f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]"
        lines.append(
            f"{p.model_a:<16}{p.model_b:<16}{p.n_users:>8,}{p.difference:>+10.4f}  {ci:<19}"
            f"{_p(p.p_value):>8}{_p(p.p_holm):>10}{_p(p.wilcoxon_p):>12} {mark}"
        )
    return "\n".join(lines)
