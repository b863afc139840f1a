"""Run jamrec as a service on this machine: a Prefect server on 127.0.0.1, the ``jamrec``
process work pool with a worker, the ``jamrec-warehouse`` concurrency limit, the
deployments of ``prefect.yaml`` and the alert automations.

    .venv/bin/python -m flows.service start [--port 4200] [--cron "0 4 * * 1"] [--webhook URL]
    export PREFECT_API_URL=http://127.0.0.1:4200/api
    .venv/bin/prefect deployment run 'retrain/weekly' --watch
    .venv/bin/python -m flows.service stop

State (process ids, logs, the server's SQLite database) lives in ``.prefect-service/``
(or ``$JAMREC_SERVICE_DIR``). Processes are started in their own session and stopped by
process group, the worker's flow-run processes with it.

Slots never leak: ``stop`` stops the worker and its flow runs, marks the runs it stopped
Crashed and frees the ``jamrec-warehouse`` slot before stopping the server; ``start``
does the same for runs left over by a service that died without ``stop`` (after a restart
the server holds no lease, so any slot still counted is a leak). While the service runs,
a run that dies stops renewing its lease and the server frees its slot within a minute
(``flows/_retry.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows._retry import LIMIT
from jamrec.files import pid_alive

PROJECT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("JAMREC_SERVICE_DIR", PROJECT / ".prefect-service")).resolve()
PIDS = STATE / "pids.json"
POOL = "jamrec"
WEEKLY = "retrain/weekly"
DEFAULT_CRON = "0 4 * * 1"  # prefect.yaml's literal schedule of retrain/weekly


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def environment(port: int) -> dict[str, str]:
    """What every service process and CLI call needs to talk to this server."""
    return {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_HOME": str(STATE / "home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "jamrec",
        "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
        "PREFECT_WORKER_QUERY_SECONDS": os.environ.get("PREFECT_WORKER_QUERY_SECONDS", "5"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "1"),
    }


class Steps:
    """Numbered progress lines: ``[3/9] deploying prefect.yaml ... done (4.1 s)``."""

    def __init__(self, total: int):
        self.total, self.done = total, 0

    def __call__(self, what: str) -> Steps:
        self.done += 1
        print(f"[{self.done}/{self.total}] {what} ...", flush=True)
        self.start = time.monotonic()
        return self

    def ok(self, note: str = "") -> None:
        extra = f": {note}" if note else ""
        print(f"      done in {time.monotonic() - self.start:.1f} s{extra}", flush=True)


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


def _run(args: list[str], env: dict, ok_if: str | None = None) -> str:
    result = subprocess.run(args, env=env, cwd=PROJECT, capture_output=True, text=True)
    if result.returncode != 0 and not (ok_if and ok_if in (result.stdout + result.stderr)):
        raise SystemExit(f"{' '.join(args[1:])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def who_serves(port: int) -> str | None:
    """What already listens on 127.0.0.1:``port`` (its process when this user can see
    it), or None when the port is free."""
    with socket.socket() as s:
        s.settimeout(1)
        if s.connect_ex(("127.0.0.1", port)) != 0:
            return None
    process = _listener(port)
    what = "a Prefect server" if _healthy(port) else "a process"
    return f"{what} ({process})" if process else f"{what} (not one this user can see)"


def _listener(port: int) -> str | None:
    """``pid N: command line`` of the process listening on ``port`` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (
                len(fields) > 9
                and fields[3] == "0A"
                and int(fields[1].rsplit(":", 1)[1], 16) == port
            ):
                inodes.add(fields[9])
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            return f"pid {proc.name}: {cmd.strip()[:160]}"
    return None


