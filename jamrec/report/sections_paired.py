"""The report's answers to "is the gap real?": paired comparisons, training seeds, and the
temporal protocol (:mod:`jamrec.operations.compare`, :mod:`jamrec.evaluation.significance`)."""

from __future__ import annotations

import duckdb

from jamrec.report import html as h
from jamrec.report import models
from jamrec.report.common import settings_table
from jamrec.report.data import Builds

LABELS = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}


def _label(metric: str, k: int | None) -> str:
    return f"{LABELS[metric]}@{k}" if k is not None else LABELS[metric]


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "&lt;0.0001" if value < 1e-4 else f"{value:.4f}"


TEMPORAL = ("temporal", "temporal_sample")


def paired_section(con: duckdb.DuckDBPyConnection, build_id: str, temporal: bool = False) -> str:
    """Every pair of models of the latest comparisons on the build (of the leave-k-out
    protocols, or of the temporal ones), significant ones marked."""
    ident = "paired-temporal" if temporal else "paired"
    out = [h.heading(4 if temporal else 3, ident, "Paired comparisons")]
    found = [
        r
        for r in models.latest_comparisons(con, build_id)
        if (r["protocol"] in TEMPORAL) == temporal
    ]
    if not found:
        text = "No paired comparison on this build yet: run `jamrec compare` (or `jamrec train`)."
        return out[0] + h.note(text, "missing")
    first = found[0]
    out.append(
        h.para(
            "Is a gap between two models real? Each pair is compared on the users both were "
            "evaluated on (the same users for every run: one evaluation seed, "
            f"{first['evaluation_seed']}), a user's value averaged over the model's training "
            "seeds. The difference a - b comes with a paired bootstrap 95% interval "
            f"({first['n_boot']} resamples of users), a paired permutation test "
            f"({first['n_permutations']:,} random sign flips of the per-user differences) "
            "and a Wilcoxon signed-rank test; p-values are adjusted with Holm's method across "
            "all pairs of one table. Pairs marked ★ differ significantly (adjusted p below "
            f"{first['alpha']}); the better model of each pair comes first."
        )
    )
    groups: dict[tuple, list[dict]] = {}
    for row in found:
        groups.setdefault((row["protocol"], row["split"], row["metric"], row["k"]), []).append(row)
    headers = ["a", "b", "users", "a − b [95% CI]", "p", "p (Holm)", "Wilcoxon p", ""]
    for (protocol, split, metric, k), pairs in groups.items():
        ident = f"paired-{protocol}-{split}-{metric}{k or ''}".replace("_", "-")
        title = f"{_label(metric, k)}, {split} split, `{protocol}` ({len(pairs)} pairs)"
        out.append(f'<h4 id="{h.esc(ident)}">{h.rich(title)}</h4>\n')
        body, classes = [], []
        for r in pairs:
            ci = f'<small class="ci">[{r["ci_low"]:+.4f}, {r["ci_high"]:+.4f}]</small>'
            body.append(
                [
                    h.esc(r["model_a"]),
                    h.esc(r["model_b"]),
                    h.esc(h.fmt(r["n_users"])),
                    f"{r['difference']:+.4f}{ci}",
                    _p(r["p_value"]),
                    _p(r["p_holm"]),
                    _p(r["wilcoxon_p"]),
                    "★ significant" if r["significant"] else "",
                ]
            )
            classes.append("significant" if r["significant"] else "")
        out.append(h.table(headers, body, {2, 3, 4, 5, 6}, classes, raw=True))
    return "".join(out)


