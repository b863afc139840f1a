"""Prefect flows: thin wiring over ``jamrec`` functions (no SQL, paths or data logic here)."""

import os

# Forward jamrec's own per-stage log lines into the flow run's logs (UI and console).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "jamrec")
# The same functions also run outside flows (the CLI, tests): their lines then stay local.
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")
