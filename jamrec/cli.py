"""The ``jamrec`` command line: the same functions the Prefect flows call.

Every problem the user can fix (bad input, a locked file, a missing warehouse) ends
as one ``jamrec: error: ...`` line and a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import jamrec
from jamrec.errors import InputError, JamrecError
from jamrec.log import setup_cli_logging
from jamrec.models import COLD_START_MODELS, DEFAULT_MODELS, MODELS


def _warehouse_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        help="the DuckDB file (default: $JAMREC_WAREHOUSE or warehouse/jamrec.duckdb)",
    )


def _runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default=None, help="where torch models run: cpu (default) or cuda[:N]"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: one per core)"
    )


def _evaluation_seed_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--evaluation-seed",
        type=int,
        default=None,
        help="seeds the user sample, sampled-100 negatives and bootstrap, never a model "
        "(default: $JAMREC_EVALUATION_SEED or 0)",
    )


def _model_name(value: str) -> str:
    """A model name, or argparse's one-line error naming the known ones."""
    if value not in MODELS:
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}; known: {', '.join(sorted(MODELS))}"
        )
    return value


def _share(value: str) -> float:
    """A number in [0, 1], or argparse's one-line error."""
    try:
        share = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return share


def _experiments(value: str) -> list[str]:
    """Study experiments, comma-separated, or argparse's one-line error naming the known."""
    from jamrec.operations.study import check_experiments

    try:
        return check_experiments(value)
    except JamrecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jamrec", description="This Is My Jam recommender: warehouse, quality gate, models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"jamrec {jamrec.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write a synthetic TIMJ + Spotify dump")
    gen.add_argument("--out", type=Path, required=True, help="folder to write the dump into")
    gen.add_argument("--scale", choices=["tiny", "small", "full"], default="small")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--broken-share", type=float, default=None, help="share of broken jams.tsv lines"
    )
    gen.add_argument(
        "--spotify-variants",
        default="tracks.csv",
        help="'all', or a comma-separated list of Kaggle variants to write (default tracks.csv)",
    )
    gen.add_argument(
        "--audio-share",
        type=_share,
        default=None,
        metavar="S",
        help="share of the planted taste that is a non-linear audio-feature taste, 0..1 "
        "(default: the generator's, recorded in truth/params.json; 0 is the taste before "
        "the setting existed)",
    )
    gen.set_defaults(func=cmd_generate)

    etl = sub.add_parser("etl", help="build and publish the warehouse from the raw files")
    etl.add_argument("--timj", type=Path, required=True, help="the TIMJ dump folder, or its zip")
    etl.add_argument("--spotify", type=Path, required=True, help="a Kaggle Spotify features CSV")
    _warehouse_arg(etl)
    etl.add_argument("--seed", type=int, default=0, help="seeds negative sampling and the splits")
    etl.add_argument(
        "--negatives", type=int, default=10, help="at most this many negatives per user"
    )
    etl.add_argument("--k-test", type=int, default=1, help="positives held out per user for test")
    etl.add_argument(
        "--k-val", type=int, default=1, help="positives held out per user for validation"
    )
    etl.add_argument(
        "--temporal-cut",
        default=None,
        metavar="YYYY-MM-DD",
        help="the temporal protocol's time cut (default: leaves the last --temporal-share "
        "of jams after it)",
    )
    etl.add_argument(
        "--temporal-share",
        type=float,
        default=0.1,
        help="share of jams after the default time cut (default 0.1)",
    )
    etl.add_argument(
        "--fresh",
        action="store_true",
        help="do not read the published warehouse (e.g. a damaged one): set it aside under "
        ".versions/ and start a new history",
    )
    etl.add_argument(
        "--force",
        action="store_true",
        help="build even when the inputs, parameters and code match the published build",
    )
    etl.set_defaults(func=cmd_etl)

    rb = sub.add_parser("rollback", help="republish an earlier version of the warehouse")
    rb.add_argument(
        "build_id", nargs="?", default=None, help="the build to restore (default: the previous)"
    )
    rb.add_argument("--list", action="store_true", help="list the kept versions and stop")
    _warehouse_arg(rb)
    rb.set_defaults(func=cmd_rollback)

    val = sub.add_parser("validate", help="re-validate the published warehouse")
    _warehouse_arg(val)
    val.set_defaults(func=cmd_validate)

    tr = sub.add_parser("train", help="train (and evaluate) models on the published warehouse")
    tr.add_argument(
        "--models",
        default=None,
        help=f"comma-separated (default: {','.join(DEFAULT_MODELS)}, plus oracle on "
        "generated data)",
    )
    tr.add_argument("--seed", type=int, default=0, help="the models' training seed")
    tr.add_argument(
        "--seeds",
        default=None,
        metavar="S,S,...",
        help="train each model once per training seed, e.g. 0,1,2 (overrides --seed)",
    )
    tr.add_argument(
        "--protocol",
        choices=["leave_k_out", "temporal"],
        default="leave_k_out",
        help="the splits: leave-k-out per user (default), or temporal (train before the "
        "build's time cut, test after it; never promoted)",
    )
    _evaluation_seed_arg(tr)
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="MODEL.KEY=VALUE",
        help="override a model setting, e.g. --set als.factors=64 --set mbcf.epochs=5",
    )
    _runtime_args(tr)
    tr.add_argument(
        "--no-evaluate", action="store_true", help="only train and save (jamrec evaluate later)"
    )
    tr.add_argument(
        "--user-sample", type=int, default=5000, help="users in the full_sample protocol"
    )
    _warehouse_arg(tr)
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="evaluate trained runs that have no metrics yet")
    ev.add_argument("--run", action="append", default=[], help="a run id (repeatable)")
    _evaluation_seed_arg(ev)
    ev.add_argument("--user-sample", type=int, default=5000)
    _warehouse_arg(ev)
    ev.set_defaults(func=cmd_evaluate)

    cs = sub.add_parser(
        "coldstart", help="the cold-start study: rank tracks withheld from training"
    )
    cs.add_argument(
        "--models",
        default=None,
        help=f"comma-separated (default: {','.join(COLD_START_MODELS)}); the oracle is added "
        "on generated data",
    )
    cs.add_argument(
        "--share", type=float, default=0.1, help="share of tracks with interactions withheld"
    )
    cs.add_argument("--seed", type=int, default=0, help="which tracks; the training seed")
    _evaluation_seed_arg(cs)
    cs.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE")
    _runtime_args(cs)
    _warehouse_arg(cs)
    cs.set_defaults(func=cmd_coldstart)

    cp = sub.add_parser(
        "compare", help="paired comparisons of every pair of models (intervals, tests, Holm)"
    )
    cp.add_argument("--build", default=None, help="a build id (default: the published build)")
    cp.add_argument(
        "--protocol",
        default="full_sample",
        help="one or more, comma-separated: full_sample (default), full, sampled_100, "
        "temporal, temporal_sample",
    )
    cp.add_argument("--split", choices=["test", "val"], default="test")
    cp.add_argument("--metric", choices=["ndcg", "hr", "mrr"], default="ndcg")
    cp.add_argument("--k", type=int, choices=[5, 10, 20], default=10, help="cutoff (not MRR)")
    cp.add_argument("--models", default=None, help="only these models (comma-separated)")
    _evaluation_seed_arg(cp)
    cp.add_argument(
        "--permutations", type=int, default=10_000, help="sign flips of the permutation test"
    )
    _warehouse_arg(cp)
    cp.set_defaults(func=cmd_compare)

    sw = sub.add_parser(
        "sweep", help="tune a model: seeded grid or random search, chosen on validation"
    )
    sw.add_argument(
        "--model", default="als", type=_model_name, metavar="MODEL", help="default: als"
    )
    sw.add_argument(
        "--grid",
        default=None,
        help='settings to try as JSON, e.g. \'{"factors": [20, 40], "alpha": [10, 40]}\' '
        "(default: jamrec's default grid for als, mbcf and item_knn)",
    )
    sw.add_argument("--n-random", type=int, default=None, help="try this many, drawn at random")
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--user-sample", type=int, default=5000)
    _evaluation_seed_arg(sw)
    _warehouse_arg(sw)
    sw.set_defaults(func=cmd_sweep)

    st = sub.add_parser(
        "study",
        help="re-run the original study's experiments; results in the study_results table",
    )
    st.add_argument(
        "--experiments",
        type=_experiments,
        default=None,
        metavar="NAME,NAME,...",
        help="comma-separated, run in this order (default: every experiment, in the study's "
        "order: negatives, batch_size, learning_rate, als_curves, audio_ablation, per_user)",
    )
    st.add_argument("--seed", type=int, default=0, help="the training seed of every model")
    _evaluation_seed_arg(st)
    st.add_argument(
        "--probe-users",
        type=int,
        default=1000,
        metavar="N",
        help="validation users probed after every step of the curves (default 1000)",
    )
    st.add_argument(
        "--epochs",
        action="append",
        default=[],
        metavar="EXPERIMENT=N",
        help="training budget of an experiment: negatives (MBCF epochs), audio_ablation "
        "(hybrid's and two_tower's epochs), als_curves (ALS iterations); default each "
        "model's own",
    )
    st.add_argument(
        "--steps",
        action="append",
        default=[],
        metavar="EXPERIMENT=N",
        help="optimiser steps of batch_size (default 50) or learning_rate (default 100)",
    )
    _runtime_args(st)
    _warehouse_arg(st)
    st.set_defaults(func=cmd_study)

    rs = sub.add_parser("runs", help="list model runs and the champion of each model")
    rs.add_argument("--model", default=None, help="only this model")
    rs.add_argument("--limit", type=int, default=30, help="newest runs shown")
    _warehouse_arg(rs)
    rs.set_defaults(func=cmd_runs)

    pr = sub.add_parser("promote", help="make a run its model's champion (or roll back to it)")
    pr.add_argument("run_id")
    pr.add_argument("--note", required=True, help="why (kept in model_runs and promotions)")
    pr.add_argument(
        "--no-serve",
        action="store_true",
        help="do not refresh the model's recommendations now (they are then reported pending)",
    )
    _warehouse_arg(pr)
    pr.set_defaults(func=cmd_promote)

    rr = sub.add_parser(
        "refresh-recommendations",
        help="recompute every champion's served lists (the recommendations table)",
    )
    rr.add_argument("--top-n", type=int, default=20, help="tracks per user and champion")
    _warehouse_arg(rr)
    rr.set_defaults(func=cmd_refresh_recommendations)

    rec = sub.add_parser("recommend", help="recommend tracks for a user, or a new listener")
    who = rec.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="a TIMJ user id (32 hex)")
    who.add_argument("--tracks", help="a new listener's tracks: comma-separated Spotify track ids")
    rec.add_argument("--explain", action="store_true", help="say why each track is there")
    rec.add_argument("-k", type=int, default=10)
    rec.add_argument(
        "--model",
        default=None,
        type=_model_name,
        metavar="MODEL",
        help=f"one of {', '.join(sorted(MODELS))} (default: the best champion on validation)",
    )
    _warehouse_arg(rec)
    rec.set_defaults(func=cmd_recommend)

    rp = sub.add_parser("report", help="write the data and model report (one HTML page)")
    rp.add_argument("--out", type=Path, default=None, help="file or folder (default: reports/)")
    _warehouse_arg(rp)
    rp.set_defaults(func=cmd_report)

    sql = sub.add_parser("sql", help="run a read-only SQL query against the warehouse")
    sql.add_argument("query", nargs="?", help="the SQL to run")
    sql.add_argument(
        "--describe", action="store_true", help="list tables and columns with comments"
    )
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-rows", type=int, default=40, help="rows shown in table format")
    _warehouse_arg(sql)
    sql.set_defaults(func=cmd_sql)

    li = sub.add_parser("lineage", help="the SQL layer graph: which tables each table is made from")
    li.add_argument("table", nargs="?", help="show only what this table is made from")
    li.add_argument("--format", choices=["text", "dot", "json"], default="text")
    li.set_defaults(func=cmd_lineage)
    return parser


