"""jamrec's ALS against a bare `implicit` call on the same matrix (issue 16: at most 1.1x).

    .venv/bin/python benchmarks/bench_als.py --warehouse benchmarks/out/full.duckdb [--runs 3]

Both train on the warehouse's train matrix with ALS's settings (40 factors, alpha 40,
regularisation 0.01, 20 iterations, seed 0), alternating, ``--runs`` times each:

- bare: ``implicit.cpu.als.AlternatingLeastSquares(...).fit(1 + alpha * R)`` with
  implicit's defaults otherwise, one BLAS thread and implicit's threads on every core
  (what implicit itself asks for); and the same with ``calculate_training_loss=True``
  (what jamrec set before it computed the loss itself);
- jamrec: ``create("als", early_stopping=False).fit(TrainData)``, which also records
  implicit's training loss every iteration (a curve in ``training_curves``), computed by
  ``jamrec.models.als.training_loss``, and restores nothing. Early stopping's validation
  probes are evaluation, not training: they are timed by the models benchmark, not here.

Writes the "ALS against implicit (label)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.log import setup_cli_logging
from jamrec.models import create
from jamrec.models.base import TrainData
from jamrec.models.dataset import open_dataset
from jamrec.models.products import one_blas_thread


def bare(train, config, loss: bool = False) -> float:
    from implicit.cpu.als import AlternatingLeastSquares

    conf = train.astype(np.float32, copy=True)
    conf.data = 1.0 + np.float32(config.alpha) * conf.data
    start = time.perf_counter()
    with one_blas_thread():
        model = AlternatingLeastSquares(
            factors=config.factors,
            regularization=config.regularization,
            alpha=1.0,
            iterations=config.iterations,
            random_state=config.seed,
            dtype=np.float32,
            calculate_training_loss=loss,
        )
        model.fit(conf, show_progress=False)
    return time.perf_counter() - start


def jamrec_als(data: TrainData) -> float:
    model = create("als", early_stopping=False)
    start = time.perf_counter()
    model.fit(data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    setup_cli_logging()
    data = TrainData.from_dataset(open_dataset(args.warehouse))
    config = create("als").config
    bare_s, loss_s, ours_s = [], [], []
    for _ in range(args.runs):
        bare_s.append(bare(data.train, config))
        loss_s.append(bare(data.train, config, loss=True))
        ours_s.append(jamrec_als(data))
    b, bl, o = (statistics.median(x) for x in (bare_s, loss_s, ours_s))
    rows = [
        {"what": "bare implicit", "runs": ", ".join(f"{s:.1f}" for s in bare_s), "s": b},
        {
            "what": "bare implicit with its training loss",
            "runs": ", ".join(f"{s:.1f}" for s in loss_s),
            "s": bl,
        },
        {
            "what": "jamrec ALS (early stopping off)",
            "runs": ", ".join(f"{s:.1f}" for s in ours_s),
            "s": o,
        },
    ]
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}`: train matrix "
        f"{data.train.shape[0]:,} x {data.train.shape[1]:,}, {data.train.nnz:,} entries; "
        f"{config.factors} factors, {config.iterations} iterations, {args.runs} runs each, "
        "alternating.",
        "",
        table(rows, [("what", "", ""), ("runs", "runs s", ""), ("s", "median s", ".1f")]),
        "",
        f"**jamrec's ALS: {o / b:.2f}x a bare implicit call** (target at most 1.1x); "
        f"{o / bl:.2f}x one that also computes the training loss, as jamrec does.",
    ]
    write_section(f"ALS against implicit ({args.label})", "\n".join(body))
    print(f"wrote benchmarks/RESULTS.md: {o / b:.2f}x")


if __name__ == "__main__":
    main()
