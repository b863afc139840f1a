"""``make demo``: generate a small dump, then run the pipeline as Prefect flows:
``build-warehouse`` (load, validate, publish), then ``train-and-evaluate``.

Runs on embedded defaults: Prefect's local mode (a temporary server for the run), the
warehouse at ``$JAMREC_WAREHOUSE`` or ``warehouse/jamrec.duckdb``, data in ``data/small``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import flows  # noqa: F401 - logging set-up before Prefect starts
from jamrec.cli import print_build_summary
from jamrec.errors import JamrecError
from jamrec.generate import generate
from jamrec.log import setup_cli_logging

DUMP = Path("data/small")


def main() -> int:
    """Generate (same seed, same bytes), build the warehouse flow, print where it is."""
    setup_cli_logging()
    from flows.build_warehouse import build_warehouse
    from flows.train_and_evaluate import train_and_evaluate

    print(f"generating a small synthetic dump in {DUMP}/ ...", flush=True)
    generate(DUMP, scale="small", seed=0)
    try:
        # A flow that returns a State (a skipped build) gives its caller that state's
        # result: the summary dict either way.
        summary = cast(dict, build_warehouse(timj=DUMP, spotify=DUMP / "tracks.csv"))
        print_build_summary(summary)
        print("\ntraining and evaluating every model (a minute or two) ...", flush=True)
        trained = train_and_evaluate()
    except JamrecError as exc:
        print(f"jamrec: error: {exc}", file=sys.stderr)
        return 1
    print("\n" + trained["comparison"])
    print(f"\nreport: {trained['report']}  (open it in a browser; it works offline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
