"""``make demo``: the whole study at any scale, as Prefect flows, ending with where the
time went.

Generates a dump (``--scale tiny|small|full``, default ``small``, seed 0: the same bytes
every time) into ``data/<scale>/``, or takes a real one (``--timj PATH --spotify PATH``);
then runs ``build-warehouse`` (load, validate, publish), ``train-and-evaluate`` (every
default model, every protocol) and ``study`` (the original study's experiments; skipped with
``--no-study``), writes the report, and prints the per-stage timing table (wall seconds,
peak RSS), also stored in the warehouse's ``timings`` table.

Runs on embedded defaults: Prefect's local mode (a temporary server for the run), the
warehouse at ``$JAMREC_WAREHOUSE`` or ``warehouse/jamrec.duckdb``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn, cast

import flows  # noqa: F401 - logging set-up before Prefect starts
from jamrec import timing
from jamrec.cli import print_build_summary
from jamrec.errors import JamrecError
from jamrec.generate import SCALES, generate
from jamrec.log import setup_cli_logging
from jamrec.operations.study import study_on_published_build
from jamrec.provenance import now
from jamrec.timing import Timing
from jamrec.warehouse import timings

DATA = Path("data")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``demo: error: ...``) instead of two."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"demo: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--scale`` (tiny, small, full; default small) or ``--timj`` and ``--spotify``
    together; a missing path or a lone one of the two is a one-line error (exit 2)."""
    parser = _Parser(
        prog="python -m flows.demo",
        description="Generate (or take) a dump, build, validate, train and evaluate every "
        "default model, write the report, print where the time went.",
    )
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="small",
        help="size of the generated dump, written to data/<scale>/ (default: small)",
    )
    parser.add_argument("--timj", type=Path, help="a real TIMJ dump (folder or zip) instead")
    parser.add_argument("--spotify", type=Path, help="its Spotify features CSV (with --timj)")
    parser.add_argument(
        "--no-study",
        action="store_true",
        help="skip the study's experiments (jamrec study): the report then answers the "
        "study's first question only",
    )
    args = parser.parse_args(argv)
    if (args.timj is None) != (args.spotify is None):
        given, missing = ("--timj", "--spotify") if args.timj else ("--spotify", "--timj")
        parser.error(f"{given} needs {missing}: give both, or neither to generate a dump")
    for flag, path in (("--timj", args.timj), ("--spotify", args.spotify)):
        if path is not None and not path.exists():
            parser.error(f"{flag} {path}: no such file or folder")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate or take the dump, run both flows, write the report, print the timings."""
    args = parse_args(argv)
    setup_cli_logging()
    from flows._retry import write_report
    from flows.build_warehouse import build_warehouse
    from flows.study import study
    from flows.train_and_evaluate import train_and_evaluate

    begun, started_at = time.perf_counter(), now()
    own: list[Timing] = []  # the demo's own stages, stored with the build's id at the end
    with timing.job("demo"):
        if args.timj is None:
            dump = DATA / args.scale
            timj, spotify = dump, dump / "tracks.csv"
            print(f"generating a {args.scale} synthetic dump in {dump}/ ...", flush=True)
            start = time.perf_counter()
            made = generate(dump, scale=args.scale, seed=0)
            own.append(Timing.since("generate", start, rows=made["jams_lines"]))
        else:
            timj, spotify = args.timj, args.spotify
            print(f"using the dump {timj} with {spotify} ...", flush=True)
        try:
            # A flow that returns a State (a skipped build) gives its caller that state's
            # result: the summary dict either way. The report is written once, below.
            summary = cast(dict, build_warehouse(timj=timj, spotify=spotify, report=False))
            print_build_summary(summary)
            took = (
                "the time depends on the dump's size"
                if args.timj is not None
                else "35-55 minutes at full scale on 2 cores, 7-11 of them training the hybrid"
                if args.scale == "full"
                else "a minute or two"
            )
            print(f"\ntraining and evaluating every model ({took}) ...", flush=True)
            trained = train_and_evaluate(report=False)
            done = None if args.no_study else study_on_published_build()
            if done is not None:
                print(
                    f"\nthe study's experiments: already run on this build ({done}); "
                    "`jamrec study` runs them again",
                    flush=True,
                )
            elif not args.no_study:
                print(
                    "\nthe study's experiments (jamrec study: MBCF with and without negatives, "
                    "its batch-size and learning-rate grids, ALS over iterations, the audio "
                    "ablation, per-user models) ...",
                    flush=True,
                )
                study(report=False)
            start = time.perf_counter()
            page = write_report(None)
            own.append(Timing.since("report", start))
            own.append(Timing.since("total", begun))
            # A skipped build's input check is under its own id, the rest under the build's.
            build_id = summary["build_id"]
            timings.record(own, build_id)
            stored = timings.of_builds([build_id, summary.get("recorded_as", build_id)], started_at)
        except JamrecError as exc:
            print(f"jamrec: error: {exc}", file=sys.stderr)
            return 1
    print("\n" + trained["comparison"])
    print(f"\nreport: {page}  (open it in a browser; it works offline)")
    print("\nwhere the time went (stored in the warehouse's timings table):\n")
    print(timing.table_text(stored))
    print(f"\nquery it: jamrec sql \"select * from timings where build_id = '{build_id}'\"")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
