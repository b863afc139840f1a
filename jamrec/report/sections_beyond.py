"""The report's "Beyond the study" section: cold start, beyond accuracy, new listeners, sweeps."""

from __future__ import annotations

import json
from collections.abc import Container

import duckdb

from jamrec.report import figures_beyond as figures
from jamrec.report import html as h
from jamrec.report import models
from jamrec.report.common import settings_cell
from jamrec.report.data import Builds

COLD = {"cold_start": "among the withheld tracks", "cold_start_catalogue": "among the catalogue"}
COLD_METRICS = {"ndcg": "NDCG@10", "hr": "HR@10"}
BEYOND = (
    ("coverage", "coverage@10", 3),
    ("novelty", "novelty (bits)", 2),
    ("diversity", "intra-list diversity", 3),
    ("rec_popularity_pct", "popularity pct: recommended", 1),
    ("jam_popularity_pct", "popularity pct: jammed", 1),
)
FOLD_IN = (
    ("ndcg", "NDCG@10 folded in"),
    ("ndcg_trained", "NDCG@10 trained"),
    ("overlap", "overlap@10"),
)
SWEEPS_SHOWN = 4


def beyond_section(con: duckdb.DuckDBPyConnection, builds: Builds) -> str:
    """Cold start, beyond-accuracy measures, fold-in and sweeps, or what is missing."""
    build_id = builds.published["build_id"] if builds.published else None
    intro = (
        "Questions the original study raised but did not measure: tracks nobody has jammed "
        "yet, what the recommendations look like beyond accuracy (its filter-bubble concern), "
        "listeners who arrive after training, and how the models' settings were tuned."
    )
    return "".join(
        [
            h.heading(2, "beyond", "Beyond the study"),
            h.para(intro),
            _cold_start(con, build_id),
            _beyond_accuracy(con, build_id),
            _fold_in(con, build_id),
            _sweeps(con, build_id),
        ]
    )


def _cell(m: dict | None, digits: int = 4) -> str:
    """A value with its 95% interval below (none when the interval is a single point)."""
    if m is None or m["value"] is None:
        return "–"
    lo, hi = m["ci_low"], m["ci_high"]
    ci = "" if lo is None or hi is None or lo == hi else f"{lo:.{digits}f}–{hi:.{digits}f}"
    return f"{m['value']:.{digits}f}" + (f'<small class="ci">{ci}</small>' if ci else "")


def _point(m: dict) -> figures.Point:
    return (m["value"], m["ci_low"], m["ci_high"])


def _table(
    found: dict, order: list[str], run_of: dict, columns: list[tuple], configs: dict | None = None
) -> str:
    """One row per model: its run, users and a cell per ((protocol, metric), label, digits);
    with ``configs`` (model -> ``model_runs.config``), the run's settings last."""
    body, classes = [], []
    for model in order:
        cells = [found.get((model, *key)) for key, *_ in columns]
        tag = models.BASELINES.get(model)
        users = max(c["n_users"] or 0 for c in cells if c)
        body.append([h.esc(model + (f" ({tag})" if tag else "")), h.esc(run_of[model])])
        body[-1] += [h.esc(h.fmt(users)), *(_cell(c, d) for c, (*_, d) in zip(cells, columns))]
        if configs is not None:
            body[-1].append(settings_cell(configs.get(model)))
        classes.append("baseline" if tag else "")
    headers = ["model", "run", "users", *(label for _, label, _ in columns)]
    headers += ["settings"] if configs is not None else []
    return h.table(headers, body, set(range(2, 3 + len(columns))), classes, raw=True)


def _latest(
    con: duckdb.DuckDBPyConnection, build_id: str | None, purpose: str, protocols: Container[str]
) -> tuple[list, dict, dict]:
    """Latest runs of ``purpose`` on the build, model -> run id, and their k=10 metrics
    under ``protocols`` keyed (model, protocol, metric)."""
    runs = models.compared_runs(con, build_id, purpose) if build_id else []
    model_of = {r["run_id"]: r["model"] for r in runs}
    found = {
        (model_of[m["run_id"]], m["protocol"], m["metric"]): m
        for m in models.metric_table(con, list(model_of))
        if m["protocol"] in protocols and m["k"] == 10
    }
    return runs, {r["model"]: r["run_id"] for r in runs}, found


