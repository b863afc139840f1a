"""The report's "The study, re-run": the study's numbers beside jamrec's, a verdict on each
of its conclusions, the audio answer, and its experiments' figures (``jamrec study``).

The verdicts' rules are :mod:`jamrec.report.verdicts`; the rows are the latest standard
runs, their paired comparisons and the latest ``study_results`` of each experiment on the
published build.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb

from jamrec.report import figures_study as figures
from jamrec.report import html as h
from jamrec.report import models, verdicts
from jamrec.report.data import Builds, planted
from jamrec.report.figures_beyond import Point
from jamrec.report.verdicts import NN, STUDY_HR10, STUDY_NAMES

# The study's three models, then jamrec's own and the baselines, in the table's order.
TABLE_MODELS = ("als", "mbcf", NN, "hybrid", "two_tower", "item_knn", "popularity", "random")
TABLE_PROTOCOLS = ("full_sample", "sampled_100")
STATUS_CLASS = {verdicts.HOLDS: "ok", verdicts.FAILS: "fail"}
NEGATIVES = {"published_negatives": "with negatives", "positives_only": "positives only"}
PER_USER = {"logistic": "per-user logistic", "popularity": "popularity"}
AUDIO_WHERE = (
    ("full_sample", "test", "warm: test, `full_sample`"),
    ("cold_start", "cold", "cold: among the withheld tracks (`cold_start`)"),
    ("cold_start_catalogue", "cold", "cold: among the catalogue (`cold_start_catalogue`)"),
)
STUDY = "`jamrec study`"


def study_section(con: duckdb.DuckDBPyConnection, builds: Builds) -> str:
    """The study's table, the headline figure, the verdicts, the audio answer and the
    experiments' figures, each saying which command fills it in when it is missing."""
    out = [
        h.heading(2, "study", "The study, re-run"),
        h.para(
            "jamrec grew out of a study that reported test HR@10 for ALS 0.020, MBCF 0.280 and "
            "a network over ids and audio features (NN) 0.230, under mixed protocols: ALS "
            "ranked against the whole catalogue, the others very likely against a handful of "
            "sampled tracks. Here the same models are measured under the same protocols. "
            "Names: the study's ALS is `als`, its MBCF `mbcf`, its NN `hybrid_study` (the "
            "study's exact set-up); `hybrid` is jamrec's own network (a dot-product path "
            "added, trained on fresh negatives)."
        ),
    ]
    build_id = builds.published["build_id"] if builds.published else None
    if build_id is None:
        text = "No published build: `jamrec etl`, then `jamrec train` and `jamrec study`."
        return "".join([*out, h.note(text, "missing")])
    runs = models.compared_runs(con, build_id)
    metrics = models.metric_table(con, [r["run_id"] for r in runs])
    model_of = {r["run_id"]: r["model"] for r in runs}
    test = {
        (model_of[m["run_id"]], m["protocol"], m["metric"]): m
        for m in metrics
        if m["split"] == "test" and m["k"] == 10
    }
    comparisons = models.latest_comparisons(con, build_id)
    rows = models.study_rows(con, build_id)
    out.append(_table(test, [r["model"] for r in runs]))
    out.append(_headline(test, comparisons, models.model_order(metrics, runs)))
    out.append(_verdicts(test, comparisons, rows))
    out.append(_audio(con, rows))
    out.append(_experiments(con, rows, build_id))
    return "".join(out)


def _cell(m: Mapping | None) -> str:
    if m is None or m["value"] is None:
        return "–"
    if m["ci_low"] is None or m["ci_high"] is None:
        return f"{m['value']:.4f}"
    return f'{m["value"]:.4f}<small class="ci">{m["ci_low"]:.4f}–{m["ci_high"]:.4f}</small>'


def _point(m: Mapping) -> Point:
    return (m["value"], m["ci_low"], m["ci_high"])


