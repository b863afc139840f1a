"""The report's model section: the comparison, metrics against K, training curves."""

from __future__ import annotations

import duckdb

from jamrec.report import figures_models as figures
from jamrec.report import html as h
from jamrec.report import models
from jamrec.report.common import protocol_words, settings_cell
from jamrec.report.data import Builds, planted
from jamrec.report.sections_champions import champions_section
from jamrec.report.sections_paired import paired_section, seeds_section, temporal_section
from jamrec.warehouse.store import table_names

KS = (5, 10, 20)
COLUMNS = [("hr", k) for k in KS] + [("ndcg", k) for k in KS] + [("mrr", None)]
LABELS = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}
ELSEWHERE = ("fold_in", "beyond")  # protocols with tables of their own (Beyond the study)
BCE = "binary cross-entropy, mean per training pair"
# What each iterative model's recorded loss is (training_curves.loss): never one axis for all.
LOSSES = {
    "als": "implicit's confidence-weighted squared error + L2",
    "mbcf": BCE,
    "hybrid": BCE,
    "hybrid_study": BCE,
    "two_tower": BCE,
}


def models_section(con: duckdb.DuckDBPyConnection, builds: Builds) -> str:
    """Everything about model runs on the published build, or what is missing and why."""
    out = [h.heading(2, "models", "Models")]
    if not models.has_runs(con):
        out.append(
            h.note("No model runs yet: run `jamrec train`, then rebuild this report.", "missing")
        )
        return "".join(out)
    if builds.published is None:
        out.append(
            h.note(
                "Runs exist but no build is published: run `jamrec etl`, then `jamrec train`.",
                "missing",
            )
        )
        return "".join(out)
    build_id = builds.published["build_id"]
    runs = models.compared_runs(con, build_id)
    if not runs:
        counts = models.run_counts(con, build_id)
        here = sum(n for (on, _), n in counts.items() if on)
        elsewhere = sum(n for (on, _), n in counts.items() if not on)
        trained = counts.get((True, "trained"), 0)
        hint = "run `jamrec evaluate`" if trained else "run `jamrec train`"
        text = (
            f"No evaluated run on the published build {build_id} ({here} run(s) on it, "
            f"{trained} trained but not evaluated; {elsewhere} on other builds): {hint}."
        )
        return "".join([*out, h.note(text, "missing"), champions_section(con)])
    metrics = models.metric_table(con, [r["run_id"] for r in runs])
    order = models.model_order(metrics, runs)
    out.append(_comparison(con, runs, metrics, order))
    out.append(paired_section(con, build_id))
    out.append(seeds_section(con, build_id))
    out.append(_at_k(runs, metrics, order))
    out.append(_curves(con, runs, order))
    out.append(temporal_section(con, builds))
    out.append(champions_section(con))
    return "".join(out)


def _cell(m: dict | None) -> str:
    if m is None or m["value"] is None:
        return "–"
    ci = ""
    if m["ci_low"] is not None and m["ci_high"] is not None:
        ci = f'<small class="ci">{m["ci_low"]:.4f}–{m["ci_high"]:.4f}</small>'
    return f"{m['value']:.4f}{ci}"


