"""``jamrec etl`` without Prefect: every stage of a build in order (the
``build-warehouse`` flow runs the same functions as tasks)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from jamrec import interrupts, timing
from jamrec.build import incremental
from jamrec.build.publish import fail_build, publish
from jamrec.build.stages import (
    Build,
    load_spotify,
    load_timj,
    load_truth,
    start_build,
    transform,
    validate_build,
)
from jamrec.config import BuildParams
from jamrec.log import log
from jamrec.warehouse.store import storage_error


@timing.job_of("jamrec etl")
def run_build(
    timj: Path,
    spotify: Path,
    warehouse: Path | None = None,
    params: BuildParams | None = None,
    fresh: bool = False,
    force: bool = False,
) -> dict:
    """Every stage in order, without Prefect (``jamrec etl``); see ``flows/build_warehouse.py``.

    When the inputs' content, the parameters and the code match the published build,
    nothing is built: a ``skipped`` row is recorded and the summary names the published
    build that holds them (``skipped: True``). ``force`` builds anyway. ``fresh`` builds
    without reading the published file (a damaged one): it is set aside under
    ``.versions/`` first. A failure or an interruption (SIGINT, SIGTERM) at any stage is
    recorded in ``builds`` and leaves the published warehouse as it was.
    """
    decision = None
    if not force and not fresh:
        decision = incremental.build_decision(timj, spotify, warehouse, params)
        if not decision["rebuild"]:
            recorded = incremental.record_skipped(decision, warehouse)
            log.info("%s", incremental.skip_message(decision))
            return incremental.skipped_summary(decision, warehouse, recorded)
    start = time.perf_counter()
    build = start_build(timj, spotify, warehouse, params, fresh=fresh, decision=decision)
    try:
        load_timj(build)
        load_spotify(build)
        load_truth(build)
        counts = transform(build)
        validation = validate_build(build)
        summary = publish(build)
    except BaseException as exc:
        fail_build(build, exc)
        if interrupts.is_interruption(exc):
            raise interrupts.as_interrupted(exc) from None
        written = storage_error(exc)
        if written is not None and written is not exc:
            raise written from None
        raise
    summary["stage_counts"] = counts
    summary["validation"] = validation
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def build_as_dict(build: Build) -> dict:
    """A JSON-able view of a build (for Prefect artifacts and logs)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(build).items()}