def _table(test: Mapping, trained: list[str]) -> str:
    out = [h.heading(3, "study-table", "The study's numbers beside jamrec's")]
    columns = [(p, metric) for p in TABLE_PROTOCOLS for metric in ("hr", "ndcg")]
    body, classes = [], []
    for model in TABLE_MODELS:
        tag = models.BASELINES.get(model)
        study = STUDY_NAMES.get(model)
        reported = f"{STUDY_HR10[model]:.3f}" if model in STUDY_HR10 else "–"
        cells = [_cell(test.get((model, p, metric))) for p, metric in columns]
        name = model + (f" ({tag})" if tag else "")
        body.append([h.esc(name), h.esc(study or "–"), reported, *cells])
        classes.append("baseline" if tag else "")
    headers = ["jamrec model", "the study's name", "the study's HR@10"]
    headers += [f"{p} {'HR' if metric == 'hr' else 'NDCG'}@10" for p, metric in columns]
    out.append(
        h.para(
            "Test split, the latest run of each model on the published build; each cell the "
            "mean over users with its 95% bootstrap interval below. `full_sample`: every "
            "candidate track ranked for a seeded sample of users, the same for every model; "
            "`sampled_100`: each held-out track ranked among 100 sampled tracks (a random "
            "ranking scores HR@10 about 0.099 there). The study's column is its own number, "
            "protocols mixed, quoted as reported. The runs' settings are in Models, "
            "Comparison."
        )
    )
    out.append(h.table(headers, body, set(range(2, 3 + len(columns))), classes, raw=True))
    missing = [m for m in TABLE_MODELS if m not in trained]
    if missing:
        text = (
            f"Not trained on this build: {', '.join(missing)}: "
            f"`jamrec train --models {','.join(missing)}`."
        )
        out.append(h.note(text, "missing"))
    return "".join(out)


def _pairs(comparisons: Sequence[Mapping], protocol: str, metric: str) -> list[Mapping]:
    return [
        c
        for c in comparisons
        if (c["protocol"], c["split"], c["metric"], c["k"]) == (protocol, "test", metric, 10)
    ]


def _headline(test: Mapping, comparisons: Sequence[Mapping], order: list[str]) -> str:
    out = [h.heading(3, "study-headline", "Every model under one protocol")]
    points = {
        m: _point(test[m, "full_sample", "ndcg"])
        for m in order
        if (m, "full_sample", "ndcg") in test
        and test[m, "full_sample", "ndcg"]["value"] is not None
    }
    if not points:
        text = "No test NDCG@10 under `full_sample`: `jamrec train` (or `jamrec evaluate`)."
        return out[0] + h.note(text, "missing")
    pairs = _pairs(comparisons, "full_sample", "ndcg")
    best = next((m for m in points if models.BASELINES.get(m) != "upper bound"), None)
    below, vs_pop = set(), {}
    for m in points:
        if best is not None and m != best:
            p = verdicts.pair(pairs, best, m)
            if p is not None and p.significant and p.difference > 0:
                below.add(m)
        if m != "popularity":
            p = verdicts.pair(pairs, m, "popularity")
            if p is not None and p.significant:
                vs_pop[m] = "↑pop" if p.difference > 0 else "↓pop"
    caption = (
        "Test NDCG@10 of every model under `full_sample` (every candidate track ranked, the "
        "same seeded users for every model), best first, with 95% bootstrap intervals. "
    )
    if pairs:
        caption += (
            f"Marks from the paired comparison (Holm-adjusted, p < 0.05): * significantly "
            f"below the best model ({best}"
            + (", the oracle being the ceiling, not a model" if "oracle" in points else "")
            + "); ↑pop / ↓pop significantly above / below popularity. No mark: the gap is "
            "within noise."
        )
    else:
        caption += "No paired comparison on this build (`jamrec compare`): no marks."
    image = figures.headline_figure(points, best, below, vs_pop, "test NDCG@10 (full_sample)")
    alt = "test NDCG@10 per model under full_sample with 95% intervals and significance marks"
    out.append(h.figure("fig-study-headline", image, alt, caption))
    return "".join(out)


