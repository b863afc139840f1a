"""The ``build-warehouse`` flow: load, transform, validate and publish the warehouse.

Each task is one call of a :mod:`jamrec.build.stages` function; ``jamrec etl`` runs the same
functions without Prefect. Nothing is published unless every suite passes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import warehouse_slot, writer
from jamrec.build import publish as publishing
from jamrec.build import quality
from jamrec.build import stages as etl
from jamrec.config import BuildParams

start_build = writer("start-build")(etl.start_build)
load_timj = task(name="load-timj")(etl.load_timj)
load_spotify = task(name="load-spotify")(etl.load_spotify)
load_truth = task(name="load-truth")(etl.load_truth)
transform = task(name="transform")(etl.transform)
validate = task(name="validate")(etl.validate_build)
publish = writer("publish")(publishing.publish)
fail_build = task(name="record-failure")(publishing.fail_build)


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
) -> dict:
    """Build the warehouse from the TIMJ dump (folder or zip) and a Spotify features CSV.

    ``temporal_cut`` (YYYY-MM-DD) is the temporal protocol's time cut (default: the date
    that leaves the last 10% of jams after it). Publishes only a complete build whose every
    suite passes; on any failure the failed build is recorded in ``builds`` and the
    published warehouse is left as it was.
    """
    params = BuildParams(
        seed=seed, n_negatives=n_negatives, k_test=k_test, k_val=k_val, temporal_cut=temporal_cut
    )
    with warehouse_slot():
        build = start_build(timj, spotify, warehouse, params)
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
    return {**summary, "stage_counts": counts, "validation": validation}


if __name__ == "__main__":
    build_warehouse()
