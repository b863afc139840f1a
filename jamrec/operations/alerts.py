"""Alerts: a flow run that failed or crashed, a weekly retrain that did not complete.

Prefect raises them (the ``jamrec-alerts`` automations that ``make service`` creates,
``flows/alerting.py``); the ``record-alert`` flow they run writes each one here, to the
``alerts`` history table, so an analyst sees them beside the builds and runs they are
about (``jamrec sql "select * from alerts"``).
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from pathlib import Path

from jamrec.log import log
from jamrec.provenance import now
from jamrec.warehouse import history
from jamrec.warehouse.store import warehouse_at

KINDS = ("flow-run-failed", "retrain-overdue")


@dataclass
class Alert:
    """One alert, as the ``alerts`` table holds it (see its column comments)."""

    kind: str
    flow_name: str | None = None
    flow_run_id: str | None = None
    flow_run_name: str | None = None
    deployment: str | None = None
    state: str | None = None
    message: str | None = None
    webhook: str | None = None

    def line(self) -> str:
        """``flow-run-failed: build-warehouse run 'brave-fox' Failed: <message>``."""
        what = ""
        if self.flow_run_id:
            what = f"{self.flow_name or 'a flow'} run {self.flow_run_name!r}"
        parts = [p for p in (what, self.state) if p]
        text = f"{self.kind}: {' '.join(parts)}" if parts else self.kind
        return f"{text}: {self.message}" if self.message else text


def record(alert: Alert, warehouse: Path | None = None) -> None:
    """Append ``alert`` to the ``alerts`` table (one small warehouse write)."""
    if alert.kind not in KINDS:
        from jamrec.errors import JamrecError

        raise JamrecError(f"unknown alert kind {alert.kind!r}; known: {', '.join(KINDS)}")
    row = (now(), *astuple(alert))
    with warehouse_at(warehouse).update(f"record alert {alert.kind}") as con:
        con.execute(history.insert_sql("alerts"), list(row))
    log.warning("alert recorded: %s", alert.line())
