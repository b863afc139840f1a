"""Model benchmark: training time, torch throughput, evaluation cost, and quality.

    .venv/bin/python benchmarks/bench_models.py --warehouse benchmarks/out/full.duckdb
    .venv/bin/python benchmarks/bench_models.py --label small \
        --warehouse benchmarks/out/small.duckdb

Build the warehouse first (benchmarks/bench_warehouse.py). Writes the "Models (label)"
section of benchmarks/RESULTS.md. Targets on a 2-core machine at full scale: ALS 20
iterations under 60 s; MBCF at least 500k samples/s; full-ranking evaluation of every test
user within 2x of the time of the matrix products alone (measured in the same run).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Sampler, machine, table, write_section

from jamrec.evaluation import protocols as evaluation
from jamrec.log import setup_cli_logging
from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import open_dataset

MODELS = ("popularity", "random", "als", "mbcf", "hybrid", "two_tower", "oracle")


def matmul_floor(model, data, users: np.ndarray, batch: int = 2048) -> float:
    """Seconds to compute the scores of ``users`` x candidates alone (no ranking)."""
    candidates = np.flatnonzero(data.candidates)
    start = time.perf_counter()
    for i in range(0, len(users), batch):
        model.score(users[i : i + batch], candidates)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE")
    parser.add_argument(
        "--splits", default="val,test", help="splits to evaluate (test alone halves the time)"
    )
    args = parser.parse_args()
    setup_cli_logging()
    overrides: dict[str, dict] = {}
    for pair in args.set:
        key, _, value = pair.partition("=")
        model, _, setting = key.partition(".")
        overrides.setdefault(model, {})[setting] = type_of(value)

    sampler = Sampler()
    with sampler.stage("load dataset"):
        data = open_dataset(args.warehouse)
    rows, quality = [], []
    for name in args.models.split(","):
        if name == "oracle" and data.truth is None:
            continue
        model = create(name, **overrides.get(name, {}))
        with sampler.stage(f"{name}: train") as info:
            model.fit(TrainData.from_dataset(data))
        stats = getattr(model, "stats", {}) or {}
        with sampler.stage(f"{name}: evaluate") as info:
            result = evaluation.evaluate(model, data, splits=tuple(args.splits.split(",")))
        row = {
            "model": name,
            "train_s": sampler.rows[-2]["seconds"],
            "samples_per_s": stats.get("samples_per_s", ""),
            "evaluate_s": sampler.rows[-1]["seconds"],
        }
        full = result.timings.get("full/test")
        if full:
            test_users = evaluation.split_view(data, "test").users
            floor = matmul_floor(model, data, test_users)
            row.update(
                full_test_s=full["total_s"],
                score_s=full.get("score_s", ""),
                rank_s=full.get("rank_s", ""),
                matmul_floor_s=floor,
                ratio=full["total_s"] / floor if floor else "",
            )
        rows.append(row)
        entry = {"model": name}
        for protocol, metric in (
            ("full", "ndcg"),
            ("full_sample", "ndcg"),
            ("full_sample", "hr"),
            ("sampled_100", "hr"),
            ("sampled_100", "ndcg"),
        ):
            try:
                entry[f"{protocol}_{metric}"] = result.value(protocol, "test", metric, 10)
            except KeyError:
                entry[f"{protocol}_{metric}"] = ""
        quality.append(entry)
        info["model"] = name
    sampler.close()
    oracle = next((q for q in quality if q["model"] == "oracle"), None)
    for q in quality:
        q["of_oracle"] = q["full_sample_ndcg"] / oracle["full_sample_ndcg"] if oracle else ""
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}` ({data.n_users:,} users, "
        f"{data.n_tracks:,} tracks, {int(data.candidates.sum()):,} candidates, "
        f"{data.train.nnz:,} train interactions). Default settings"
        + (f", overrides {overrides}" if overrides else "")
        + ".",
        "",
        table(
            rows,
            [
                ("model", "model", ""),
                ("train_s", "train s", ".1f"),
                ("samples_per_s", "samples/s", ",.0f"),
                ("evaluate_s", "all protocols s", ".1f"),
                ("full_test_s", "full test s", ".1f"),
                ("score_s", "of which scoring s", ".1f"),
                ("rank_s", "ranking s", ".1f"),
                ("matmul_floor_s", "matmul floor s", ".1f"),
                ("ratio", "full / floor", ".2f"),
            ],
        ),
        "",
        "Quality on the test split (`of oracle`: NDCG@10 / the oracle's, `full_sample`):",
        "",
        table(
            quality,
            [
                ("model", "model", ""),
                ("full_ndcg", "full NDCG@10", ".4f"),
                ("full_sample_ndcg", "sample NDCG@10", ".4f"),
                ("full_sample_hr", "sample HR@10", ".4f"),
                ("sampled_100_hr", "sampled-100 HR@10", ".4f"),
                ("sampled_100_ndcg", "sampled-100 NDCG@10", ".4f"),
                ("of_oracle", "of oracle", ".2f"),
            ],
        ),
    ]
    write_section(f"Models ({args.label})", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


def type_of(value: str):
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


if __name__ == "__main__":
    main()