def start(port: int, cron: str, webhook: str | None = None, timeout_s: float = 120.0) -> dict:
    """Start the server and a worker, create the pool, the limit and the automations,
    deploy everything; say each step as it goes."""
    if PIDS.exists():
        pids = json.loads(PIDS.read_text())
        if any(pid_alive(pids[k]) for k in ("server", "worker") if k in pids):
            raise SystemExit(
                f"already running ({PIDS}); stop it first: python -m flows.service stop"
            )
        print(f"note: the previous service ({PIDS}) is gone without `stop`; cleaning up")
        PIDS.unlink()
    busy = who_serves(port)
    if busy:
        raise SystemExit(
            f"port {port} on 127.0.0.1 is already served by {busy}; stop it, or choose "
            f"another port: make service PREFECT_PORT=4300"
        )
    STATE.mkdir(exist_ok=True)
    env = environment(port)
    step = Steps(9)
    step(f"starting the Prefect server on http://127.0.0.1:{port} (logs: {STATE}/server.log)")
    pids = {"port": port}
    pids["server"] = _spawn(
        [_prefect(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        "server.log",
    )
    PIDS.write_text(json.dumps(pids))
    deadline = time.monotonic() + timeout_s
    while not _healthy(port):
        if time.monotonic() > deadline or not pid_alive(pids["server"]):
            stop()
            raise SystemExit(
                f"the Prefect server did not become healthy in {timeout_s:.0f} s; "
                f"see {STATE}/server.log"
            )
        time.sleep(0.5)
    step.ok("healthy")
    with _api(port):
        step(f"work pool '{POOL}' (process)")
        step.ok(_work_pool())
        step(f"concurrency limit '{LIMIT}' (1 slot: one writer flow at a time)")
        step.ok(_limit())
        step("runs left over by a service that stopped without `stop`")
        step.ok(release_leftovers("the jamrec service restarted while it ran"))
        step("deploying prefect.yaml (prefect --no-prompt deploy --all)")
        out = _run([_prefect(), "--no-prompt", "deploy", "--all"], env)
        names = re.findall(r"Deployment '([^']+)' successfully", out)
        step.ok(", ".join(names) or "every deployment")
        step(f"schedule of {WEEKLY}: {cron} (UTC)")
        step.ok(_schedule(cron))
        step("alert automations (a failed or crashed run; retrain/weekly overdue 8 days)")
        from flows.alerting import configure

        step.ok("; ".join(configure(webhook)))
    step(f"starting a worker on pool '{POOL}' (logs: {STATE}/worker.log)")
    pids["worker"] = _spawn([_prefect(), "worker", "start", "--pool", POOL], env, "worker.log")
    PIDS.write_text(json.dumps(pids))
    step.ok(f"pid {pids['worker']}")
    step("checking the worker is up")
    time.sleep(2)
    if not pid_alive(pids["worker"]):
        raise SystemExit(f"the worker exited at once; see {STATE}/worker.log")
    step.ok()
    return pids


@contextmanager
def _api(port: int) -> Iterator[None]:
    """Point this process's Prefect client at the service's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        yield


def _work_pool() -> str:
    """The ``jamrec`` process work pool, with the process worker's default job template."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(
                WorkPoolCreate(name=POOL, type="process", base_job_template=template)
            )
        except ObjectAlreadyExists:
            return "already there"
    return "created"


def _limit() -> str:
    """The ``jamrec-warehouse`` global concurrency limit, one slot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=LIMIT, limit=1)
            )
        except ObjectAlreadyExists:
            client.update_global_concurrency_limit(LIMIT, GlobalConcurrencyLimitUpdate(limit=1))
            return "already there"
    return "created"


def _schedule(cron: str) -> str:
    """Move retrain/weekly's schedule to ``cron`` when it is not prefect.yaml's default."""
    if cron == DEFAULT_CRON:
        return "prefect.yaml's default"
    set_schedule(cron)
    return "moved from prefect.yaml's default"


def set_schedule(cron: str) -> None:
    """Replace retrain/weekly's schedules by one cron schedule (UTC)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.schedules import SCHEDULE_TYPES, CronSchedule

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(WEEKLY)
        for schedule in deployment.schedules:
            client.delete_deployment_schedule(deployment.id, schedule.id)
        schedules: list[tuple[SCHEDULE_TYPES, bool]] = [
            (CronSchedule(cron=cron, timezone="UTC"), True)
        ]
        client.create_deployment_schedules(deployment.id, schedules)


def release_leftovers(reason: str) -> str:
    """Mark the pool's runs that are still Running (or Pending, Cancelling) Crashed, then
    free the warehouse slot when no writer run is left running. Returns what it did."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        WorkPoolFilter,
        WorkPoolFilterName,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Crashed

    live = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]
    live_filter = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=live)))
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=live_filter,
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL])),
        )
        for run in runs:
            client.set_flow_run_state(
                run.id, Crashed(message=f"{reason}; its warehouse slot was released"), force=True
            )
        try:
            limit = client.read_global_concurrency_limit_by_name(LIMIT)
        except ObjectNotFound:
            return f"{len(runs)} run(s) marked Crashed"
        others = client.read_flow_runs(flow_run_filter=live_filter)
        freed = 0
        if limit.active_slots and not others:
            freed = limit.active_slots
            client.update_global_concurrency_limit(
                LIMIT, GlobalConcurrencyLimitUpdate(active_slots=0)
            )
    names = ", ".join(repr(r.name) for r in runs)
    said = f"{len(runs)} run(s) marked Crashed" + (f" ({names})" if runs else "")
    if freed:
        said += f"; {freed} leaked {LIMIT} slot(s) freed"
    elif limit.active_slots:
        said += f"; {LIMIT} slot kept: runs outside the pool are running"
    return said


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (flow-run processes the worker started in their own
    sessions), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            found.append(child)
            frontier.append(child)
    return found


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _terminate(groups: list[int], timeout_s: float) -> None:
    """SIGTERM each process group, wait, then SIGKILL what is left."""
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


def stop(timeout_s: float = 20.0) -> str:
    """Stop the worker and the flow runs it started, release what they held, stop the
    server; forget them. Returns what was done."""
    if not PIDS.exists():
        return "not running"
    pids = json.loads(PIDS.read_text())
    said = []
    if "worker" in pids:
        groups = {_pgid(p) for p in _descendants(pids["worker"])}
        runs = {g for g in groups if g is not None and g != pids["worker"]}
        _terminate([pids["worker"], *sorted(runs)], timeout_s)
        said.append(f"worker stopped ({len(runs)} flow-run process group(s) with it)")
    port = pids.get("port")
    if port and "server" in pids and _healthy(port):
        try:
            with _api(port):
                said.append(release_leftovers("the jamrec service was stopped"))
        except Exception as exc:  # the server is stopped anyway; the next start releases
            said.append(f"could not release slots: {exc}")
    if "server" in pids:
        _terminate([pids["server"]], timeout_s)
        said.append("server stopped")
    PIDS.unlink()
    return "; ".join(said)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.service", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument(
        "--cron",
        default=os.environ.get("JAMREC_RETRAIN_CRON", DEFAULT_CRON),
        help="schedule of retrain/weekly (UTC), default Mondays 04:00",
    )
    parser.add_argument(
        "--webhook",
        default=os.environ.get("JAMREC_ALERT_WEBHOOK") or None,
        help="a URL the alert automations POST to (saved as the jamrec-alerts webhook block)",
    )
    args = parser.parse_args(argv)
    if args.action == "start":
        pids = start(args.port, args.cron, args.webhook)
        print(
            f"Prefect server on http://127.0.0.1:{args.port} (UI and API), worker on pool '{POOL}'"
        )
        print(f"pids: server {pids['server']}, worker {pids['worker']}; logs in {STATE}/")
        print(f"next: export PREFECT_API_URL=http://127.0.0.1:{args.port}/api")
        print("      .venv/bin/prefect deployment run 'retrain/weekly' --watch")
    elif args.action == "stop":
        print(stop())
    else:
        print(PIDS.read_text() if PIDS.exists() else "not running")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
