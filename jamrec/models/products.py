"""Score blocks as matrix products on every core, without touching BLAS's own threads.

jamrec keeps OpenBLAS on one thread (``OPENBLAS_NUM_THREADS=1``: implicit's ALS wants it,
and a process-wide BLAS setting cannot be raised for scoring without racing a training
that lowered it). A full ranking is then one single-threaded product per block: at TIMJ
scale a 531 x 64 by 64 x 252k block took 199 ms on one core of the 2-core machine, and
torch's CPU product of the same shapes (MBCF, the two-tower) 263 ms on two.
:func:`matmul_into` splits the block's rows over a few Python threads instead (numpy
releases the GIL inside the product): each thread computes whole rows with the same
single-threaded kernel, so every score is the same sum as one product's.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache

import numpy as np
import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS now: see one_blas_thread)
from numba import njit, prange
from threadpoolctl import ThreadpoolController, threadpool_limits

# Rows per part below which splitting costs more than it saves.
_MIN_ROWS = 32


@cache
def _blas() -> list:
    """The BLAS libraries loaded in this process (threadpoolctl's controllers, found once;
    asking each its thread count then costs microseconds)."""
    return list(ThreadpoolController().select(user_api="blas").lib_controllers)


@cache
def _cores() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 8))


def _pool_size() -> int:
    """Threads for a product now: the cores this process may use while BLAS runs on one
    thread (``OPENBLAS_NUM_THREADS=1``, or inside an ALS fit), else 1 (BLAS already
    spreads each product). Asked at every call: the BLAS setting can change."""
    if any(lib.get_num_threads() > 1 for lib in _blas()):
        return 1
    return _cores()


_blas_lock = threading.Lock()
_blas_users = 0
_blas_limit: threadpool_limits | None = None


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """OpenBLAS on one thread while any user in this process needs it: an ALS being built
    or trained (implicit wants it), the hybrid's training step (its products run on two
    threads of their own, :meth:`.torch.trainer.LazyAdam.hybrid_step`), whatever
    ``OPENBLAS_NUM_THREADS`` says.

    A limit reaches only the libraries loaded when it is taken: scipy brings its own
    OpenBLAS (implicit's, through ``scipy.linalg``), loaded by this module's import, so
    that a model module imported mid-training cannot bring a BLAS on two threads, which
    would also keep :func:`in_parallel` and :func:`matmul_into` to one thread.

    ``threadpool_limits`` is process-wide and restores what it found on exit, so two
    threads nesting it (a local sweep trains two models at once) could restore the other's
    limit too early. The first user sets the limit and the last one lifts it.
    """
    global _blas_users, _blas_limit
    with _blas_lock:
        if _blas_users == 0:
            _blas_limit = threadpool_limits(1, "blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limit is not None:
                _blas_limit.restore_original_limits()
                _blas_limit = None


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_cores(), thread_name_prefix="jamrec-matmul")


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b, out=out)`` (``a`` ``(m, k)``, ``b`` ``(k, n)``, ``out`` a C-contiguous
    ``(m, n)`` array), its rows split over :func:`_pool_size` threads; returns ``out``."""
    parts = min(_pool_size(), max(1, a.shape[0] // _MIN_ROWS))
    if parts <= 1:
        return np.matmul(a, b, out=out)
    size = -(-a.shape[0] // parts)  # rows per part, rounded up
    each_chunk(a.shape[0], size, lambda lo, hi: np.matmul(a[lo:hi], b, out=out[lo:hi]))
    return out


def each_chunk(n: int, size: int, work: Callable[[int, int], object]) -> None:
    """``work(lo, hi)`` for every chunk ``[lo, hi)`` of ``size`` of ``range(n)``, on
    :func:`_pool_size` threads (``work`` releases the GIL in numpy); returns when all are
    done, raising the first error."""
    bounds = [*range(0, n, size), n]
    if _pool_size() <= 1 or len(bounds) <= 2:
        for lo, hi in itertools.pairwise(bounds):
            work(lo, hi)
        return
    futures = [_pool().submit(work, lo, hi) for lo, hi in itertools.pairwise(bounds)]
    for future in futures:
        future.result()


def in_parallel(*works: Callable[[], object]) -> None:
    """Run ``works`` at once on :func:`_pool_size` threads (each releases the GIL in numpy
    or a compiled kernel), or one after the other when BLAS already spreads its products
    or the process has one core; returns when all are done, raising the first error."""
    if _pool_size() <= 1 or len(works) <= 1:
        for work in works:
            work()
        return
    futures = [_pool().submit(work) for work in works[1:]]
    works[0]()
    for future in futures:
        future.result()


def pair_dots(
    left: np.ndarray, right: np.ndarray, left_at: np.ndarray, right_at: np.ndarray
) -> np.ndarray:
    """(P,) float32: ``left[left_at[p]] . right[right_at[p]]`` for every pair ``p``, in one
    compiled pass on every core: what a dot-product model gives a list of aligned pairs
    (the sampled protocol's 101 tracks per held-out one) without a product of the pairs'
    users against the union of their tracks (a 256 x 25k block for 26k pairs)."""
    left = np.ascontiguousarray(left, dtype=np.float32)
    right = np.ascontiguousarray(right, dtype=np.float32)
    out = np.empty(len(left_at), np.float32)
    if left.shape[1] != right.shape[1]:
        raise ValueError(f"vectors of {left.shape[1]} and {right.shape[1]} dimensions")
    _pair_dots(
        left, right, np.asarray(left_at, dtype=np.int64), np.asarray(right_at, dtype=np.int64), out
    )
    return out


@njit(cache=True, nogil=True, parallel=True)
def _pair_dots(
    left: np.ndarray, right: np.ndarray, left_at: np.ndarray, right_at: np.ndarray, out: np.ndarray
) -> None:  # pragma: no cover - compiled
    for p in prange(out.shape[0]):
        a, b = left[left_at[p]], right[right_at[p]]
        total = np.float32(0.0)
        for k in range(a.shape[0]):
            total += a[k] * b[k]
        out[p] = total
