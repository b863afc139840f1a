# jamrec: `make demo` runs the whole pipeline on generated data; `make test` runs every test
# (what CI runs); `make check` is the fast loop (lint, types, fast tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Prefect's local mode starts a temporary server for each flow run: give it time.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 60
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export PREFECT_LOGGING_EXTRA_LOGGERS ?= jamrec
# jamrec's log lines reach the Prefect UI inside flow runs; outside one (the CLI, a test)
# they stay on the console, without Prefect's warning that there is no run to attach to.
export PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW ?= ignore
export OPENBLAS_NUM_THREADS ?= 1

PREFECT_PORT ?= 4200
JAMREC_RETRAIN_CRON ?= 0 4 * * 1
# Where the alert automations POST (a Slack incoming webhook, ...); empty: alerts are only
# recorded in the warehouse's alerts table.
JAMREC_ALERT_WEBHOOK ?=

.PHONY: install browser demo test check lint format clean service service-stop

# Says what it installs and how far it is (scripts/install.py reads pip's progress).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) scripts/install.py $(VENV) constraints.txt
	touch $@

install: $(VENV)/.installed

# `make demo SCALE=tiny|small|full` (default small) generates data/<SCALE>/; with TIMJ=... and
# SPOTIFY=... it takes a real dump instead; NO_STUDY=1 skips the study's experiments.
SCALE ?= small
TIMJ ?=
SPOTIFY ?=
NO_STUDY ?=

DEMO_ARGS = --scale $(SCALE) $(if $(TIMJ),--timj "$(TIMJ)") $(if $(SPOTIFY),--spotify "$(SPOTIFY)")
DEMO_ARGS += $(if $(NO_STUDY),--no-study)

demo: install
	$(BIN)/python -m flows.demo $(strip $(DEMO_ARGS))

# The report test opens the page in a real headless browser: Debian's Chromium.
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -qq chromium >/dev/null 2>&1 \
	  || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1) \
	  || echo "note: could not install chromium (needs root); the browser test will be skipped"

# Static checks: style, import layers, types, SQL style, spelling.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/sqlfluff lint sql expectations --disable-progress-bar
	$(BIN)/codespell
	$(BIN)/mypy

# The fast loop (a few minutes): static checks, then the tests not marked slow.
check: lint
	$(BIN)/pytest -q -m "not slow"

# Everything: what CI runs.
test: install browser lint
	$(BIN)/pytest

# A Prefect server on 127.0.0.1, the jamrec work pool and worker, the deployments and the
# alert automations; each step is printed as it goes.
service: install
	$(BIN)/python -m flows.service start --port $(PREFECT_PORT) --cron "$(JAMREC_RETRAIN_CRON)" \
	  $(if $(JAMREC_ALERT_WEBHOOK),--webhook "$(JAMREC_ALERT_WEBHOOK)")

service-stop:
	$(BIN)/python -m flows.service stop

# Rewrite what the formatters own: Python (ruff) and SQL layout (sqlfluff).
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/sqlfluff fix sql expectations --disable-progress-bar

clean:
	rm -rf warehouse/jamrec.duckdb* warehouse/.work warehouse/reports warehouse/models \
	  data/tiny data/small data/full