def _verdicts(test: Mapping, comparisons: Sequence[Mapping], rows: Sequence[Mapping]) -> str:
    out = [h.heading(3, "study-verdicts", "The study's conclusions")]
    by_protocol, means, labels = {}, {}, {}
    for protocol in verdicts.PROTOCOLS:
        # the study's metric (HR@10) when a comparison of it exists, else jamrec's NDCG@10
        metric = "hr" if _pairs(comparisons, protocol, "hr") else "ndcg"
        by_protocol[protocol] = _pairs(comparisons, protocol, metric)
        labels[protocol] = "HR@10" if metric == "hr" else "NDCG@10"
        means[protocol] = {
            m: v["value"]
            for (m, p, name), v in test.items()
            if p == protocol and name == metric and v["value"] is not None
        }
    ndcg: dict[str, dict[str, float]] = {}
    for (m, p, name), v in test.items():
        if name == "ndcg" and v["value"] is not None:
            ndcg.setdefault(m, {})[p] = v["value"]
    curves: dict[str, dict[str, list]] = {}
    for r in rows:
        if r["experiment"] in verdicts.CLAIMED and (r["metric"], r["k"]) == ("ndcg", 10):
            curves.setdefault(r["experiment"], {}).setdefault(r["variant"], []).append(
                (r["step"], r["value"])
            )
    found = [
        verdicts.order_verdict(by_protocol, means, labels),
        verdicts.negatives_verdict(rows),
        verdicts.grid_verdict({e: {v: sorted(c) for v, c in g.items()} for e, g in curves.items()}),
        verdicts.generalisation_verdict(ndcg),
    ]
    body = []
    for v in found:
        for i, f in enumerate(v.findings):
            klass = STATUS_CLASS.get(f.status)
            status = f'<span class="{klass}">{f.status}</span>' if klass else f"<em>{f.status}</em>"
            claim = h.esc(f"({v.number}) {v.claim}") if i == 0 else ""
            body.append([claim, h.rich(f"`{f.where}`"), status, h.rich(f.reason)])
    out.append(
        h.para(
            "Each conclusion checked against this warehouse: holds, does not hold, or not "
            "measured (with the command that measures it), under each protocol."
        )
    )
    out.append(h.table(["the study's conclusion", "under", "verdict", "why"], body, raw=True))
    items = "".join(f"<li>({v.number}) {h.rich(v.how)}</li>" for v in found)
    out.append(f'<ul id="study-verdict-rules">{items}</ul>\n')
    return "".join(out)


def _audio_share(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping]) -> float | None:
    """The dump's planted audio share: from the ablation's settings, else the truth."""
    for r in rows:
        if r["experiment"] == "audio_ablation" and "audio_share" in r["settings"]:
            share = r["settings"]["audio_share"]
            return None if share is None else float(share)
    share = (planted(con) or {}).get("audio_share")
    return None if share is None else float(share)


def _audio(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping]) -> str:
    out = [h.heading(3, "study-audio", "What the audio features add")]
    sentence = verdicts.audio_sentence(rows, _audio_share(con, rows))
    if sentence is None:
        text = f"No audio ablation on this build: {STUDY} (experiment `audio_ablation`)."
        return out[0] + h.note(text, "missing")
    out.append(h.para(sentence))
    found = [r for r in rows if r["experiment"] == "audio_ablation" and r["k"] == 10]
    key = {(r["model"], r["variant"], r["protocol"], r["split"], r["metric"]): r for r in found}
    body = []
    for model in dict.fromkeys(r["model"] for r in found):
        for protocol, split, where in AUDIO_WHERE:
            diff = key.get((model, "audio - no_audio", protocol, split, "ndcg_diff"))
            audio = key.get((model, "audio", protocol, split, "ndcg"))
            plain = key.get((model, "no_audio", protocol, split, "ndcg"))
            if audio is None and plain is None:
                continue
            p = key.get((model, "audio - no_audio", protocol, split, "ndcg_diff_p"))
            difference = "–"
            if diff is not None:
                difference = (
                    f'{diff["value"]:+.4f}<small class="ci">[{diff["ci_low"]:+.4f}, '
                    f"{diff['ci_high']:+.4f}]</small>"
                )
            body.append(
                [
                    h.esc(model),
                    h.rich(where),
                    _cell(audio),
                    _cell(plain),
                    difference,
                    f"{p['value']:.4f}" if p is not None else "–",
                ]
            )
    headers = ["model", "where", "NDCG@10 with audio", "without", "difference [95% CI]", "p"]
    out.append(h.table(headers, body, {2, 3, 4, 5}, raw=True))
    return "".join(out)


