"""The ``build-warehouse`` flow: load, transform, validate and publish the warehouse.

Each task is one call of a :mod:`jamrec.build` function; ``jamrec etl`` runs the same
functions without Prefect. Nothing is published unless every suite passes. A build whose
inputs, parameters and code match the published build is skipped (``force`` rebuilds):
the run completes with a state message naming the build that already holds them.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._assets import declare_build
from flows._retry import warehouse_slot, write_report, writer
from jamrec.build import incremental, quality
from jamrec.build import publish as publishing
from jamrec.build import stages as etl
from jamrec.config import BuildParams

check_inputs = task(name="check-inputs", cache_policy=NO_CACHE)(incremental.build_decision)
record_skipped = writer("record-skipped-build")(incremental.record_skipped)
start_build = writer("start-build")(etl.start_build)
load_timj = task(name="load-timj")(etl.load_timj)
load_spotify = task(name="load-spotify")(etl.load_spotify)
load_truth = task(name="load-truth")(etl.load_truth)
transform = task(name="transform")(etl.transform)
validate = task(name="validate")(etl.validate_build)
publish = writer("publish")(publishing.publish)
fail_build = task(name="record-failure")(publishing.fail_build)
lineage = task(name="declare-lineage", cache_policy=NO_CACHE)(declare_build)
rewrite_report = task(name="report", cache_policy=NO_CACHE)(write_report)


@task(name="quality-artifact")
def quality_artifact(summary: dict) -> None:
    """Attach the per-table validation summary to the flow run."""
    create_markdown_artifact(
        key="data-quality", markdown=quality.artifact_markdown(summary), description="Data quality"
    )


@flow(name="build-warehouse")
def build_warehouse(
    timj: Path = Path("data/small"),
    spotify: Path = Path("data/small/tracks.csv"),
    warehouse: Path | None = None,
    seed: int = 0,
    n_negatives: int = 10,
    k_test: int = 1,
    k_val: int = 1,
    temporal_cut: str | None = None,
    force: bool = False,
    report: bool = True,
) -> dict | State:
    """Build the warehouse from the TIMJ dump and a Spotify features CSV; publish it only
    when every data-quality suite passes.

    On any failure the failed build is recorded in ``builds`` and the published warehouse
    is left as it was.

    Args:
        timj: The TIMJ dump: its folder (holding ``archive/``) or ``thisismyjam-datadump.zip``.
        spotify: A Kaggle Spotify audio-features CSV (any of the five variants).
        warehouse: The DuckDB file to publish (default: $JAMREC_WAREHOUSE, else
            warehouse/jamrec.duckdb).
        seed: Seeds negative sampling and the splits (same inputs and seed, same tables).
        n_negatives: At most this many sampled negatives per user (the study: 10).
        k_test: Positives held out per user for test.
        k_val: Positives held out per user for validation.
        temporal_cut: The temporal protocol's time cut, YYYY-MM-DD (default: the date that
            leaves the last 10% of jams after it).
        force: Build even when the inputs, parameters and code match the published build.
        report: Rewrite the report (reports/index.html) after publishing.
    """
    params = BuildParams(
        seed=seed, n_negatives=n_negatives, k_test=k_test, k_val=k_val, temporal_cut=temporal_cut
    )
    with warehouse_slot():
        decision = check_inputs(timj, spotify, warehouse, params)
        if not decision["rebuild"] and not force:
            recorded = record_skipped(decision, warehouse)
            summary = incremental.skipped_summary(decision, warehouse, recorded)
            return Completed(message=summary["message"], data=summary)
        build = start_build(timj, spotify, warehouse, params, decision=decision)
        try:
            load_timj(build)
            load_spotify(build)
            load_truth(build)
            counts = transform(build)
            validation = validate(build)
            quality_artifact(validation)
            summary = publish(build)
        except quality.ValidationFailed as exc:
            quality_artifact(exc.report.summary())
            fail_build(build, exc)
            raise
        except BaseException as exc:
            fail_build(build, exc)
            raise
        lineage(warehouse, timj, spotify, summary["build_id"], summary["rows"])
        if report:
            rewrite_report(warehouse)
    return {**summary, "stage_counts": counts, "validation": validation}


if __name__ == "__main__":
    build_warehouse()
