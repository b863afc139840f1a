"""Failure alerts as Prefect automations (created or updated by ``make service``).

Two automations, each with two kinds of action:

- ``jamrec: a flow run failed or crashed``: any run of a jamrec flow (``flows._retry.
  WRITERS``) that ends Failed or Crashed;
- ``jamrec: retrain/weekly has not completed for 8 days``: a proactive trigger on the
  weekly deployment (it fires when no run completed within 8 days).

Actions: run the ``record-alert/on-event`` deployment (one row in the ``alerts`` table,
with the run's flow, name, state and message), and call the ``jamrec-alerts`` webhook
block when one exists (Slack's incoming webhooks take its JSON as is; for e-mail see
docs/operations.md, "Alerts"). A Prefect notification block named
``jamrec-alerts-notify`` (e-mail through SendGrid, Teams, ...) gets a notification too.
The server runs the webhook and notification actions itself, so they fire even when no
worker is up.

    .venv/bin/python -m flows.alerting [--webhook URL]   # what `make service` runs
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from flows._retry import WRITERS

if TYPE_CHECKING:
    from prefect.automations import Automation
    from prefect.events.schemas.automations import EventTrigger

BLOCK = "jamrec-alerts"  # a Webhook block (prefect.blocks.webhook.Webhook)
NOTIFY_BLOCK = "jamrec-alerts-notify"  # any Prefect notification block (optional)
RECORDER = "record-alert/on-event"
WEEKLY = "retrain/weekly"
OVERDUE = timedelta(days=8)
FAILED = "jamrec: a flow run failed or crashed"
MISSING = "jamrec: retrain/weekly has not completed for 8 days"

# What the failed run was, from the event's related objects (jinja, rendered by Prefect;
# a missing object renders as an empty string).
_RUN = {
    "flow_name": "{{ flow.name }}",
    "flow_run_id": "{{ flow_run.id }}",
    "flow_run_name": "{{ flow_run.name }}",
    "deployment": "{{ (flow.name ~ '/' ~ deployment.name) if deployment.name else '' }}",
    "state": "{{ flow_run.state.name }}",
    "message": "{{ flow_run.state.message or '' }}",
    "warehouse": "{{ flow_run.parameters.warehouse or '' }}",
}


def _as_text(template: str) -> dict:
    """A parameter Prefect renders as a string (a bare ``{{ x }}`` would keep x's type,
    and a null message would not be a valid ``str`` parameter)."""
    return {"__prefect_kind": "jinja", "template": template}


_FAILED_TEXT = (
    "jamrec: {{ flow.name }} run {{ flow_run.name }} {{ flow_run.state.name }}: "
    "{{ flow_run.state.message }}"
)
_MISSING_TEXT = "jamrec: retrain/weekly has not completed for 8 days; is the worker running?"


def _payload(text: str) -> str:
    """The webhook's JSON body: ``text`` (what Slack shows) plus the run's fields."""
    fields = {"text": text, **({} if text == _MISSING_TEXT else _RUN)}
    body = ", ".join(
        f'"{key}": {{{{ ({_expr(value)}) | tojson }}}}' for key, value in fields.items()
    )
    return "{" + body + "}"


def _expr(template: str) -> str:
    """A jinja template of ``{{ ... }}`` parts and text, as one string expression."""
    parts, rest = [], template
    while "{{" in rest:
        before, _, rest = rest.partition("{{")
        inner, _, rest = rest.partition("}}")
        if before:
            parts.append(repr(before))
        parts.append(f"(({inner.strip()}) | string)")
    if rest:
        parts.append(repr(rest))
    return " ~ ".join(parts) or "''"


def configure(webhook_url: str | None = None) -> list[str]:
    """Create or replace the two automations; with ``webhook_url``, first save it as the
    ``jamrec-alerts`` webhook block. Returns one line per automation saying what it does."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.client.orchestration import get_client
    from prefect.events.actions import CallWebhook, RunDeployment, SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    if webhook_url:
        Webhook(method="POST", url=webhook_url, headers={"Content-Type": "application/json"}).save(
            BLOCK, overwrite=True
        )
    webhook = _block_id("webhook", BLOCK)
    notify = _block_id(None, NOTIFY_BLOCK)
    with get_client(sync_client=True) as client:
        recorder = client.read_deployment_by_name(RECORDER).id
        weekly = client.read_deployment_by_name(WEEKLY).id
    triggers = {
        FAILED: EventTrigger(
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.role": "flow", "prefect.resource.name": list(WRITERS)},
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        MISSING: EventTrigger(
            expect={"prefect.flow-run.Completed"},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={
                "prefect.resource.role": "deployment",
                "prefect.resource.id": f"prefect.deployment.{weekly}",
            },
            posture=Posture.Proactive,
            threshold=1,
            within=OVERDUE,
        ),
    }
    lines = []
    for name, trigger in triggers.items():
        failed = name == FAILED
        text = _FAILED_TEXT if failed else _MISSING_TEXT
        parameters = {
            "kind": "flow-run-failed" if failed else "retrain-overdue",
            **({k: _as_text(v) for k, v in _RUN.items()} if failed else {"message": _MISSING_TEXT}),
            "webhook": BLOCK if webhook else "",
        }
        actions: list = [
            RunDeployment(source="selected", deployment_id=recorder, parameters=parameters)
        ]
        if webhook:
            actions.append(CallWebhook(block_document_id=webhook, payload=_payload(text)))
        if notify:
            actions.append(SendNotification(block_document_id=notify, subject=name, body=text))
        _replace(Automation, name, trigger, actions)
        also = [BLOCK + " webhook"] * bool(webhook) + [NOTIFY_BLOCK] * bool(notify)
        lines.append(
            f"{name}: records an alert" + (f", calls {' and '.join(also)}" if also else "")
        )
    return lines


def _block_id(block_type: str | None, name: str) -> UUID | None:
    """The id of the block document ``name`` (of ``block_type`` when given), or None."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        if block_type is not None:
            try:
                return client.read_block_document_by_name(name, block_type).id
            except ObjectNotFound:
                return None
        found = [d for d in client.read_block_documents(include_secrets=False) if d.name == name]
    return found[0].id if found else None


def _replace(
    automation_cls: type[Automation], name: str, trigger: EventTrigger, actions: list
) -> None:
    """Delete the automations called ``name``, then create it afresh (idempotent)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for existing in client.read_automations_by_name(name):
            client.delete_automation(existing.id)
    automation_cls(
        name=name,
        description="Created by `make service` (flows/alerting.py).",
        trigger=trigger,
        actions=actions,
    ).create()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.alerting", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--webhook", default=None, help="save this URL as the jamrec-alerts block")
    args = parser.parse_args(argv)
    for line in configure(args.webhook):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
