"""Run jamrec as a service on this machine: a Prefect server on 127.0.0.1, the ``jamrec``
process work pool with a worker, the ``jamrec-warehouse`` concurrency limit, and the
deployments of ``prefect.yaml``.

    .venv/bin/python -m flows.service start [--port 4200] [--cron "0 4 * * 1"]
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    .venv/bin/prefect deployment run 'retrain/weekly' --watch
    .venv/bin/python -m flows.service stop

State (process ids, logs, the server's SQLite database) lives in ``.prefect-service/``
(or ``$JAMREC_SERVICE_DIR``).
Processes are started in their own session and stopped by process group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from flows._retry import LIMIT

PROJECT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("JAMREC_SERVICE_DIR", PROJECT / ".prefect-service")).resolve()
PIDS = STATE / "pids.json"
POOL = "jamrec"


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def environment(port: int, cron: str) -> dict[str, str]:
    """What every service process and CLI call needs to talk to this server."""
    return {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(STATE / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "jamrec",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "JAMREC_PROJECT_DIR": str(PROJECT),
        "JAMREC_RETRAIN_CRON": cron,
        "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
    }


def _spawn(args: list[str], env: dict, log_name: str) -> int:
    log = open(STATE / log_name, "ab")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        args, env=env, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc.pid


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _run(args: list[str], env: dict, ok_if: str | None = None) -> None:
    result = subprocess.run(args, env=env, cwd=PROJECT, capture_output=True, text=True)
    if result.returncode != 0 and not (ok_if and ok_if in (result.stdout + result.stderr)):
        raise SystemExit(f"{' '.join(args[1:])} failed:\n{result.stdout}{result.stderr}")


def start(port: int, cron: str, timeout_s: float = 90.0) -> dict:
    """Start the server and a worker, create the pool and the limit, deploy everything."""
    if PIDS.exists():
        raise SystemExit(f"already running ({PIDS}); stop it first: python -m flows.service stop")
    STATE.mkdir(exist_ok=True)
    env = environment(port, cron)
    pids = {"port": port}
    pids["server"] = _spawn(
        [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        "server.log",
    )
    PIDS.write_text(json.dumps(pids))
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        if time.monotonic() > deadline:
            stop()
            raise SystemExit(
                f"the Prefect server did not become healthy in {timeout_s:.0f} s; "
                f"see {STATE}/server.log"
            )
        time.sleep(0.5)
    _run(
        [_prefect(), "work-pool", "create", POOL, "--type", "process"], env, ok_if="already exists"
    )
    _run(
        [_prefect(), "global-concurrency-limit", "create", LIMIT, "--limit", "1"],
        env,
        ok_if="already exists",
    )
    _run([_prefect(), "--no-prompt", "deploy", "--all"], env)
    pids["worker"] = _spawn([_prefect(), "worker", "start", "--pool", POOL], env, "worker.log")
    PIDS.write_text(json.dumps(pids))
    return pids


def stop(timeout_s: float = 20.0) -> None:
    """Stop every process this module started (by process group), then forget them."""
    if not PIDS.exists():
        return
    pids = json.loads(PIDS.read_text())
    groups = [pids[k] for k in ("worker", "server") if k in pids]
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout_s
    for pgid in groups:
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    PIDS.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument(
        "--cron",
        default=os.environ.get("JAMREC_RETRAIN_CRON", "0 4 * * 1"),
        help="schedule of retrain/weekly (UTC), default Mondays 04:00",
    )
    args = parser.parse_args(argv)
    if args.action == "start":
        pids = start(args.port, args.cron)
        print(
            f"Prefect server on http://127.0.0.1:{args.port} (UI and API), worker on pool '{POOL}'"
        )
        print(f"pids: server {pids['server']}, worker {pids['worker']}; logs in {STATE}/")
        print(f"next: export PREFECT_API_URL=http://127.0.0.1:{args.port}/api")
        print("      .venv/bin/prefect deployment run 'retrain/weekly' --watch")
    elif args.action == "stop":
        stop()
        print("stopped")
    else:
        print(PIDS.read_text() if PIDS.exists() else "not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
