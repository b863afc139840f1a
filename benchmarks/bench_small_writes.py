"""What a small write costs: recording one run (its model_runs row, 300 metrics rows and a
20-step training curve) in place (the default since issue 15) against the whole-file
copy every write made before (``Warehouse.update(..., in_place=False)``), on a warehouse
built from a generated dump. Bytes written are the process's ``write_bytes``
(``/proc/self/io``), time is wall clock; the median of ``--repeat`` writes each.

    .venv/bin/python -m benchmarks.bench_small_writes --scale small
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from jamrec.warehouse import history
from jamrec.warehouse.store import Warehouse


def _written() -> int:
    with open("/proc/self/io") as handle:
        for line in handle:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def record_once(store: Warehouse, i: int, in_place: bool) -> tuple[float, int]:
    """Seconds and bytes written to record one synthetic run."""
    run_id = f"bench-{'p' if in_place else 'c'}-{i}"
    metrics = [
        (run_id, "full", split, metric, k, 0.1, 0.05, 0.15, 1000)
        for split in ("val", "test")
        for metric in ("hr", "ndcg")
        for k in range(75)
    ]
    curve = [(run_id, step, 0.5, 0.1, float(step)) for step in range(20)]
    os.sync()
    start_bytes, start = _written(), time.perf_counter()
    with store.update(f"bench record {run_id}", in_place=in_place) as con:
        con.execute(
            "insert into model_runs (run_id, build_id, model, status) "
            "values ($r, 'bench', 'als', 'evaluated')",
            {"r": run_id},
        )
        con.executemany(history.insert_sql("metrics"), metrics)
        con.executemany(history.insert_sql("training_curves"), curve)
    return time.perf_counter() - start, _written() - start_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=["tiny", "small", "full"], default="small")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from jamrec.build.pipeline import run_build
    from jamrec.generate import generate

    root = Path(tempfile.mkdtemp(prefix="jamrec-smallwrites-"))
    generate(root / "dump", scale=args.scale, seed=0)
    path = root / "wh" / "jamrec.duckdb"
    run_build(root / "dump", root / "dump" / "tracks.csv", path)
    store = Warehouse(path)
    size = path.stat().st_size
    rows = {}
    for in_place in (True, False):
        found = [record_once(store, i, in_place) for i in range(args.repeat)]
        rows[in_place] = (
            statistics.median(s for s, _ in found),
            statistics.median(b for _, b in found),
        )
    (p_s, p_b), (c_s, c_b) = rows[True], rows[False]
    print(f"warehouse {args.scale}: {size / 1e6:.1f} MB; one run record (300 metrics rows):")
    print("| write | seconds | MB written |")
    print("|---|---:|---:|")
    print(f"| in place (default) | {p_s:.3f} | {p_b / 1e6:.2f} |")
    print(f"| copy-on-write (before) | {c_s:.3f} | {c_b / 1e6:.2f} |")
    print(f"| ratio copy / in place | {c_s / p_s:.1f}x | {c_b / max(p_b, 1):.0f}x |")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
