"""Comparison benchmark: every model paired over users, across training seeds, and the
temporal protocol, recorded the way `jamrec train` / `jamrec compare` record them.

    .venv/bin/python benchmarks/bench_comparisons.py --warehouse benchmarks/out/full.duckdb
    .venv/bin/python benchmarks/bench_comparisons.py --label small \\
        --warehouse benchmarks/out/small.duckdb

Build the warehouse first (benchmarks/bench_warehouse.py; it must be built by this version:
it needs ``splits_temporal``). Works on a copy (``<warehouse>-comparisons.duckdb``): trains
every model (ALS, MBCF and the two-tower with each of ``--seeds``, the others once),
evaluates them with one evaluation seed, compares every pair under ``full_sample`` and
``full`` (test NDCG@10: paired bootstrap 95% interval, paired permutation test, Holm's
correction), then trains and compares every model under the temporal protocol. Writes the
"Comparisons (label)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.log import setup_cli_logging
from jamrec.models import DEFAULT_MODELS
from jamrec.models.dataset import open_dataset
from jamrec.operations.compare import Comparison, run_comparisons
from jamrec.operations.pipeline import COMPARED, run_models

SEEDED = ("als", "mbcf", "two_tower")


def _overrides(pairs: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        model, _, setting = key.partition(".")
        for cast in (int, float, str):
            try:
                out.setdefault(model, {})[setting] = cast(value)
                break
            except ValueError:
                continue
    return out


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def model_table(comparison: Comparison) -> str:
    rows = [
        {
            "model": m.model,
            "seeds": ",".join(str(s) for s in m.seeds),
            "mean": m.mean,
            "ci": f"[{m.ci_low:.4f}, {m.ci_high:.4f}]",
            "sd": m.seed_sd if m.seed_sd is not None else "",
            "range": f"{min(m.seed_means):.4f}-{max(m.seed_means):.4f}"
            if len(m.seed_means) > 1
            else "",
        }
        for m in comparison.models
    ]
    return table(
        rows,
        [
            ("model", "model", ""),
            ("seeds", "training seeds", ""),
            ("mean", "NDCG@10 (seed-averaged per user)", ".4f"),
            ("ci", "95% CI over users", ""),
            ("sd", "sd across seeds", ".4f"),
            ("range", "range across seeds", ""),
        ],
    )


def pair_table(comparison: Comparison) -> str:
    rows = [
        {
            "pair": f"{p.model_a} - {p.model_b}",
            "users": p.n_users,
            "difference": f"{p.difference:+.4f}",
            "ci": f"[{p.ci_low:+.4f}, {p.ci_high:+.4f}]",
            "p": _p(p.p_value),
            "holm": _p(p.p_holm),
            "wilcoxon": _p(p.wilcoxon_p),
            "sig": "yes" if p.significant else "",
        }
        for p in comparison.pairs
    ]
    return table(
        rows,
        [
            ("pair", "a - b", ""),
            ("users", "paired users", ","),
            ("difference", "difference", ""),
            ("ci", "paired 95% CI", ""),
            ("p", "permutation p", ""),
            ("holm", "Holm-adjusted p", ""),
            ("wilcoxon", "Wilcoxon p", ""),
            ("sig", "significant", ""),
        ],
    )


def comparison_block(title: str, comparison: Comparison) -> list[str]:
    return [
        f"### {title}",
        "",
        f"{len(comparison.models)} models, {len(comparison.pairs)} pairs; evaluation seed "
        f"{comparison.evaluation_seed}, {comparison.n_boot} bootstrap resamples, "
        f"{comparison.n_permutations:,} sign flips, Holm over the {len(comparison.pairs)} pairs "
        f"at alpha {comparison.alpha}.",
        "",
        model_table(comparison),
        "",
        pair_table(comparison),
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="full")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--seeded", default=",".join(SEEDED), help="models trained per seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temporal-models", default=None, help="default: --models")
    parser.add_argument("--set", action="append", default=[], metavar="MODEL.KEY=VALUE")
    parser.add_argument("--user-sample", type=int, default=5000)
    parser.add_argument(
        "--no-oracle",
        action="store_true",
        help="do not add the oracle (e.g. resuming, when it is already trained)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs already in the working copy; train only what is missing "
        "(e.g. more models or seeds), then compare everything again",
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="train nothing: compare the runs an earlier (e.g. interrupted) invocation left "
        "in the working copy and write the section",
    )
    args = parser.parse_args()
    args.resume = args.resume or args.compare_only
    setup_cli_logging()
    work = args.warehouse.with_name(f"{args.warehouse.stem}-comparisons.duckdb")
    if not (args.resume and work.exists()):
        for stale in work.parent.glob(f"{work.name}*"):
            stale.unlink() if stale.is_file() else shutil.rmtree(stale)
        shutil.copyfile(args.warehouse, work)
    settings = _overrides(args.set)
    data = open_dataset(work)
    models = [m for m in args.models.split(",") if m]
    if data.truth is not None and "oracle" not in models and not args.no_oracle:
        models.append("oracle")
    seeded = [m for m in models if m in args.seeded.split(",")]
    once = [m for m in models if m not in seeded]
    seeds = [int(s) for s in args.seeds.split(",")]
    timings = {}

    start = time.perf_counter()
    # The served lists are not compared: promotions here do not recompute them.
    common = {
        "warehouse": work,
        "settings": settings,
        "user_sample": args.user_sample,
        "serve": False,
    }
    if not args.compare_only:
        if once:  # an empty list would mean the default models
            run_models(once, skip_trained=args.resume, **common)
        if seeded:
            run_models(seeded, seeds=seeds, skip_trained=args.resume, **common)
        timings["leave-k-out: train, evaluate, record, promote"] = time.perf_counter() - start
    start = time.perf_counter()
    standard = run_comparisons(COMPARED["leave_k_out"], work, data.build_id)
    timings["leave-k-out: compare (full_sample and full)"] = time.perf_counter() - start

    temporal_models = (args.temporal_models or ",".join(models)).split(",")
    start = time.perf_counter()
    if not args.compare_only:
        run_models(temporal_models, protocol="temporal", skip_trained=args.resume, **common)
        timings["temporal: train, evaluate, record"] = time.perf_counter() - start
    start = time.perf_counter()
    temporal = [c for c in run_comparisons(COMPARED["temporal"], work, data.build_id) if c.pairs]
    timings["temporal: compare"] = time.perf_counter() - start
    cut = open_dataset(work, "temporal")
    n_cold = int(cut.test.nnz - cut.test[:, cut.candidates].nnz)

    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}` ({data.n_users:,} users, "
        f"{data.n_tracks:,} tracks, {data.train.nnz:,} train interactions); runs recorded in "
        f"`{work}`. Default settings"
        + (f", overrides {settings}" if settings else "")
        + f"; {', '.join(seeded)} trained with seeds {args.seeds}, the others with seed 0; "
        "every run evaluated with evaluation seed 0. Test NDCG@10."
        + (
            " Compared only: the runs an earlier invocation trained before it was stopped"
            " (each model's training seeds are in the tables); the timings below are the"
            " comparisons' only."
            if args.compare_only
            else " Resumed: runs already in the working copy were kept; the timings below are"
            " this invocation's only."
            if args.resume
            else ""
        ),
        "",
        table(
            [{"step": k, "seconds": v} for k, v in timings.items()],
            [("step", "step", ""), ("seconds", "wall s", ".1f")],
        ),
        "",
    ]
    for comparison in standard:
        body += comparison_block(f"Leave-k-out, `{comparison.protocol}`", comparison)
    if temporal:
        body += [
            f"Temporal protocol: trained before the build's time cut, tested on what the "
            f"{len(set(cut.test.nonzero()[0])):,} users active before it jammed after it; "
            f"{n_cold:,} test positives on tracks new after the cut are not candidates.",
            "",
        ]
    else:
        body += ["Temporal protocol: no temporal runs in this working copy.", ""]
    for comparison in temporal:
        body += comparison_block(f"Temporal, `{comparison.protocol}`", comparison)
    write_section(f"Comparisons ({args.label})", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
