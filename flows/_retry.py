"""Retry policy shared by the flows: only transient failures (a held warehouse) retry."""

from __future__ import annotations

from prefect.tasks import exponential_backoff

from jamrec.errors import WarehouseLockedError

BACKOFF = exponential_backoff(backoff_factor=10)  # 10 s, 20 s, 40 s


def locked(task, task_run, state) -> bool:
    """Retry only when another process held the warehouse; bad input never heals."""
    try:
        state.result()
    except WarehouseLockedError:
        return True
    except Exception:
        return False
    return False