def _experiments(con: duckdb.DuckDBPyConnection, rows: Sequence[Mapping], build_id: str) -> str:
    out = [h.heading(3, "study-experiments", "The study's experiments")]
    if not rows:
        elsewhere = [b for b in models.study_builds(con) if b != build_id]
        text = (
            f"No `jamrec study` on the published build {build_id}: run {STUDY} to fill in "
            "conclusions (2) and (3), the audio answer and the experiments' figures "
            "(MBCF with and without negatives, batch sizes and learning rates over optimiser "
            "steps, ALS over iterations, per-user models)."
        )
        if elsewhere:
            text += f" Studies exist on other builds: {', '.join(elsewhere)}."
        return out[0] + h.note(text, "missing")
    study_ids = sorted({r["study_id"] for r in rows})
    out.append(
        h.para(
            f"From `study_results` (the latest study of each experiment on this build: "
            f"{', '.join(study_ids)}); `docs/protocols.md` has what each experiment trains."
        )
    )
    out.append(_negatives(rows))
    for experiment, title in (("batch_size", "Batch size"), ("learning_rate", "Learning rate")):
        out.append(_grid(rows, experiment, title))
    out.append(_als(rows))
    out.append(_per_user(rows))
    return "".join(out)


def _missing(experiment: str) -> str:
    text = f"No `{experiment}` experiment on this build: `jamrec study --experiments {experiment}`."
    return h.note(text, "missing")


def _negatives(rows: Sequence[Mapping]) -> str:
    out = [h.heading(4, "study-negatives", "MBCF with and without negative samples")]
    found = [r for r in rows if r["experiment"] == "negatives" and r["split"] == "test"]
    panels: dict[tuple[str, str], dict[str, Point]] = {}
    for protocol in TABLE_PROTOCOLS:
        for metric, label in (("hr", "HR@10"), ("ndcg", "NDCG@10")):
            panel = {
                NEGATIVES[r["variant"]]: _point(r)
                for r in found
                if (r["protocol"], r["metric"]) == (protocol, metric) and r["variant"] in NEGATIVES
            }
            if panel:
                panels[(f"{protocol}: {label}", f"test {label}")] = panel
    if not panels:
        return out[0] + _missing("negatives")
    epochs = next((r["settings"].get("epochs") for r in found if r["settings"]), None)
    caption = (
        "MBCF trained with the published negatives (the study's set-up) and with positives only "
        f"(the same seed and {epochs} epochs): test HR@10 and NDCG@10 under `full_sample` "
        "(full ranking) and `sampled_100` (against 100 sampled tracks), with 95% bootstrap "
        "intervals. Conclusion (2) reads the paired difference of these runs."
    )
    image = figures.variant_bars_figure(panels, list(NEGATIVES.values()))
    alt = "MBCF test HR@10 and NDCG@10 with and without negatives"
    out.append(h.figure("fig-study-negatives", image, alt, caption))
    return "".join(out)


def _variant_key(variant: str) -> tuple[float, str]:
    """``batch_size=1024`` sorts by its number."""
    try:
        return float(variant.split("=", 1)[1]), variant
    except (IndexError, ValueError):
        return float("inf"), variant


