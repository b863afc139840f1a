"""Prefect flows: thin wiring over ``jamrec`` functions (no SQL, paths or data logic here)."""

import os

from jamrec.log import setup_flow_logging

# Forward jamrec's own per-stage log lines into the flow run's logs (UI and console).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "jamrec")
# The same functions also run outside flows (the CLI, tests): their lines then stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
# Under a worker Prefect has configured logging before the flow's module is imported: attach
# its API handler to `jamrec` now and let INFO through (WARNING would keep every line out).
setup_flow_logging()
