# loginetl: `make demo` runs the whole job on demo data; `make test` runs the suite.
# Both install what they need on a fresh machine (two virtualenvs, see docs/development.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LS_VENV := .localstack-venv
DEPLOY_VENV := .deploy-venv
SQS_PORT ?= 4566
PYTEST_ARGS ?=
SOAK_SECONDS ?= 600
SOAK_SEED ?=

export AWS_ENDPOINT_URL ?= http://127.0.0.1:$(SQS_PORT)
export AWS_DEFAULT_REGION ?= us-east-1
export LOGINETL_KEYS_DIR ?= $(CURDIR)/.loginetl/keys

.PHONY: help install localstack-venv sqs-up sqs-down pg-down demo test faults security soak bench lint format \
	clean constraints wheel-check deploy-check docs breakages

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: $(VENV)/.installed  ## Create .venv with loginetl and its dev tools

$(VENV)/.installed: pyproject.toml tools/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -c tools/constraints.txt -e '.[dev]'
	touch $@

localstack-venv: $(LS_VENV)/.installed  ## Create .localstack-venv (Python 3.12+, pinned set)

$(LS_VENV)/.installed: tools/localstack-requirements.txt
	ls_python=$$(tools/find-python312) && $$ls_python -m venv $(LS_VENV)
	$(LS_VENV)/bin/pip install -q --disable-pip-version-check -r tools/localstack-requirements.txt
	touch $@

sqs-up: install localstack-venv  ## Start LocalStack (SQS) on 127.0.0.1:$(SQS_PORT) and leave it running
	$(PY) tools/localstack.py start --port $(SQS_PORT)

sqs-down:  ## Stop the LocalStack started by sqs-up
	@[ -x $(PY) ] && $(PY) tools/localstack.py stop || true

pg-down:  ## Stop the throwaway PostgreSQL that tools/ensure-postgres.sh may have started
	@if [ -f .run/pgdata/postmaster.pid ]; then \
	  bindir=$$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1); \
	  if [ "$$(id -u)" = 0 ]; then runuser -u postgres -- $$bindir/pg_ctl -D .run/pgdata stop; \
	  else $$bindir/pg_ctl -D .run/pgdata stop; fi; fi

demo: install localstack-venv  ## Seed demo data into a queue, consume it into PostgreSQL, show stats
	SQS_PORT=$(SQS_PORT) tools/demo.sh

test: install localstack-venv  ## Run the test suite against real PostgreSQL and a real SQS endpoint
	LOGINETL_TEST_PG=$$(tools/ensure-postgres.sh) $(PY) -m pytest -m "not slow and not security" $(PYTEST_ARGS)

faults: install localstack-venv  ## Break things on purpose and count (prints one line a scenario)
	LOGINETL_TEST_PG=$$(tools/ensure-postgres.sh) $(PY) -m pytest -m slow tests/faults $(PYTEST_ARGS)

breakages: install localstack-venv  ## Break each promise in a tree copy; its test must fail for the named reason (BREAKAGES=name filters)
	LOGINETL_TEST_PG=$$(tools/ensure-postgres.sh) $(PY) -m tests.faults.breakages $(BREAKAGES)

soak: install localstack-venv  ## Every fault at once for SOAK_SECONDS (600), invariants checked; SOAK_SEED replays a run
	$(PY) -m tests.soak --seconds $(SOAK_SECONDS) $(if $(SOAK_SEED),--seed $(SOAK_SEED))

security: install  ## Play every attack with real database roles, on a superuser- and an owner-migrated database
	pg=$$(tools/ensure-postgres.sh) && for owner in superuser managed; do \
	  echo "== security: database migrated by the $$owner owner"; \
	  LOGINETL_TEST_PG=$$pg LOGINETL_TEST_OWNER=$$owner $(PY) -m pytest -m security tests/security \
	    $(PYTEST_ARGS) || exit 1; done

bench: install localstack-venv  ## Throughput, memory, scale and stats figures (writes bench/results/DATE.json)
	LOGINETL_TEST_PG=$$(tools/ensure-postgres.sh) $(PY) bench/run.py $(BENCH_ARGS)

wheel-check: install localstack-venv  ## Build sdist + wheel, install the wheel in a fresh venv, run the job from it
	tools/check-wheel.sh

deploy-check: $(DEPLOY_VENV)/.installed  ## Validate deploy/ offline: Kubernetes + KEDA schemas, Compose spec, promtool tests
	tools/check-deploy.sh

$(DEPLOY_VENV)/.installed: tools/deploy-requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r tools/deploy-requirements.txt
	touch $@

lint: install  ## ruff (lint + format check) and mypy
	$(VENV)/bin/ruff check loginetl tests tools migrations bench
	$(VENV)/bin/ruff format --check loginetl tests tools migrations bench
	$(VENV)/bin/mypy

format: install  ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix loginetl tests tools migrations bench
	$(VENV)/bin/ruff format loginetl tests tools migrations bench

docs: install  ## Regenerate docs/cli.md and docs/promises.md (a test fails when either is stale)
	$(VENV)/bin/python tools/cli_reference.py > docs/cli.md
	$(VENV)/bin/python tools/promise_table.py > docs/promises.md

constraints: install  ## Re-pin tools/constraints.txt from the current .venv
	{ head -n 2 tools/constraints.txt; $(PY) -m pip freeze --exclude-editable; } > tools/constraints.new
	mv tools/constraints.new tools/constraints.txt

clean:  ## Remove virtualenvs and local state (keys in .loginetl/ are kept)
	-$(MAKE) sqs-down pg-down
	rm -rf $(VENV) $(LS_VENV) $(DEPLOY_VENV) .run .pytest_cache .mypy_cache .ruff_cache