def _comparison(
    con: duckdb.DuckDBPyConnection, runs: list[dict], metrics: list[dict], order: list[str]
) -> str:
    out = [h.heading(3, "comparison", "Comparison")]
    model_of = {r["run_id"]: r["model"] for r in runs}
    by_key = {
        (model_of[m["run_id"]], m["protocol"], m["split"], m["metric"], m["k"]): m for m in metrics
    }
    out.append(
        h.para("Runs compared: the latest evaluated run of each model on the published build.")
    )
    run_rows = [
        [
            h.esc(r["model"]),
            h.esc(r["run_id"]),
            h.esc(r["started"]),
            h.esc(h.seconds(r["fit_s"])),
            h.esc(h.seconds(r["evaluate_s"])),
            h.esc(h.fmt(r["n_runs"])),
            settings_cell(r.get("config")),
        ]
        for r in sorted(runs, key=lambda r: order.index(r["model"]))
    ]
    headers = ["model", "run", "started", "fit s", "evaluate s", "evaluated runs on this build"]
    out.append(h.table([*headers, "settings"], run_rows, numeric={3, 4, 5}, raw=True))
    # the protocols that rank held-out tracks; beyond and fold_in have tables of their own
    found = {k[1] for k in by_key if (k[3], k[4]) in COLUMNS} - set(ELSEWHERE)
    protocols = [p for p in models.PROTOCOL_ORDER if p in found] + sorted(
        found - set(models.PROTOCOL_ORDER)
    )
    explained = " ".join(f"`{p}`: {protocol_words(p)}." for p in protocols)
    shown_elsewhere = [p for p in ELSEWHERE if any(k[1] == p for k in by_key)]
    if shown_elsewhere:
        explained += " " + " ".join(
            f"`{p}` ({protocol_words(p)}): in Beyond the study." for p in shown_elsewhere
        )
    out.append(
        h.para(
            "Each cell: the mean over evaluated users, its 95% bootstrap interval below. "
            + explained
        )
    )
    headers = ["model", "protocol", "users"] + [
        f"{LABELS[m]}@{k}" if k else LABELS[m] for m, k in COLUMNS
    ]
    for split in ("test", "val"):
        body, classes = [], []
        for protocol in protocols:
            for model in order:
                cells = [by_key.get((model, protocol, split, metric, k)) for metric, k in COLUMNS]
                if not any(cells):
                    continue
                users = next(c["n_users"] for c in cells if c)
                tag = models.BASELINES.get(model)
                name = h.esc(model + (f" ({tag})" if tag else ""))
                body.append([name, protocol, h.esc(h.fmt(users))] + [_cell(c) for c in cells])
                classes.append("baseline" if tag else "")
        out.append(h.heading(4, f"comparison-{split}", f"{split} split"))
        if body:
            out.append(h.table(headers, body, set(range(2, 3 + len(COLUMNS))), classes, raw=True))
        else:
            out.append(h.note(f"No {split} metrics recorded: run `jamrec evaluate`.", "missing"))
    out.extend(_comparison_notes(con, by_key, protocols, order))
    return "".join(out)


def _comparison_notes(
    con: duckdb.DuckDBPyConnection, by_key: dict, protocols: list[str], order: list[str]
) -> list[str]:
    out, gaps = [], []
    for protocol in protocols:
        missing = [m for m in order if not any(k[:2] == (m, protocol) for k in by_key)]
        if missing:
            gaps.append(f"not evaluated under `{protocol}`: {', '.join(missing)}")
    if gaps:
        why = "pairwise models such as the hybrid MLP are too costly to rank fully for every user"
        out.append(h.note(f"{'; '.join(gaps)} ({why}: compare them under `full_sample`)."))
    for name, role in (("random", "the chance level"), ("popularity", "the simplest baseline")):
        if name not in order:
            text = f"No `{name}` run on this build ({role}): `jamrec train --models {name}`."
            out.append(h.note(text, "missing"))
    if any(t.startswith("truth_") for t in table_names(con)):
        out.append(h.note(planted_note((planted(con) or {}).get("audio_share", 0))))
        if "oracle" not in order:
            text = "Generated data but no `oracle` run (the best possible ranking): "
            out.append(h.note(text + "`jamrec train --models oracle`.", "missing"))
    else:
        text = "Real data (no `truth_` tables): no oracle row, planted preferences exist only "
        out.append(h.note(text + "for generated data."))
    return out


