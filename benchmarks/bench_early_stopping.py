"""Early stopping: the probe's paired noise, and what stopping changes, per iterative model.

    .venv/bin/python benchmarks/bench_early_stopping.py --warehouse warehouse/small.duckdb

Per model (training seed 0, default settings otherwise), two trainings on the same data:

- **off** (``early_stopping=False``): every step up to the maximum, the last one kept: the
  model as trained before early stopping (bit-identical weights; only the probe differs).
  Its per-user probe values give the noise: for each pair of consecutive steps, the standard
  deviation of the per-user NDCG@10 difference, hence the standard error of a paired mean
  gain over ``n`` users, ``sd / sqrt(n)``, at the probe's size and at 1,000 and 10,000;
- **on** (``early_stopping=True``, the rule ``--improvement``, default settings otherwise):
  where it stopped, the step kept, and why.

Both are timed (the fit, probes included: wall seconds and this process's CPU seconds,
which a busy shared machine inflates less; torch on one thread, ``--threads``) and
measured on the test split (NDCG@10, the ``full`` and ``full_sample`` protocols,
evaluation seed 0). The rule is also replayed on the recorded values of the **off** run
with other patiences (it is a function of the probe values alone), to show where each
would have stopped. Writes the "Early stopping (label)" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import machine, table, write_section

from jamrec.evaluation.protocols import evaluate, val_probe
from jamrec.log import setup_cli_logging
from jamrec.models import create
from jamrec.models.base import Recommender, TrainData
from jamrec.models.dataset import Dataset, open_dataset
from jamrec.models.early_stopping import EarlyStopping, EarlyStoppingConfig

PATIENCES = (1, 2, 3, 5, 8)


def train(name: str, data: Dataset, threads: int, **config: object) -> dict:
    """Fit ``name`` (seed 0), keeping every step's per-user values of early stopping's
    probe (its ``probe_users``, drawn with the training seed), also when early stopping is
    off (a run's curve then probes 1,000 users): the replays need the rule's own values."""
    model = create(name, {"threads": threads} if name != "als" else None, seed=0, **config)
    settings = model.config
    probe = val_probe(data, n_users=settings.probe_users, seed=settings.seed)  # type: ignore[attr-defined]
    values: list[np.ndarray] = []
    probe_s = [0.0]

    def recording(m: Recommender) -> np.ndarray:
        start = time.perf_counter()
        out = probe(m)
        probe_s[0] += time.perf_counter() - start
        values.append(out)
        return out

    start, cpu = time.perf_counter(), time.process_time()
    model.fit(TrainData.from_dataset(data, probe=recording))
    fit_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    protocols = ("full_sample",) if model.pairwise else ("full", "full_sample")
    result = evaluate(model, data, ("test",), protocols, seed=0, n_boot=100)
    return {
        "model": model,
        "values": values,
        "fit_s": fit_s,
        "cpu_s": cpu_s,
        "probe_s": probe_s[0],
        "full": result.value("full", "test", "ndcg", 10) if not model.pairwise else None,
        "full_sample": result.value("full_sample", "test", "ndcg", 10),
    }


def noise(values: list[np.ndarray]) -> dict:
    """Standard deviations of the per-user differences between consecutive steps."""
    sds = [float(np.std(b - a, ddof=1)) for a, b in itertools.pairwise(values)]
    later = sds[len(sds) // 2 :]  # the second half of training, once the model has settled
    gains = [float(np.mean(b - a)) for a, b in itertools.pairwise(values)]
    return {
        "n": len(values[0]),
        "sd_all": (min(sds), max(sds)),
        "sd": float(np.median(later)),
        "abs_gain": float(np.median(np.abs(gains[len(gains) // 2 :]))),
    }


def replay(values: list[np.ndarray], patience: int, improvement: str = "significant") -> str:
    """``kept/stopped`` steps of the rule with ``patience`` on recorded probe values."""
    config = EarlyStoppingConfig(early_stopping=True, patience=patience, improvement=improvement)
    stopper: EarlyStopping[int] = EarlyStopping(config)
    for step, v in enumerate(values, start=1):
        if stopper.observe(step, v, lambda: 0):  # the state does not matter here
            break
    return f"{stopper.outcome.best_step}/{stopper.outcome.stopped_step}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--label", default="small")
    parser.add_argument("--models", default="als,mbcf,hybrid,two_tower")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--improvement",
        default="significant",
        choices=("significant", "mean"),
        help="the rule of the run with early stopping on",
    )
    args = parser.parse_args()
    setup_cli_logging()
    data = open_dataset(args.warehouse)
    noise_rows, stop_rows = [], []
    for name in args.models.split(","):
        off = train(name, data, args.threads, early_stopping=False)
        on = train(name, data, args.threads, early_stopping=True, improvement=args.improvement)
        outcome = on["model"].stopping
        stats = noise(off["values"])
        val = [float(v.mean()) for v in off["values"]]
        noise_rows.append(
            {
                "model": name,
                "users": stats["n"],
                "sd": stats["sd"],
                "sd_range": f"{stats['sd_all'][0]:.3f}-{stats['sd_all'][1]:.3f}",
                "se_n": stats["sd"] / math.sqrt(stats["n"]),
                "se_1k": stats["sd"] / math.sqrt(1000),
                "se_10k": stats["sd"] / math.sqrt(10_000),
                "abs_gain": stats["abs_gain"],
                "val_best": max(val),
                **{f"p{p}": replay(off["values"], p) for p in PATIENCES},
                **{f"m{p}": replay(off["values"], p, "mean") for p in PATIENCES},
                "val_curve": " ".join(f"{v:.4f}" for v in val),
            }
        )
        stop_rows.append(
            {
                "model": name,
                "steps": f"{len(off['values'])} -> {outcome.stopped_step}",
                "kept": f"{outcome.best_step} ({outcome.stop_reason})",
                "fit": f"{off['fit_s']:.1f} -> {on['fit_s']:.1f}",
                "cpu": f"{off['cpu_s']:.1f} -> {on['cpu_s']:.1f}",
                "probe": f"{off['probe_s'] / len(off['values']):.2f}",
                "full": "-" if off["full"] is None else f"{off['full']:.4f} -> {on['full']:.4f}",
                "sample": f"{off['full_sample']:.4f} -> {on['full_sample']:.4f}",
            }
        )
        print(noise_rows[-1], stop_rows[-1], flush=True)
    body = [
        f"Measured {machine()}; warehouse `{args.warehouse}` ({data.n_users:,} users, "
        f"{data.n_tracks:,} tracks). Training seed 0, default settings; "
        f"early stopping on with `improvement = {args.improvement!r}`; torch on "
        f"{args.threads} thread(s).",
        "",
        "Paired noise of the probe (early stopping off): the standard deviation of the "
        "per-user validation NDCG@10 difference between consecutive steps (the median over "
        "the second half of training, and its range over all steps), the standard error of "
        "a mean paired gain at the probe's size and at 1,000 and 10,000 users, the median "
        "absolute step-to-step change of the mean in the second half, and the best mean.",
        "",
        table(
            noise_rows,
            [
                ("model", "model", ""),
                ("users", "probe users", ","),
                ("sd", "sd of difference", ".4f"),
                ("sd_range", "range", ""),
                ("se_n", "SE (probe)", ".5f"),
                ("se_1k", "SE (1,000)", ".5f"),
                ("se_10k", "SE (10,000)", ".5f"),
                ("abs_gain", "median abs step change", ".5f"),
                ("val_best", "best val NDCG@10", ".4f"),
            ],
        ),
        "",
        "The rule replayed on those values with other patiences: kept / stopped step.",
        "",
        table(
            noise_rows,
            [("model", "model", ""), *((f"p{p}", f"patience {p}", "") for p in PATIENCES)],
        ),
        "",
        "The same with `improvement = 'mean'` (any gain of the probe's mean over the kept "
        "step counts, no standard-error bar): kept / stopped step.",
        "",
        table(
            noise_rows,
            [("model", "model", ""), *((f"m{p}", f"patience {p}", "") for p in PATIENCES)],
        ),
        "",
        "The validation curve (probe mean per step, early stopping off):",
        "",
        table(noise_rows, [("model", "model", ""), ("val_curve", "val NDCG@10 by step", "")]),
        "",
        "Without -> with early stopping (fit seconds include the probes, wall and CPU; "
        "probe s: wall seconds of one probe; test NDCG@10):",
        "",
        table(
            stop_rows,
            [
                ("model", "model", ""),
                ("steps", "steps", ""),
                ("kept", "kept (reason)", ""),
                ("fit", "fit s", ""),
                ("cpu", "fit CPU s", ""),
                ("probe", "probe s", ""),
                ("full", "test full", ""),
                ("sample", "test full_sample", ""),
            ],
        ),
    ]
    write_section(f"Early stopping ({args.label})", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
