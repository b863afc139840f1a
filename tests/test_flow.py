"""The build-warehouse Prefect flow, run by a real (temporary) Prefect server."""

from __future__ import annotations

import duckdb
import pytest


@pytest.mark.slow
def test_build_warehouse_flow(prefect_harness, tiny_dump, tmp_path):
    from flows.build_warehouse import build_warehouse

    path = tmp_path / "flow.duckdb"
    summary = build_warehouse(timj=tiny_dump, spotify=tiny_dump / "tracks.csv", warehouse=path)
    assert summary["warehouse"] == str(path)
    assert summary["rows"]["interactions"] > 0
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("select status from builds").fetchall() == [("published",)]
    con.close()
    assert summary["validation"]["success"]
    markdown = _artifact("data-quality")
    assert "Data quality: passed" in markdown and "| interactions |" in markdown


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