def seeds_section(con: duckdb.DuckDBPyConnection, build_id: str, purpose: str = "standard") -> str:
    """Mean and spread of test NDCG@10 across training seeds, beside the per-user interval."""
    ident = "seeds" if purpose == "standard" else f"seeds-{purpose}"
    out = [h.heading(3 if purpose == "standard" else 4, ident, "Training seeds")]
    found = models.seed_spread(con, build_id, purpose)
    if not found:
        return out[0] + h.note("No evaluated runs to compare across seeds.", "missing")
    several = any(r["n_seeds"] > 1 for r in found)
    out.append(
        h.para(
            "Two sources of noise: which users happen to be evaluated (the 95% interval over "
            "users, its mean width here) and which training seed a model got (the standard "
            "deviation and range of its test NDCG@10 across seeds, each seed's latest run). "
            + (
                ""
                if several
                else "Every model has one seed here: `jamrec train --seeds 0,1,2` trains three."
            )
        )
    )
    body = [
        [
            h.esc(r["model"]),
            h.esc(r["protocol"]),
            h.esc(", ".join(str(s) for s in r["seeds"])),
            f"{r['mean']:.4f}",
            f"{r['sd']:.4f}" if r["sd"] is not None else "–",
            f"{r['low']:.4f}–{r['high']:.4f}" if r["n_seeds"] > 1 else "–",
            f"{r['mean_ci_width']:.4f}",
        ]
        for r in found
    ]
    headers = ["model", "protocol", "seeds", "mean NDCG@10", "sd", "range", "95% CI width"]
    out.append(h.table(headers, body, {3, 4, 5, 6}, raw=True))
    return "".join(out)


def temporal_section(con: duckdb.DuckDBPyConnection, builds: Builds) -> str:
    """The temporal protocol's split and results: trained before the cut, tested after it."""
    out = [h.heading(3, "temporal", "Temporal protocol")]
    build = builds.published or {}
    counts = (build.get("stage_counts") or {}).get("temporal")
    if counts:
        out.append(
            h.para(
                f"Trained on what happened before {counts['cut_date']} (the build's time cut), "
                f"tested on what {counts['test_users']:,} users who were active before it "
                f"jammed or liked on or after it ({counts['test']:,} positives). A positive's "
                "time is its jam's date, or the liked jam's for a like (a lower bound: likes "
                f"have no dates). {counts['test_positives_on_new_tracks']:,} test positives "
                "are tracks nobody had before the cut: they are not candidates, only counted; "
                f"{counts['new_users']:,} users first seen after the cut are not evaluated."
            )
        )
    runs = models.compared_runs(con, build["build_id"], "temporal") if build else []
    if not runs:
        text = "No temporal runs on this build: `jamrec train --protocol temporal`."
        return "".join(out) + h.note(text, "missing")
    metrics = models.metric_table(con, [r["run_id"] for r in runs])
    model_of = {r["run_id"]: r["model"] for r in runs}
    by_key = {(model_of[m["run_id"]], m["protocol"], m["metric"], m["k"]): m for m in metrics}
    score = {
        model: m["value"] for (model, p, metric, k), m in by_key.items()
        if (p, metric, k) == ("temporal_sample", "ndcg", 10)
    }  # fmt: skip
    order = sorted(model_of.values(), key=lambda m: (-(score.get(m) or 0.0), m))
    columns = [("hr", 10), ("ndcg", 10), ("hr", 20), ("ndcg", 20), ("mrr", None)]
    body, classes = [], []
    for protocol in ("temporal", "temporal_sample"):
        for model in order:
            cells = [by_key.get((model, protocol, metric, k)) for metric, k in columns]
            if not any(cells):
                continue
            tag = models.BASELINES.get(model)
            users = next(c["n_users"] for c in cells if c)
            body.append(
                [h.esc(model + (f" ({tag})" if tag else "")), protocol, h.esc(h.fmt(users))]
                + [_cell(c) for c in cells]
            )
            classes.append("baseline" if tag else "")
    headers = ["model", "protocol", "users"] + [_label(m, k) for m, k in columns]
    out.append(
        h.para(
            "`temporal`: every candidate ranked for every evaluated user; `temporal_sample`: "
            "the same on the seeded user sample (every model, the hybrid MLP included). Each "
            "cell: the mean, its 95% bootstrap interval below."
        )
    )
    out.append(h.table(headers, body, set(range(2, 3 + len(columns))), classes, raw=True))
    out.append(h.para("The temporal runs and their settings:"))
    out.append(settings_table(sorted(runs, key=lambda r: order.index(r["model"]))))
    out.append(paired_section(con, build["build_id"], temporal=True))
    out.append(seeds_section(con, build["build_id"], "temporal"))
    return "".join(out)


def _cell(m: dict | None) -> str:
    if m is None or m["value"] is None:
        return "–"
    return f'{m["value"]:.4f}<small class="ci">{m["ci_low"]:.4f}–{m["ci_high"]:.4f}</small>'
