"""Logging: one ``jamrec`` logger tree, per-stage lines with counts and timings.

Under Prefect the ``jamrec`` loggers are forwarded to the flow run's log
(``PREFECT_LOGGING_EXTRA_LOGGERS=jamrec``), so the same lines show in the UI.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

log = logging.getLogger("jamrec")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it per test)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def setup_cli_logging(verbose: bool = False) -> None:
    """Print ``jamrec`` log lines to stderr as ``HH:MM:SS stage message`` for CLI use."""
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    root = logging.getLogger("jamrec")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@contextmanager
def stage(name: str, logger: logging.Logger = log) -> Iterator[dict]:
    """Time a stage and log one line when it ends.

    The body may put counts into the yielded dict; they are printed after the timing,
    e.g. ``load jams: 2.4 s  lines=2,100,001 loaded=2,099,790 rejected=211``.
    """
    info: dict = {}
    start = time.perf_counter()
    yield info
    elapsed = time.perf_counter() - start
    info["seconds"] = round(elapsed, 3)
    counts = "  ".join(
        f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}"
        for k, v in info.items()
        if k != "seconds"
    )
    logger.info("%s: %.1f s  %s", name, elapsed, counts)


def fmt_int(n: int) -> str:
    """``1234567`` -> ``'1,234,567'``."""
    return f"{n:,}"
