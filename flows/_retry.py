"""What the flows share: retries of warehouse writes, the one-writer-at-a-time slot, the
report at the end of a flow, and the flows' names.

Every flow that writes the warehouse (:data:`WRITERS`) holds the ``jamrec-warehouse``
global concurrency limit (1 slot, created by ``make service``) for its whole run, so
writers run one at a time and each sees what the previous one published (a second
``build-warehouse`` of the same inputs is then skipped; a second training of the same
model on the same build finds the first one's run). The slot is held under a lease that
the run renews while it lives: a run that crashes, is cancelled or loses its worker stops
renewing, and the server frees the slot when the lease expires (:data:`LEASE_S`);
``make service`` and ``make service-stop`` also free the slots of runs that no longer run
(``flows/service.py``). A run that waits for the slot says so, and which runs are
writing, every :data:`WAIT_LOG_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect.tasks import exponential_backoff

from jamrec import timing
from jamrec.errors import WarehouseLockedError
from jamrec.log import log, setup_flow_logging

if TYPE_CHECKING:
    from pathlib import Path

    from prefect import State, Task
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder, TaskRun

P = ParamSpec("P")
R = TypeVar("R")

BACKOFF = exponential_backoff(backoff_factor=10)  # 10 s, 20 s, 40 s

LIMIT = "jamrec-warehouse"  # the global concurrency limit `make service` creates (1 slot)
LEASE_S = 60  # the slot's lease: renewed by a live run; a dead run's slot frees after this
WAIT_LOG_S = 20  # a waiting run says so this often
# The flows that write the warehouse, and so take the slot.
WRITERS = ("build-warehouse", "train-and-evaluate", "retrain", "sweep", "cold-start", "study")
# Every jamrec flow (the failure alert watches these).
FLOWS = (*WRITERS, "record-alert")


def locked(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Retry only when another process held the warehouse; bad input never heals."""
    try:
        state.result()
    except WarehouseLockedError:
        return True
    except Exception:
        return False
    return False


def writer(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """A task decorator for a step that writes the warehouse: no caching of its (large)
    inputs, and retries with backoff while another process holds the warehouse."""
    from prefect import task
    from prefect.cache_policies import NO_CACHE

    return task(
        name=name,
        cache_policy=NO_CACHE,
        retries=3,
        retry_delay_seconds=BACKOFF,
        retry_condition_fn=locked,
    )


_holding: ContextVar[bool] = ContextVar("jamrec_warehouse_slot", default=False)


@contextmanager
def warehouse_slot() -> Iterator[None]:
    """Hold the ``jamrec-warehouse`` slot: one writer flow at a time (module docstring).

    Re-entrant: the retrain flow's subflows do not wait for their parent. Without a
    Prefect server that has the limit (local mode), nothing is limited (the warehouse's
    own file locks still keep writes whole). The stages measured inside are labelled
    with the flow's name (``timings.flow``).
    """
    setup_flow_logging()
    with timing.job(_flow_name()), _slot():
        yield


def _flow_name() -> str | None:
    """The name of the flow running now (None outside a flow run)."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx.flow.name if ctx is not None and ctx.flow is not None else None


@contextmanager
def _slot() -> Iterator[None]:
    if _holding.get() or not _limit_exists():
        yield
        return
    from prefect.concurrency.sync import concurrency

    holder = _holder()
    start = time.monotonic()
    waited = False
    with ExitStack() as stack:
        timeout = 2.0  # a free slot is taken at once; a held one is announced quickly
        while True:
            try:
                stack.enter_context(
                    concurrency(
                        LIMIT,
                        occupy=1,
                        timeout_seconds=timeout,
                        lease_duration=LEASE_S,
                        holder=holder,
                    )
                )
                break
            except TimeoutError:
                log.info(
                    "waiting for the %s slot (one writer at a time), %.0f s so far; "
                    "writing now: %s",
                    LIMIT,
                    time.monotonic() - start,
                    _other_writers(holder),
                )
                timeout, waited = WAIT_LOG_S, True
        if waited:
            log.info("got the %s slot after %.0f s", LIMIT, time.monotonic() - start)
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)


def _limit_exists() -> bool:
    """Whether the server has the limit (Prefect would log a warning per run otherwise)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(LIMIT)
        except ObjectNotFound:
            return False
    return True


def _holder() -> ConcurrencyLeaseHolder | None:
    """The lease holder: this flow run (kept with the lease by the server)."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return None
    return ConcurrencyLeaseHolder(type="flow_run", id=ctx.flow_run.id)


def _other_writers(holder: ConcurrencyLeaseHolder | None) -> str:
    """The other writer flow runs that are running now (one of them holds the slot)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    mine = str(holder.id) if holder else None
    try:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(WRITERS))),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
                ),
                limit=20,
            )
            flows = {f.id: f.name for f in client.read_flows(limit=200)}
    except Exception as exc:  # the line is informative only
        return f"(could not list them: {exc})"
    others = [
        f"{flows.get(r.flow_id, 'flow')} run {r.name!r} ({r.id})" for r in runs if str(r.id) != mine
    ]
    return ", ".join(others) or "no other run (a run that died holds it until its lease ends)"


def write_report(warehouse: Path | None) -> str:
    """Rewrite the report at the end of a flow that changed what it shows; its path."""
    from jamrec.report import build_report

    path = build_report(warehouse)
    log.info("report: %s", path)
    return str(path)
