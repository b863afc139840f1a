"""Prefect flows: thin wiring over ``jamrec`` functions (no SQL, paths or data logic here)."""

import os

from jamrec.log import setup_flow_logging

# Forward jamrec's own per-stage log lines into the flow run's logs (UI and console).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "jamrec")
# The same functions also run outside flows (the CLI, tests): their lines then stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# A run without a server starts Prefect's temporary one: give it time to start on a small
# machine, and keep it from reporting usage to Prefect (offline, every report ends in an
# ERROR line in the middle of the run). `make` sets the same; an exported value wins.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "60")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Under a worker Prefect has configured logging before the flow's module is imported: attach
# its API handler to `jamrec` now and let INFO through (WARNING would keep every line out).
setup_flow_logging()
