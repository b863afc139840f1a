"""jamrec as a service: a real Prefect server, work pool, worker, deployments and alert
automations on 127.0.0.1, driven with `prefect deployment run` as a user would (`make
service` does the same). Tests run in file order and share one service; the last ones
stop and restart it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import duckdb
import pytest

from jamrec.warehouse.store import Warehouse

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Hook(BaseHTTPRequestHandler):
    """A webhook receiver: keeps every POST body (the alert automation calls it)."""

    received: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


class Service:
    """The service under test: start, stop, and the environment of its CLI calls."""

    def __init__(self, root: Path, port: int, hook_url: str):
        self.root, self.port, self.hook_url = root, port, hook_url
        self.env = {
            **os.environ,
            "JAMREC_WAREHOUSE": str(root / "wh" / "jamrec.duckdb"),
            "JAMREC_SERVICE_DIR": str(root / "service"),
            "PREFECT_WORKER_QUERY_SECONDS": "2",
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_HOME": str(root / "service" / "home"),
        }
        self.api = self.env["PREFECT_API_URL"]

    def start(self) -> str:
        args = ["start", "--port", str(self.port), "--webhook", self.hook_url]
        result = self.service(*args, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def stop(self) -> str:
        result = self.service("stop", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def service(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "flows.service", *args],
            cwd=PROJECT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def prefect(self, *args: str, timeout: float = 120, cwd: Path = PROJECT, env=None):
        return subprocess.run(
            [PREFECT, *args],
            cwd=cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, deployment: str, **params) -> str:
        """Create a flow run of ``deployment`` (not waiting for it); its id."""
        args = []
        for key, value in params.items():
            args += [
                "--param",
                f"{key}={json.dumps(value) if not isinstance(value, str) else value}",
            ]
        result = self.prefect("deployment", "run", deployment, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return re.search(r"UUID: ([0-9a-f-]{36})", result.stdout).group(1)

    def call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def flow_run(self, run_id: str) -> dict:
        return self.call("GET", f"/flow_runs/{run_id}")

    def wait(self, run_id: str, timeout_s: float = 300) -> dict:
        """Wait until the run is in a final state; the run."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.flow_run(run_id)
            if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['state']['type']}"
            time.sleep(1)

    def logs(self, run_id: str) -> str:
        """Every log line of the run, as `prefect flow-run logs` shows them."""
        rows: list[dict] = []
        while True:
            page = self.call(
                "POST",
                "/logs/filter",
                {
                    "logs": {"flow_run_id": {"any_": [run_id]}},
                    "sort": "TIMESTAMP_ASC",
                    "limit": 200,
                    "offset": len(rows),
                },
            )
            rows += page
            if len(page) < 200:
                return "\n".join(row["message"] for row in rows)

    def active_slots(self) -> int:
        return self.call("GET", "/v2/concurrency_limits/jamrec-warehouse")["active_slots"]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A Prefect server and worker on a free loopback port, with the alert webhook pointed
    at a receiver on loopback; stopped by PID at the end."""
    from jamrec.generate import generate

    root = tmp_path_factory.mktemp("service")
    generate(root / "dump", scale="tiny", seed=0)
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    svc = Service(root, _free_port(), f"http://127.0.0.1:{hook.server_address[1]}/hook")
    svc.start()
    try:
        yield svc
    finally:
        pids = json.loads((root / "service" / "pids.json").read_text())
        svc.stop()
        hook.shutdown()
        for key in ("server", "worker"):
            with pytest.raises(ProcessLookupError):
                os.killpg(pids[key], 0)


def _query(path: Path, sql: str):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _dump(svc: Service) -> dict:
    return {"timj": str(svc.root / "dump"), "spotify": str(svc.root / "dump" / "tracks.csv")}


def test_deployments_have_self_explaining_names_and_refuse_unknown_models(service):
    out = service.prefect("deployment", "ls").stdout
    for name in (
        "build-warehouse/on-demand",
        "train-and-evaluate/on-demand",
        "retrain/weekly",
        "sweep/on-demand",
        "cold-start/on-demand",
        "record-alert/on-event",
    ):
        assert name in out
    schedule = service.prefect("deployment", "inspect", "retrain/weekly").stdout
    assert "0 4 * * 1" in schedule
    assert (
        "Positives held out per user for test."
        in service.prefect("deployment", "inspect", "build-warehouse/on-demand").stdout
    )  # parameter descriptions from the docstrings
    # a bad model name is refused when the run is created, not 20 s later in the worker
    bad = service.prefect(
        "deployment", "run", "train-and-evaluate/on-demand", "--param", 'models=["alss"]'
    )
    assert "'alss' is not one of" in bad.stdout + bad.stderr
    runs = service.call("POST", "/flow_runs/filter", {"flow_runs": {}, "limit": 50})
    assert not [r for r in runs if r["parameters"].get("models") == ["alss"]]


def test_two_builds_at_once_give_one_build_and_the_wait_is_visible(service):
    warehouse = service.root / "concurrent" / "jamrec.duckdb"
    first = service.run("build-warehouse/on-demand", **_dump(service), warehouse=str(warehouse))
    second = service.run("build-warehouse/on-demand", **_dump(service), warehouse=str(warehouse))
    runs = [service.wait(first), service.wait(second)]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"]
    builds = _query(warehouse, "select build_id, status from builds order by started_at")
    assert [s for _, s in builds] == ["published", "skipped"]
    published = builds[0][0]
    built, skipped = sorted(runs, key=lambda r: r["state"]["message"] is not None)
    # jamrec's own lines reach the run's logs under the worker
    assert f"build {published} published: {warehouse}" in service.logs(built["id"])
    # the other one waited for the slot, saying so, then named the build that holds them
    waited = service.logs(skipped["id"])
    assert "waiting for the jamrec-warehouse slot" in waited
    assert published in skipped["state"]["message"]
    assert service.active_slots() == 0


def test_two_trainings_at_once_give_one_run_and_one_decision(service):
    warehouse = service.root / "concurrent" / "jamrec.duckdb"
    params = {"models": ["popularity"], "warehouse": str(warehouse), "user_sample": 200}
    runs = [service.run("train-and-evaluate/on-demand", **params) for _ in range(2)]
    states = [service.wait(r)["state"]["type"] for r in runs]
    assert states == ["COMPLETED", "COMPLETED"]
    assert _query(warehouse, "select count(*) from model_runs") == [(1,)]
    assert _query(warehouse, "select count(*), sum(promoted::int) from promotions") == [(1, 1)]
    # the promotion wrote the champion's lists in the same write
    served = _query(warehouse, "select distinct model, run_id from recommendations")
    assert served == _query(warehouse, "select model, run_id from model_runs")
    logs = "\n".join(service.logs(r) for r in runs)
    assert "model 1 of 1: popularity" in logs
    assert "already has this build, config, seed, evaluation settings and code: skipped" in logs


def test_a_failing_run_is_recorded_as_an_alert_and_sent_to_the_webhook(service):
    warehouse = service.root / "alerts" / "jamrec.duckdb"
    run_id = service.run(
        "build-warehouse/on-demand",
        timj=str(service.root / "dump"),
        spotify=str(service.root / "missing.csv"),
        warehouse=str(warehouse),
    )
    assert service.wait(run_id)["state"]["type"] == "FAILED"
    deadline = time.monotonic() + 180
    rows = []
    while time.monotonic() < deadline:
        if warehouse.exists():
            try:
                rows = _query(
                    warehouse,
                    "select kind, flow_name, flow_run_id, deployment, state, message, webhook "
                    "from alerts",
                )
            except duckdb.IOException as exc:  # the alert flow is still writing it
                if "Could not set lock" not in str(exc):
                    raise
        if rows and _Hook.received:
            break
        time.sleep(2)
    assert rows == [
        (
            "flow-run-failed",
            "build-warehouse",
            run_id,
            "build-warehouse/on-demand",
            "Failed",
            rows[0][5],
            "jamrec-alerts",
        )
    ]
    assert "missing.csv: file not found" in rows[0][5]
    (sent,) = [body for body in _Hook.received if body.get("flow_run_id") == run_id]
    assert sent["text"].startswith("jamrec: build-warehouse run ")
    assert "file not found" in sent["text"] and sent["state"] == "Failed"
    names = [a["name"] for a in service.call("POST", "/automations/filter", {})]
    assert "jamrec: retrain/weekly has not completed for 8 days" in names


def _run_retrain(svc: Service) -> subprocess.CompletedProcess:
    settings = json.dumps(
        {
            "mbcf": {"epochs": 2},
            "hybrid": {"epochs": 1},
            "hybrid_study": {"epochs": 1},
            "two_tower": {"epochs": 2},
        }
    )
    return svc.prefect(
        "deployment",
        "run",
        "retrain/weekly",
        "--param",
        f"timj={svc.root / 'dump'}",
        "--param",
        f"spotify={svc.root / 'dump' / 'tracks.csv'}",
        "--param",
        f"settings={settings}",
        "--watch",
        "--watch-timeout",
        "500",
        timeout=560,
    )


def test_retrain_then_retrain_again_with_unchanged_inputs(service):
    path = service.root / "wh" / "jamrec.duckdb"
    first = _run_retrain(service)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert _query(path, "select status from builds") == [("published",)]
    runs = _query(path, "select count(*) from model_runs")[0][0]
    assert runs == 9
    champions = dict(_query(path, "select model, run_id from model_runs where is_champion"))
    assert set(champions) == {
        "popularity",
        "random",
        "item_knn",
        "als",
        "mbcf",
        "hybrid",
        "hybrid_study",
        "two_tower",
        "oracle",
    }
    served = dict(_query(path, "select model, count(*) from recommendations group by 1"))
    assert set(served) == {
        *("popularity", "item_knn", "als", "mbcf", "hybrid", "hybrid_study", "two_tower")
    }
    users = _query(path, "select count(distinct user_id) from splits")[0][0]
    assert all(n <= 20 * users for n in served.values()) and min(served.values()) > users
    promotions = _query(path, "select count(*) from promotions")[0][0]

    second = _run_retrain(service)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    builds = _query(path, "select status, note from builds order by started_at")
    assert [s for s, _ in builds] == ["published", "skipped"]
    assert "inputs, parameters and code match" in builds[1][1]
    assert _query(path, "select count(*) from model_runs")[0][0] == runs  # nothing retrained
    assert _query(path, "select count(*) from promotions")[0][0] == promotions
    assert dict(_query(path, "select model, run_id from model_runs where is_champion")) == champions


def test_stopping_the_service_mid_run_leaves_no_slot_taken(service):
    warehouse = service.root / "restart" / "jamrec.duckdb"
    # Another writer holds the warehouse, so the build cannot publish and finish before
    # the service stops, however fast it is: it waits for the lock, running.
    with Warehouse(warehouse).lock("the test, holding the warehouse while the service stops"):
        run_id = service.run(
            "build-warehouse/on-demand", **_dump(service), warehouse=str(warehouse)
        )
        deadline = time.monotonic() + 120
        while service.active_slots() == 0:  # the run has taken the slot
            assert time.monotonic() < deadline, "the build never took the slot"
            time.sleep(0.3)
        assert service.flow_run(run_id)["state"]["type"] == "RUNNING"
        said = service.stop()
    service.start()  # before any assertion: the tests after this one need the service
    assert "1 run(s) marked Crashed" in said and "slot kept" not in said
    # The slot is free, whoever freed it: the stop ("1 leaked ... slot(s) freed"), or the
    # run's own process, which releases it as it unwinds from the worker's SIGTERM.
    assert service.active_slots() == 0
    assert service.flow_run(run_id)["state"]["type"] == "CRASHED"
    again = service.run("build-warehouse/on-demand", **_dump(service), warehouse=str(warehouse))
    assert service.wait(again)["state"]["type"] == "COMPLETED"
    assert _query(warehouse, "select status from builds where status = 'published'") == [
        ("published",)
    ]


def test_a_port_already_served_is_refused_naming_what_serves_it(service):
    result = subprocess.run(
        [sys.executable, "-m", "flows.service", "start", "--port", str(service.port)],
        cwd=PROJECT,
        env={**service.env, "JAMREC_SERVICE_DIR": str(service.root / "other")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"port {service.port} on 127.0.0.1 is already served by a Prefect server" in (
        result.stderr
    )


def test_prefect_deploy_all_from_a_fresh_copy_without_jamrec_variables(service, tmp_path):
    files = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True
    ).stdout.split()
    copy = tmp_path / "clone"
    for name in files:
        if (PROJECT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, copy / name)
    # the last test: the service's deployments run from the copy afterwards
    env = {k: v for k, v in service.env.items() if not k.startswith("JAMREC_")}
    result = service.prefect("--no-prompt", "deploy", "--all", cwd=copy, env=env, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    inspect = service.prefect("deployment", "inspect", "retrain/weekly").stdout
    assert str(copy) in inspect and "0 4 * * 1" in inspect
