"""jamrec as a service: a real Prefect server, work pool, worker and deployments, driven
with `prefect deployment run ... --watch` as a user would (`make service` does the same)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A Prefect server and worker on a free loopback port, stopped by PID at the end."""
    from jamrec.generate import generate

    root = tmp_path_factory.mktemp("service")
    generate(root / "dump", scale="tiny", seed=0)
    port = _free_port()
    env = {
        **os.environ,
        "JAMREC_WAREHOUSE": str(root / "wh" / "jamrec.duckdb"),
        "JAMREC_SERVICE_DIR": str(root / "service"),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
    }
    start = subprocess.run(
        [sys.executable, "-m", "flows.service", "start", "--port", str(port)],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    pids = json.loads((root / "service" / "pids.json").read_text())
    try:
        yield root, env
    finally:
        subprocess.run(
            [sys.executable, "-m", "flows.service", "stop"], cwd=PROJECT, env=env, timeout=120
        )
        for key in ("server", "worker"):
            with pytest.raises(ProcessLookupError):
                os.killpg(pids[key], 0)


def _run_retrain(root: Path, env: dict) -> subprocess.CompletedProcess:
    settings = json.dumps(
        {"mbcf": {"epochs": 2}, "hybrid": {"epochs": 1}, "two_tower": {"epochs": 2}}
    )
    return subprocess.run(
        [
            PREFECT,
            "deployment",
            "run",
            "retrain/weekly",
            "--param",
            f"timj={root / 'dump'}",
            "--param",
            f"spotify={root / 'dump' / 'tracks.csv'}",
            "--param",
            f"settings={settings}",
            "--watch",
            "--watch-timeout",
            "500",
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=560,
    )


def _query(root: Path, sql: str):
    con = duckdb.connect(str(root / "wh" / "jamrec.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_deployments_exist(service):
    _, env = service
    out = subprocess.run(
        [PREFECT, "deployment", "ls"], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    for name in (
        "build-warehouse/manual",
        "train-and-evaluate/manual",
        "retrain/weekly",
        "sweep/manual",
    ):
        assert name in out
    schedule = subprocess.run(
        [PREFECT, "deployment", "inspect", "retrain/weekly"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "0 4 * * 1" in schedule


def test_retrain_then_retrain_again_with_unchanged_inputs(service):
    root, env = service
    first = _run_retrain(root, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _query(root, "select status from builds") == [("published",)]
    runs = _query(root, "select count(*) from model_runs")[0][0]
    assert runs == 8
    champions = dict(_query(root, "select model, run_id from model_runs where is_champion"))
    assert set(champions) == {
        "popularity",
        "random",
        "item_knn",
        "als",
        "mbcf",
        "hybrid",
        "two_tower",
        "oracle",
    }
    served = dict(_query(root, "select model, count(*) from recommendations group by 1"))
    assert set(served) == {"popularity", "item_knn", "als", "mbcf", "hybrid", "two_tower"}
    users = _query(root, "select count(distinct user_id) from splits")[0][0]
    assert all(n <= 20 * users for n in served.values()) and min(served.values()) > users
    promotions = _query(root, "select count(*) from promotions")[0][0]

    second = _run_retrain(root, env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    builds = _query(root, "select status, note from builds order by started_at")
    assert [s for s, _ in builds] == ["published", "skipped"]
    assert "inputs, parameters and code match" in builds[1][1]
    assert _query(root, "select count(*) from model_runs")[0][0] == runs  # nothing retrained
    assert _query(root, "select count(*) from promotions")[0][0] == promotions
    assert dict(_query(root, "select model, run_id from model_runs where is_champion")) == champions