def cmd_generate(args: argparse.Namespace) -> int:
    """``jamrec generate``: write a synthetic dump and print what it holds."""
    from jamrec.generate import AUDIO_SHARE, generate

    share = AUDIO_SHARE if args.audio_share is None else args.audio_share
    summary = generate(
        args.out,
        scale=args.scale,
        seed=args.seed,
        broken_share=args.broken_share,
        spotify_variants=args.spotify_variants,
        audio_share=share,
    )
    print(
        f"wrote a {args.scale} synthetic dump (seed {args.seed}, audio share {share:g}) "
        f"to {args.out}"
    )
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        print(f"  {key}: {shown}")
    return 0


def cmd_etl(args: argparse.Namespace) -> int:
    """``jamrec etl``: build, check and publish the warehouse."""
    from pydantic import ValidationError

    from jamrec.build.pipeline import run_build
    from jamrec.config import BuildParams

    try:
        params = BuildParams(
            seed=args.seed,
            n_negatives=args.negatives,
            k_test=args.k_test,
            k_val=args.k_val,
            temporal_cut=args.temporal_cut,
            temporal_share=args.temporal_share,
        )
    except ValidationError as exc:  # one line per bad setting
        problems = "; ".join(
            f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise JamrecError(problems) from None
    summary = run_build(
        args.timj, args.spotify, args.warehouse, params, fresh=args.fresh, force=args.force
    )
    print_build_summary(summary)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """``jamrec rollback``: republish a kept version (or ``--list`` them)."""
    from jamrec.warehouse.rollback import list_versions, rollback

    if args.list:
        versions = list_versions(args.warehouse)
        if not versions:
            print("no kept versions yet (each build keeps the one it replaces)")
        for v in versions:
            print(f"  {v.build_id or '(unreadable)':<28} {v.size / 1e6:>9.1f} MB  {v.path}")
        return 0
    done = rollback(args.build_id, args.warehouse)
    replaced = f" (replacing {done['replaced']})" if done["replaced"] else ""
    print(f"republished build {done['build_id']} from {done['version']}{replaced}")
    return 0


PUBLISHED_TABLES = (
    "jams",
    "likes",
    "followers",
    "tracks",
    "interactions",
    "negatives",
    "splits",
    "splits_temporal",
    "rejects",
)


def print_build_summary(summary: dict) -> None:
    """Where the warehouse is, and the row counts of its main tables (or why nothing was
    built)."""
    if summary.get("skipped"):
        print(f"\n{summary['message']}")
        print(f"  warehouse: {summary['warehouse']} (recorded as {summary['recorded_as']})")
        return
    print(f"\npublished build {summary['build_id']} to {summary['warehouse']}")
    if "seconds" in summary:
        print(f"  built in {summary['seconds']} s")
    validation = summary.get("validation") or {}
    if validation:
        n = sum(t["expectations"] for t in validation.get("tables", {}).values())
        print(f"  data quality: passed, {n} expectations on {len(validation['tables'])} tables")
        if validation.get("pages"):
            print(f"  data-quality pages (open offline): {validation['pages']}")
        if validation.get("report"):
            print(f"  Great Expectations Data Docs: {validation['report']}")
    rows = summary["rows"]
    for table in PUBLISHED_TABLES:
        if table in rows:
            print(f"  {table:<14}{rows[table]:>12,}")
    print(
        'query it: jamrec sql "select * from interactions limit 5"'
        f"  (or: duckdb -readonly {summary['warehouse']})"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """``jamrec validate``: run every suite on the published warehouse; 1 if any fails."""
    from jamrec.build.quality import validate_published

    report = validate_published(args.warehouse)
    print(report.message("validation of the published warehouse"))
    if report.pages_path:
        print(f"data-quality pages (open offline): {report.pages_path}")
    if report.docs_path:
        print(f"Great Expectations Data Docs: {report.docs_path}")
    return 0 if report.success else 1


def _overrides(pairs: list[str]) -> dict[str, dict]:
    """``--set MODEL.KEY=VALUE`` pairs as ``{model: {key: value}}`` (values parsed as JSON
    when they are JSON, e.g. numbers and booleans; as text otherwise)."""
    out: dict[str, dict] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        model, dot, setting = key.partition(".")
        if not sep or not dot:
            raise JamrecError(f"--set {pair!r}: expected MODEL.KEY=VALUE, e.g. als.factors=64")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(model, {})[setting] = parsed
    return out


def _models(text: str | None) -> list[str] | None:
    return [m.strip() for m in text.split(",") if m.strip()] if text else None


def _runtime(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("device", args.device), ("threads", args.threads)) if v}


def cmd_train(args: argparse.Namespace) -> int:
    """``jamrec train``: train, evaluate, record and promote each model; print the comparison."""
    from jamrec.operations.pipeline import run_models

    outcome = run_models(
        _models(args.models),
        seed=args.seed,
        warehouse=args.warehouse,
        user_sample=args.user_sample,
        settings=_overrides(args.set),
        runtime=_runtime(args),
        evaluate=not args.no_evaluate,
        seeds=args.seeds,
        protocol=args.protocol,
        evaluation_seed=args.evaluation_seed,
    )
    if outcome.recommendations:
        served = ", ".join(f"{m} {n:,}" for m, n in outcome.recommendations.items())
        print(f"\nrecommendations refreshed with the promotions (rows per model): {served}")
    if outcome.pending:
        print(f"\nnote: {outcome.pending}")
    print("\n" + outcome.comparison)
    if outcome.paired:
        print("\n" + outcome.paired)
        print("(stored in the comparisons table; `jamrec compare --protocol full` and more)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``jamrec evaluate``: evaluate trained runs (default: all without metrics)."""
    from jamrec.operations.comparison import comparison_text
    from jamrec.operations.pipeline import evaluate_runs

    if not evaluate_runs(args.run, args.evaluation_seed, args.user_sample, args.warehouse):
        print("nothing to evaluate: every run on this build has metrics (or none was trained)")
    print("\n" + comparison_text(args.warehouse))
    return 0


def cmd_coldstart(args: argparse.Namespace) -> int:
    """``jamrec coldstart``: train without a seeded share of the tracks, rank them."""
    from jamrec.operations.pipeline import cold_start_results, cold_start_study

    run_ids = cold_start_study(
        _models(args.models),
        args.share,
        args.seed,
        _overrides(args.set),
        args.warehouse,
        _runtime(args),
        args.evaluation_seed,
    )
    print("\ncold start: NDCG@10 of the withheld tracks [95% interval]")
    for model, protocol, value, low, high, n in cold_start_results(run_ids, args.warehouse):
        print(f"  {protocol:<22} {model:<20} {value:.4f} [{low:.4f}, {high:.4f}]  {n:,} users")
    print("cold_start ranks them among the withheld tracks; cold_start_catalogue among all")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``jamrec compare``: every pair of models, paired over users; recorded in comparisons."""
    from jamrec.operations.compare import format_comparison, run_comparisons

    requests = [(p, args.split, args.metric, args.k) for p in _models(args.protocol) or []]
    done = run_comparisons(
        requests,
        args.warehouse,
        args.build,
        args.evaluation_seed,
        args.permutations,
        models=_models(args.models),
    )
    print("\n\n".join(format_comparison(c) for c in done))
    if any(c.pairs for c in done):
        print('\nstored in the comparisons table: jamrec sql "select * from comparisons"')
    return 0


def _budget(pairs: list[str], option: str) -> dict[str, int]:
    """``EXPERIMENT=N`` pairs as ``{experiment: N}``."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(option, f"{pair!r}: expected EXPERIMENT=N, e.g. negatives=5")
    return out


def cmd_study(args: argparse.Namespace) -> int:
    """``jamrec study``: the study's experiments; a table per experiment, the query for all."""
    from jamrec.operations.study import format_study, run_study

    outcome = run_study(
        args.warehouse,
        args.experiments,
        seed=args.seed,
        evaluation_seed=args.evaluation_seed,
        probe_users=args.probe_users,
        epochs=_budget(args.epochs, "--epochs"),
        steps=_budget(args.steps, "--steps"),
        runtime=_runtime(args),
    )
    print("\n" + format_study(outcome))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """``jamrec runs``: runs with their validation NDCG@10, champions marked."""
    from jamrec.operations.promotion import list_runs

    rows = list_runs(args.warehouse, args.model, args.limit)
    if not rows:
        print("no runs yet: run `jamrec train`")
        return 0
    print(f"  {'run_id':<32} {'build':<24} {'status':<10} {'val NDCG@10':>11}  note")
    for r in rows:
        mark = "*" if r["is_champion"] else " "
        value = f"{r['val_ndcg_at_10']:.4f}" if r["val_ndcg_at_10"] is not None else "-"
        cells = f"{r['run_id']:<32} {r['build_id']:<24} {r['status']:<10} {value:>11}"
        print(f"{mark} {cells}  {r['note'] or ''}")
    print("* = champion (serves recommendations)")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """``jamrec promote``: promote or roll back by hand."""
    from jamrec.operations.promotion import promote_by_hand
    from jamrec.report import build_report

    decision = promote_by_hand(args.run_id, args.note, args.warehouse, serve=not args.no_serve)
    print(f"{decision.model}: {decision.challenger} is champion ({decision.note})")
    if decision.champion and decision.champion != decision.challenger:
        print(f"  previous champion: {decision.champion}")
    if decision.recommendations is not None:
        print(f"  recommendations: {decision.recommendations:,} rows of the new champion served")
    if decision.pending:
        print(f"  note: {decision.pending}")
    # The report shows the champions: rewrite it so it does not go stale.
    print(f"report: {build_report(args.warehouse)}")
    return 0


def cmd_refresh_recommendations(args: argparse.Namespace) -> int:
    """``jamrec refresh-recommendations``: every champion's lists, recomputed."""
    from jamrec.operations.recommendations import refresh_published

    counts = refresh_published(args.warehouse, args.top_n)
    served = ", ".join(f"{m} {n:,}" for m, n in counts.items()) or "no champion to serve"
    print(f"recommendations refreshed (rows per model): {served}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``jamrec sweep``: tune one model; print every trial and the chosen settings."""
    from jamrec.operations.sweep import run_sweep

    grid = None
    if args.grid:
        try:
            grid = json.loads(args.grid)
        except json.JSONDecodeError as exc:
            raise InputError("--grid", f"not JSON: {exc}") from None
        if not isinstance(grid, dict) or not all(isinstance(v, list) for v in grid.values()):
            raise InputError("--grid", 'expected {"setting": [value, ...], ...}')
    outcome = run_sweep(
        args.model,
        grid,
        args.n_random,
        args.seed,
        args.warehouse,
        args.user_sample,
        args.evaluation_seed,
    )
    print(f"\nsweep {outcome.sweep_id}: {len(outcome.trials)} configurations of {args.model}")
    for trial in outcome.trials:
        mark = "*" if trial is outcome.chosen else " "
        value, seconds = trial.val_ndcg_at_10, trial.seconds
        print(f"{mark} val NDCG@10 {value:.4f}  {seconds:>7.1f} s  {trial.config}")
    print(f"* chosen on validation; tested and recorded as run {outcome.run_id}")
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    """``jamrec lineage``: the SQL layer graph from the tables each SQL file reads."""
    from jamrec.build import lineage
    from jamrec.config import get_settings

    nodes = lineage.graph(get_settings().sql_dir)
    if args.table is not None and args.table not in nodes:
        raise InputError(args.table, f"no such table in sql/; tables: {', '.join(nodes)}")
    if args.format == "dot":
        print(lineage.render_dot(nodes))
    elif args.format == "json":
        print(lineage.render_json(nodes))
    else:
        print(lineage.render_text(nodes, args.table))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    """``jamrec recommend``: the top-k tracks for one user."""
    from jamrec.operations.serving import recommend

    tracks = _models(args.tracks)  # the same comma-separated parsing
    rows, note = recommend(args.user, args.k, args.model, args.warehouse, tracks, args.explain)
    print(note)
    print(f"{'rank':>4}  {'track_id':<22}  {'score':>9}  artist - title")
    for r in rows:
        print(f"{r.rank:>4}  {r.track_id:<22}  {r.score:>9.4f}  {r.artist} - {r.title}")
        if r.reason:
            print(f"{'':>4}  {r.reason}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``jamrec report``: the self-contained HTML report of the warehouse."""
    from jamrec.report import build_report

    path = build_report(args.warehouse, args.out)
    print(f"report: {path}")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    """``jamrec sql``: read-only ad-hoc SQL, or ``--describe`` the published tables."""
    from jamrec.warehouse import query

    if args.describe:
        query.describe(args.warehouse, sys.stdout)
        return 0
    if not args.query:
        raise JamrecError(
            'give a query, e.g. jamrec sql "select count(*) from jams", or --describe'
        )
    query.run(args.warehouse, args.query, args.format, args.max_rows, sys.stdout)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jamrec`` console script.

    Every fault ends in one ``jamrec: error: ...`` line: exit status 2 for unusable input,
    1 for anything else (a failed check, a full or read-only disk, a damaged warehouse,
    SIGINT or SIGTERM).
    """

    from jamrec import interrupts

    args = build_parser().parse_args(argv)
    setup_cli_logging(args.verbose)
    with interrupts.installed():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the command; turn every fault into one error line and an exit status."""
    import duckdb

    from jamrec import interrupts
    from jamrec.files import describe_os_error

    try:
        return args.func(args)
    except InputError as exc:
        return _error(str(exc), 2)
    except JamrecError as exc:
        return _error(str(exc), 1)
    except KeyboardInterrupt:
        name = interrupts.received() or "SIGINT"
        return _error(f"interrupted by {name}; the published warehouse is unchanged", 1)
    except BrokenPipeError:
        # The reader went away (``jamrec sql ... | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        return _error(describe_os_error(exc), 1)
    except (duckdb.Error, RuntimeError) as exc:
        if interrupts.is_interruption(exc):
            name = interrupts.received() or "SIGINT"
            return _error(f"interrupted by {name}; the published warehouse is unchanged", 1)
        if not isinstance(exc, duckdb.Error):
            raise
        from jamrec.warehouse.store import storage_error

        written = storage_error(exc)
        if written is not None:
            return _error(str(written), 1)
        text = str(exc).strip().splitlines()
        return _error(f"DuckDB: {text[0] if text else type(exc).__name__}", 1)


def _error(message: str, status: int) -> int:
    """Print the one error line (a multi-line message keeps its detail lines)."""
    print(f"jamrec: error: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
