"""MBCF's and the hybrid's training steps at TIMJ's table sizes: torch's path against the
fused ones.

    .venv/bin/python benchmarks/bench_training_step.py [--steps 600] [--threads 1]

The tables have the `full` build's sizes (200,004 users, 600,000 tracks, pairs drawn over
its 255,543 candidate tracks, 64 dimensions, the study's 4,096-pair batches), filled by the
model's own initialisation; the pairs are uniform, as fresh negatives are (positives
repeat popular tracks, which only helps the caches). Each variant runs in a fresh process
(the huge-page setting is read at torch's first large allocation), warms up for 20 steps,
then times ``--steps`` steps:

- ``torch``: forward, BCE, autograd backward and LazyAdam's tensor-op update (the trainer
  before the kernels), 4 KiB pages;
- ``torch, compiled update``: the same with LazyAdam's update in
  :func:`jamrec.models.torch.kernels.sparse_adam_rows`;
- ``fused``: :meth:`LazyAdam.dot_step`, the whole step in one compiled pass (what the
  trainer runs for MBCF on the CPU);
- ``fused, 2 threads``: the same with torch allowed two threads, when ``dot_step``
  updates the two tables on two threads (jamrec's default on a 2-core machine);

each with 4 KiB pages and with transparent huge pages (jamrec's default); and the hybrid
network (jamrec's ``hybrid``: 64-d embeddings, 11 features, 128 hidden units, the dot-product
path), on huge pages and two threads:

- ``hybrid torch``: forward, BCE, autograd and LazyAdam's step (compiled table updates);
- ``hybrid fused``: :meth:`LazyAdam.hybrid_step`, what the trainer runs on the CPU;
- ``hybrid products``: the floor, the first layer's three products alone (forward, weight
  gradient, input gradient) on two threads of single-threaded BLAS.

Writes the
"Training step (TIMJ sizes)" section of benchmarks/RESULTS.md. The target (issue 16) is
1M samples/s for MBCF's whole training at `full` scale; this isolates the step, which is
where the time goes (the epoch's sampling and shuffling are measured by bench_models.py).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

N_USERS, N_TRACKS, N_CANDIDATES, DIM, BATCH = 200_004, 600_000, 255_543, 64, 4096
WARMUP = 20
VARIANTS = {
    "torch": "the trainer's path before the kernels",
    "torch, compiled update": "autograd, then the compiled lazy-Adam update",
    "fused": "LazyAdam.dot_step: the whole step compiled",
    "fused, 2 threads": "the same, the two tables updated on two threads (torch on 2)",
    "hybrid torch, 2 threads": "the hybrid: autograd, then LazyAdam.step",
    "hybrid fused, 2 threads": "the hybrid: LazyAdam.hybrid_step",
    "hybrid products, 2 threads": "the hybrid's floor: its first layer's three products",
}
N_FEATURES, HIDDEN = 11, 128


def one(variant: str, steps: int, threads: int) -> dict:
    """Time one variant in this process: milliseconds a step and samples a second."""
    import torch

    from jamrec.models.torch.modules import DotModule
    from jamrec.models.torch.trainer import LazyAdam

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    if variant.startswith("hybrid"):
        from jamrec.models.products import one_blas_thread

        with one_blas_thread():  # as the trainer holds it for the hybrid
            return _hybrid(variant, steps, gen)
    module = DotModule(N_USERS, N_TRACKS, DIM, gen)
    optimizer = LazyAdam(module.parameters(), lr=1e-3)
    if variant == "torch":
        LazyAdam._compiled = staticmethod(lambda p: False)  # type: ignore[method-assign]
    n = BATCH * (steps + WARMUP)
    users = torch.randint(N_USERS, (n,), generator=gen)
    items = torch.randint(N_CANDIDATES, (n,), generator=gen)
    labels = (torch.rand(n, generator=gen) < 0.2).float()  # 1 positive in 5, as 4 negatives
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for embedding in (module.users, module.tracks):
        embedding.sparse = True

    def step(i: int) -> None:
        lo, hi = i * BATCH, (i + 1) * BATCH
        if variant.startswith("fused"):
            optimizer.dot_step(
                module.users.weight, module.tracks.weight, users[lo:hi], items[lo:hi], labels[lo:hi]
            )
            return
        loss = loss_fn(module(users[lo:hi], items[lo:hi]), labels[lo:hi])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(WARMUP):
        step(i)
    start = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        step(i)
    seconds = time.perf_counter() - start
    return {"ms_per_step": 1e3 * seconds / steps, "samples_per_s": steps * BATCH / seconds}


def _hybrid(variant: str, steps: int, gen: torch.Generator) -> dict:
    """One hybrid variant (module docstring) in this process."""
    import numpy as np
    import torch

    from jamrec.models.products import in_parallel
    from jamrec.models.torch.modules import HybridModule
    from jamrec.models.torch.trainer import LazyAdam

    features = torch.randn(N_TRACKS, N_FEATURES, generator=gen)
    module = HybridModule(N_USERS, N_TRACKS, features, DIM, HIDDEN, gen, dot=True)
    optimizer = LazyAdam(module.parameters(), lr=1e-3)
    n = BATCH * (steps + WARMUP)
    users = torch.randint(N_USERS, (n,), generator=gen)
    items = torch.randint(N_CANDIDATES, (n,), generator=gen)
    labels = (torch.rand(n, generator=gen) < 0.2).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()
    if "torch" in variant:
        module.users.sparse = module.tracks.sparse = True
    rng = np.random.default_rng(0)
    width = 2 * DIM + N_FEATURES
    x = rng.standard_normal((BATCH, width), dtype=np.float32)
    w = rng.standard_normal((HIDDEN, width), dtype=np.float32)
    z = np.empty((BATCH, HIDDEN), np.float32)
    dx = np.empty((BATCH, 2 * DIM), np.float32)
    w_grad = np.empty((HIDDEN, width), np.float32)
    half, split = BATCH // 2, HIDDEN // 2

    def products(lane: int) -> None:
        rows = slice(lane * half, (lane + 1) * half)
        units = slice(lane * split, (lane + 1) * split)
        np.matmul(x[rows], w.T, out=z[rows])
        np.matmul(z[rows], w[:, : 2 * DIM], out=dx[rows])
        np.matmul(z[:, units].T, x, out=w_grad[units])

    def step(i: int) -> None:
        lo, hi = i * BATCH, (i + 1) * BATCH
        if "fused" in variant:
            optimizer.hybrid_step(module, users[lo:hi], items[lo:hi], labels[lo:hi])
        elif "products" in variant:
            in_parallel(lambda: products(0), lambda: products(1))
        else:
            loss = loss_fn(module(users[lo:hi], items[lo:hi]), labels[lo:hi])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    for i in range(WARMUP):
        step(i)
    start = time.perf_counter()
    for i in range(WARMUP, WARMUP + steps):
        step(i)
    seconds = time.perf_counter() - start
    return {"ms_per_step": 1e3 * seconds / steps, "samples_per_s": steps * BATCH / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # the child process's part
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one(args.variant, args.steps, args.threads)))
        return
    from _measure import machine, table, write_section

    rows = []
    for variant, what in VARIANTS.items():
        hybrid = variant.startswith("hybrid")
        for pages, thp in (("4 KiB", "0"), ("huge (THP)", "1"))[1 if hybrid else 0 :]:
            env = {**os.environ, "THP_MEM_ALLOC_ENABLE": thp}
            out = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                 "--threads", "2" if "2 threads" in variant else str(args.threads)],
                env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            result = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"variant": variant, "what": what, "pages": pages, **result})
            print(f"{variant:24s} {pages:10s} {result['ms_per_step']:6.2f} ms/step "
                  f"{result['samples_per_s']:>12,.0f} samples/s", flush=True)  # fmt: skip
    for row in rows:  # against the family's torch path (MBCF's on 4 KiB pages)
        base = rows[0] if not row["variant"].startswith("hybrid") else rows[-3]
        row["speedup"] = base["ms_per_step"] / row["ms_per_step"]
    body = [
        f"Measured {machine()}; torch on {args.threads} thread(s); {args.steps} steps of "
        f"{BATCH:,} pairs after {WARMUP} warm-up steps, each variant in a fresh process; "
        f"tables of the `full` build's sizes ({N_USERS:,} users, {N_TRACKS:,} tracks, "
        f"{DIM} dimensions, pairs over {N_CANDIDATES:,} candidates; the hybrid's "
        f"{N_FEATURES} features and {HIDDEN} hidden units). MBCF's speedups are against "
        "its torch path on 4 KiB pages, the hybrid's against its torch path on huge pages; "
        "the hybrid's products are its floor.",
        "",
        table(
            rows,
            [
                ("variant", "variant", ""),
                ("what", "what runs", ""),
                ("pages", "pages", ""),
                ("ms_per_step", "ms / step", ".2f"),
                ("samples_per_s", "samples/s", ",.0f"),
                ("speedup", "vs its torch path", ".2f"),
            ],
        ),
    ]
    write_section("Training step (TIMJ sizes)", "\n".join(body))
    print("wrote benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
