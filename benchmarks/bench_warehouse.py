"""Warehouse benchmark at TIMJ scale: time and peak memory of `generate` and each `etl` stage,
against two floors measured in the same run.

    .venv/bin/python benchmarks/bench_warehouse.py [--scale full] [--out benchmarks/out]

The floors: the bare read (DuckDB reading the same raw files into tables of a fresh
file and nothing else; the median of three; the same read into memory beside it) and the
pandas reference (``pandas_reference.py``: the study's preprocessing, checking nothing). Writes the
"Warehouse" section of benchmarks/RESULTS.md. Targets (2-core machine, full scale): the
build with its quality gate at most 8x the bare read and at most half the pandas
reference (issue 16); the etl under 6 GB.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Sampler, machine, table, write_section
from pandas_reference import preprocess

from jamrec.build import publish as publishing
from jamrec.build import stages as etl
from jamrec.generate import generate
from jamrec.log import setup_cli_logging

TIMJ_FILES = ("jams", "likes", "followers")


def bare_read(dump: Path, in_memory: bool = False) -> float:
    """Seconds DuckDB takes to read the dump's raw files into tables of a fresh file (or,
    ``in_memory``, of an in-memory database: the floor as issue 16 first measured it): each
    TIMJ file with the options a TIMJ read needs, the Spotify file with DuckDB's sniffer."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        con = duckdb.connect(":memory:" if in_memory else str(Path(folder) / "bare.duckdb"))
        for name in TIMJ_FILES:
            con.execute(
                f"create table {name} as select * from read_csv($path, delim='\\t', "
                "header=true, quote='', escape='', all_varchar=true, ignore_errors=true)",
                {"path": str(dump / "archive" / f"{name}.tsv")},
            )
        con.execute(
            "create table tracks as select * from read_csv($path, header=true)",
            {"path": str(dump / "tracks.csv")},
        )
        con.close()
        return time.perf_counter() - start


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
    reads = [bare_read(dump) for _ in range(3)]
    read_floor = statistics.median(reads)
    memory_reads = [bare_read(dump, in_memory=True) for _ in range(3)]
    memory_floor = statistics.median(memory_reads)
    start = time.perf_counter()
    reference_counts = preprocess(dump, seed=args.seed)
    reference = time.perf_counter() - start
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
        "",
        "Floors, measured in the same run (page cache warm for all of them):",
        "",
        table(
            [
                {
                    "what": "bare DuckDB read of the raw files (median of 3: "
                    + ", ".join(f"{r:.1f}" for r in reads)
                    + ")",
                    "s": read_floor,
                    "ratio": total_with_gate / read_floor,
                },
                {
                    "what": "the same read into an in-memory database (median of 3: "
                    + ", ".join(f"{r:.1f}" for r in memory_reads)
                    + ")",
                    "s": memory_floor,
                    "ratio": total_with_gate / memory_floor,
                },
                {
                    "what": "pandas reference (`pandas_reference.py`: "
                    + ", ".join(f"{k} {v:,}" for k, v in reference_counts.items())
                    + ")",
                    "s": reference,
                    "ratio": total_with_gate / reference,
                },
                {"what": "jamrec etl with the quality gate", "s": total_with_gate, "ratio": 1.0},
            ],
            [
                ("what", "", ""),
                ("s", "wall s", ".1f"),
                ("ratio", "etl with gate / this", ".2f"),
            ],
        ),
        "",
        f"**etl with the gate: {total_with_gate / read_floor:.1f}x the bare read** into a "
        f"file, as the etl writes ({total_with_gate / memory_floor:.1f}x the read into "
        "memory; target at most 8x, ambition 5x) "
        f"**and {total_with_gate / reference:.2f}x the pandas reference** (target at most "
        "0.5x).",
    ]
    write_section(f"Warehouse ({args.scale})", "\n".join(body))
    print(f"\nwrote benchmarks/RESULTS.md; etl {total:.1f} s, peak {etl_peak:.2f} GB")


if __name__ == "__main__":
    main()
