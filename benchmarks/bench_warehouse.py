"""Warehouse benchmark at TIMJ scale: time and peak memory of `generate` and each `etl` stage.

    .venv/bin/python benchmarks/bench_warehouse.py [--scale full] [--out benchmarks/out]

Writes the "Warehouse" section of benchmarks/RESULTS.md. Targets (2-core machine):
`etl` at full scale under 60 s with peak memory under 6 GB.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Sampler, machine, table, write_section

from jamrec.build import publish as publishing
from jamrec.build import stages as etl
from jamrec.generate import generate
from jamrec.log import setup_cli_logging


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", default="full", choices=["tiny", "small", "full"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse-dump", action="store_true", help="skip generating when the dump exists"
    )
    args = parser.parse_args()
    setup_cli_logging()
    dump = args.out / args.scale
    warehouse = args.out / f"{args.scale}.duckdb"
    for stale in args.out.glob(f"{args.scale}.duckdb*"):
        stale.unlink()

    sampler = Sampler()
    if not (args.reuse_dump and (dump / "archive" / "jams.tsv").exists()):
        with sampler.stage("generate"):
            generate(dump, scale=args.scale, seed=args.seed)
    sizes = {
        p.name: p.stat().st_size for p in [*(dump / "archive").glob("*.tsv"), dump / "tracks.csv"]
    }

    start = time.perf_counter()
    with sampler.stage("etl: start build"):
        build = etl.start_build(dump, dump / "tracks.csv", warehouse)
    try:
        with sampler.stage("etl: load TIMJ"):
            etl.load_timj(build)
        with sampler.stage("etl: load Spotify"):
            etl.load_spotify(build)
        with sampler.stage("etl: load truth"):
            etl.load_truth(build)
        with sampler.stage("etl: SQL transforms"):
            counts = etl.transform(build)
        with sampler.stage("validate (quality gate)"):
            etl.validate_build(build)
        with sampler.stage("etl: publish"):
            published = publishing.publish(build)
    except BaseException as exc:
        publishing.fail_build(build, exc)
        raise
    total_with_gate = time.perf_counter() - start
    sampler.close()
    gate = next(r for r in sampler.rows if r["stage"].startswith("validate"))
    total = total_with_gate - gate["seconds"]
    etl_peak = max(r["peak_rss_gb"] for r in sampler.rows if r["stage"].startswith("etl"))
    rows = published["rows"]

    body = [
        f"Measured {machine()}; scale `{args.scale}`, seed {args.seed}.",
        "",
        "Input: "
        + ", ".join(f"{name} {size / 2**20:,.0f} MiB" for name, size in sorted(sizes.items())),
        "",
        table(
            sampler.rows,
            [
                ("stage", "stage", ""),
                ("seconds", "wall s", ".1f"),
                ("peak_rss_gb", "peak RSS GB", ".2f"),
            ],
        ),
        "",
        f"**etl total (without validation): {total:.1f} s, peak RSS {etl_peak:.2f} GB** "
        "(target: under 60 s and 6 GB at full scale).",
        "",
        f"**validation (all suites, Data Docs): {gate['seconds']:.1f} s, peak RSS "
        f"{gate['peak_rss_gb']:.2f} GB** (target: under 30 s at full scale); "
        f"build with the gate: {total_with_gate:.1f} s.",
        "",
        "Published rows: "
        + ", ".join(
            f"{t} {rows[t]:,}"
            for t in [
                "jams",
                "likes",
                "followers",
                "tracks",
                "interactions",
                "negatives",
                "splits",
                "rejects",
            ]
            if t in rows
        ),
        "",
        f"Rejects by reason: {counts['rejects_by_reason']}",
    ]
    write_section(f"Warehouse ({args.scale})", "\n".join(body))
    print(f"\nwrote benchmarks/RESULTS.md; etl {total:.1f} s, peak {etl_peak:.2f} GB")


if __name__ == "__main__":
    main()
