"""The ``jamrec`` command line: the same functions the Prefect flows call.

Every problem the user can fix (bad input, a locked file, a missing warehouse) ends
as one ``jamrec: error: ...`` line and a non-zero exit, never as a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jamrec.errors import InputError, JamrecError
from jamrec.log import setup_cli_logging


def _warehouse_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warehouse",
        type=Path,
        default=None,
        help="the DuckDB file (default: $JAMREC_WAREHOUSE or warehouse/jamrec.duckdb)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="jamrec", description="This Is My Jam recommender: warehouse, quality gate, models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
    etl.set_defaults(func=cmd_etl)

    val = sub.add_parser("validate", help="re-validate the published warehouse")
    _warehouse_arg(val)
    val.set_defaults(func=cmd_validate)

    sql = sub.add_parser("sql", help="run a read-only SQL query against the warehouse")
    sql.add_argument("query", nargs="?", help="the SQL to run")
    sql.add_argument(
        "--describe", action="store_true", help="list tables and columns with comments"
    )
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.add_argument("--max-rows", type=int, default=40, help="rows shown in table format")
    _warehouse_arg(sql)
    sql.set_defaults(func=cmd_sql)
    return parser


def cmd_generate(args: argparse.Namespace) -> int:
    """``jamrec generate``: write a synthetic dump and print what it holds."""
    from jamrec.generate import generate

    variants = args.spotify_variants
    names = ["all"] if variants == "all" else [v.strip() for v in variants.split(",") if v.strip()]
    if names == ["all"]:
        from jamrec.spotify import VARIANTS

        names = [v.name for v in VARIANTS]
    summary = generate(
        args.out,
        scale=args.scale,
        seed=args.seed,
        broken_share=args.broken_share,
        spotify_variants=names,
    )
    print(f"wrote a {args.scale} synthetic dump (seed {args.seed}) to {args.out}")
    for key, value in summary.items():
        shown = f"{value:,}" if isinstance(value, int) else value
        print(f"  {key}: {shown}")
    return 0


def cmd_etl(args: argparse.Namespace) -> int:
    """``jamrec etl``: build, check and publish the warehouse."""
    from jamrec.config import BuildParams
    from jamrec.etl import run_build

    params = BuildParams(
        seed=args.seed, n_negatives=args.negatives, k_test=args.k_test, k_val=args.k_val
    )
    summary = run_build(args.timj, args.spotify, args.warehouse, params)
    print_build_summary(summary)
    return 0


def print_build_summary(summary: dict) -> None:
    """Where the warehouse is, and the row counts of its main tables."""
    print(f"\npublished build {summary['build_id']} to {summary['warehouse']}")
    if "seconds" in summary:
        print(f"  built in {summary['seconds']} s")
    rows = summary["rows"]
    for table in (
        "jams",
        "likes",
        "followers",
        "tracks",
        "interactions",
        "negatives",
        "splits",
        "rejects",
    ):
        if table in rows:
            print(f"  {table:<14}{rows[table]:>12,}")
    print(
        'query it: jamrec sql "select * from interactions limit 5"'
        f"  (or: duckdb -readonly {summary['warehouse']})"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """``jamrec validate``: run every suite on the published warehouse; 1 if any fails."""
    from jamrec.quality import validate_published

    report = validate_published(args.warehouse)
    print(report.message("validation of the published warehouse"))
    if report.docs_path:
        print(f"report: {report.docs_path}")
    return 0 if report.success else 1


def cmd_sql(args: argparse.Namespace) -> int:
    """``jamrec sql``: read-only ad-hoc SQL, or ``--describe`` the published tables."""
    from jamrec import query

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
    """Entry point of the ``jamrec`` console script."""
    args = build_parser().parse_args(argv)
    setup_cli_logging(args.verbose)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"jamrec: error: {exc}", file=sys.stderr)
        return 2
    except JamrecError as exc:
        print(f"jamrec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("jamrec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``jamrec sql ... | head``): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
