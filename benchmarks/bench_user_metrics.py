"""What writing ``user_metrics`` (every evaluated user's results) adds to an evaluation.

    .venv/bin/python benchmarks/bench_user_metrics.py --warehouse benchmarks/out/full.duckdb
    .venv/bin/python benchmarks/bench_user_metrics.py --label small \\
        --warehouse benchmarks/out/small.duckdb

Per model: the evaluation (``jamrec.operations.runs.evaluate``: every protocol, both
splits, beyond-accuracy, fold-in) is the floor; measured in the same run, the cost of the
per-user rows: building them (Arrow) and inserting them into the warehouse inside one
copy-on-write update (the direct cost), and the whole ``record`` of the run with and
without them, each into a fresh copy of the warehouse (the end-to-end cost, the larger
file's copy included); each write is measured three times, the median kept. Target: at
most 10% of the evaluation at full scale. Writes the "user_metrics overhead (label)"
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.evaluation.protocols import EvaluationSettings
from jamrec.log import setup_cli_logging
from jamrec.models.dataset import open_dataset
from jamrec.operations import runs
from jamrec.warehouse.store import Warehouse

REPEATS = 3  # each write measured three times (fresh copies), the median kept: noisy VM


def _fresh_copy(source: Path, folder: Path, name: str) -> Path:
    target = folder / f"{name}.duckdb"
    for stale in folder.glob(f"{name}.duckdb*"):
        stale.unlink()
    shutil.copyfile(source, target)
    return target


def measure(name: str, data, source: Path, folder: Path, settings: EvaluationSettings) -> dict:
    """One model: its evaluation, and what its per-user rows cost to write."""
    run = runs.train(name, data, evaluation=settings)
    start = time.perf_counter()
    result = runs.evaluate(run, data, settings)
    evaluate_s = time.perf_counter() - start

    inserts = []
    for _ in range(REPEATS):
        path = _fresh_copy(source, folder, "direct")
        size = path.stat().st_size
        with Warehouse(path).update("benchmark: insert user_metrics") as con:
            start = time.perf_counter()
            n_rows = runs.insert_user_metrics(con, run.run_id, result.per_user)
            inserts.append(time.perf_counter() - start)
        grown = path.stat().st_size - size
    insert_s = statistics.median(inserts)

    record_s: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(REPEATS):
        for label, per_user in (("without", []), ("with", result.per_user)):
            target = _fresh_copy(source, folder, f"record-{label}")
            start = time.perf_counter()
            runs.record(run, dataclasses.replace(result, per_user=per_user), target)
            record_s[label].append(time.perf_counter() - start)
    record_s = {k: statistics.median(v) for k, v in record_s.items()}
    return {
        "model": name,
        "rows": n_rows,
        "evaluate_s": evaluate_s,
        "insert_s": insert_s,
        "mb": grown / 2**20,
        "record_without_s": record_s["without"],
        "record_with_s": record_s["with"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--models", default="popularity,item_knn,als")
    parser.add_argument("--user-sample", type=int, default=5000)
    args = parser.parse_args()
    setup_cli_logging()
    folder = args.warehouse.parent / f"{args.warehouse.stem}-user-metrics"
    folder.mkdir(parents=True, exist_ok=True)
    data = open_dataset(args.warehouse)
    settings = EvaluationSettings(user_sample=args.user_sample)
    rows = []
    for name in args.models.split(","):
        row = measure(name, data, args.warehouse, folder, settings)
        row["direct_ratio"] = row["insert_s"] / row["evaluate_s"]
        row["end_to_end_ratio"] = (row["record_with_s"] - row["record_without_s"]) / row[
            "evaluate_s"
        ]
        rows.append(row)
        print(row, flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}` ({data.n_users:,} users, "
        f"{data.n_tracks:,} tracks). Per model: the evaluation (every protocol, val and test, "
        "beyond-accuracy, fold-in) against the cost of its per-user rows: building and "
        "inserting them inside one warehouse update (direct), and the run's whole record "
        "with and without them, each into a fresh copy (end to end). Target: at most 10% of "
        "the evaluation.",
        "",
        table(
            rows,
            [
                ("model", "model", ""),
                ("rows", "user_metrics rows", ","),
                ("evaluate_s", "evaluation s", ".2f"),
                ("insert_s", "build + insert s", ".3f"),
                ("direct_ratio", "direct / evaluation", ".1%"),
                ("mb", "file growth MB", ".1f"),
                ("record_without_s", "record without s", ".2f"),
                ("record_with_s", "record with s", ".2f"),
                ("end_to_end_ratio", "end to end / evaluation", ".1%"),
            ],
        ),
    ]
    write_section(f"user_metrics overhead ({args.label})", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