def _grid(rows: Sequence[Mapping], experiment: str, title: str) -> str:
    ident = f"study-{experiment.replace('_', '-')}"
    out = [h.heading(4, ident, f"{title} over optimiser steps")]
    found = [r for r in rows if r["experiment"] == experiment]
    if not found:
        return out[0] + _missing(experiment)
    variants = sorted({r["variant"] for r in found}, key=_variant_key)
    ndcg: dict[str, list] = {v: [] for v in variants}
    loss: dict[str, list] = {v: [] for v in variants}
    for r in found:
        if (r["metric"], r["k"]) == ("ndcg", 10):
            ndcg[r["variant"]].append((r["step"], r["value"]))
        elif r["metric"] == "loss":
            loss[r["variant"]].append((r["step"], r["value"]))
    probe = max((r["n_users"] or 0 for r in found if r["metric"] == "ndcg"), default=0)
    setting = variants[0].split("=", 1)[0]
    steps = max((s for points in ndcg.values() for s, _ in points), default=0)
    caption = (
        f"MBCF at each {title.lower()} of the study's grid ({', '.join(variants)}), the first "
        f"{steps} optimiser steps: validation NDCG@10 on a fixed probe of {probe:,} val users "
        "(left; the same users every step and variant) and the batch's training loss, binary "
        "cross-entropy (right), after every step, as in the study's figures. Conclusion (3) "
        "reads the last step."
    )
    image = figures.grid_curves_figure(
        {v: sorted(p) for v, p in ndcg.items()},
        {v: sorted(p) for v, p in loss.items()},
        probe or None,
        setting,
    )
    alt = f"val NDCG@10 and batch loss over optimiser steps per {title.lower()}"
    out.append(h.figure(f"fig-{ident}", image, alt, caption))
    return "".join(out)


def _als(rows: Sequence[Mapping]) -> str:
    out = [h.heading(4, "study-als", "ALS over iterations")]
    found = [r for r in rows if r["experiment"] == "als_curves"]
    if not found:
        return out[0] + _missing("als_curves")
    labels = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR"}
    metrics: dict[str, list] = {}
    loss = []
    for r in found:
        if r["metric"] == "loss":
            loss.append((r["step"], r["value"]))
        elif r["metric"] in labels:
            name = labels[r["metric"]] + (f"@{r['k']}" if r["k"] is not None else "")
            metrics.setdefault(name, []).append((r["step"], r["value"]))
    rank = {"HR": 0, "NDCG": 1, "MRR": 2}
    order = sorted(
        metrics, key=lambda n: (rank[n.split("@")[0]], int(n.split("@")[1]) if "@" in n else 0)
    )
    probe = max((r["n_users"] or 0 for r in found if r["metric"] != "loss"), default=0)
    caption = (
        f"ALS after every iteration: HR@K (left), NDCG@K and MRR (middle) on a fixed probe of "
        f"{probe:,} validation users, and implicit's training loss (right: a confidence-weighted "
        "squared error with L2, not a cross-entropy, so on its own axis)."
    )
    image = figures.als_curves_figure(
        {n: sorted(metrics[n]) for n in order}, sorted(loss), probe or None
    )
    out.append(h.figure("fig-study-als", image, "ALS metrics and loss per iteration", caption))
    return "".join(out)


def _per_user(rows: Sequence[Mapping]) -> str:
    out = [h.heading(4, "study-per-user", "Per-user models beside popularity")]
    found = [r for r in rows if r["experiment"] == "per_user"]
    if not found:
        return out[0] + _missing("per_user")
    panels: dict[tuple[str, str], dict[str, Point]] = {}
    for metric, label in (("hr", "HR@10"), ("ndcg", "NDCG@10")):
        panel = {
            PER_USER[r["variant"]]: _point(r)
            for r in found
            if r["metric"] == metric and r["variant"] in PER_USER
        }
        if panel:
            panels[(label, f"test {label} (the same users)")] = panel
    diff = next((r for r in found if r["metric"] == "ndcg_diff"), None)
    users = max((r["n_users"] or 0 for r in found), default=0)
    caption = (
        f"The study's per-user models: for each of {users:,} sampled test users, a logistic "
        "regression over the audio features of their train tracks against sampled negatives, "
        "ranking every candidate track (their train tracks excluded), beside train popularity "
        "on the same users; test HR@10 and NDCG@10 with 95% bootstrap intervals."
    )
    if diff is not None:
        caption += (
            f" Paired NDCG@10 difference, per-user minus popularity: {diff['value']:+.4f} "
            f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]."
        )
    image = figures.variant_bars_figure(panels, list(PER_USER.values()))
    alt = "per-user logistic models vs popularity, test HR@10 and NDCG@10"
    out.append(h.figure("fig-study-per-user", image, alt, caption))
    return "".join(out)
