"""Full-ranking cost against the matrix products alone, at TIMJ sizes (issue 16).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scoring.py \\
        --warehouse benchmarks/out/full.duckdb [--users 40000] [--write]

An ALS model with random 64-d float32 factors (no training: the cost of ranking does not
depend on what the factors learnt) ranks every candidate for the first ``--users`` test
users of the warehouse, three ways in one run:

- the floor: the matrix products alone, ``U[users] @ V[candidates].T`` block by block into
  one reused buffer, the candidates' factors gathered once, each block's rows on every
  core as jamrec computes them (``models.products.matmul_into``);
- jamrec's full ranking (``evaluation.protocols._full_metrics``): the candidates' factors
  gathered once, every batch's scores written into one reused block
  (``Recommender.block_scorer``), each block read once (``evaluation.blockpass``): the
  held-out tracks' ranks, per-user metrics;
- the same with the lists ``evaluate`` keeps from the test split's pass: every user's
  served top 20 and the seeded sample's top 10.

Prints the three; ``--write`` writes the "Scoring (label)" section of
benchmarks/RESULTS.md (target: full ranking at most 1.2x the floor).
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
from jamrec.models.products import matmul_into
from jamrec.operations.runs import BEYOND_K, SERVED_TOP_N

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
        matmul_into(model.model.user_factors[batch], tracks.T, buffer[: len(batch)])
    return time.perf_counter() - start


def ranking(
    model, view, users: np.ndarray, lists=None, sample=None
) -> tuple[float, dict, np.ndarray]:
    timing: dict[str, float] = {}
    start = time.perf_counter()
    result = protocols._full_metrics(model, view, users, timing, lists=lists, sample=sample)
    return time.perf_counter() - start, timing, result.metrics.values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    setup_cli_logging()
    data = open_dataset(args.warehouse)
    view = protocols.split_view(data, "test")
    users = view.users[: args.users]
    model = random_als(data.n_users, data.n_tracks)
    sample = protocols.sample_users(view, 5000, 0)
    in_run = int(np.isin(sample, users).sum())

    rows = []
    floor_s = floor(model, view, users)
    rows.append({"what": "matrix products alone (floor)", "s": floor_s, "ratio": 1.0})
    ranks_s, ranks_timing, ranks = ranking(model, view, users)
    lists = protocols.TopLists.empty(data.n_users, SERVED_TOP_N)
    kept = protocols.SampleLists.for_view(data, view, sample, BEYOND_K)
    lists_s, lists_timing, with_lists = ranking(model, view, users, lists, kept)
    assert np.array_equal(ranks, with_lists), "the lists must not change the metrics"
    for what, seconds, timing in (
        ("full ranking: the held-out tracks' ranks (jamrec)", ranks_s, ranks_timing),
        (
            f"the same and the lists: every user's top {SERVED_TOP_N} (served), the "
            f"sample's top {BEYOND_K} (beyond-accuracy), as `evaluate` runs it",
            lists_s,
            lists_timing,
        ),
    ):
        rows.append(
            {
                "what": what,
                "s": seconds,
                "score": timing["score_s"],
                "rank": timing["rank_s"] + timing.get("lists_s", 0.0),
                "ratio": seconds / floor_s,
            }
        )
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}`: the first {len(users):,} of "
        f"{len(view.users):,} test users ({in_run:,} of the 5,000 sample users among them), "
        f"each against all {len(view.candidates):,} candidates; an ALS model with random "
        f"{DIM}-d float32 factors.",
        "",
        table(
            rows,
            [
                ("what", "", ""),
                ("s", "wall s", ".1f"),
                ("score", "of which scoring s", ".1f"),
                ("rank", "ranks and lists s", ".1f"),
                ("ratio", "/ floor", ".2f"),
            ],
        ),
        "",
        f"**Full ranking: {ranks_s / floor_s:.2f}x the matrix products alone, "
        f"{lists_s / floor_s:.2f}x with the lists** (target at most 1.2x). Both give "
        "identical per-user metrics.",
    ]
    for row in rows:
        print(f"{row['what']}: {row['s']:.1f} s, {row['ratio']:.2f}x")
    if args.write:
        write_section(f"Scoring ({args.label})", "\n".join(body))
        print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
