"""The ``record-alert`` flow: what the jamrec-alerts automations run (``flows/alerting.py``).

Its parameters are filled in by the automation from the event that fired it (the failed
run's flow, name, state and message); it writes one row to the ``alerts`` table. It does
not take the warehouse slot (an alert must not wait behind the writer it is about), and
it is not itself watched by the failure alert (a failing alert must not raise another).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow

import flows  # noqa: F401 - sets up logging before Prefect starts
from flows._retry import writer
from jamrec.log import setup_flow_logging
from jamrec.operations import alerts

record = writer("record-alert")(alerts.record)


@flow(name="record-alert")
def record_alert(
    kind: Literal["flow-run-failed", "retrain-overdue"] = "flow-run-failed",
    flow_name: str | None = None,
    flow_run_id: str | None = None,
    flow_run_name: str | None = None,
    deployment: str | None = None,
    state: str | None = None,
    message: str | None = None,
    webhook: str | None = None,
    warehouse: str | None = None,
) -> str:
    """Record an alert about a jamrec flow run in the ``alerts`` table.

    Args:
        kind: flow-run-failed (a run ended Failed or Crashed) or retrain-overdue
            (retrain/weekly has not completed for 8 days).
        flow_name: The flow of the run the alert is about.
        flow_run_id: The run's id.
        flow_run_name: The run's name.
        deployment: The run's deployment.
        state: The run's final state (Failed, Crashed).
        message: The run's state message (which step failed and why).
        webhook: The webhook block the automation also called (empty: none).
        warehouse: The warehouse of the failed run (empty: the default one).
    """
    setup_flow_logging()
    alert = alerts.Alert(
        kind,
        *(value or None for value in (flow_name, flow_run_id, flow_run_name, deployment)),
        *(value or None for value in (state, message, webhook)),
    )
    record(alert, Path(warehouse) if warehouse else None)
    return alert.line()