def planted_note(share: float) -> str:
    """What the generator planted, for an audio share, and what that means for the table."""
    text = (
        "Generated data: each user picks tracks with probability proportional to "
        "exp(score), score = beta (sqrt(1 - s) u.t + sqrt(s) audio taste) + popularity "
        f"bias, with audio share s = {share:g}. The track vectors t are about half linear "
        "in the audio features. "
    )
    if share == 0:
        text += (
            "No separate audio taste: what the features say, plays say too, so models of "
            "ids can match models of features except on tracks without plays. "
        )
    else:
        text += (
            f"{share:.0%} of the taste variance is a non-linear audio taste (a bump around "
            "each user's preferred point in five audio features): models of ids learn it only "
            "from plays, models linear in the features capture about half of it, and a model "
            "that combines ids with a non-linear use of the features has the most to gain. "
        )
    return text + (
        "The `oracle` ranks by the full planted score: the ceiling. Results on dumps with "
        "another audio share are not comparable."
    )


def _at_k(runs: list[dict], metrics: list[dict], order: list[str]) -> str:
    out = [h.heading(3, "metrics-at-k", "HR@K and NDCG@K")]
    model_of = {r["run_id"]: r["model"] for r in runs}
    for metric in ("hr", "ndcg"):
        series = {}
        for model in order:
            points = [
                (m["k"], m["value"], m["ci_low"], m["ci_high"])
                for m in metrics
                if model_of[m["run_id"]] == model
                and (m["protocol"], m["split"], m["metric"]) == ("full_sample", "test", metric)
                and m["k"] is not None
            ]
            if points:
                series[model] = sorted(points)
        label = LABELS[metric]
        if not series:
            out.append(
                h.note(f"No `full_sample` test {label} values: run `jamrec evaluate`.", "missing")
            )
            continue
        caption = (
            f"{label}@K for K = 5, 10, 20 on the test split, protocol `full_sample` (every "
            "model ranked on the same seeded user sample), with 95% bootstrap intervals; points "
            "are nudged sideways so the intervals do not overlap."
        )
        image = figures.at_k_figure(series, label)
        out.append(h.figure(f"fig-{metric}-at-k", image, f"{label}@K against K per model", caption))
    return "".join(out)


def _curves(con: duckdb.DuckDBPyConnection, runs: list[dict], order: list[str]) -> str:
    out = [h.heading(3, "training-curves", "Training curves")]
    model_of = {r["run_id"]: r["model"] for r in runs}
    series: dict[str, list] = {}
    for p in models.curves(con, [r["run_id"] for r in runs]):
        series.setdefault(model_of[p["run_id"]], []).append(
            (p["step"], p["loss"], p["val_ndcg_at_10"])
        )
    stepped = {m: series[m] for m in order if m in series and max(s for s, *_ in series[m]) > 0}
    references = {
        m: series[m][-1][2]
        for m in order
        if m in series and m not in stepped and series[m][-1][2] is not None
    }
    if not stepped:
        text = (
            "No compared run recorded training steps (`training_curves`); the iterative models "
            "(als, mbcf, hybrid, two_tower) do: `jamrec train --models als,mbcf,hybrid,two_tower`."
        )
        return out[0] + h.note(text, "missing")
    skipped = [m for m in order if m not in stepped]
    caption = (
        "Per model (rows): its training loss (left) and full-ranking NDCG@10 on a fixed sample of "
        "validation users (right) after each step: an epoch or iteration, or a probe where a "
        "long epoch is probed several times (the two-tower at TIMJ scale)."
    )
    if references:
        caption += (
            f" Models without training steps ({', '.join(references)}) appear as dashed lines "
            "at their validation NDCG@10."
        )
    if skipped := [m for m in skipped if m not in references]:
        caption += f" Not shown (no steps, no validation value): {', '.join(skipped)}."
    losses = {m: LOSSES.get(m, "training loss") for m in stepped}
    caption += (
        " Each loss on its own axis, named per model: "
        + "; ".join(f"{m}: {losses[m]}" for m in stepped)
        + "."
    )
    image = figures.curves_figure(stepped, references, losses)
    out.append(
        h.figure("fig-training-curves", image, "training loss and val NDCG@10 per step", caption)
    )
    return "".join(out)
