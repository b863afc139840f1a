"""The build-warehouse Prefect flow, run by a real (temporary) Prefect server: its logs,
its skip of unchanged inputs, its lineage as asset materializations, its failures; the
train-and-evaluate flow's timings and the study flow's tasks."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest


@pytest.mark.slow
def test_build_warehouse_flow(prefect_harness, tiny_dump, tmp_path):
    from flows.build_warehouse import build_warehouse

    path = tmp_path / "flow.duckdb"
    state = build_warehouse(
        timj=tiny_dump, spotify=tiny_dump / "tracks.csv", warehouse=path, return_state=True
    )
    summary = state.result()
    assert summary["warehouse"] == str(path)
    assert summary["rows"]["interactions"] > 0
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select status from builds").fetchall() == [("published",)]
    con.close()
    assert summary["validation"]["success"]
    markdown = _artifact("data-quality")
    assert "Data quality: passed" in markdown and "| interactions |" in markdown
    # jamrec's own lines (stages, counts, validation, publishing) are in the run's logs
    logs = _logs(state.state_details.flow_run_id)
    assert f"build {summary['build_id']} published: {path}" in logs
    assert "validation passed:" in logs and "sql interactions:" in logs
    assert (path.parent / "reports" / "index.html").is_file()  # the report is rewritten
    # every stage's time is in timings, labelled with the flow
    stages = _rows(
        path,
        "select stage, flow from timings where build_id = $b order by recorded_at",
        {"b": summary["build_id"]},
    )
    assert [s for s, _ in stages][:3] == ["check inputs", "start", "load jams.tsv"]
    assert stages[-1][0] == "publish" and {f for _, f in stages} == {"build-warehouse"}

    # the same inputs again: nothing is built, and the run says which build holds them
    again = build_warehouse(
        timj=tiny_dump, spotify=tiny_dump / "tracks.csv", warehouse=path, return_state=True
    )
    assert again.is_completed() and summary["build_id"] in again.message
    assert again.result()["skipped"]
    skipped = {"b": again.result()["recorded_as"]}
    assert _rows(path, "select stage, flow from timings where build_id = $b", skipped) == [
        ("check inputs", "build-warehouse")
    ]
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select status from builds order by started_at").fetchall() == [
        ("published",),
        ("skipped",),
    ]
    con.close()

    # lineage: each table is an asset materialized from the tables its SQL reads
    from jamrec.build.lineage import asset_key, file_asset_key

    upstream = _materialized_from(asset_key(path, "interactions"))
    assert upstream == {asset_key(path, "int_positives"), asset_key(path, "tracks")}
    assert _materialized_from(asset_key(path, "raw_jams")) == {
        file_asset_key(tiny_dump / "archive" / "jams.tsv")
    }


@pytest.mark.slow
def test_train_and_evaluate_flow_records_each_run_s_timings(
    tiny_warehouse, prefect_harness, tmp_path
):
    import shutil

    from flows.train_and_evaluate import train_and_evaluate

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    done = train_and_evaluate(models=["popularity"], warehouse=path, user_sample=200, report=False)
    (run_id,) = done["runs"]
    stages = _rows(
        path,
        "select stage, flow, model from timings where run_id = $r order by recorded_at",
        {"r": run_id},
    )
    assert stages == [
        (stage, "train-and-evaluate", "popularity")
        for stage in ("train", "save", "evaluate", "record", "promote")
    ]
    # the evaluation kept the lists the promotion served: no second scoring pass
    from jamrec.operations.runs import TOP_LISTS

    assert (tmp_path / "models" / run_id / TOP_LISTS).exists()
    assert done["recommendations"] == {
        "popularity": _rows(
            path, "select count(*) from recommendations where run_id = $r", {"r": run_id}
        )[0][0]
    }


def test_study_flow_runs_each_experiment_as_a_task(tiny_warehouse, prefect_harness, tmp_path):
    import shutil

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.study import study

    path = tmp_path / "w.duckdb"
    shutil.copyfile(tiny_warehouse, path)
    state = study(
        experiments=["als_curves", "per_user"],
        epochs={"als_curves": 2},
        probe_users=50,
        warehouse=path,
        return_state=True,
    )
    done = state.result()
    assert set(done["rows"]) == {"als_curves", "per_user"} and all(done["rows"].values())
    found = _rows(
        path,
        "select experiment, count(*) from study_results where study_id = $s group by all "
        "order by all",
        {"s": done["study_id"]},
    )
    assert found == sorted(done["rows"].items())
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[state.state_details.flow_run_id])
            )
        )
    names = {t.name.rsplit("-", 1)[0] for t in tasks}  # a task run is <task name>-<n>
    assert {"study-prepare", "study-als_curves", "study-per_user", "report"} <= names
    page = Path(done["report"]).read_text()  # rewritten: its study section has the curves
    assert 'id="study-als"' in page and 'id="study-per-user"' in page
    assert "study per_user: a logistic regression" in _logs(state.state_details.flow_run_id)


def _rows(path, sql: str, params: dict) -> list[tuple]:
    """The rows of a read-only query of the warehouse at ``path``."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def _logs(flow_run_id) -> str:
    """Every log line of a flow run, as the UI and `prefect flow-run logs` show them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(log.message for log in logs)


def _materialized_from(key: str, timeout_s: float = 30.0) -> set[str]:
    """The upstream assets of the latest materialization event of ``key``."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    event_filter = EventFilter(
        event=EventNameFilter(name=["prefect.asset.materialization.succeeded"]),
        resource=EventResourceFilter(id=[key]),
    )
    deadline = time.monotonic() + timeout_s
    while True:  # events reach the server in batches
        with get_client(sync_client=True) as client:
            events = client.read_events(event_filter, limit=50).events
        if events or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert events, f"no materialization of {key}"
    return {r.id for r in events[0].related if r.role == "asset"}


def _artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key!r}"
    return found[-1].data


@pytest.mark.slow
def test_failed_flow_records_the_failure(prefect_harness, tiny_dump, tmp_path):
    from flows.build_warehouse import build_warehouse
    from jamrec.errors import InputError

    path = tmp_path / "flow.duckdb"
    with pytest.raises(InputError, match="file not found"):
        build_warehouse(timj=tiny_dump, spotify=tmp_path / "missing.csv", warehouse=path)
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select status from builds").fetchall() == [("failed",)]
    con.close()
