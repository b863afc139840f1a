"""Full-ranking cost against the matrix products alone, at TIMJ sizes (issue 16).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scoring.py \\
        --warehouse benchmarks/out/full.duckdb [--users 40000]

An ALS model with random 64-d float32 factors (no training: the cost of ranking does not
depend on what the factors learnt) ranks every candidate for the first ``--users`` test
users of the warehouse, three ways in one run:

- the floor: the matrix products alone, ``U[users] @ V[candidates].T`` block by block into
  one reused buffer, the candidates' factors gathered once;
- jamrec's full ranking (``evaluation.protocols._full_metrics``): the candidates' factors
  gathered once and every batch's scores written into one reused block
  (``Recommender.block_scorer``), ranks counted, per-user metrics;
- the same with ``score`` per batch (a fresh block, the factors gathered each time), as
  before ``block_scorer``.

Writes the "Scoring (label)" section of benchmarks/RESULTS.md (target: full ranking at
most 1.2x the floor).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.evaluation import protocols
from jamrec.log import setup_cli_logging
from jamrec.models import create
from jamrec.models.dataset import open_dataset

DIM = 64


def random_als(n_users: int, n_tracks: int, seed: int = 0):
    """An ALS recommender whose factors are random (implicit's CPU model underneath)."""
    from implicit.cpu.als import AlternatingLeastSquares

    rng = np.random.default_rng(seed)
    model = create("als")
    model.n_users, model.n_tracks = n_users, n_tracks
    model.model = AlternatingLeastSquares(factors=DIM, random_state=seed)
    model.model.user_factors = rng.standard_normal((n_users, DIM), dtype=np.float32)
    model.model.item_factors = rng.standard_normal((n_tracks, DIM), dtype=np.float32)
    return model


def floor(model, view, users: np.ndarray) -> float:
    """Seconds of the products alone, in the evaluation's blocks, into one buffer."""
    block = max(1, min(protocols._MAX_BLOCK_USERS, protocols._BLOCK_ELEMS // len(view.candidates)))
    tracks = model.model.item_factors[view.candidates]
    buffer = np.empty((block, len(view.candidates)), np.float32)
    start = time.perf_counter()
    for lo in range(0, len(users), block):
        batch = users[lo : lo + block]
        np.matmul(model.model.user_factors[batch], tracks.T, out=buffer[: len(batch)])
    return time.perf_counter() - start


def ranking(model, view, users: np.ndarray) -> tuple[float, dict, np.ndarray]:
    timing: dict[str, float] = {}
    start = time.perf_counter()
    result = protocols._full_metrics(model, view, users, timing)
    return time.perf_counter() - start, timing, result.metrics.values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--users", type=int, default=40_000)
    args = parser.parse_args()
    setup_cli_logging()
    data = open_dataset(args.warehouse)
    view = protocols.split_view(data, "test")
    users = view.users[: args.users]
    model = random_als(data.n_users, data.n_tracks)

    rows = []
    floor_s = floor(model, view, users)
    rows.append({"what": "matrix products alone (floor)", "s": floor_s, "ratio": 1.0})
    reused_s, reused_timing, reused = ranking(model, view, users)
    model.block_scorer = lambda items: lambda u, out: model.score(u, items)  # as before
    fresh_s, fresh_timing, fresh = ranking(model, view, users)
    assert np.array_equal(reused, fresh), "the two paths must give the same metrics"
    for what, seconds, timing in (
        ("full ranking, factors gathered once, one reused block (jamrec)", reused_s, reused_timing),
        ("full ranking, `score` per batch (before)", fresh_s, fresh_timing),
    ):
        rows.append(
            {
                "what": what,
                "s": seconds,
                "score": timing["score_s"],
                "rank": timing["rank_s"],
                "ratio": seconds / floor_s,
            }
        )
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}`: the first {len(users):,} of "
        f"{len(view.users):,} test users, each against all {len(view.candidates):,} "
        f"candidates; an ALS model with random {DIM}-d float32 factors.",
        "",
        table(
            rows,
            [
                ("what", "", ""),
                ("s", "wall s", ".1f"),
                ("score", "of which scoring s", ".1f"),
                ("rank", "ranking and metrics s", ".1f"),
                ("ratio", "/ floor", ".2f"),
            ],
        ),
        "",
        f"**Full ranking: {reused_s / floor_s:.2f}x the matrix products alone** (target at "
        f"most 1.2x; {fresh_s / floor_s:.2f}x with `score` per batch). Both paths give "
        "identical per-user metrics.",
    ]
    write_section(f"Scoring ({args.label})", "\n".join(body))
    print(
        f"wrote benchmarks/RESULTS.md: {reused_s / floor_s:.2f}x, before {fresh_s / floor_s:.2f}x"
    )


if __name__ == "__main__":
    main()
