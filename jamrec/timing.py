"""Where the time goes: wall seconds and peak memory per stage, for the ``timings`` table.

Every stage of a build (check inputs, start, load, SQL transforms, validate, publish) and
of a model run (train, save, evaluate, record, promote) is measured as a :class:`Timing`.
The rows are written in the same warehouse write that records the build or the run
(:mod:`jamrec.warehouse.timings`), so measuring adds no write of its own.

Peak RSS is the process's resident-memory high-water mark when the stage ended
(``getrusage(RUSAGE_SELF).ru_maxrss``): a mark since the process started, never the
stage's own; it never goes down, and the stage that raised it is the first row that shows
the higher value.

Which job a stage ran in (``timings.flow``) is the *job label* of the code that runs it:
a Prefect flow's name (``flows._retry.warehouse_slot`` sets it), ``demo``, or the command
(``jamrec etl``, ``jamrec train``, ...: set by the library function the command calls,
when nothing set one before).
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import ParamSpec, TypeVar

from jamrec.provenance import now

P = ParamSpec("P")
R = TypeVar("R")

_JOB: ContextVar[str | None] = ContextVar("jamrec_job", default=None)

# ru_maxrss is in KiB on Linux, in bytes on macOS.
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@contextmanager
def job(name: str | None) -> Iterator[None]:
    """Label the stages measured inside as run by ``name`` (a flow, ``demo``, a command)."""
    token = _JOB.set(name)
    try:
        yield
    finally:
        _JOB.reset(token)


@contextmanager
def default_job(name: str) -> Iterator[None]:
    """:func:`job`, unless a label is set already (a flow or the demo calling a library
    function keeps its own)."""
    if _JOB.get() is not None:
        yield
        return
    with job(name):
        yield


def job_of(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a command's library function (``run_build``: ``jamrec etl``) with its
    :func:`default_job` label."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def labelled(*args: P.args, **kwargs: P.kwargs) -> R:
            with default_job(name):
                return fn(*args, **kwargs)

        return labelled

    return decorate


def current_job() -> str | None:
    """The job label stages are measured under now (None outside any job)."""
    return _JOB.get()


def peak_rss_gb() -> float:
    """The process's resident-memory high-water mark so far, in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT / 2**30


@dataclass(frozen=True)
class Timing:
    """One measured stage: what, how long (wall seconds), the process's peak RSS when it
    ended, its count when it has one, the model for a run's stages, and the job label."""

    stage: str
    seconds: float
    peak_rss_gb: float
    recorded_at: datetime
    rows: int | None = None
    model: str | None = None
    flow: str | None = None

    @classmethod
    def since(
        cls, stage: str, start: float, rows: int | None = None, model: str | None = None
    ) -> Timing:
        """The stage that began at ``start`` (a ``time.perf_counter()`` value) and ends now."""
        return cls(
            stage,
            time.perf_counter() - start,
            round(peak_rss_gb(), 3),
            now(),
            None if rows is None else int(rows),
            model,
            current_job(),
        )

    @classmethod
    def of_stage(cls, stage: str, info: dict, rows: int | None = None) -> Timing:
        """A stage timed by :func:`jamrec.log.stage` (its ``info`` holds ``seconds``)."""
        return cls(
            stage,
            float(info["seconds"]),
            round(peak_rss_gb(), 3),
            now(),
            None if rows is None else int(rows),
            None,
            current_job(),
        )

    def as_json(self) -> dict:
        """A JSON-able dict (the build keeps its timings in its own file until it ends)."""
        return {**asdict(self), "recorded_at": self.recorded_at.isoformat()}

    @classmethod
    def from_json(cls, value: dict) -> Timing:
        """The inverse of :meth:`as_json`."""
        return cls(**{**value, "recorded_at": datetime.fromisoformat(value["recorded_at"])})


HEADER = ("flow", "stage", "model", "seconds", "peak RSS GB*", "rows")


def table_text(timings: list[Timing]) -> str:
    """An aligned plain-text table of ``timings``, in their order. When the last one is a
    job's ``total``, a line before it shows the time spent outside every other stage
    (start-up, reading the dataset, Prefect's own work)."""
    body = [_cells(t) for t in timings]
    if timings and timings[-1].stage == "total":
        outside = timings[-1].seconds - sum(t.seconds for t in timings[:-1])
        body.insert(-1, ("", "(outside the stages)", "", f"{max(outside, 0.0):,.2f}", "", ""))
    widths = [max(len(row[i]) for row in [HEADER, *body]) for i in range(len(HEADER))]

    def line(row: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    note = (
        "* peak RSS: the process's resident-memory high-water mark (getrusage ru_maxrss) "
        "when the stage ended, since the process started: not the stage's own"
    )
    return "\n".join([line(HEADER), rule, *(line(row) for row in body), note])


def _cells(t: Timing) -> tuple[str, ...]:
    return (
        t.flow or "-",
        t.stage,
        t.model or "",
        f"{t.seconds:,.2f}",
        f"{t.peak_rss_gb:.2f}",
        "" if t.rows is None else f"{t.rows:,}",
    )