def _cold_start(con: duckdb.DuckDBPyConnection, build_id: str | None) -> str:
    out = [h.heading(3, "cold-start", "Cold start")]
    runs, run_of, found = _latest(con, build_id, "cold_start", COLD)
    if not found:
        return out[0] + h.note("No cold-start study yet: run `jamrec coldstart`.", "missing")
    score = {
        m: v["value"] or 0.0 for (m, p, k), v in found.items() if (p, k) == ("cold_start", "ndcg")
    }
    order = sorted({m for m, *_ in found}, key=lambda m: (-score.get(m, 0.0), m))
    users = max(m["n_users"] or 0 for m in found.values())
    draw = models.withheld(con, build_id)
    what = (
        f"{draw['tracks']:,} tracks ({draw['share']:.0%} of those with interactions, seed "
        f"{draw['seed']})"
        if draw
        else "a share of the tracks (not recorded in `coldstart_tracks` for this build)"
    )
    out.append(
        h.para(
            f"Withheld: {what}, with every interaction with them (train, val and test), before "
            f"each model was trained; {users:,} users who jammed one of them are "
            f"evaluated. Latest cold-start run of each model on the published build {build_id}."
        )
    )
    columns = [
        ((p, k), f"{COLD_METRICS[k]} {where}", 4) for p, where in COLD.items() for k in COLD_METRICS
    ]
    configs = {r["model"]: r["config"] for r in runs}
    out.append(_table(found, order, run_of, columns, configs))
    panels = {
        (p, label): {m: _point(found[m, p, k]) for m in order if (m, p, k) in found}
        for k, label in COLD_METRICS.items()
        for p in COLD
    }
    caption = (
        "Cold start: the users' withheld tracks ranked among the withheld tracks only "
        "(`cold_start`, left) and among the whole catalogue minus the user's other tracks "
        "(`cold_start_catalogue`, right); NDCG@10 and HR@10 per model with 95% bootstrap "
        "intervals. Models that know a track only by its id or its interactions (ALS, MBCF, "
        "popularity) learnt nothing about these tracks and sit at chance, the dashed line "
        "(`random`): they fall back on one fixed tie order, a single draw that can land a "
        "little above or below it. Only what is known without interactions (audio features, "
        "Spotify popularity) helps."
    )
    image = figures.cold_start_figure(panels, order, "random" if "random" in order else None)
    out.append(h.figure("fig-cold-start", image, "cold-start NDCG@10 and HR@10 per model", caption))
    return "".join(out)


def _beyond_accuracy(con: duckdb.DuckDBPyConnection, build_id: str | None) -> str:
    out = [h.heading(3, "beyond-accuracy", "Beyond accuracy")]
    runs, run_of, found = _latest(con, build_id, "standard", {"beyond"})
    if not found:
        text = (
            "No beyond-accuracy measures for the compared runs (protocol `beyond`): "
            "`jamrec train` records them with every run it evaluates."
        )
        return out[0] + h.note(text, "missing")
    metrics = models.metric_table(con, [r["run_id"] for r in runs])
    order = [m for m in models.model_order(metrics, runs) if any(k[0] == m for k in found)]
    out.append(
        h.para(
            "Top-10 lists of the latest standard run of each model, for a seeded sample of test "
            "users (the same for every model), the user's own train tracks excluded. Coverage: "
            "the share of candidate tracks recommended to anyone; novelty: the mean -log2 of a "
            "track's share of train interactions (higher: less mainstream); diversity: the mean "
            "pairwise distance of a list's tracks in standardised audio features; popularity "
            "pct: the mean popularity percentile among the candidates of the tracks recommended, "
            "beside that of the tracks the same users actually jammed in test."
        )
    )
    columns = [(("beyond", name), label, d) for name, label, d in BEYOND]
    out.append(_table(found, order, run_of, columns))
    rec = {
        m: _point(found[key])
        for m in order
        if (key := (m, "beyond", "rec_popularity_pct")) in found
    }
    jam = {m: _point(v) for (m, _, n), v in found.items() if n == "jam_popularity_pct"}
    caption = (
        "The filter bubble the study worried about: the mean popularity percentile (among the "
        "candidate tracks, by train interactions) of each model's top-10, with 95% intervals, "
        "against that of the tracks the same users actually jammed in test (black line, grey "
        "band: its 95% interval). A bar right of the line: the model recommends more mainstream "
        "tracks than its users jam; a random list averages 50 (dotted)."
    )
    image = figures.popularity_figure(rec, jam)
    alt = "popularity percentile of recommended vs jammed tracks"
    out.append(h.figure("fig-beyond-popularity", image, alt, caption))
    return "".join(out)


