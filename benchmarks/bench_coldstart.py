"""Cold-start benchmark: the cold-start protocol at scale (time and quality).

    .venv/bin/python benchmarks/bench_coldstart.py --warehouse benchmarks/out/full.duckdb

Writes the "Cold start (label)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.evaluation import coldstart
from jamrec.log import setup_cli_logging
from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import open_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument(
        "--models", default="two_tower,feature_knn,spotify_popularity,popularity,random,oracle"
    )
    parser.add_argument("--two-tower-epochs", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.1)
    args = parser.parse_args()
    setup_cli_logging()
    data = open_dataset(args.warehouse)
    cold = coldstart.withhold(data, share=args.share, seed=0)
    rows = []
    for name in args.models.split(","):
        if name == "oracle" and data.truth is None:
            continue
        config = {"epochs": args.two_tower_epochs} if name == "two_tower" else {}
        start = time.perf_counter()
        model = create(name, **config).fit(TrainData.from_dataset(cold.train_view))
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = coldstart.evaluate_cold_start(model, cold, n_boot=200)
        row = {"model": name, "fit_s": fit_s, "eval_s": time.perf_counter() - start}
        for m in metrics:
            if m.metric == "ndcg" and m.k == 10:
                row[m.protocol] = m.value
                row[m.protocol + "_ci"] = f"[{m.ci_low:.4f}, {m.ci_high:.4f}]"
            if m.metric == "hr" and m.k == 10:
                row[m.protocol + "_hr"] = m.value
        rows.append(row)
        print(row, flush=True)
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}`: {len(cold.tracks):,} tracks "
        f"withheld ({args.share:.0%} of those with interactions, seed 0) with all their "
        f"interactions; {len(cold.users):,} users evaluated; two_tower "
        f"{args.two_tower_epochs} epochs.",
        "",
        table(
            rows,
            [
                ("model", "model", ""),
                ("fit_s", "fit s", ".1f"),
                ("eval_s", "eval s", ".1f"),
                ("cold_start", "NDCG@10 among withheld", ".4f"),
                ("cold_start_ci", "95% CI", ""),
                ("cold_start_hr", "HR@10 among withheld", ".4f"),
                ("cold_start_catalogue", "NDCG@10 in catalogue", ".4f"),
            ],
        ),
    ]
    write_section(f"Cold start ({args.label})", "\n".join(body))


if __name__ == "__main__":
    main()
