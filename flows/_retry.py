"""What the flows share: retries of warehouse writes, and the one-writer-at-a-time slot."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prefect.tasks import exponential_backoff

from jamrec.errors import WarehouseLockedError

if TYPE_CHECKING:
    from prefect import State, Task
    from prefect.client.schemas.objects import TaskRun

P = ParamSpec("P")
R = TypeVar("R")

BACKOFF = exponential_backoff(backoff_factor=10)  # 10 s, 20 s, 40 s


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


LIMIT = "jamrec-warehouse"  # the global concurrency limit `make service` creates (1 slot)
_holding: ContextVar[bool] = ContextVar("jamrec_warehouse_slot", default=False)


@contextmanager
def warehouse_slot() -> Iterator[None]:
    """Hold the ``jamrec-warehouse`` slot: one build or retrain at a time (a second one
    waits). Re-entrant: the retrain flow's build subflow does not wait for itself. Without
    a Prefect server that has the limit (local mode), nothing is limited."""
    if _holding.get() or not _limit_exists():
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(LIMIT, occupy=1):
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