def _fold_in(con: duckdb.DuckDBPyConnection, build_id: str | None) -> str:
    out = [h.heading(3, "fold-in", "New listeners")]
    _, run_of, found = _latest(con, build_id, "standard", {"fold_in"})
    if not found:
        text = "No fold-in measurements (protocol `fold_in`) for the compared runs."
        return out[0] + h.note(text)
    out.append(
        h.para(
            "A listener known only by a few tracks gets scores without retraining (ALS: half "
            "an iteration with the track factors fixed; two-tower: its user tower; the others: "
            "popularity). On a sample of test users: NDCG@10 when folded in from their train "
            "tracks and with their trained vectors, and the share of the two top-10 lists in "
            "common; 95% intervals below."
        )
    )
    columns = [(("fold_in", name), label, 4) for name, label in FOLD_IN]
    out.append(_table(found, sorted({k[0] for k in found}), run_of, columns))
    return "".join(out)


def _sweeps(con: duckdb.DuckDBPyConnection, build_id: str | None) -> str:
    out = [h.heading(3, "sweeps", "Tuning sweeps")]
    trials = models.sweeps(con, SWEEPS_SHOWN)
    if not trials:
        text = "No sweeps yet: run the `sweep` flow (`python -m flows.sweep` or the deployment)."
        return out[0] + h.note(text, "missing")
    by_sweep: dict[str, list[dict]] = {}
    for t in trials:
        by_sweep.setdefault(t["sweep_id"], []).append({**t, "config": json.loads(t["config"])})
    latest = "The latest sweep" if len(by_sweep) == 1 else f"The latest {len(by_sweep)} sweeps"
    out.append(
        h.para(
            f"{latest}, newest first. Each configuration was trained on train and scored on "
            "validation only (NDCG@10, `full_sample`); the best was then trained again, tested "
            "under every protocol and recorded as a run: its test NDCG@10 (`full_sample`, 95% "
            "interval below) is the only test number of a sweep."
        )
    )
    body, shown = [], []
    for n, (sweep_id, tried) in enumerate(by_sweep.items(), start=1):
        chosen = next((t for t in tried if t["chosen"]), {})
        val = {"value": chosen.get("val_ndcg_at_10"), "ci_low": None, "ci_high": None}
        test = {"value": chosen.get("test_ndcg"), "ci_low": chosen.get("test_low")}
        test["ci_high"] = chosen.get("test_high")
        run = chosen.get("run_id") or ("not recorded" if chosen else "none chosen")
        cells = [sweep_id, tried[0]["model"], tried[0]["build_id"], h.fmt(len(tried))]
        cells = [h.esc(c) for c in cells] + [
            h.rich(f"`{figures.settings_text(chosen['config'])}`") if chosen.get("config") else "–",
            _cell(val),
            h.esc(run),
            _cell(test),
            h.esc(h.seconds(sum(t["seconds"] or 0.0 for t in tried))),
            h.esc(tried[0]["finished"] or "–"),
        ]
        body.append(cells)
        shown.append(_sweep_figure(n, sweep_id, tried, build_id))
    headers = ["sweep", "model", "build", "configurations", "chosen settings", "val NDCG@10"]
    headers += ["chosen run", "test NDCG@10", "trial s", "finished"]
    out.append(h.table(headers, body, {3, 5, 7, 8}, raw=True))
    return "".join(out + shown)


def _sweep_figure(n: int, sweep_id: str, tried: list[dict], build_id: str | None) -> str:
    """One sweep's validation NDCG@10 per configuration, best first, the chosen one marked."""
    configs = [t["config"] for t in tried]
    keys = {k for c in configs for k in c}
    varying = {k for k in keys if len({json.dumps(c.get(k)) for c in configs}) > 1}
    varying = varying if len(configs) > 1 else keys
    fixed = figures.settings_text({k: v for k, v in configs[0].items() if k not in varying})
    index = next((i for i, t in enumerate(tried) if t["chosen"]), None)
    values = [t["val_ndcg_at_10"] for t in tried]
    image = figures.sweep_figure([figures.config_label(c, varying) for c in configs], values, index)
    build = tried[0]["build_id"]
    where = "the published build" if build == build_id else f"build {build}, not the published one"
    caption = (
        f"Sweep `{sweep_id}` ({tried[0]['model']} on {where}): validation NDCG@10 "
        f"(`full_sample`) of each of the {len(tried)} configuration(s) tried, best on top, the "
        "chosen one in orange; test was never looked at to choose."
        + (f" Set in every configuration: {fixed}." if fixed else "")
        + " Settings not named are the model's defaults."
    )
    alt = f"validation NDCG@10 per configuration of {sweep_id}"
    return h.figure(f"fig-sweep-{n}", image, alt, caption)
