"""Study benchmark: the study re-run on generated dumps that differ only in their audio share.

    .venv/bin/python benchmarks/bench_study.py --scale small --shares 0,0.3
    .venv/bin/python benchmarks/bench_study.py --warehouse benchmarks/out/full.duckdb \\
        --label full --models "" --epochs audio_ablation=5

For each audio share: generates the dump (seed 0) under ``benchmarks/out/study-<scale>-<s>/``,
builds and publishes its warehouse, trains every default model (seed 0; ``--models``),
compares them paired (test NDCG@10, ``full_sample``), then runs ``jamrec study`` on it
(every experiment, or ``--experiments``; ``--epochs EXPERIMENT=N`` as ``jamrec study``'s).
With ``--warehouse`` (repeatable, ``--shares`` then labels them) it takes built warehouses
instead; ``--models ""`` trains nothing and compares the runs the warehouse already has.
Writes the "Study (<label>)" section of benchmarks/RESULTS.md: the models with jamrec's
hybrid, the study's NN (``hybrid_study``), popularity and MBCF paired; the audio-feature
ablation per share; the study's experiments' numbers; and the seconds of each step (the
small study's target: at most 10 minutes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section
from bench_comparisons import comparison_block

from jamrec.cli import main as jamrec
from jamrec.log import setup_cli_logging
from jamrec.models import DEFAULT_MODELS
from jamrec.operations.compare import run_comparisons
from jamrec.operations.pipeline import COMPARED, run_models
from jamrec.operations.study import run_study
from jamrec.warehouse.store import warehouse_at

OUT = Path(__file__).resolve().parent / "out"
HEADLINE = ("hybrid", "hybrid_study", "mbcf", "popularity")


def _query(warehouse: Path, sql: str, params: dict) -> list[tuple]:
    con = warehouse_at(warehouse).connect_readonly()
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def build(scale: str, share: float) -> Path:
    """Generate and build the dump of ``share``; its warehouse (reused when present)."""
    folder = OUT / f"study-{scale}-{share:g}"
    warehouse = folder / "jamrec.duckdb"
    if not (folder / "dump").exists():
        args = ["generate", "--out", str(folder / "dump"), "--scale", scale]
        assert jamrec([*args, "--audio-share", str(share)]) == 0
    if not warehouse.exists():
        dump = folder / "dump"
        args = ["etl", "--timj", str(dump / "archive"), "--spotify", str(dump / "tracks.csv")]
        assert jamrec([*args, "--warehouse", str(warehouse)]) == 0
    return warehouse


def headline_pairs(comparison) -> str:
    rows = [
        {
            "pair": f"{p.model_a} - {p.model_b}",
            "difference": f"{p.difference:+.4f}",
            "ci": f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]",
            "holm": "<0.0001" if p.p_holm < 1e-4 else f"{p.p_holm:.4f}",
            "sig": "yes" if p.significant else "no",
        }
        for p in comparison.pairs
        if "hybrid" in (p.model_a, p.model_b) and {p.model_a, p.model_b} <= {"hybrid", *HEADLINE}
    ]
    return table(
        rows,
        [
            ("pair", "a - b", ""),
            ("difference", "test NDCG@10 difference", ""),
            ("ci", "paired 95% CI", ""),
            ("holm", "Holm-adjusted p (all pairs)", ""),
            ("sig", "significant", ""),
        ],
    )


def study_rows(warehouse: Path, study_id: str, experiments: tuple[str, ...]) -> list[tuple]:
    return _query(
        warehouse,
        "select experiment, variant, model, protocol, split, metric, step, value, ci_low, "
        "ci_high from study_results where study_id = $s and list_contains($e, experiment) "
        "and (k = 10 or k is null) order by all",
        {"s": study_id, "e": list(experiments)},
    )


def final_rows(rows: list[tuple], share: str) -> list[dict]:
    """The final (not per-step) rows: values and paired differences."""
    out = []
    for experiment, variant, model, protocol, split, metric, step, value, low, high in rows:
        if step is not None or metric.endswith("_p") or split == "val":
            continue
        out.append(
            {
                "share": share,
                "experiment": experiment,
                "variant": variant,
                "model": model,
                "protocol": protocol,
                "split": split,
                "metric": metric,
                "value": f"{value:+.4f}" if metric.endswith("_diff") else f"{value:.4f}",
                "ci": "" if low is None else f"[{low:.4f}, {high:.4f}]",
            }
        )
    return out


def curve_rows(rows: list[tuple], share: str) -> list[dict]:
    """Per curve (experiment, variant, metric): steps, last value, best value and step."""
    curves: dict[tuple, list[tuple[int, float]]] = {}
    for experiment, variant, model, _, split, metric, step, value, *_ in rows:
        if step is not None and metric in ("ndcg", "loss", "hr", "mrr"):
            curves.setdefault((experiment, variant, model, split, metric), []).append((step, value))
    out = []
    for (experiment, variant, _model, split, metric), points in sorted(curves.items()):
        points.sort()
        pick = min if metric == "loss" else max
        best_step, best = pick(points, key=lambda p: (p[1], -p[0]))
        out.append(
            {
                "share": share,
                "experiment": experiment,
                "variant": variant,
                "metric": f"{split} {metric}",
                "steps": len(points),
                "last": points[-1][1],
                "best": best,
                "at": best_step,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="small")
    parser.add_argument("--shares", default="0,0.3")
    parser.add_argument(
        "--warehouse", type=Path, action="append", help="a built warehouse instead of a dump"
    )
    parser.add_argument("--label", default=None, help="default: the scale")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--experiments", default=None, help="default: every experiment")
    parser.add_argument("--epochs", action="append", default=[], metavar="EXPERIMENT=N")
    parser.add_argument(
        "--include-study",
        action="append",
        default=[],
        metavar="STUDY_ID",
        help="also report the experiments of an earlier study on the same warehouse (one "
        "per --warehouse, in order; e.g. one stopped before its last experiments)",
    )
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    setup_cli_logging()
    label = args.label or args.scale
    runtime = {"threads": args.threads} if args.threads else None
    shares = [f"{float(s):g}" for s in args.shares.split(",")]
    if args.warehouse and len(shares) != len(args.warehouse):
        parser.error("give one --shares value per --warehouse")
    targets = (
        list(zip(shares, args.warehouse))
        if args.warehouse
        else [(s, build(args.scale, float(s))) for s in shares]
    )
    epochs = {k: int(v) for k, v in (e.split("=", 1) for e in args.epochs)}
    timings, headline, finals, curves = [], [], [], []
    for share, warehouse in targets:
        start = time.perf_counter()
        models = [m for m in args.models.split(",") if m]
        if models:  # none: compare the runs already there
            run_models(models, warehouse=warehouse, serve=False, runtime=runtime)
        timings.append({"share": share, "step": "train and evaluate models", "s": _since(start)})
        start = time.perf_counter()
        data_build = _query(warehouse, "select build_id from published_build", {})[0][0]
        comparison = run_comparisons(COMPARED["leave_k_out"][:1], warehouse, data_build)[0]
        timings.append({"share": share, "step": "compare", "s": _since(start)})
        headline += [f"#### Audio share {share}", ""]
        headline += comparison_block(f"Models, audio share {share}", comparison)[2:]
        headline += ["Jamrec's hybrid against the study's NN, MBCF and popularity:", ""]
        headline += [headline_pairs(comparison), ""]
        outcome = run_study(warehouse, args.experiments, epochs=epochs, runtime=runtime)
        for experiment in outcome.experiments:
            timings.append(
                {"share": share, "step": f"study: {experiment.name}", "s": experiment.seconds}
            )
        names = tuple(e.name for e in outcome.experiments)
        rows = study_rows(warehouse, outcome.study_id, names)
        if args.include_study:
            earlier = args.include_study[targets.index((share, warehouse))]
            done = _query(
                warehouse,
                "select distinct experiment from study_results where study_id = $s",
                {"s": earlier},
            )
            before = tuple(e for (e,) in done if e not in names)
            rows = study_rows(warehouse, earlier, before) + rows
        finals += final_rows(rows, share)
        curves += curve_rows(rows, share)
    study_total = {}
    for t in timings:
        if t["step"].startswith("study: "):
            study_total[t["share"]] = study_total.get(t["share"], 0.0) + t["s"]
    timings += [{"share": s, "step": "study: total", "s": v} for s, v in study_total.items()]

    body = [
        f"Measured {machine()}; "
        + (
            "warehouses " + ", ".join(f"`{w}` (share {s})" for s, w in targets)
            if args.warehouse
            else f"`{args.scale}` dumps generated with seed 0 and audio shares {args.shares} "
            f"(`benchmarks/out/study-{args.scale}-<share>/`)"
        )
        + f"; models {args.models or 'already trained'}, seed 0, evaluation seed 0; "
        f"`jamrec study` with its defaults (the study's grids and budgets)"
        + (f" except epochs {epochs}" if epochs else "")
        + ". Test split unless a row says otherwise; "
        "`full_sample` is every test user up to 5,000.",
        "",
        table(
            timings,
            [("share", "audio share", ""), ("step", "step", ""), ("s", "wall s", ".1f")],
        ),
        "",
        "### jamrec's hybrid, the study's NN, MBCF and popularity (paired, `full_sample`)",
        "",
        *headline,
        "### The study's experiments: final numbers (test; `_diff` rows are paired, "
        "variant minus default)",
        "",
        table(
            finals,
            [
                ("share", "audio share", ""),
                ("experiment", "experiment", ""),
                ("variant", "variant", ""),
                ("model", "model", ""),
                ("protocol", "protocol", ""),
                ("metric", "metric", ""),
                ("value", "value", ""),
                ("ci", "95% CI", ""),
            ],
        ),
        "",
        "### The study's curves (validation probe; loss is the batch's BCE or ALS's loss)",
        "",
        table(
            curves,
            [
                ("share", "audio share", ""),
                ("experiment", "experiment", ""),
                ("variant", "variant", ""),
                ("metric", "metric", ""),
                ("steps", "steps", ""),
                ("last", "last", ".4f"),
                ("best", "best", ".4f"),
                ("at", "at step", ""),
            ],
        ),
    ]
    write_section(f"Study ({label})", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


def _since(start: float) -> float:
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
